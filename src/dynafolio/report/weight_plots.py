"""Static PNG charts of what a strategy held: its weights through time (stacked areas) and on
average (bars), one colour per asset (see :mod:`dynafolio.report.plots`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import (
    PercentFormatter,
)

from dynafolio.report.style import (
    OTHER_COLOR,
    asset_colors,
    date_axis,
    save_figure,
)
from dynafolio.results.result import StrategyRuns

__all__ = ["plot_average_weights", "plot_weights_over_time"]


def _top_assets(weights: pd.DataFrame, max_assets: int) -> tuple[pd.DataFrame, bool]:
    """Keep the ``max_assets`` largest average weights; sum the rest into ``other``."""
    mean = weights.mean(axis=0).sort_values(ascending=False, kind="stable")
    keep = list(mean.index[:max_assets])
    shown = weights[keep].copy()
    rest = [c for c in weights.columns if c not in keep]
    has_other = bool(rest) and bool((weights[rest].abs() > 1e-12).to_numpy().any())
    if has_other:
        shown["other"] = weights[rest].sum(axis=1)
    return shown, has_other


def plot_weights_over_time(
    runs: StrategyRuns,
    path: str | Path,
    max_assets: int = 12,
    asset_order: Sequence[str] | None = None,
) -> Path:
    """Stacked area of the held weights (mean over seeds) through the test period.

    Parameters
    ----------
    runs : StrategyRuns
        The strategy; weights are ``runs.mean_weights()``, held from each decision date until
        the next, so the areas are drawn as steps.
    path : str or Path
        Where to write the PNG.
    max_assets : int, default 12
        The assets with the highest average weight are shown; the others are summed into a
        grey "other" band.
    asset_order : sequence of str, optional
        Universe order fixing each asset's colour across strategies (see :func:`asset_colors`).

    Returns
    -------
    Path
    """
    weights = runs.mean_weights().astype(float).fillna(0.0)
    fig = Figure(figsize=(6.4, 3.0))
    ax = fig.subplots()
    if weights.empty:
        ax.text(0.5, 0.5, "no weights recorded", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(runs.name, loc="left", fontsize=10)
        return save_figure(fig, path)
    shown, has_other = _top_assets(weights, max_assets)
    colors = asset_colors(list(weights.columns), asset_order)
    colors["other"] = OTHER_COLOR
    # Extend the last holding to the end of its period so the final step is visible.
    x = list(weights.index)
    end = runs.first.ledger.index[-1] if len(runs.first.ledger) else None
    if end is not None and end > x[-1]:
        x.append(end)
        shown = pd.concat([shown, shown.iloc[[-1]]])
    x_values = pd.DatetimeIndex(x)
    if (shown.to_numpy() < -1e-12).any():
        # Stacking is meaningless with short positions: draw each weight as its own line.
        for col in shown.columns:
            ax.step(
                x_values,
                shown[col].to_numpy(),
                where="post",
                color=colors[col],
                linewidth=1.0,
                label=col,
            )
        ax.axhline(0.0, color="grey", linewidth=0.8)
    else:
        base = np.zeros(len(shown))
        for col in shown.columns:
            top = base + shown[col].to_numpy()
            ax.fill_between(
                x_values, base, top, step="post", color=colors[col], linewidth=0, label=col
            )
            base = top
        ax.set_ylim(0, max(1.0, float(base.max())) * 1.0)
    date_axis(ax)
    ax.tick_params(labelsize=8)
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    ax.margins(x=0)
    ax.set_title(runs.name, loc="left", fontsize=10)
    # Reverse so the legend reads top-to-bottom in the same order as the stacked bands.
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(
        handles[::-1],
        labels[::-1],
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=7,
        frameon=False,
        ncols=1 if len(labels) <= 13 else 2,
    )
    if has_other:
        ax.text(
            1.0,
            -0.16,
            f"other = {weights.shape[1] - max_assets} smaller assets",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=7,
            color="dimgrey",
        )
    return save_figure(fig, path)


def plot_average_weights(
    runs: StrategyRuns,
    path: str | Path,
    asset_order: Sequence[str] | None = None,
    max_assets: int = 30,
) -> Path:
    """Horizontal bars of the average held weight per asset (non-zero ones, largest on top).

    Parameters
    ----------
    runs : StrategyRuns
        Weights are ``runs.mean_weights()`` averaged over time.
    path : str or Path
        Where to write the PNG.
    asset_order : sequence of str, optional
        Universe order fixing colours (see :func:`asset_colors`).
    max_assets : int, default 30
        The assets with the largest average weight (in absolute value) get a bar; a note
        under the chart says how many others were held and their total weight. Without the
        cap the chart grew by one bar per asset held: a Top-K rule on a 1,000-asset universe
        holds most assets at some point, which drew a picture hundreds of inches tall.

    Returns
    -------
    Path
    """
    mean = runs.mean_weights().astype(float).mean(axis=0)
    held = mean[mean.abs() > 1e-6]
    shown = held.reindex(held.abs().sort_values(ascending=False, kind="stable").index)
    rest = shown.iloc[max_assets:]
    mean = shown.iloc[:max_assets].sort_values(ascending=True, kind="stable")
    colors = asset_colors(list(mean.index), asset_order)
    fig = Figure(figsize=(6.4, max(1.6, 0.28 * len(mean) + 0.9)))
    ax = fig.subplots()
    ax.barh(list(mean.index), mean.to_numpy(), color=[colors[a] for a in mean.index])
    for y, value in enumerate(mean.to_numpy()):
        ax.annotate(
            f"{value:.1%}",
            (value, y),
            xytext=(3 if value >= 0 else -3, 0),
            textcoords="offset points",
            va="center",
            ha="left" if value >= 0 else "right",
            fontsize=7,
        )
    ax.xaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    ax.axvline(0.0, color="grey", linewidth=0.8)
    ax.tick_params(labelsize=8)
    ax.margins(x=0.12)
    ax.grid(True, axis="x", alpha=0.3)
    title = f"{runs.name}: average held weight"
    if len(rest):
        title += f" (the {max_assets} largest of {len(shown)} assets held)"
        # Points below the axes, whatever the figure's height (it grows with the bars).
        ax.annotate(
            f"not shown: {len(rest)} other assets held, {rest.sum():.1%} of the weight on average",
            (1.0, 0.0),
            xycoords="axes fraction",
            xytext=(0, -22),
            textcoords="offset points",
            ha="right",
            va="top",
            fontsize=7,
            color="dimgrey",
        )
    ax.set_title(title, loc="left", fontsize=10)
    return save_figure(fig, path)
