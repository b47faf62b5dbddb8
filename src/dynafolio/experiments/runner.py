"""Run an experiment: load data, split, backtest every strategy over its seeds, score.

The runner only composes lower layers (data → strategies → backtest → metrics); writing
files is :mod:`dynafolio.experiments.artifacts`' job.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import pandas as pd

from dynafolio import metrics
from dynafolio.backtest import PortfolioConstraints, ProportionalCost, chain_backtests
from dynafolio.data import dataset_info, load_dataset, read_prices
from dynafolio.data.validate import check_history, check_n_assets
from dynafolio.errors import ConfigError, DataError
from dynafolio.experiments.config import ExperimentConfig, StrategySpec
from dynafolio.experiments.executors import ExecutorSettings, execute
from dynafolio.experiments.folds import fold_tables
from dynafolio.experiments.inference import findings, infer
from dynafolio.experiments.result import AnalysisContext, ExperimentResult, StrategyRuns
from dynafolio.experiments.tasks import RunContext, build_tasks
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
        prices, source, digest, {a: c for a, c in classes.items() if a in prices}, tuple(notes)
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
    prepared = prepared or load_prices(config)
    prices = prepared.prices
    context = RunContext.build(config, prepared)
    folds = context.folds
    train_dates = folds[0].train_dates
    test_dates = prices.index[folds[0].test.start : folds[-1].test.stop]
    ppy = periods_per_year(prices.index)
    check_history(prices.loc[train_dates], 2, prepared.source)
    check_n_assets(prices.shape[1], 1, f"experiment {config.name!r}")
    rf_annual = config.backtest.risk_free_rate

    tasks = build_tasks(context)
    results = execute(tasks, context, executor, progress)
    outcomes = {(t.entry, t.seed, t.fold): results[t.id] for t in tasks if t.kind == "backtest"}
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
    table, inference = infer(
        all_runs, _aggregate(per_seed), config.benchmark, ppy, rf_annual, config.seed
    )
    stress, stress_notes = _stress(all_runs, config, ppy, rf_annual, test_dates)
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
    rolling = _rolling_alpha_beta(all_runs, prices, config.index_asset, config.rolling_window, ppy)
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
        findings=tuple(findings(table, inference, all_runs, benchmark)),
        inference=inference,
        notes=tuple(notes),
    )
    analysis = AnalysisContext(config, prepared, progress, executor)
    tables = {**fold_tables(result, rf_annual), **analyse(result, analysis)}
    return dataclasses.replace(result, tables={**result.tables, **tables})


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
