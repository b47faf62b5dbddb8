"""Run experiments: execute the plan's task graph, join the tasks into each run's result, and
score it.

The runner only composes lower layers (plan → tasks → backtests → :mod:`dynafolio.results`);
what an experiment's own study adds (its ablations, sweeps, sub-runs) comes in through the
``analyse`` argument, and writing files is :mod:`dynafolio.experiments.artifacts`' job.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dynafolio import metrics
from dynafolio.backtest import ProportionalCost, chain_backtests
from dynafolio.data.datasets import french_factors_per_period
from dynafolio.data.validate import check_history, check_n_assets
from dynafolio.experiments.checkpoint import TaskStore
from dynafolio.experiments.config import ExperimentConfig
from dynafolio.experiments.forecasts import baseline_runs, forecast_runs
from dynafolio.experiments.learnability import (
    collect_learnability,
    learnability_findings,
    with_learner_checks,
)
from dynafolio.experiments.plan import PreparedData, load_prices
from dynafolio.experiments.tasks import (
    RunContext,
    Task,
    build_tasks,
    forecaster_file_name,
    learnability_tasks,
    stream_dependencies,
)
from dynafolio.features import periods_per_year
from dynafolio.parallel import ExecutorSettings, execute
from dynafolio.progress import ProgressFactory
from dynafolio.results.folds import fold_tables
from dynafolio.results.forecasts import ForecastEvaluation, ForecastRecord, evaluate_forecasts
from dynafolio.results.inference import findings, infer
from dynafolio.results.result import ExperimentResult, StrategyRuns
from dynafolio.results.steps import AnalysisSteps


@dataclass(frozen=True)
class AnalysisContext:
    """What an experiment's own analysis may use beyond the result: the config it ran, the
    prepared prices, and the progress display and executor (for further runs, e.g. the S1
    study's crisis windows)."""

    config: ExperimentConfig
    prepared: PreparedData
    progress: ProgressFactory | None = None
    executor: ExecutorSettings | None = None


#: An experiment's own analysis: tables (keyed by title) computed from the finished result.
Analyse = Callable[[ExperimentResult, AnalysisContext], dict[str, pd.DataFrame]]


def run_experiment(
    config: ExperimentConfig | RunContext,
    *,
    prepared: PreparedData | None = None,
    progress: ProgressFactory | None = None,
    executor: ExecutorSettings | None = None,
    analyse: Analyse | None = None,
    resume: Path | None = None,
) -> ExperimentResult:
    """Backtest every strategy of ``config`` on the test period and score them.

    ``config`` may be an already planned run (:meth:`RunContext.build`, as
    :func:`dynafolio.studies.compose_config` gives it), which is then not planned again.

    The work is a graph of tasks (:mod:`dynafolio.experiments.tasks`) run by ``executor``
    (default: in this process); the result is the same whatever runs it. ``analyse`` adds
    the experiment's own tables (:func:`dynafolio.studies.analyse` for the named studies).
    ``resume``: a folder that keeps each finished task's result
    (:mod:`dynafolio.experiments.checkpoint`); run again with the same folder after an
    interruption, only the unfinished tasks run.
    """
    (result,) = run_experiments(
        [config], prepared=[prepared], progress=progress, executor=executor, analyse=analyse,
        resume=resume,
    )  # fmt: skip
    return result


def run_experiments(
    configs: list[ExperimentConfig | RunContext],
    *,
    prepared: list[PreparedData | None] | None = None,
    progress: ProgressFactory | None = None,
    executor: ExecutorSettings | None = None,
    analyse: Analyse | None = None,
    resume: Path | None = None,
) -> list[ExperimentResult]:
    """:func:`run_experiment` for several configs whose tasks run as one graph: the workers
    stay busy across them, and a learner check they share runs once. Each result is what
    :func:`run_experiment` gives for its config alone."""
    prepared = prepared or [None] * len(configs)
    contexts = []
    for config, data in zip(configs, prepared, strict=True):
        if isinstance(config, RunContext):
            context, data = config, config.prepared
        else:
            data = data or load_prices(config)
            context = RunContext.build(config, data)
        check_history(data.prices.loc[context.folds[0].train_dates], 2, data.source)
        check_n_assets(data.prices.shape[1], 1, f"experiment {context.config.name!r}")
        contexts.append(context)
    graphs = [build_tasks(context) for context in contexts]
    if len(contexts) == 1:
        tasks, context = graphs[0], contexts[0]
    else:
        joint = JointContext(tuple(contexts))
        tasks, context = joint.tasks(graphs), joint
    done, on_result = {}, None
    if resume is not None:
        store = TaskStore(resume, _fingerprint(contexts))
        done, on_result = store.load([task.id for task in tasks]), store.save
        if done and progress is not None:
            progress(f"resumed: {len(done)} of {len(tasks)} tasks already done", 1)(1)
    results = execute(tasks, context, executor, progress, done=done, on_result=on_result)
    if len(contexts) == 1:
        runs = [results]
    else:
        runs = [joint.results_of(i, graph, results) for i, graph in enumerate(graphs)]
    return [
        _assemble(context, graph, results, progress, executor, analyse)
        for context, graph, results in zip(contexts, graphs, runs, strict=True)
    ]


@dataclass(frozen=True)
class JointContext:
    """Runs the task graphs of several experiments as one: task ids get the run's number as a
    prefix (``"2/backtest-0-1-0"``), except the learner checks, which depend only on their
    configuration and so are shared by every run that has them."""

    contexts: tuple[RunContext, ...]

    @staticmethod
    def _shared(task_id: str) -> bool:
        return task_id.startswith("learnability-")

    def _id(self, run: int, task_id: str) -> str:
        return task_id if self._shared(task_id) else f"{run}/{task_id}"

    def tasks(self, graphs: list[list[Task]]) -> list[Task]:
        joined: dict[str, Task] = {}
        for run, graph in enumerate(graphs):
            name = self.contexts[run].config.name
            for task in graph:
                renamed = dataclasses.replace(
                    task,
                    id=self._id(run, task.id),
                    deps=tuple(self._id(run, d) for d in task.deps),
                    label=task.label if self._shared(task.id) else f"{name}: {task.label}",
                )
                joined.setdefault(renamed.id, renamed)
        # Dependencies first, as build_tasks orders one graph: the shared checks have none.
        return sorted(joined.values(), key=lambda t: bool(t.deps))

    def run(self, task: Task, dep_results: list[Any]) -> Any:
        if self._shared(task.id):
            # Any run that has the check can compute it; its entry index is that run's.
            for context in self.contexts:
                if any(t.id == task.id for t in learnability_tasks(context)):
                    return context.run(task, dep_results)
        run, _, _ = task.id.partition("/")
        return self.contexts[int(run)].run(task, dep_results)

    def results_of(self, run: int, graph: list[Task], results: dict[str, Any]) -> dict[str, Any]:
        return {task.id: results[self._id(run, task.id)] for task in graph}


def _evaluate_forecasts(
    context: RunContext, records: dict[tuple[str, int, int], tuple[ForecastRecord, ...]]
) -> ForecastEvaluation | None:
    """The forecast table of the run's forecasters and the baselines (None without any)."""
    prices = context.prepared.prices
    learned = forecast_runs(records, prices)
    if not learned:
        return None
    folds = context.folds
    first_rows = {f: fold.train.start for f, fold in enumerate(folds)}
    runs = learned + baseline_runs(learned, records, prices, first_rows)
    n_assets = learned[0].forecasts[0].shape[1]
    return evaluate_forecasts(
        runs,
        prices,
        # A block's first decision is at the close before its first evaluated period.
        [prices.index[prices.index.get_loc(fold.test_dates[0]) - 1] for fold in folds],
        k=max(1, min(5, n_assets // 2)),
        seed=context.config.seed,
    )


def _fingerprint(contexts: list[RunContext]) -> str:
    """What the results of a run's tasks depend on: each config, its data and dynafolio's
    version (a stored result of another config, data file or version is never reused)."""
    parts = [f"dynafolio {version('dynafolio')}"]
    for context in contexts:
        parts += [context.config.model_dump_json(), context.prepared.source_sha256]
    return "\n".join(parts)


def _forecaster_files(
    context: RunContext, tasks: list[Task], results: dict[str, Any]
) -> tuple[dict[str, bytes], tuple[dict[str, Any], ...]]:
    """Every forecaster the run fitted, as files (name -> bytes; one per fit, shared by the
    strategies that share the stream), and the index of which strategy, seed, fold and stream
    used which file from which refit date on."""
    files: dict[str, bytes] = {}
    index = []
    walk_forward = len(context.folds) > 1
    for task, dep, stream in stream_dependencies(tasks):
        for fit_date, data in results[dep].models.items():
            if data is None:
                continue
            name = forecaster_file_name(dep, fit_date)
            files[name] = data
            index.append({
                "strategy": context.plan[task.entry].name,
                "seed": task.seed,
                "fold": task.fold if walk_forward else None,
                "stream": stream,
                "fit_date": fit_date,
                "file": name,
            })  # fmt: skip
    return files, tuple(index)


def _assemble(
    context: RunContext,
    tasks: list[Task],
    results: dict[str, Any],
    progress: ProgressFactory | None,
    executor: ExecutorSettings | None,
    analyse: Analyse | None,
) -> ExperimentResult:
    """Join the executed tasks of one run into its result and analyse it."""
    config, prepared, folds = context.config, context.prepared, context.folds
    prices = prepared.prices
    train_dates = folds[0].train_dates
    test_dates = prices.index[folds[0].test.start : folds[-1].test.stop]
    ppy = periods_per_year(prices.index)
    rf_annual = _risk_free(config, prices.index, ppy)
    outcomes = {(t.entry, t.seed, t.fold): results[t.id] for t in tasks if t.kind == "backtest"}
    learnability = collect_learnability(context, results)
    cost_model = ProportionalCost(config.backtest.transaction_cost)
    all_runs: list[StrategyRuns] = []
    agents = {}
    model_files: dict[tuple[str, int, int | None, str], bytes] = {}
    for entry, item in enumerate(context.plan):
        runs = []
        for seed in item.seeds:
            parts = [outcomes[(entry, seed, fold)] for fold in range(len(folds))]
            rebalances = item.spec.strategy_class.rebalances
            runs.append(
                chain_backtests([p.result for p in parts], item.universe, cost_model, rebalances)
            )
            for fold, part in enumerate(parts):
                key = (item.name, seed, fold if len(folds) > 1 else None)
                if part.agent is not None:
                    agents[key] = part.agent
                for fit_date, data in part.models.items():
                    model_files[(*key, fit_date)] = data
        all_runs.append(StrategyRuns(item.name, tuple(runs), item.seeds, item.learned, item.tags))

    forecaster_files, forecaster_index = _forecaster_files(context, tasks, results)
    records = {
        (item.name, seed, fold): outcomes[(entry, seed, fold)].forecasts
        for entry, item in enumerate(context.plan)
        for seed in item.seeds
        for fold in range(len(folds))
    }
    per_seed = _per_seed_metrics(all_runs, ppy, rf_annual)
    # From here on every step only analyses the finished backtests: a step that raises is
    # recorded and replaced by its fallback, so the backtests are still written.
    steps = AnalysisSteps()
    aggregate = _aggregate(per_seed)
    table, inference = steps.run(
        "inference (Sharpe intervals, p-values, SPA and StepM)",
        infer, all_runs, aggregate, context.benchmark, ppy,
        metrics.risk_free_on(rf_annual, test_dates), config.seed,
        fallback=(aggregate, None),  # the per-seed means and spreads, no intervals
    )  # fmt: skip
    table = steps.run("learner checks", with_learner_checks, table, learnability, fallback=table)
    stress, stress_notes = steps.run(
        "stress windows", _stress, all_runs, config, ppy, rf_annual, test_dates,
        fallback=(pd.DataFrame(), []),
    )  # fmt: skip
    notes = [
        *config.notes,
        *prepared.notes,
        *[n for runs in all_runs for n in runs.first.notes],
        *stress_notes,
    ]
    notes.append(
        f"Annualised return is {ppy}×mean of per-period net returns (the S1 paper's convention); "
        "CAGR is the compounded rate. Sharpe = annualised excess mean / annualised volatility, "
        f"risk-free rate {_risk_free_text(rf_annual, test_dates)}. The S1 paper prints "
        "benchmark Sharpe ratios that contradict its own formula (e.g. 6.79% / 20.0% shown as "
        "0.0034); dynafolio computes them consistently."
    )
    benchmark = context.benchmark
    rolling = steps.run(
        "rolling alpha and beta", _rolling_alpha_beta,
        all_runs, prices, config.index_asset, config.rolling_window, ppy,
        fallback=pd.DataFrame(),
    )  # fmt: skip
    forecasts = steps.run(
        "forecast evaluation (IC, out-of-sample R², Diebold–Mariano)",
        _evaluate_forecasts, context, records, fallback=None,
    )  # fmt: skip
    found = ()
    if inference is not None:  # the findings quote the intervals and tests
        found = tuple(
            steps.run("findings", findings, table, inference, all_runs, benchmark, fallback=())
        )
    result = ExperimentResult(
        experiment=config.name,
        title=config.title or config.name,
        strategies=tuple(all_runs),
        metrics=per_seed,
        table=table,
        stress=stress,
        prices=prices,
        train_dates=train_dates,
        test_dates=test_dates,
        folds=folds if len(folds) > 1 else (),
        periods_per_year=ppy,
        asset_classes=prepared.asset_classes,
        benchmark=benchmark,
        rolling=rolling,
        groups=_plot_groups(config, all_runs),
        agents=agents,
        forecaster_files=forecaster_files,
        model_files=model_files,
        forecaster_index=forecaster_index,
        forecasts=forecasts,
        findings=(
            *found,
            *(forecasts.findings if forecasts is not None else ()),
            *steps.run("learner findings", learnability_findings, learnability, fallback=[]),
        ),
        learnability=learnability,
        inference=inference,
        notes=tuple(notes),
    )
    tables = steps.run("walk-forward fold tables", fold_tables, result, rf_annual, fallback={})
    if analyse is not None:
        analysis = AnalysisContext(config, prepared, progress, executor)
        label = f"analyses ({config.analyses})"
        tables |= steps.run(label, analyse, result, analysis, fallback={})
    return dataclasses.replace(
        result, tables={**result.tables, **tables}, failures=tuple(steps.failures)
    )


def _plot_groups(config: ExperimentConfig, all_runs: list[StrategyRuns]) -> dict:
    """The config's chart groups, keeping only strategies of this run (a config that replaces
    the default strategies keeps the defaults' groups otherwise); empty groups are dropped."""
    names = {runs.name for runs in all_runs}
    groups = {title: tuple(n for n in members if n in names)
              for title, members in config.plot_groups.items()}  # fmt: skip
    return {title: members for title, members in groups.items() if members}


def _risk_free(config: ExperimentConfig, index: pd.DatetimeIndex, ppy: int) -> float | pd.Series:
    """The annual risk-free rate of the Sharpe ratios: the config's constant, or (``risk_free:
    ff_factors``) the daily Fama–French RF compounded over each period, annualised."""
    if config.backtest.risk_free == "rate":
        return config.backtest.risk_free_rate
    per_period = french_factors_per_period(index)["RF"]
    return (1.0 + per_period) ** ppy - 1.0


def _risk_free_text(rf: float | pd.Series, test_dates: pd.DatetimeIndex) -> str:
    if np.ndim(rf) == 0:
        return f"{rf:.2%} a year"
    over = rf.reindex(test_dates)
    return (
        f"the Fama–French daily risk-free rate compounded per period ({over.mean():.2%} a year "
        f"on average over the test period, {over.min():.2%} to {over.max():.2%})"
    )


def _per_seed_metrics(all_runs: list[StrategyRuns], ppy: int, rf: float) -> pd.DataFrame:
    rows = []
    for runs in all_runs:
        for seed, run in zip(runs.seeds, runs.runs, strict=True):
            rates = metrics.risk_free_on(rf, run.net_returns.index)
            stats = metrics.summary(run.net_returns, ppy, rates, turnover=run.ledger["turnover"])
            rows.append({"strategy": runs.name, "seed": seed, **stats})
    return pd.DataFrame(rows).set_index("strategy")


def _aggregate(per_seed: pd.DataFrame) -> pd.DataFrame:
    grouped = per_seed.drop(columns="seed").groupby(level="strategy", sort=False)
    mean = grouped.mean()
    std = grouped.std(ddof=1).add_suffix("_std")
    table = pd.concat([mean, std], axis=1)
    table["n_seeds"] = grouped.size()
    return table


def _stress(all_runs, config, ppy, rf, test_dates) -> tuple[pd.DataFrame, list[str]]:
    notes = []
    covered = {}
    for name, (start, end) in config.stress_windows.items():
        start, end = pd.Timestamp(start), pd.Timestamp(end)
        inside = test_dates[(test_dates >= start) & (test_dates <= end)]
        # A window counts only if the test period spans it entirely: evaluating the few
        # out-of-sample weeks of a longer crisis would be mislabelled as "the crisis".
        if start >= test_dates[0] and end <= test_dates[-1] and len(inside) >= 2:
            covered[name] = (str(start.date()), str(end.date()))
        elif len(inside) == 0:
            notes.append(
                f"Stress window '{name}' ({start.date()}..{end.date()}) lies outside the test "
                f"period ({test_dates[0].date()}..{test_dates[-1].date()}) and is not evaluated: "
                "in-sample results would flatter every fitted strategy. A walk-forward run "
                "that makes it out-of-sample is needed."
            )
        else:
            notes.append(
                f"Stress window '{name}' ({start.date()}..{end.date()}) is only partly in the test "
                f"period ({len(inside)} periods from {inside[0].date()}); not evaluated."
            )
    frames = []
    for runs in all_runs:
        for run in runs.runs:
            if covered:
                rates = metrics.risk_free_on(rf, run.net_returns.index)
                table = metrics.window_summary(run.net_returns, covered, ppy, rates)
                frames.append(table.assign(strategy=runs.name))
    if not frames:
        return pd.DataFrame(), notes
    stacked = pd.concat(frames).rename_axis("window").reset_index()
    numeric = [c for c in stacked.select_dtypes("number").columns]
    grouped = stacked.groupby(["strategy", "window"], sort=False)
    stress = grouped[numeric].mean()
    stress[["start", "end"]] = grouped[["start", "end"]].first()
    stress = stress.reset_index()
    return stress, notes


def _rolling_alpha_beta(all_runs, prices, index_asset, window, ppy) -> pd.DataFrame:
    if index_asset not in prices.columns:
        return pd.DataFrame()
    index_returns = prices[index_asset].pct_change(fill_method=None)
    frames = {}
    for runs in all_runs:
        net = runs.mean_net_returns()
        # Periods where the index has no price (e.g. a weekend-only last week) are skipped.
        paired = pd.concat([net, index_returns.reindex(net.index)], axis=1).dropna()
        if len(paired) > window:
            frames[runs.name] = metrics.rolling_alpha_beta(
                paired.iloc[:, 0], paired.iloc[:, 1], window, ppy
            )
    return pd.concat(frames, axis=1) if frames else pd.DataFrame()
