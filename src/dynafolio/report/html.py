"""A single self-contained HTML report of one experiment run.

The report embeds every chart as a base64 ``data:`` URI and carries its CSS inline, so the one
file can be mailed, archived or opened offline without anything else next to it.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
from markupsafe import Markup

import dynafolio
from dynafolio.metrics import METRIC_INFO
from dynafolio.paths import file_stem
from dynafolio.report import interactive, plots, weight_plots
from dynafolio.report.tables import (
    COLUMN_LABELS,
    MISSING,
    best_by_column,
    format_analysis,
    format_cell,
    format_table,
    format_value,
)
from dynafolio.results.result import ExperimentResult, agent_run

__all__ = ["render_html", "write_report"]

# Hover text of the results-table headers: what each number means, in one line.
_STRESS_KEYS = ("total_return", "max_drawdown")


def _get(mapping: Any, *keys: str, default: Any = None) -> Any:
    """Nested ``.get`` that tolerates missing levels and non-mapping values."""
    current = mapping
    for key in keys:
        if not isinstance(current, Mapping) or key not in current:
            return default
        current = current[key]
    return current


def _date(value: Any) -> str:
    try:
        return pd.Timestamp(value).strftime("%Y-%m-%d")
    except (TypeError, ValueError):
        return str(value)


def _date_range(dates: Sequence | pd.DatetimeIndex) -> str:
    if dates is None or len(dates) == 0:
        return MISSING
    return f"{_date(dates[0])} → {_date(dates[-1])} ({len(dates)} periods)"


def _transaction_cost(value: Any) -> str:
    if value is None:
        return MISSING
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value * 1e4:g} bps per unit of turnover"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def _rebalance(value: Any) -> str:
    if value is None:
        return MISSING
    if isinstance(value, int) and not isinstance(value, bool):
        return "every period" if value == 1 else f"every {value} periods"
    return str(value)


def _versions(value: Any) -> str:
    if isinstance(value, Mapping):
        return " · ".join(f"{k} {v}" for k, v in value.items())
    if isinstance(value, Sequence) and not isinstance(value, str):
        return " · ".join(str(v) for v in value)
    return str(value) if value else MISSING


def _dataset(config: Mapping) -> str:
    """The embedded dataset's name, or the user's file (``data.path``, which replaces it) by
    its name: the folder stays out of a report that may be shared."""
    path = _get(config, "data", "path")
    if path:
        return f"file {Path(str(path)).name}"
    return str(_get(config, "data", "dataset", default=MISSING))


def _setup(result: ExperimentResult, manifest: Mapping) -> list[tuple[str, str]]:
    config = _get(manifest, "config", default={})
    n_assets = len(result.prices.columns) if result.prices is not None else 0
    if not n_assets and result.strategies:
        n_assets = result.strategies[0].first.weights.shape[1]
    seeds = _get(manifest, "seeds")
    if seeds is None:
        seeds = sorted({s for runs in result.strategies for s in runs.seeds})
    seeds_text = ", ".join(str(s) for s in seeds) if isinstance(seeds, Sequence) else str(seeds)
    sha = _get(manifest, "data", "sha256")
    # The full hash is in the footer; twelve characters are enough to tell runs apart here.
    sha_text = f"{sha[:12]}…" if isinstance(sha, str) and len(sha) > 12 else (sha or MISSING)
    return [
        ("Experiment", result.experiment),
        ("Dataset", _dataset(config)),
        ("Frequency", str(_get(config, "data", "frequency", default=MISSING))),
        ("Assets", str(n_assets)),
        ("Train", _date_range(result.train_dates) + _walk_forward_text(result)),
        ("Test", _date_range(result.test_dates)),
        ("Transaction cost", _transaction_cost(_get(config, "backtest", "transaction_cost"))),
        ("Rebalance", _rebalance(_get(config, "backtest", "rebalance_every"))),
        ("Seeds", seeds_text or MISSING),
        ("Benchmark", result.benchmark),
        ("Data SHA-256", str(sha_text)),
        ("Created", str(_get(manifest, "created", default=MISSING))),
    ]


def _walk_forward_text(result: ExperimentResult) -> str:
    if not result.folds:
        return ""
    expanding = all(fold.train.start == 0 for fold in result.folds)
    step, last = len(result.folds[0].test_dates), len(result.folds[-1].test_dates)
    return (
        f" before the first block; walk-forward: {len(result.folds)} test blocks of "
        f"{step} periods{'' if last == step else f' (the last {last})'}, every model refit "
        f"before each on {'all earlier data' if expanding else 'a rolling window'}"
    )


def _results_table(result: ExperimentResult) -> dict[str, Any]:
    table = result.table
    keys = [k for k in COLUMN_LABELS if k in table.columns]
    best = best_by_column(table, keys)
    learned = {runs.name: runs.learned for runs in result.strategies}
    n_seeds = table["n_seeds"] if "n_seeds" in table.columns else pd.Series(1, index=table.index)
    rows = []
    for strategy in table.index:
        seeds = n_seeds.get(strategy, 1)
        several = 1 if pd.isna(seeds) else int(seeds)
        cells = []
        for key in keys:
            std = table.at[strategy, f"{key}_std"] if f"{key}_std" in table.columns else None
            mean, spread = format_cell(key, table.at[strategy, key], std, several)
            cells.append({"mean": mean, "std": spread, "best": strategy in best.get(key, set())})
        rows.append(
            {
                "name": str(strategy),
                "benchmark": strategy == result.benchmark,
                "learned": bool(learned.get(strategy, False)),
                "n_seeds": 1 if pd.isna(seeds) else int(seeds),
                "cells": cells,
            }
        )
    headers = [{"label": COLUMN_LABELS[k], "help": METRIC_INFO[k].help} for k in keys]
    show_seeds = any(r["n_seeds"] > 1 for r in rows)
    return {"headers": headers, "rows": rows, "show_seeds": show_seeds}


def _stress_table(result: ExperimentResult) -> dict[str, Any] | None:
    stress = result.stress
    if stress is None or stress.empty or not {"strategy", "window"} <= set(stress.columns):
        return None
    keys = [k for k in _STRESS_KEYS if k in stress.columns]
    windows = []
    for window, frame in stress.groupby("window", sort=False):
        frame = frame.drop_duplicates("strategy").set_index("strategy")
        start = _date(frame["start"].iloc[0]) if "start" in frame.columns else ""
        end = _date(frame["end"].iloc[0]) if "end" in frame.columns else ""
        windows.append(
            {
                "name": str(window),
                "start": start,
                "end": end,
                "frame": frame,
                "best": best_by_column(frame, keys),
            }
        )
    order = [s for s in result.table.index if s in set(stress["strategy"])]
    order += [s for s in dict.fromkeys(stress["strategy"]) if s not in order]
    rows = []
    for strategy in order:
        cells = []
        for w in windows:
            for key in keys:
                frame = w["frame"]
                value = frame.at[strategy, key] if strategy in frame.index else None
                cells.append(
                    {
                        "text": format_value(key, value),
                        "best": strategy in w["best"].get(key, set()),
                    }
                )
        rows.append(
            {"name": str(strategy), "benchmark": strategy == result.benchmark, "cells": cells}
        )
    return {
        "windows": [{k: w[k] for k in ("name", "start", "end")} for w in windows],
        "metrics": [COLUMN_LABELS.get(k, k) for k in keys],
        "rows": rows,
    }


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _make_plots(result: ExperimentResult, plot_dir: Path) -> dict[str, Any]:
    asset_order = list(result.prices.columns) if result.prices is not None else None
    images: dict[str, Any] = {
        "equity": _data_uri(plots.plot_equity_curves(result, plot_dir / "equity.png")),
        "drawdowns": _data_uri(plots.plot_drawdowns(result, plot_dir / "drawdowns.png")),
        "sharpe": None,
        "weights": [],
        "panels": None,
        "average_weights": [],
    }
    if result.groups:
        path = plots.plot_drawdown_panels(
            result, result.groups, plot_dir / "drawdowns_by_group.png"
        )
        images["panels"] = _data_uri(path)
    for i, runs in enumerate(r for r in result.strategies if r.learned):
        path = plot_dir / f"average_weights_{i:02d}_{file_stem(runs.name)}.png"
        weight_plots.plot_average_weights(runs, path, asset_order=asset_order)
        images["average_weights"].append({"name": runs.name, "uri": _data_uri(path)})
    if "sharpe" in result.table.columns and len(result.table):
        path = plots.plot_metric_bars(result, plot_dir / "sharpe.png", metric="sharpe")
        images["sharpe"] = _data_uri(path)
    for i, runs in enumerate(result.strategies):
        path = plot_dir / f"weights_{i:02d}_{file_stem(runs.name)}.png"
        weight_plots.plot_weights_over_time(runs, path, asset_order=asset_order)
        images["weights"].append({"name": runs.name, "uri": _data_uri(path)})
    return images


def _environment() -> jinja2.Environment:
    # PackageLoader reads the template through importlib.resources, so it also works from a
    # wheel or zip install, not just from a source checkout.
    return jinja2.Environment(
        loader=jinja2.PackageLoader("dynafolio.report", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _extra_tables(result: ExperimentResult) -> list[dict[str, Any]]:
    """Experiment-specific tables as escaped HTML (pandas escapes cell text)."""
    rendered = []
    forecast_tables = result.forecasts.tables() if result.forecasts is not None else {}
    for title, frame in {**forecast_tables, **result.tables}.items():
        caption = frame.attrs.get("caption", "")
        if any(column in COLUMN_LABELS for column in frame.columns):
            # Metric columns get the main table's formatting (percentages, mean ± std).
            shown = format_table(frame)
            for column in frame.columns:
                if (
                    column not in COLUMN_LABELS
                    and not str(column).endswith("_std")
                    and column != "n_seeds"
                ):
                    shown[column] = frame[column].map(lambda v: f"{v:,.3g}")
            frame = shown
        else:
            frame = format_analysis(frame)
        html = frame.to_html(
            classes="extra",
            border=0,
            index_names=False,
            na_rep=MISSING,
            float_format=lambda v: f"{v:,.4g}",
        )
        rendered.append({"title": title, "html": Markup(html), "caption": caption})
    return rendered


def _interactive(result: ExperimentResult) -> dict[str, Markup]:
    """The interactive charts as HTML fragments (Plotly; the page inlines plotly.js once)."""
    charts = {
        "equity": interactive.equity_figure(result),
        "drawdowns": interactive.drawdown_figure(result),
    }
    if "sharpe" in result.table.columns and len(result.table):
        charts["sharpe"] = interactive.sharpe_figure(result)
    ic = interactive.ic_figure(result)
    if ic is not None:
        charts["ic"] = ic
    training = interactive.training_figure(result)
    if training is not None:
        charts["training"] = training
    return {
        name: Markup(interactive.figure_div(fig, f"chart-{name}")) for name, fig in charts.items()
    }


def _agent_lines(result: ExperimentResult) -> list[str]:
    """One sentence per trained agent: its periods, budget and whether it beats chance."""
    lines = []
    for (name, seed, fold), agent in result.agents.items():
        base = agent.random_baseline or {}
        periods = ""
        if agent.training_period and agent.validation_period:
            periods = (
                f"trained on decisions {agent.training_period[0]}..{agent.training_period[1]}, "
                f"validated on {agent.validation_period[0]}..{agent.validation_period[1]}; "
            )
        if base:
            verdict = "beats" if base["p_value"] < 0.05 else "does not beat"
            chance = (
                f"best validation log-growth {base['agent_best_validation_log_growth']:.3f} vs "
                f"random logits {base['random_mean']:.3f} ± {base['random_std']:.3f}: it {verdict} "
                f"the best of {base['evaluations']} random policies (p = {base['p_value']:.2f})"
            )
        else:
            chance = "no random baseline recorded"
        run = agent_run(seed, fold)
        lines.append(f"{name} ({run}): {periods}{agent.num_timesteps:,} timesteps; {chance}.")
    return lines


def render_html(result: ExperimentResult, manifest: Mapping, images: Mapping[str, Any]) -> str:
    """Render the report page from an experiment result and already-encoded images.

    Parameters
    ----------
    result : ExperimentResult
        The experiment to describe.
    manifest : mapping
        Run manifest (``config``, ``seeds``, ``data.sha256``, ``created``, ``versions``); any
        key may be missing.
    images : mapping
        ``equity``, ``drawdowns``, ``sharpe`` (data URIs or None) and ``weights`` (list of
        ``{"name", "uri"}``).

    Returns
    -------
    str
        The HTML document.
    """
    test = result.test_dates
    period = f"{_date(test[0])} → {_date(test[-1])}" if len(test) else "no test period"
    subtitle = (
        f"Experiment {result.experiment} · {len(result.strategies)} strategies · "
        f"test period {period} · benchmark: {result.benchmark}"
    )
    template = _environment().get_template("report.html")
    periods = {52: "weeks", 12: "months", 4: "quarters"}.get(result.periods_per_year, "days")
    methods = [] if result.inference is None else list(result.inference.methods(periods))
    return template.render(
        charts=_interactive(result),
        agents=_agent_lines(result),
        plotly_js=Markup(interactive.plotly_js()),
        methods=methods,
        title=result.title or f"Experiment {result.experiment}",
        subtitle=subtitle,
        setup=_setup(result, manifest),
        findings=list(result.findings),
        failures=[failure.note for failure in result.failures],
        notes=list(result.notes),
        results=_results_table(result),
        stress=_stress_table(result),
        tables=_extra_tables(result),
        images=images,
        versions=_versions(_get(manifest, "versions")),
        data_sha=str(_get(manifest, "data", "sha256", default=MISSING)),
        created=str(_get(manifest, "created", default=MISSING)),
        package_version=dynafolio.__version__,
    )


def write_report(result: ExperimentResult, run_dir: Path, manifest: dict) -> Path:
    """Write the charts and a self-contained ``report.html`` for one experiment run.

    Parameters
    ----------
    result : ExperimentResult
        What the experiment produced.
    run_dir : Path
        Run directory; PNGs go to ``run_dir / "plots"`` (kept for reuse in papers or slides)
        and the page to ``run_dir / "report.html"``.
    manifest : dict
        Run manifest; see :func:`render_html`.

    Returns
    -------
    Path
        Path of ``report.html``. It references no external resource: images are embedded as
        base64 PNG data URIs, the CSS and plotly.js are inline, so the interactive charts
        work offline.
    """
    run_dir = Path(run_dir)
    plot_dir = run_dir / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    images = _make_plots(result, plot_dir)
    html = render_html(result, manifest or {}, images)
    path = run_dir / "report.html"
    path.write_text(html, encoding="utf-8")
    return path
