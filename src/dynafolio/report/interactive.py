"""Interactive charts of the report (Plotly), embedded so the HTML file opens offline.

Every chart is a ``<div>`` produced by :func:`figure_div`; the page carries plotly.js once
(:func:`plotly_js`), inline, so nothing is fetched from a network. Click a legend entry to hide
or show a strategy, double-click to isolate it. The PNG files written beside the report keep
the static versions for papers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from dynafolio.report.plots import fold_starts
from dynafolio.results.result import ExperimentResult, StrategyRuns, agent_run

__all__ = [
    "drawdown_figure",
    "equity_figure",
    "figure_div",
    "ic_figure",
    "plotly_js",
    "sharpe_figure",
]

_BENCHMARK = "#b8860b"
_PALETTE = (
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#7f7f7f", "#bcbd22", "#ff7f0e", "#393b79", "#637939", "#8c6d31", "#843c39",
)  # fmt: skip
_CONFIG = {"displaylogo": False, "responsive": True}


def plotly_js() -> str:
    """The plotly.js library as one script body (inlined once per report)."""
    return get_plotlyjs()


def figure_div(figure: go.Figure, div_id: str) -> str:
    """The chart as an HTML ``<div>`` that uses the page's inline plotly.js."""
    return figure.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=_CONFIG)


def _colors(result: ExperimentResult) -> dict[str, str]:
    colors, k = {}, 0
    for runs in result.strategies:
        if runs.name == result.benchmark:
            colors[runs.name] = _BENCHMARK
        else:
            colors[runs.name] = _PALETTE[k % len(_PALETTE)]
            k += 1
    return colors


def _equity_paths(runs: StrategyRuns) -> tuple[pd.Series, pd.DataFrame]:
    """Seed-averaged equity and the equity of every seed, from 1.0 at the first decision."""
    per_seed = pd.concat([(1.0 + r.net_returns).cumprod() for r in runs.runs], axis=1)
    mean = (1.0 + runs.mean_net_returns()).cumprod()
    start = runs.first.weights.index[:1]
    if len(start) and start[0] < mean.index[0]:
        mean = pd.concat([pd.Series([1.0], index=start), mean])
        per_seed = pd.concat(
            [pd.DataFrame([[1.0] * per_seed.shape[1]], index=start, columns=per_seed.columns),
             per_seed]
        )  # fmt: skip
    return mean, per_seed


def _shown(result: ExperimentResult, runs: StrategyRuns) -> bool | str:
    """Visible at first: every strategy of a small run; in a large one the benchmark, the
    index and the learned strategies, the rest one click away in the legend."""
    if len(result.strategies) <= 8:
        return True
    key = runs.learned or runs.name == result.benchmark or runs.tags.get("kind") == "buy_and_hold"
    return True if key else "legendonly"


def equity_figure(result: ExperimentResult) -> go.Figure:
    """Net equity of every strategy (log scale); learned strategies with their seed band
    (min–max over seeds), which hides and shows with the line."""
    figure = go.Figure()
    colors = _colors(result)
    for runs in result.strategies:
        mean, per_seed = _equity_paths(runs)
        color, visible = colors[runs.name], _shown(result, runs)
        if per_seed.shape[1] > 1:
            band_x = list(per_seed.index) + list(per_seed.index[::-1])
            band_y = list(per_seed.max(axis=1)) + list(per_seed.min(axis=1)[::-1])
            figure.add_trace(
                go.Scatter(
                    x=band_x, y=band_y, fill="toself", fillcolor=color, opacity=0.18,
                    line={"width": 0}, hoverinfo="skip", showlegend=False,
                    legendgroup=runs.name, visible=visible, name=f"{runs.name} seeds",
                )
            )  # fmt: skip
        figure.add_trace(
            go.Scatter(
                x=mean.index, y=mean.to_numpy(), name=runs.name, legendgroup=runs.name,
                line={"color": color, "width": 2.4 if runs.name == result.benchmark else 1.6},
                visible=visible,
                hovertemplate="%{x|%Y-%m-%d}: %{y:.3f}<extra>" + runs.name + "</extra>",
            )
        )  # fmt: skip
    figure.update_layout(
        title="Net equity (log scale); shaded: range over seeds" + _fold_note(result),
        yaxis={"type": "log", "title": "equity (start = 1)"},
        **_layout(),
    )
    _mark_folds(result, figure)
    return figure


def _mark_folds(result: ExperimentResult, figure: go.Figure) -> None:
    for date in fold_starts(result):
        figure.add_vline(x=date, line={"color": "grey", "dash": "dot", "width": 1})


def _fold_note(result: ExperimentResult) -> str:
    return "; dotted: walk-forward refits" if result.folds else ""


def drawdown_figure(result: ExperimentResult) -> go.Figure:
    """Drawdown of each strategy's seed-averaged net equity."""
    figure = go.Figure()
    colors = _colors(result)
    for runs in result.strategies:
        mean, _ = _equity_paths(runs)
        drawdown = mean / mean.cummax().clip(lower=1.0) - 1.0
        figure.add_trace(
            go.Scatter(
                x=drawdown.index, y=drawdown.to_numpy(), name=runs.name,
                line={"color": colors[runs.name], "width": 1.4},
                visible=_shown(result, runs),
                hovertemplate="%{x|%Y-%m-%d}: %{y:.1%}<extra>" + runs.name + "</extra>",
            )
        )  # fmt: skip
    figure.update_layout(
        title="Drawdown of net equity" + _fold_note(result),
        yaxis={"tickformat": ".0%"},
        **_layout(),
    )
    _mark_folds(result, figure)
    return figure


