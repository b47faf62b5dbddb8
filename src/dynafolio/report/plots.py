"""Static PNG charts of an experiment's results.

Every function draws on its own :class:`matplotlib.figure.Figure` (never pyplot's global figure
manager, so nothing leaks between calls or threads and no GUI backend is needed), saves a PNG and
returns its path. The functions only draw what they are given: equity and drawdowns are
re-derived from the per-period net returns purely for display.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import (
    FixedLocator,
    FuncFormatter,
    LogLocator,
    MaxNLocator,
    NullFormatter,
    PercentFormatter,
)

from dynafolio.report.style import (
    BENCHMARK_COLOR,
    LEGEND,
    date_axis,
    save_figure,
    strategy_styles,
)
from dynafolio.report.tables import COLUMN_LABELS, PERCENT_COLUMNS, format_value
from dynafolio.results.result import ExperimentResult, StrategyRuns

__all__ = [
    "fold_starts",
    "plot_drawdowns",
    "plot_equity_curves",
    "plot_metric_bars",
]


def _equity(runs: StrategyRuns) -> pd.Series:
    """Seed-averaged net equity from 1.0, with the 1.0 placed at the first decision date."""
    net = runs.mean_net_returns().astype(float)
    equity = (1.0 + net).cumprod()
    weights_index = runs.first.weights.index
    if len(weights_index) and len(equity) and weights_index[0] < equity.index[0]:
        start = pd.Series([1.0], index=weights_index[:1])
        equity = pd.concat([start, equity])
    return equity


def _drawdown(equity: pd.Series) -> pd.Series:
    # The clip puts the initial 1.0 into the running peak even when no start point was added.
    return equity / equity.cummax().clip(lower=1.0) - 1.0


def _log_ticks(ax, lo: float, hi: float) -> None:
    # Matplotlib's log locator labels only decades; test-period equity often spans 0.7-1.6,
    # which would leave a single labelled tick. Use evenly spaced plain numbers then.
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo <= 0:
        return
    if hi / lo > 8:
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    else:
        ticks = [t for t in MaxNLocator(nbins=8).tick_values(lo, hi) if lo <= t <= hi and t > 0]
        ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _line_chart(result: ExperimentResult, series: dict[str, pd.Series], ax) -> None:
    indices = {runs.name for runs in result.select(kind="buy_and_hold")}
    styles = strategy_styles(list(series), result.benchmark, indices)
    for name, values in series.items():
        ax.plot(values.index, values.to_numpy(dtype=float), label=name, **styles[name])
    date_axis(ax)
    ax.grid(True, which="major", alpha=0.3)
    ax.margins(x=0.01)
    ax.legend(**LEGEND)


def fold_starts(result: ExperimentResult) -> list[pd.Timestamp]:
    """Where a walk-forward run refits: the decision date opening each block after the first
    (none for a single split)."""
    return [fold.index[fold.test.start - 1] for fold in result.folds[1:]]


def _mark_folds(result: ExperimentResult, ax) -> str:
    """Dotted vertical lines at the walk-forward refits; the words for the title."""
    starts = fold_starts(result)
    for date in starts:
        ax.axvline(date, color="grey", linestyle=":", linewidth=0.9, zorder=1)
    if not starts:
        return "test period"
    return f"walk-forward record, {len(result.folds)} blocks (dotted: refits)"


def plot_equity_curves(result: ExperimentResult, path: str | Path) -> Path:
    """Net equity of every strategy over the test period, on a log axis.

    Parameters
    ----------
    result : ExperimentResult
        Strategies are drawn from ``StrategyRuns.mean_net_returns()`` compounded from 1.0; the
        benchmark is thick black and buy-and-hold indices are dashed.
    path : str or Path
        Where to write the PNG.

    Returns
    -------
    Path
    """
    series = {runs.name: _equity(runs) for runs in result.strategies}
    fig = Figure(figsize=(11, 5.5))
    ax = fig.subplots()
    _line_chart(result, series, ax)
    ax.set_yscale("log")
    values = pd.concat(series.values()) if series else pd.Series(dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    if len(values):
        lo, hi = float(values.min()), float(values.max())
        ax.set_ylim(lo / 1.03, hi * 1.03)
        _log_ticks(ax, lo / 1.03, hi * 1.03)
    ax.axhline(1.0, color="grey", linewidth=0.8, zorder=1)
    ax.set_ylabel("Net equity (start = 1, log scale)")
    period = _mark_folds(result, ax)
    ax.set_title(f"Equity curves, {period} (net of costs, mean over seeds)", loc="left")
    return save_figure(fig, path)


def plot_drawdowns(result: ExperimentResult, path: str | Path) -> Path:
    """Underwater curves (drawdown from the running peak) of every strategy.

    Parameters
    ----------
    result : ExperimentResult
        Styled as :func:`plot_equity_curves`.
    path : str or Path
        Where to write the PNG.

    Returns
    -------
    Path
    """
    series = {runs.name: _drawdown(_equity(runs)) for runs in result.strategies}
    fig = Figure(figsize=(11, 4.5))
    ax = fig.subplots()
    _line_chart(result, series, ax)
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    ax.axhline(0.0, color="grey", linewidth=0.8, zorder=1)
    ax.set_ylabel("Drawdown from peak")
    period = _mark_folds(result, ax)
    ax.set_title(f"Drawdowns, {period} (net of costs, mean over seeds)", loc="left")
    return save_figure(fig, path)


def plot_drawdown_panels(
    result: ExperimentResult, groups: dict[str, Sequence[str]], path: str | Path
) -> Path:
    """One underwater panel per group of strategies (e.g. one per K), benchmark in each.

    Parameters
    ----------
    result : ExperimentResult
    groups : dict of str -> sequence of str
        Panel title -> strategy names; unknown names are skipped.
    path : str or Path
    """
    by_name = {runs.name: runs for runs in result.strategies}
    panels = {t: [n for n in names if n in by_name] for t, names in groups.items()}
    panels = {t: names for t, names in panels.items() if names}
    fig = Figure(figsize=(11, 3.2 * max(len(panels), 1)))
    axes = fig.subplots(max(len(panels), 1), 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    for ax, (title, names) in zip(axes, panels.items(), strict=False):
        shown = [result.benchmark, *[n for n in names if n != result.benchmark]]
        series = {n: _drawdown(_equity(by_name[n])) for n in shown if n in by_name}
        _line_chart(result, series, ax)
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
        ax.set_title(title, loc="left")
        ax.set_ylabel("Drawdown")
    return save_figure(fig, path)


def plot_metric_bars(result: ExperimentResult, path: str | Path, metric: str = "sharpe") -> Path:
    """Horizontal bars of one metric per strategy, benchmark highlighted.

    Parameters
    ----------
    result : ExperimentResult
        Values come from ``result.table[metric]``. The Sharpe ratio is drawn with its
        confidence interval (``sharpe_ci_low``/``sharpe_ci_high``) when the table has one;
        otherwise a strategy run with several seeds gets a ±1 std error bar.
    path : str or Path
        Where to write the PNG.
    metric : str, default "sharpe"
        Column of ``result.table``.

    Returns
    -------
    Path
    """
    table = result.table
    names = list(table.index)[::-1]  # barh draws bottom-up; keep the display order top-down
    values = pd.to_numeric(table[metric], errors="coerce").reindex(names).to_numpy(dtype=float)
    std_col = f"{metric}_std"
    n_seeds = table["n_seeds"] if "n_seeds" in table.columns else pd.Series(1, index=table.index)
    errors = np.zeros(len(names))
    interval = None
    if metric == "sharpe" and {"sharpe_ci_low", "sharpe_ci_high"} <= set(table.columns):
        low = table["sharpe_ci_low"].reindex(names).to_numpy(dtype=float)
        high = table["sharpe_ci_high"].reindex(names).to_numpy(dtype=float)
        interval = np.vstack([values - low, high - values])
        errors = np.nan_to_num(high - values)
    elif std_col in table.columns:
        std = pd.to_numeric(table[std_col], errors="coerce").reindex(names).to_numpy(dtype=float)
        multi = n_seeds.reindex(names).fillna(1).to_numpy() > 1
        errors = np.where(multi & np.isfinite(std), std, 0.0)
    colors = [BENCHMARK_COLOR if n == result.benchmark else "#4c72b0" for n in names]
    fig = Figure(figsize=(11, max(2.0, 0.32 * len(names) + 1.0)))
    ax = fig.subplots()
    finite = np.where(np.isfinite(values), values, 0.0)
    ax.barh(
        names,
        finite,
        color=colors,
        height=0.65,
        xerr=interval if interval is not None else np.where(errors > 0, errors, np.nan),
        error_kw={"ecolor": "#333", "capsize": 3, "elinewidth": 1},
    )
    if result.benchmark in names:
        bench_value = values[names.index(result.benchmark)]
        if np.isfinite(bench_value):
            ax.axvline(bench_value, color=BENCHMARK_COLOR, linestyle="--", linewidth=0.9)
    for y, (value, err) in enumerate(zip(values, errors, strict=True)):
        label = format_value(metric, value)
        right = value >= 0 if np.isfinite(value) else True
        edge = (value + err) if right else (value - err)
        edge = edge if np.isfinite(edge) else 0.0
        ax.annotate(
            label,
            (edge, y),
            xytext=(4 if right else -4, 0),
            textcoords="offset points",
            va="center",
            ha="left" if right else "right",
            fontsize=8,
        )
    for tick in ax.get_yticklabels():
        if tick.get_text() == result.benchmark:
            tick.set_fontweight("bold")
    if metric in PERCENT_COLUMNS:
        ax.xaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    ax.axvline(0.0, color="grey", linewidth=0.8)
    ax.margins(x=0.15, y=0.02)
    ax.grid(True, axis="x", alpha=0.3)
    ax.tick_params(axis="y", labelsize=9)
    label = COLUMN_LABELS.get(metric, metric)
    if interval is not None:
        suffix = f" with {result.confidence_level:.0%} confidence intervals (dates and seeds)"
    else:
        suffix = " (error bars: ±1 std over seeds)" if (errors > 0).any() else ""
    ax.set_title(f"{label} by strategy, test period{suffix}", loc="left")
    return save_figure(fig, path)
