"""Turn metric and analysis tables into the strings a reader sees (HTML report and terminal).

Nothing here computes a metric: the numbers arrive in ``ExperimentResult.table`` (one row per
strategy, ``<metric>`` = mean over seeds, ``<metric>_std`` = standard deviation over seeds)
and in the studies' analysis tables (:func:`dynafolio.results.tables.analysis_table`), and this
module only decides how they are printed and which value of a column is the best.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd

from dynafolio.metrics import METRIC_INFO, METRICS
from dynafolio.results.tables import ColumnFormat, column_formats

__all__ = [
    "COLUMN_LABELS",
    "HIGHER_IS_BETTER",
    "LOWER_IS_BETTER",
    "PERCENT_COLUMNS",
    "best_by_column",
    "format_analysis",
    "format_cell",
    "format_table",
    "format_value",
]

# Display order of the results table and how each column is printed, from the one metric
# table (dynafolio.metrics.METRICS); n_periods is not a column.
_SHOWN = tuple(m for m in METRICS if m.unit != "count")
COLUMN_LABELS: dict[str, str] = {m.key: m.label for m in _SHOWN}
PERCENT_COLUMNS: frozenset[str] = frozenset(m.key for m in _SHOWN if m.unit == "fraction")
HIGHER_IS_BETTER: frozenset[str] = frozenset(m.key for m in _SHOWN if m.better == "higher")
LOWER_IS_BETTER: frozenset[str] = frozenset(m.key for m in _SHOWN if m.better == "lower")

MISSING = "–"
#: Display label of the Sharpe ratio's interval when both ends are shown in one column.
CI_LABEL = "Sharpe 95% CI"


def _is_missing(value: object) -> bool:
    if value is None:
        return True
    try:
        return math.isnan(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return True


def format_value(key: str, value: object) -> str:
    """Format one number of metric ``key`` the way the report prints it.

    Parameters
    ----------
    key : str
        Metric key (``"sharpe"``, ``"max_drawdown"`` ...): fractions print as percentages,
        ratios with their decimals (:data:`dynafolio.metrics.METRICS`); unknown keys with two.
    value : float or None
        The number; NaN or None prints as an en dash.

    Returns
    -------
    str
    """
    if _is_missing(value):
        return MISSING
    number = float(value)  # type: ignore[arg-type]
    if math.isinf(number):
        return "inf" if number > 0 else "-inf"
    info = METRIC_INFO.get(key)
    decimals = info.decimals if info is not None else 2
    if info is not None and info.unit == "fraction":
        return f"{number * 100:.{decimals}f}%"
    if info is not None and info.unit == "p":
        return "<0.001" if number < 0.001 else f"{number:.{decimals}f}"
    return f"{number:.{decimals}f}"


def format_cell(key: str, mean: object, std: object = None, n_seeds: int = 1) -> tuple[str, str]:
    """``(mean text, std text)`` of one table cell; the std text is empty with one seed."""
    text = format_value(key, mean)
    if n_seeds > 1 and not _is_missing(std) and text != MISSING:
        return text, format_value(key, std)
    return text, ""


def _n_seeds(table: pd.DataFrame, strategy: object) -> int:
    if "n_seeds" not in table.columns:
        return 1
    value = table.at[strategy, "n_seeds"]
    return 1 if _is_missing(value) else int(value)


def _metric_columns(table: pd.DataFrame, keys: Iterable[str] | None = None) -> list[str]:
    wanted = COLUMN_LABELS if keys is None else keys
    return [k for k in wanted if k in table.columns]


def format_table(table: pd.DataFrame) -> pd.DataFrame:
    """Format a per-strategy metrics table as display strings.

    Parameters
    ----------
    table : pd.DataFrame
        One row per strategy (index), columns ``<metric>`` (mean over seeds), optional
        ``<metric>_std`` and ``n_seeds``, as in ``ExperimentResult.table``.

    Returns
    -------
    pd.DataFrame
        Same index, one string column per metric of :data:`COLUMN_LABELS` present in ``table``,
        labelled with the display labels. A cell reads ``"mean ± std"`` when the strategy ran
        with more than one seed and its standard deviation is known, otherwise just the mean.
        The Sharpe interval's two ends share one column, :data:`CI_LABEL`: ``"[low, high]"``.
    """
    keys = _metric_columns(table)
    out: dict[str, list[str]] = {}
    for key in keys:
        if key == "sharpe_ci_high":
            continue
        if key == "sharpe_ci_low" and "sharpe_ci_high" in table.columns:
            # One column "[low, high]" rather than two.
            out[CI_LABEL] = [
                f"[{format_value(key, lo)}, {format_value(key, hi)}]"
                for lo, hi in zip(table["sharpe_ci_low"], table["sharpe_ci_high"], strict=True)
            ]
            continue
        std_col = f"{key}_std"
        cells = []
        for strategy in table.index:
            std = table.at[strategy, std_col] if std_col in table.columns else None
            mean, spread = format_cell(key, table.at[strategy, key], std, _n_seeds(table, strategy))
            cells.append(f"{mean} ± {spread}" if spread else mean)
        out[COLUMN_LABELS[key]] = cells
    formatted = pd.DataFrame(out, index=table.index, dtype=object)
    formatted.index.name = table.index.name
    return formatted


def best_by_column(table: pd.DataFrame, keys: Iterable[str] | None = None) -> dict[str, set]:
    """Rows holding the best value of each metric column (ties all count as best).

    Parameters
    ----------
    table : pd.DataFrame
        Numeric metrics, one row per strategy (or any row label).
    keys : iterable of str, optional
        Columns to rank; defaults to those of :data:`COLUMN_LABELS` present. Columns whose
        direction is unknown (neither in :data:`HIGHER_IS_BETTER` nor
        :data:`LOWER_IS_BETTER`) are skipped.

    Returns
    -------
    dict
        Column key -> set of row labels. Columns that are all NaN, or where every row ties
        (nothing to single out), map to an empty set.
    """
    best: dict[str, set] = {}
    for key in _metric_columns(table, keys):
        values = pd.to_numeric(table[key], errors="coerce").dropna()
        if key in HIGHER_IS_BETTER:
            target = values.max() if len(values) else None
        elif key in LOWER_IS_BETTER:
            target = values.min() if len(values) else None
        else:
            continue
        if target is None or len(values) < 2 or values.nunique() == 1:
            best[key] = set()
            continue
        # Compare after rounding to the printed precision: two cells that read the same are tied.
        shown = values.map(lambda v, k=key: format_value(k, v))
        best[key] = set(shown.index[shown == format_value(key, target)])
    return best


def format_number(value: object, kind: ColumnFormat) -> str:
    """One analysis-table cell as text (:data:`~dynafolio.results.tables.ColumnFormat`)."""
    if kind == "text":
        return (
            MISSING
            if value is None or (isinstance(value, float) and math.isnan(value))
            else str(value)
        )
    if _is_missing(value):
        return MISSING
    number = float(value)  # type: ignore[arg-type]
    if kind == "signed":
        return f"{number:+.2f}"
    if kind == "signed3":
        return f"{number:+.3f}"
    if kind == "signed4":
        return f"{number:+.4f}"
    if kind == "percent":
        return f"{number:.0%}"
    if kind == "signed_percent":
        return f"{number:+.1%}"
    if kind == "weight":
        return f"{number:.1%}"
    if kind == "p":
        return "<0.001" if number < 0.001 else f"{number:.3f}"
    if kind == "count":
        return f"{round(number):d}"
    return f"{number:.2f}"


def format_analysis(frame: pd.DataFrame) -> pd.DataFrame:
    """An analysis table's numbers as display strings: each column in its declared format,
    an interval's two ends as one ``[low, high]`` column and a mean with its spread over
    seeds as ``mean ± sd`` (:func:`~dynafolio.results.tables.analysis_table`)."""
    kinds = column_formats(frame)
    spreads = frame.attrs.get("spreads", {})
    lows = {low: (label, high) for label, (low, high) in frame.attrs.get("intervals", {}).items()}
    hidden = set(spreads.values()) | {high for _, high in lows.values()}
    out: dict = {}
    for column in frame.columns:
        if column in hidden:
            continue
        kind = kinds[column]
        cells = [format_number(v, kind) for v in frame[column]]
        if column in lows:
            label, high = lows[column]
            ends = [format_number(v, kind) for v in frame[high]]
            out[label] = [
                MISSING if a == b == MISSING else f"[{a}, {b}]"
                for a, b in zip(cells, ends, strict=True)
            ]
            continue
        if column in spreads:
            spread_kind: ColumnFormat = "number" if kind == "signed" else kind
            spread = [format_number(v, spread_kind) for v in frame[spreads[column]]]
            cells = [
                c if c == MISSING or s == MISSING else f"{c} ± {s}"
                for c, s in zip(cells, spread, strict=True)
            ]
        out[column] = cells
    shown = pd.DataFrame(out, index=frame.index, dtype=object)
    shown.index.name = frame.index.name
    return shown
