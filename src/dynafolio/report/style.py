"""How the report draws strategies and assets: line styles, colours, the legend, date axes and
the figure resolution, identical in every chart of one report (PNG and interactive)."""

from __future__ import annotations

import zlib
from collections.abc import Collection, Sequence
from pathlib import Path

import matplotlib
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

__all__ = [
    "BENCHMARK_COLOR",
    "DPI",
    "LEGEND",
    "OTHER_COLOR",
    "asset_colors",
    "date_axis",
    "save_figure",
    "strategy_styles",
]

DPI = 110
BENCHMARK_COLOR = "black"
OTHER_COLOR = "#b0b0b0"
_LINESTYLES = ("-", "-.", ":")


def _tab20_dark_first() -> list:
    # tab20 comes in (dark, light) pairs of one hue; listing the dark halves first keeps
    # neighbouring strategies in clearly different hues before any hue is reused.
    colors = list(matplotlib.colormaps["tab20"].colors)
    return colors[0::2] + colors[1::2]


def _asset_palette() -> list:
    # Greys (tab20 entries 14, 15) are reserved for the "other" bucket.
    tab20 = [c for i, c in enumerate(matplotlib.colormaps["tab20"].colors) if i not in (14, 15)]
    return tab20[0::2] + tab20[1::2] + list(matplotlib.colormaps["tab20b"].colors)


def strategy_styles(
    names: Sequence[str], benchmark: str | None, buy_and_hold: Collection[str] = ()
) -> dict[str, dict]:
    """Line style of each strategy, stable for a given display order.

    Parameters
    ----------
    names : sequence of str
        Strategy names in display order.
    benchmark : str or None
        Drawn thick and black so every other line reads against it.
    buy_and_hold : collection of str
        The single-asset buy-and-hold strategies (indices), drawn dashed.

    Returns
    -------
    dict
        Name -> keyword arguments for ``Axes.plot`` (``color``, ``linestyle``, ``linewidth``,
        ``zorder``). Buy-and-hold indices are dashed; beyond 10 strategies the line style
        changes as well as the colour, so 20+ lines stay distinguishable.
    """
    palette = _tab20_dark_first()
    styles: dict[str, dict] = {}
    i = 0
    for name in names:
        if name == benchmark:
            styles[name] = {
                "color": BENCHMARK_COLOR,
                "linestyle": "-",
                "linewidth": 2.6,
                "zorder": 5,
            }
            continue
        style = {
            "color": palette[i % len(palette)],
            "linestyle": _LINESTYLES[(i // 10) % len(_LINESTYLES)],
            "linewidth": 1.3,
            "zorder": 3,
        }
        if name in buy_and_hold:
            style.update(linestyle="--", linewidth=1.8, zorder=4)
        styles[name] = style
        i += 1
    return styles


def asset_colors(assets: Sequence[str], asset_order: Sequence[str] | None = None) -> dict:
    """Colour of each asset, identical in every chart of one report.

    Parameters
    ----------
    assets : sequence of str
        Assets to colour.
    asset_order : sequence of str, optional
        The universe in a fixed order (e.g. the price columns). An asset's colour is taken
        from its position here, so it does not depend on which subset a chart shows. Assets
        not listed get a colour from a stable hash of their name.

    Returns
    -------
    dict
        Asset -> RGB tuple.
    """
    palette = _asset_palette()
    position = {a: i for i, a in enumerate(asset_order or sorted(assets))}
    colors = {}
    for asset in assets:
        if asset in position:
            colors[asset] = palette[position[asset] % len(palette)]
        else:
            # crc32 rather than hash(): Python's str hash is salted per process.
            colors[asset] = palette[zlib.crc32(str(asset).encode()) % len(palette)]
    return colors


LEGEND = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "fontsize": 8, "frameon": False}


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG at the report's resolution (creating the folder) and free it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    # A bare Figure is not registered with pyplot, so clearing it is all the closing it needs.
    fig.clear()
    return path


def date_axis(ax) -> None:
    """Concise date ticks, 4 to 10 of them, on ``ax``'s x axis."""
    locator = AutoDateLocator(minticks=4, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
