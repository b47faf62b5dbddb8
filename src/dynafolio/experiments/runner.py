"""Run an experiment: load data, split, backtest every strategy over its seeds, score.

The runner only composes lower layers (data → strategies → backtest → metrics); writing
files is :mod:`dynafolio.experiments.artifacts`' job.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

import pandas as pd

from dynafolio import metrics
from dynafolio.backtest import PortfolioConstraints, ProportionalCost, chain_backtests
from dynafolio.data import dataset_info, load_dataset, read_prices
from dynafolio.data.markets import KnownMarket, generate_market
from dynafolio.data.validate import check_history, check_n_assets
from dynafolio.errors import ConfigError, DataError
from dynafolio.experiments.config import ExperimentConfig, StrategySpec
from dynafolio.experiments.executors import ExecutorSettings, execute
from dynafolio.experiments.folds import fold_tables
from dynafolio.experiments.inference import findings, infer
from dynafolio.experiments.learnability import (
    collect_learnability,
    learnability_findings,
    with_learner_checks,
)
from dynafolio.experiments.result import AnalysisContext, ExperimentResult, StrategyRuns
from dynafolio.experiments.steps import AnalysisSteps
from dynafolio.experiments.tasks import RunContext, build_tasks, learnability_tasks
from dynafolio.features import periods_per_year, prepare_prices
from dynafolio.progress import ProgressFactory
from dynafolio.strategies.base import Strategy
from dynafolio.strategies.registry import BuildContext


@dataclass(frozen=True)
class PreparedData:
    """Prices on the experiment's frequency and where they came from."""

    prices: pd.DataFrame
    source: str
    source_sha256: str
    asset_classes: dict[str, str]
    notes: tuple[str, ...] = ()
    market: KnownMarket | None = None  # the known-answer market the prices come from


def load_prices(config: ExperimentConfig) -> PreparedData:
    """Load, subset, clean and resample the experiment's prices."""
    data = config.data
    if data.path is not None:
        if data.path.is_dir():
            raise DataError(f"data.path {data.path} is a directory; pass a CSV or Parquet file")
        raw = read_prices(data.path, date_format=data.date_format)
        source = str(data.path)
        digest = hashlib.sha256(data.path.read_bytes()).hexdigest()
        classes: dict[str, str] = {}
    elif data.known_market is not None:
        raw = generate_market(data.known_market)
        source = f"known-answer market {data.known_market.label}"
        digest = hashlib.sha256(raw.to_csv().encode()).hexdigest()
        classes = {}
    else:
        raw = load_dataset(data.dataset)
        source = f"dataset:{data.dataset}"
        digest = hashlib.sha256(raw.to_csv().encode()).hexdigest()
        classes = dict(dataset_info(data.dataset).asset_classes)
    if data.assets is not None:
        missing = [a for a in data.assets if a not in raw.columns]
        if missing:
            raise DataError(
                f"{source}: assets {missing} are not in the data; available: {list(raw.columns)}"
            )
        raw = raw.loc[:, list(data.assets)]
    if data.start is not None or data.end is not None:
        raw = raw.loc[
            pd.Timestamp(data.start or raw.index[0]) : pd.Timestamp(data.end or raw.index[-1])
        ]
    notes = []
    empty = [str(a) for a in raw.columns if raw[a].isna().all()]
    if empty:
        # Kept, never tradable — like an asset listed after the end of the data. Dropping
        # them would change the universe (and an RL policy's inputs) with the date range.
        notes.append(
            f"{', '.join(empty)} {'has' if len(empty) == 1 else 'have'} no price between "
            f"{data.start or 'the start'} and {data.end or 'the end'}: never tradable in this run"
        )
    # Rows without any price carry nothing (each row is judged on its own: causal).
    raw = raw.dropna(axis=0, how="all")
    if data.calendar == "common":
        # Only dates on which every selected asset trades (e.g. NYSE days for stocks + crypto).
        raw = raw.dropna(axis=0, how="any")
    if raw.shape[0] < 2 or raw.shape[1] == 0:
        raise DataError(f"{source}: no prices left between {data.start} and {data.end}")
    prices = prepare_prices(raw, frequency=data.frequency, max_gap=data.max_gap)
    return PreparedData(
        prices,
        source,
        digest,
        {a: c for a, c in classes.items() if a in prices},
        tuple(notes),
        data.known_market,
    )


