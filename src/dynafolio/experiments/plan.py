"""The plan of a run: its prices, prepared once, and its strategies, built and checked
before anything trains.

:func:`load_prices` loads, subsets, cleans and resamples the experiment's prices;
:func:`plan_strategies` builds every strategy entry for every seed and refuses, with the
config key, anything that does not fit the data. The task graph
(:mod:`dynafolio.experiments.tasks`) is built from this plan.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import pandas as pd

from dynafolio.backtest import PortfolioConstraints
from dynafolio.data import dataset_info, load_dataset, read_prices
from dynafolio.data.markets import KnownMarket, generate_market
from dynafolio.errors import ConfigError, DataError, some_names
from dynafolio.experiments.config import ExperimentConfig, StrategySpec
from dynafolio.features import periods_per_year, prepare_prices
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
    context = _build_context(config, prepared)
    planned = [
        plan_entry(config, prepared, context, position, spec)
        for position, spec in enumerate(config.strategies)
    ]
    _check_together(config, planned)
    return planned


def _check_together(config: ExperimentConfig, planned: list[PlannedStrategy]) -> None:
    """What no entry can check alone: distinct names, and a benchmark that selects one."""
    names = [item.name for item in planned]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ConfigError(
            f"strategies: {duplicated} appear more than once; give the entries distinct `name`s"
        )
    benchmark_name(config, planned)  # refused here, before anything trains


def benchmark_name(config: ExperimentConfig, planned: list[PlannedStrategy]) -> str:
    """The name of the strategy ``config.benchmark`` selects: the one entry whose tags
    (``kind``, ``k``, ``model`` and the entry's own) match, or the entry of that name."""
    wanted = config.benchmark
    if isinstance(wanted, str):
        found = [item.name for item in planned if item.name == wanted]
    else:
        found = [
            item.name
            for item in planned
            if all(item.tags.get(key) == value for key, value in wanted.items())
        ]
    if len(found) != 1:
        names = [item.name for item in planned]
        matched = f"matches {found}" if found else "matches none of the strategies"
        raise ConfigError(
            f"benchmark: {wanted!r} {matched} ({names}); give tags or a name that select "
            "exactly one entry, e.g. {kind: equal_weight}"
        )
    return found[0]


def plan_entry(
    config: ExperimentConfig,
    prepared: PreparedData,
    context: BuildContext,
    position: int,
    spec: StrategySpec,
) -> PlannedStrategy:
    """Build and check the config's strategy entry at ``position`` (every seed; trains
    nothing). Raises :class:`ConfigError` naming the key when the entry does not fit."""
    where = f"strategies.{position}"
    universe = _universe(spec.universe, prepared.prices, where)
    constraints = _constraints(config, spec)
    item = PlannedStrategy(
        where=where,
        spec=spec,
        name="",
        seeds=config.seeds if spec.seeded else (config.seed,),
        universe=universe,
        constraints=constraints,
        context=dataclasses.replace(context, constraints=constraints),
    )
    built = [item.build(seed) for seed in item.seeds]
    _check_fits_data(spec, built[0], universe, where, _train_periods(config, prepared))
    return dataclasses.replace(item, name=spec.name or built[0].name)


def drop_misfits(
    config: ExperimentConfig, prepared: PreparedData
) -> tuple[ExperimentConfig, list[str]]:
    """``config`` without the strategy entries that do not fit ``prepared`` (a Top-K with
    more names than the data has assets, a buy-and-hold of an asset it lacks, a composite
    without asset classes), and a note for each: how an experiment's default strategies are
    fitted to a user's data file. The same checks as :func:`plan_strategies`, which refuses
    such entries in a config the user wrote; the kept entries are then checked together as
    it checks them, so the result is a fully planned config."""
    context = _build_context(config, prepared)
    kept, planned, notes = [], [], []
    for position, spec in enumerate(config.strategies):
        try:
            item = plan_entry(config, prepared, context, position, spec)
        except ConfigError as error:
            notes.append(f"{spec.name or spec.kind} skipped: {error}")
        else:
            kept.append(spec)
            planned.append(item)
    fitted = config.model_copy(update={"strategies": tuple(kept)})
    _check_together(fitted, planned)
    return fitted, notes


def _build_context(config: ExperimentConfig, prepared: PreparedData) -> BuildContext:
    return BuildContext(
        risk_free_rate=config.backtest.risk_free_rate,
        periods_per_year=periods_per_year(prepared.prices.index),
        transaction_cost=config.backtest.transaction_cost,
        asset_classes=dict(prepared.asset_classes),
        market=prepared.market,
    )


def _train_periods(config: ExperimentConfig, prepared: PreparedData) -> int | None:
    """Returns in the shortest training period of the run's folds (None when the split
    does not fit the data: the run refuses it where it reads the folds)."""
    try:
        folds = config.split.folds(prepared.prices.index)
    except DataError:
        return None
    return min(len(fold.train_dates) for fold in folds) - 1


def _check_fits_data(
    spec, strategy: Strategy, universe: pd.DataFrame, where: str, train_periods: int | None
) -> None:
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
            f"{where}.asset: {asset!r} is not in the data; "
            f"choose one of {some_names(universe.columns)}"
        )
    problem = strategy.universe_problem(n_assets, train_periods)
    if problem is not None:
        raise ConfigError(f"{where}: {problem}")
    agent_path = getattr(spec, "agent_path", None)
    if agent_path is not None:
        from dynafolio.rl.agent_file import TrainedAgent

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
            f"{where}.universe: {missing} not in the data; available: {some_names(prices.columns)}"
        )
    return prices.loc[:, list(assets)]