def sharpe_figure(result: ExperimentResult) -> go.Figure:
    """Sharpe ratio of every strategy with its confidence interval (time and seeds)."""
    table = result.table
    names = list(table.index)[::-1]
    values = table["sharpe"].reindex(names).to_numpy(dtype=float)
    has_ci = {"sharpe_ci_low", "sharpe_ci_high"} <= set(table.columns)
    low = table["sharpe_ci_low"].reindex(names).to_numpy(float) if has_ci else values
    high = table["sharpe_ci_high"].reindex(names).to_numpy(float) if has_ci else values
    p = (
        table["sharpe_p_vs_benchmark"].reindex(names).to_numpy(float)
        if "sharpe_p_vs_benchmark" in table.columns
        else np.full(len(names), np.nan)
    )
    text = [
        f"{name}<br>Sharpe {v:.2f}  [{lo:.2f}, {hi:.2f}]"
        + ("" if not np.isfinite(pv) else f"<br>p vs {result.benchmark}: {pv:.3f}")
        for name, v, lo, hi, pv in zip(names, values, low, high, p, strict=True)
    ]
    colors = [_BENCHMARK if n == result.benchmark else "#4c72b0" for n in names]
    figure = go.Figure(
        go.Bar(
            x=values, y=names, orientation="h", marker_color=colors, hovertext=text,
            hoverinfo="text",
            error_x={"type": "data", "symmetric": False, "array": high - values,
                     "arrayminus": values - low, "color": "#333", "thickness": 1.2},
        )
    )  # fmt: skip
    if result.benchmark in names:
        bench = values[names.index(result.benchmark)]
        figure.add_vline(x=float(bench), line_dash="dash", line_color=_BENCHMARK)
    level = int(round(100 * result.confidence_level))
    figure.update_layout(
        title=f"Sharpe ratio, test period, with {level}% confidence intervals",
        height=max(320, 26 * len(names) + 120),
        margin={"l": 10, "r": 20, "t": 50, "b": 40},
        showlegend=False,
        template="plotly_white",
    )
    return figure


def ic_figure(result: ExperimentResult) -> go.Figure | None:
    """Each forecaster's IC through time: its mean over the last quarter of decisions
    (seeds averaged), learned forecasters solid, baselines dotted."""
    if result.forecasts is None or result.forecasts.ic.empty:
        return None
    ic = result.forecasts.ic
    window = max(4, result.periods_per_year // 4)
    learned = set(result.forecasts.pooled().index[result.forecasts.pooled()["learned"]])
    figure = go.Figure()
    for i, name in enumerate(ic.columns):
        smooth = ic[name].rolling(window, min_periods=window // 2).mean()
        figure.add_trace(
            go.Scatter(
                x=smooth.index, y=smooth.to_numpy(), name=name,
                line={"color": _PALETTE[i % len(_PALETTE)], "width": 1.6,
                      "dash": "solid" if name in learned else "dot"},
                hovertemplate="%{x|%Y-%m-%d}: IC %{y:+.3f}<extra>" + name + "</extra>",
            )
        )  # fmt: skip
    figure.add_hline(y=0.0, line={"color": "grey", "width": 1})
    figure.update_layout(
        title=f"Information coefficient, mean over the last {window} decisions"
        + _fold_note(result),
        yaxis={"title": "IC"},
        **_layout(),
    )
    _mark_folds(result, figure)
    return figure


def _layout() -> dict:
    return {
        "template": "plotly_white",
        "height": 520,
        "margin": {"l": 10, "r": 10, "t": 50, "b": 40},
        "legend": {"font": {"size": 11}},
        "hovermode": "closest",
    }


def training_figure(result: ExperimentResult) -> go.Figure | None:
    """Per-agent PPO training curves: validation log-growth and the policy's entropy loss."""
    from plotly.subplots import make_subplots

    if not result.agents:
        return None
    figure = make_subplots(
        rows=1, cols=2, subplot_titles=("validation log-growth", "entropy loss (training)")
    )
    colors = _colors(result)
    listed: set[str] = set()
    for (name, seed, fold), agent in result.agents.items():
        history = pd.DataFrame(agent.history)
        log = pd.DataFrame(agent.diagnostics)
        label = f"{name} ({agent_run(seed, fold)})"
        color = colors.get(name, "#444")
        # One legend entry per strategy: its agents (seeds, folds) show and hide together.
        first = name not in listed
        listed.add(name)
        if not history.empty:
            figure.add_trace(
                go.Scatter(
                    x=history["timesteps"], y=history["validation_log_growth"], name=name,
                    legendgroup=name, showlegend=first, line={"color": color},
                    mode="lines+markers", hovertemplate="%{y:.3f}<extra>" + label + "</extra>",
                ),
                row=1, col=1,
            )  # fmt: skip
        if not log.empty and "train/entropy_loss" in log:
            figure.add_trace(
                go.Scatter(
                    x=log["timesteps"], y=log["train/entropy_loss"], name=name,
                    legendgroup=name, showlegend=False, line={"color": color, "width": 1},
                    hovertemplate="%{y:.3f}<extra>" + label + "</extra>",
                ),
                row=1, col=2,
            )  # fmt: skip
    figure.update_layout(title="PPO training (per agent)", **_layout())
    figure.update_xaxes(title_text="timesteps")
    return figure