def run_experiment(
    config: ExperimentConfig,
    *,
    prepared: PreparedData | None = None,
    progress: ProgressFactory | None = None,
    executor: ExecutorSettings | None = None,
) -> ExperimentResult:
    """Backtest every strategy of ``config`` on the test period and score them.

    The work is a graph of tasks (:mod:`dynafolio.experiments.tasks`) run by ``executor``
    (default: in this process); the result is the same whatever runs it.
    """
    (result,) = run_experiments([config], prepared=[prepared], progress=progress, executor=executor)
    return result


def run_experiments(
    configs: list[ExperimentConfig],
    *,
    prepared: list[PreparedData | None] | None = None,
    progress: ProgressFactory | None = None,
    executor: ExecutorSettings | None = None,
) -> list[ExperimentResult]:
    """:func:`run_experiment` for several configs whose tasks run as one graph: the workers
    stay busy across them, and a learner check they share runs once. Each result is what
    :func:`run_experiment` gives for its config alone."""
    prepared = prepared or [None] * len(configs)
    contexts = []
    for config, data in zip(configs, prepared, strict=True):
        data = data or load_prices(config)
        context = RunContext.build(config, data)
        check_history(data.prices.loc[context.folds[0].train_dates], 2, data.source)
        check_n_assets(data.prices.shape[1], 1, f"experiment {config.name!r}")
        contexts.append(context)
    graphs = [build_tasks(context) for context in contexts]
    if len(contexts) == 1:
        runs = [execute(graphs[0], contexts[0], executor, progress)]
    else:
        joint = JointContext(tuple(contexts))
        results = execute(joint.tasks(graphs), joint, executor, progress)
        runs = [joint.results_of(i, graph, results) for i, graph in enumerate(graphs)]
    return [
        _assemble(context, graph, results, progress, executor)
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

    def tasks(self, graphs: list[list]) -> list:
        joined: dict[str, Any] = {}
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

    def run(self, task, dep_results: list[Any]) -> Any:
        if self._shared(task.id):
            # Any run that has the check can compute it; its entry index is that run's.
            for context in self.contexts:
                if any(t.id == task.id for t in learnability_tasks(context)):
                    return context.run(task, dep_results)
        run, _, _ = task.id.partition("/")
        return self.contexts[int(run)].run(task, dep_results)

    def results_of(self, run: int, graph: list, results: dict[str, Any]) -> dict[str, Any]:
        return {task.id: results[self._id(run, task.id)] for task in graph}


def _assemble(
    context: RunContext,
    tasks: list,
    results: dict[str, Any],
    progress: ProgressFactory | None,
    executor: ExecutorSettings | None,
) -> ExperimentResult:
    """Join the executed tasks of one run into its result and analyse it."""
    config, prepared, folds = context.config, context.prepared, context.folds
    prices = prepared.prices
    train_dates = folds[0].train_dates
    test_dates = prices.index[folds[0].test.start : folds[-1].test.stop]
    ppy = periods_per_year(prices.index)
    rf_annual = config.backtest.risk_free_rate
    outcomes = {(t.entry, t.seed, t.fold): results[t.id] for t in tasks if t.kind == "backtest"}
    learnability = collect_learnability(context, results)
    cost_model = ProportionalCost(config.backtest.transaction_cost)
    all_runs: list[StrategyRuns] = []
    agents = {}
    for entry, item in enumerate(context.plan):
        runs = []
        for seed in item.seeds:
            parts = [outcomes[(entry, seed, fold)] for fold in range(len(folds))]
            rebalances = item.spec.strategy_class.rebalances
            runs.append(
                chain_backtests([p.result for p in parts], item.universe, cost_model, rebalances)
            )
            for fold, part in enumerate(parts):
                if part.agent is not None:
                    agents[(item.name, seed, fold if len(folds) > 1 else None)] = part.agent
        all_runs.append(StrategyRuns(item.name, tuple(runs), item.seeds, item.learned, item.tags))

    per_seed = _per_seed_metrics(all_runs, ppy, rf_annual)
    # From here on every step only analyses the finished backtests: a step that raises is
    # recorded and replaced by its fallback, so the backtests are still written.
    steps = AnalysisSteps()
    aggregate = _aggregate(per_seed)
    table, inference = steps.run(
        "inference (Sharpe intervals, p-values, SPA and StepM)",
        infer, all_runs, aggregate, config.benchmark, ppy, rf_annual, config.seed,
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
        f"risk-free rate {rf_annual:.2%} a year. The S1 paper prints benchmark Sharpe ratios that "
        "contradict its own formula (e.g. 6.79% / 20.0% shown as 0.0034); dynafolio computes them "
        "consistently."
    )
    benchmark = config.benchmark
    rolling = steps.run(
        "rolling alpha and beta", _rolling_alpha_beta,
        all_runs, prices, config.index_asset, config.rolling_window, ppy,
        fallback=pd.DataFrame(),
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
        findings=(
            *found,
            *steps.run("learner findings", learnability_findings, learnability, fallback=[]),
        ),
        learnability=learnability,
        inference=inference,
        notes=tuple(notes),
    )
    analysis = AnalysisContext(config, prepared, progress, executor)
    tables = {
        **steps.run("walk-forward fold tables", fold_tables, result, rf_annual, fallback={}),
        **steps.run(f"analyses ({config.analyses})", analyse, result, analysis, fallback={}),
    }
    return dataclasses.replace(
        result, tables={**result.tables, **tables}, failures=tuple(steps.failures)
    )


def analyse(result: ExperimentResult, context: AnalysisContext) -> dict[str, pd.DataFrame]:
    """The tables of the experiment named by ``config.analyses`` (none when it is unset)."""
    name = context.config.analyses
    if name is None:
        return {}
    from dynafolio.experiments import EXPERIMENTS

    if name not in EXPERIMENTS:
        raise ConfigError(
            f"analyses: {name!r} is not an experiment; use one of {', '.join(EXPERIMENTS)} "
            "or leave it out"
        )
    return EXPERIMENTS[name].analyse(result, context)


@dataclass(frozen=True)
class PlannedStrategy:
    """One strategy entry of a config, validated and ready to run once per seed."""

    where: str
    spec: StrategySpec
    name: str
    seeds: tuple[int, ...]
    universe: pd.DataFrame
    constraints: PortfolioConstraints
    context: BuildContext

    @property
    def learned(self) -> bool:
        return self.spec.learned

    @property
    def tags(self) -> dict[str, str | int | float]:
        return self.spec.all_tags()

    def build(self, seed: int) -> Strategy:
        """A fresh, unfitted strategy object for ``seed``."""
        try:
            return self.spec.build(dataclasses.replace(self.context, seed=seed))
        except ConfigError as error:
            raise ConfigError(f"{self.where}: {error}") from None


def plan_strategies(config: ExperimentConfig, prepared: PreparedData) -> list[PlannedStrategy]:
    """Build and check every strategy entry, for every seed, before anything trains.

    Each error names the config key (``strategies.3.k``) and is raised before the first
    model is fitted: a universe or asset not in the data, ``k`` larger than the assets a
    Top-K strategy may hold, a saved agent that is not a valid agent file or does not fit the
    data, two entries with the same name, a benchmark that is not a strategy. (Unknown or
    mistyped parameters were already refused when the config was read.)

    Raises
    ------
    ConfigError
    """
    prices = prepared.prices
    context = BuildContext(
        risk_free_rate=config.backtest.risk_free_rate,
        periods_per_year=periods_per_year(prices.index),
        transaction_cost=config.backtest.transaction_cost,
        asset_classes=dict(prepared.asset_classes),
        market=prepared.market,
    )
    planned = []
    for position, spec in enumerate(config.strategies):
        where = f"strategies.{position}"
        universe = _universe(spec.universe, prices, where)
        item = PlannedStrategy(
            where=where,
            spec=spec,
            name="",
            seeds=config.seeds if spec.seeded else (config.seed,),
            universe=universe,
            constraints=_constraints(config, spec),
            context=context,
        )
        built = [item.build(seed) for seed in item.seeds]  # trains nothing
        _check_fits_data(spec, built[0], universe, where)
        planned.append(dataclasses.replace(item, name=spec.name or built[0].name))
    names = [item.name for item in planned]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ConfigError(
            f"strategies: {duplicated} appear more than once; give the entries distinct `name`s"
        )
    if config.benchmark not in names:
        raise ConfigError(
            f"benchmark: {config.benchmark!r} is not one of the strategies {names}; set "
            "`benchmark` to one of these names or add that strategy"
        )
    return planned


def _check_fits_data(spec, strategy: Strategy, universe: pd.DataFrame, where: str) -> None:
    n_assets = universe.shape[1]
    k = getattr(spec, "k", None)
    if k is not None and k > n_assets:
        raise ConfigError(
            f"{where}.k: K = {k} but the strategy may hold only {n_assets} assets "
            f"({', '.join(map(str, universe.columns[:8]))}{', ...' if n_assets > 8 else ''}); "
            f"lower k to at most {n_assets} or widen `universe`"
        )
    asset = getattr(spec, "asset", None)
    if asset is not None and asset not in universe.columns:
        raise ConfigError(
            f"{where}.asset: {asset!r} is not in the data; choose one of {list(universe.columns)}"
        )
    agent_path = getattr(spec, "agent_path", None)
    if agent_path is not None:
        from dynafolio.rl.agents import TrainedAgent

        try:
            agent = TrainedAgent.load(agent_path)
            strategy.check_agent(agent, list(universe.columns))
        except DataError as error:
            raise ConfigError(f"{where}.agent_path: {error}") from None


def _constraints(config: ExperimentConfig, spec) -> PortfolioConstraints:
    """The experiment's limits, overridden field by field by the strategy entry's."""
    limits = config.backtest.model_dump(include={"long_only", "max_gross_leverage", "max_position"})
    if spec.constraints is not None:
        limits.update(spec.constraints.model_dump(exclude_none=True))
    # Long-only portfolios are fully invested; long-short ones keep the remainder in cash.
    return PortfolioConstraints(**limits, fully_invested=limits["long_only"])


def _universe(assets, prices: pd.DataFrame, where: str) -> pd.DataFrame:
    if assets is None:
        return prices
    missing = [a for a in assets if a not in prices.columns]
    if missing:
        raise ConfigError(
            f"{where}.universe: {missing} not in the data; available: {list(prices.columns)}"
        )
    return prices.loc[:, list(assets)]


def _plot_groups(config: ExperimentConfig, all_runs: list[StrategyRuns]) -> dict:
    """The config's chart groups, keeping only strategies of this run (a config that replaces
    the default strategies keeps the defaults' groups otherwise); empty groups are dropped."""
    names = {runs.name for runs in all_runs}
    groups = {title: tuple(n for n in members if n in names)
              for title, members in config.plot_groups.items()}  # fmt: skip
    return {title: members for title, members in groups.items() if members}


def _per_seed_metrics(all_runs: list[StrategyRuns], ppy: int, rf: float) -> pd.DataFrame:
    rows = []
    for runs in all_runs:
        for seed, run in zip(runs.seeds, runs.runs, strict=True):
            stats = metrics.summary(run.net_returns, ppy, rf, turnover=run.ledger["turnover"])
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
                table = metrics.window_summary(run.net_returns, covered, ppy, rf)
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
