"""An experiment as a graph of tasks: shared forecast streams, then one backtest per
(strategy, seed, fold).

Each task is a pure function of the run's context (validated config + prepared prices) and its
own small description, returning a result object; nothing it does depends on which process
runs it or on what ran before. The graph is assembled in a fixed order, so the results — and
``metrics.csv`` byte for byte — are the same whatever the executor and the number of workers
(:mod:`dynafolio.parallel`).

*Stream tasks* compute a walk-forward forecast stream once
(:func:`~dynafolio.strategies.forecast.compute_stream`) for every strategy that needs it: the
LSTM-only Top-K rules and the hybrid's test-time scores of one seed share one stream, the three
hybrids share their training-period stream, the S2 allocation rules share one LSTM stream. A
stream is cut at its refits (:meth:`~dynafolio.strategies.base.StreamSpec.segments`): each
piece is one task, so the fits of one stream run side by side rather than one after another.
*Backtest tasks* depend on the stream pieces their strategy replays.

A walk-forward run (``split.walk_forward``) has one backtest task per test block (*fold*): a
fresh strategy fitted on the data before the block, deciding inside it. The runner chains the
folds of a (strategy, seed) into one record (:func:`~dynafolio.backtest.engine.chain_backtests`).
A piece whose decision rows are the first rows of another's — the hybrid's training-period
forecasts of successive folds share their pieces — is that piece's beginning, so it is
computed once (a walk-forward forecast at a row depends only on the data up to that row).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from dynafolio import devices
from dynafolio.backtest import ProportionalCost, run_backtest
from dynafolio.backtest.engine import rebalance_schedule
from dynafolio.backtest.result import BacktestResult
from dynafolio.experiments.config import ExperimentConfig
from dynafolio.experiments.forecasts import forecast_records
from dynafolio.experiments.plan import (
    PlannedStrategy,
    PreparedData,
    benchmark_name,
    plan_strategies,
)
from dynafolio.features import periods_per_year
from dynafolio.forecast.state import forecaster_bytes
from dynafolio.progress import progress_bar
from dynafolio.results.forecasts import ForecastRecord
from dynafolio.rl.learnability import LearnabilityCheck, check_learnability
from dynafolio.seeding import seed_everything
from dynafolio.splits import Split
from dynafolio.strategies.base import StreamSpec
from dynafolio.strategies.forecast import compute_stream


@dataclass(frozen=True)
class Task:
    """One unit of work: ``kind`` is "stream", "backtest" or "learnability" (a PPO
    configuration's known-answer check); ``deps`` are task ids whose
    results it receives (in order) as its last argument."""

    id: str
    kind: str
    entry: int
    seed: int
    label: str
    fold: int = 0
    stream: str | None = None  # stream tasks: the stream's name in the strategy
    piece: int = 0  # stream tasks: which of the stream's segments
    deps: tuple[str, ...] = ()
    dep_names: tuple[str, ...] = ()  # backtest tasks: the stream name of each dependency
    weight: int = 1  # rough cost, to start long tasks first


@dataclass(frozen=True)
class BacktestOutcome:
    """What a backtest task returns: the run, for a freshly trained RL agent the agent, and
    the out-of-sample forecasts the strategy acted on (for forecast evaluation)."""

    result: BacktestResult
    agent: Any = None
    forecasts: tuple[ForecastRecord, ...] = ()
    #: Networks the strategy trained itself, as model files by fit date (ISO).
    models: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class StreamPiece:
    """What a stream task returns: its forecasts by decision date, and the model it fitted
    as a forecaster file (:mod:`dynafolio.forecast.state`) by refit date (ISO), None for a
    forecaster that cannot be saved."""

    forecasts: dict[pd.Timestamp, pd.Series]
    models: dict[str, bytes | None] = field(default_factory=dict)


@dataclass
class RunContext:
    """Everything a task needs, built once per process from the config and the prices."""

    config: ExperimentConfig
    prepared: PreparedData
    plan: list[PlannedStrategy] = field(default_factory=list)  # in config order
    folds: tuple[Split, ...] = ()  # one for a chronological split, one per walk-forward block

    benchmark: str = ""  # the name of the strategy config.benchmark selects

    @classmethod
    def build(cls, config: ExperimentConfig, prepared: PreparedData) -> RunContext:
        plan = plan_strategies(config, prepared)
        return cls(
            config=config,
            prepared=prepared,
            plan=plan,
            folds=config.split.folds(prepared.prices.index),
            benchmark=benchmark_name(config, plan),
        )

    @property
    def test_start(self) -> pd.Timestamp:
        return self.folds[0].test_dates[0]

    @property
    def test_end(self) -> pd.Timestamp:
        return self.folds[-1].test_dates[-1]

    def run(self, task: Task, dep_results: list[Any]) -> Any:
        """Execute one task of this run (what every executor calls)."""
        return run_task(self, task, dep_results)

    def fit_start(self, fold: int) -> pd.Timestamp | None:
        """First date a fold's strategy sees (None: from the start of the data)."""
        train = self.folds[fold].train
        return None if train.start == 0 else self.folds[fold].index[train.start]

    def call_rows(self, entry: int, strategy, fold: int = 0) -> list[int]:
        """Rows at which the engine will ask ``strategy`` (of plan ``entry``) for weights in
        ``fold``."""
        item = self.plan[entry]
        dates = self.folds[fold].test_dates
        rows, trades = rebalance_schedule(
            item.universe.index,
            dates[0],
            dates[-1],
            self.config.backtest.rebalance_every,
            strategy.rebalances,
        )
        return [int(r) for r in rows[trades]]

    def streams(self, entry: int, strategy, fold: int) -> dict[str, StreamSpec]:
        """The forecast streams ``strategy`` replays in ``fold``."""
        return strategy.streams(
            self.call_rows(entry, strategy, fold), first_row=self.folds[fold].train.start
        )


def stream_key(spec: StreamSpec, prices: pd.DataFrame) -> str:
    """Identity of a forecast stream: forecaster class and parameters (seed included), refit
    schedule, decision rows and the prices they see. Equal keys give equal forecasts."""
    digest = hashlib.sha256(_stream_family(spec, prices).encode())
    digest.update(repr(spec.rows).encode())
    seen = prices.iloc[: max(spec.rows) + 1] if spec.rows else prices.iloc[:0]
    digest.update(pd.util.hash_pandas_object(seen, index=True).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def _stream_family(spec: StreamSpec, prices: pd.DataFrame) -> str:
    """What two streams must share for one to be the other's beginning: everything but rows."""
    digest = hashlib.sha256()
    digest.update(type(spec.template).__qualname__.encode())
    digest.update(repr(sorted(spec.template.get_params().items())).encode())
    digest.update(repr(spec.schedule).encode())
    digest.update(repr(spec.first_row).encode())
    # Within a run, equal columns are equal prices (every universe is a column subset of the
    # run's one price frame), so the prices' identity is checked by stream_key on what is seen.
    digest.update(repr(list(prices.columns)).encode())
    return digest.hexdigest()


def _longest_extensions(specs: list[tuple[StreamSpec, pd.DataFrame]]) -> list[int]:
    """For each stream, the index of the longest stream of the list that begins with it (on
    the same prices, forecaster and schedule) — itself when none is longer."""
    groups: dict[tuple[str, int], list[int]] = {}
    for i, (spec, prices) in enumerate(specs):
        start = spec.rows[0] if spec.rows else -1
        groups.setdefault((_stream_family(spec, prices), start), []).append(i)
    chosen = list(range(len(specs)))
    for members in groups.values():
        longest_first = sorted(members, key=lambda i: -len(specs[i][0].rows))
        for i in members:
            rows = specs[i][0].rows
            chosen[i] = next(j for j in longest_first if specs[j][0].rows[: len(rows)] == rows)
    return chosen


#: Dependency name of a walk-forward block on the block before it (strategies that carry
#: holdings, :attr:`~dynafolio.strategies.base.Strategy.carries_holdings`).
PREVIOUS_BLOCK = "previous block"


def build_tasks(context: RunContext) -> list[Task]:
    """The run's tasks in a fixed order: stream pieces first (each distinct one once), then
    every (strategy, seed, fold) backtest in config order."""
    wanted = []  # (entry, seed, fold, stream name, piece, spec), in a fixed order
    for entry, item in enumerate(context.plan):
        for seed in item.seeds:
            strategy = item.build(seed)
            for fold in range(len(context.folds)):
                for name, spec in context.streams(entry, strategy, fold).items():
                    for piece, segment in enumerate(spec.segments()):
                        wanted.append((entry, seed, fold, name, piece, segment))
    specs = [(spec, context.plan[entry].universe) for entry, *_, spec in wanted]
    extension = _longest_extensions(specs)
    streams: dict[str, Task] = {}
    uses: dict[tuple[int, int, int], list[tuple[str, str]]] = {}
    for (entry, seed, fold, name, _, _), longest in zip(wanted, extension, strict=True):
        long_entry, long_seed, long_fold, long_name, long_piece, long_spec = wanted[longest]
        key = "stream-" + stream_key(long_spec, specs[longest][1])
        if key not in streams:
            streams[key] = Task(
                id=key,
                kind="stream",
                entry=long_entry,
                seed=long_seed,
                fold=long_fold,
                label=f"forecasts for {context.plan[long_entry].name} ({long_name} "
                f"{long_piece + 1}, seed {long_seed}{_fold_label(context, long_fold)})",
                stream=long_name,
                piece=long_piece,
                weight=30,  # first: hybrids and forecast rules wait for them
            )
        uses.setdefault((entry, seed, fold), []).append((key, name))
    backtests: list[Task] = []
    for entry, item in enumerate(context.plan):
        for seed in item.seeds:
            for fold in range(len(context.folds)):
                deps = list(uses.get((entry, seed, fold), []))
                if fold and item.spec.strategy_class.carries_holdings:
                    # The block starts from the holdings the previous block left.
                    deps.append((f"backtest-{entry}-{seed}-{fold - 1}", PREVIOUS_BLOCK))
                backtests.append(
                    Task(
                        id=f"backtest-{entry}-{seed}-{fold}",
                        kind="backtest",
                        entry=entry,
                        seed=seed,
                        fold=fold,
                        label=f"{item.name} (seed {seed}{_fold_label(context, fold)})",
                        deps=tuple(key for key, _ in deps),
                        dep_names=tuple(name for _, name in deps),
                        weight=20 if item.learned or _refits_often(item) else 1,
                    )
                )
    return [*learnability_tasks(context), *streams.values(), *backtests]


def _refits_often(item: Any) -> bool:
    """Whether the entry's strategy re-estimates at every rebalance (a rolling optimiser): on
    a large universe its backtest is long (HRP at 1,000 assets: 110 estimates of about 5 s),
    so it starts with the learners instead of running alone at the end of the run."""
    return getattr(item.spec, "estimation", None) == "rolling"


def learnability_check(context: RunContext, entry: int) -> LearnabilityCheck | None:
    """The known-answer check (:mod:`dynafolio.rl.learnability`) of plan ``entry``'s learner:
    the run's shape (assets, periods, the first fold's training periods, its first date), the
    entry's configuration and the run's first seed. None for an entry that trains no PPO agent."""
    item = context.plan[entry]
    make = getattr(item.build(context.config.seed), "learnability_check", None)
    if make is None:
        return None
    return make(
        n_assets=item.universe.shape[1],
        n_periods=len(item.universe),
        train_periods=context.folds[0].test.start,
        periods_per_year=periods_per_year(item.universe.index),
        seed=context.config.seed,
        first_date=str(item.universe.index[0].date()),
    )


def learnability_checks(context: RunContext) -> dict[int, LearnabilityCheck]:
    """Plan entry -> its learner's check, for the entries that have one."""
    checks = {entry: learnability_check(context, entry) for entry in range(len(context.plan))}
    return {entry: check for entry, check in checks.items() if check is not None}


def learnability_task_id(check: LearnabilityCheck) -> str:
    return "learnability-" + hashlib.sha256(check.key.encode()).hexdigest()[:16]


def learnability_tasks(context: RunContext) -> list[Task]:
    """One task per distinct learner configuration of the run (entries that differ only in
    name share it)."""
    tasks: dict[str, Task] = {}
    for entry, check in learnability_checks(context).items():
        key = learnability_task_id(check)
        if key not in tasks:
            tasks[key] = Task(
                id=key,
                kind="learnability",
                entry=entry,
                seed=context.config.seed,
                label=f"known-answer check of {context.plan[entry].name}'s learner",
                weight=25,
            )
    return list(tasks.values())


def _fold_label(context: RunContext, fold: int) -> str:
    return f", fold {fold + 1}/{len(context.folds)}" if len(context.folds) > 1 else ""


def run_task(context: RunContext, task: Task, dep_results: list[Any]) -> Any:
    """Execute ``task`` in this process (the same code for every executor), its torch models
    on the config's device (a GPU-less ``device: cuda`` fails here, before any work)."""
    with devices.using(context.config.device):
        return _run_task(context, task, dep_results)


def _run_task(context: RunContext, task: Task, dep_results: list[Any]) -> Any:
    item = context.plan[task.entry]
    strategy = item.build(task.seed)
    if task.kind == "stream":
        spec = context.streams(task.entry, strategy, task.fold)[task.stream]
        piece = spec.segments()[task.piece]
        models: dict[str, bytes | None] = {}

        def keep(model, history) -> None:
            models[history.date.date().isoformat()] = _forecaster_file(model, history)

        forecasts = compute_stream(
            piece.template, piece.schedule, item.universe, list(piece.rows), piece.first_row,
            on_fit=keep,
        )  # fmt: skip
        return StreamPiece(forecasts, models)
    if task.kind == "learnability":
        seed_everything(task.seed)
        return check_learnability(learnability_check(context, task.entry))
    if task.kind != "backtest":  # pragma: no cover - build_tasks makes only these three
        raise ValueError(f"unknown task kind {task.kind!r}")
    replays: dict[str, dict] = {}
    for name, dep in zip(task.dep_names, dep_results, strict=True):
        if name == PREVIOUS_BLOCK:
            held = dep.result.weights
            strategy.hold_from(held.iloc[-1], held.index[-1])
        else:
            replays.setdefault(name, {}).update(dep.forecasts)  # a stream's pieces, joined
    if replays:
        strategy.replay_forecasts(replays)
    # Seeded after building, so torch (imported by learned strategies) is seeded too, in
    # every process alike.
    seed_everything(task.seed)
    dates = context.folds[task.fold].test_dates
    result = run_backtest(
        strategy,
        item.universe,
        dates[0],
        dates[-1],
        rebalance_every=context.config.backtest.rebalance_every,
        cost_model=ProportionalCost(context.config.backtest.transaction_cost),
        constraints=item.constraints,
        fit_start=context.fit_start(task.fold),
        progress=progress_bar(task.label, len(dates)),
    )
    agent = None
    loaded = getattr(strategy, "agent_path", None) or getattr(strategy, "agent_bytes", None)
    if hasattr(strategy, "agent_") and loaded is None:
        agent = strategy.agent_
    forecaster = getattr(item.spec, "forecaster", None)
    records = forecast_records(
        strategy,
        context.streams(task.entry, strategy, task.fold),
        forecaster.label if forecaster is not None else "",
        item.universe,
    )
    return BacktestOutcome(result, agent, records, strategy.fitted_models())


def _forecaster_file(model, history) -> bytes | None:
    """``model`` (fitted on ``history``) as a forecaster file; None for a forecaster that does
    not define its fitted state (a user's own model), which the run then does not save."""
    try:
        return forecaster_bytes(
            model,
            list(map(str, history.prices.columns)),
            (history.prices.index[0].date().isoformat(), history.date.date().isoformat()),
        )
    except NotImplementedError:
        return None


def forecaster_file_name(stream_task: str, fit_date: str) -> str:
    """The file a run saves the model of ``stream_task`` fitted at ``fit_date`` (ISO) as."""
    return f"{stream_task.removeprefix('stream-')}-{fit_date}.zip"


def stream_dependencies(tasks: list[Task]) -> Iterator[tuple[Task, str, str]]:
    """``(backtest task, stream piece task id, stream name)`` for every forecast-stream piece
    a backtest replays (not the previous walk-forward block it may wait for)."""
    for task in tasks:
        if task.kind != "backtest":
            continue
        for dep, stream in zip(task.deps, task.dep_names, strict=True):
            if stream != PREVIOUS_BLOCK:
                yield task, dep, stream


def forecaster_files(context: RunContext) -> dict[tuple[int, int, int, str, str], str]:
    """``(entry, seed, fold, stream, refit date)`` -> the name of the forecaster file a run of
    ``context`` saves for that refit: built from the run's own tasks (config and data)."""
    tasks = build_tasks(context)
    pieces = {t.id: t for t in tasks if t.kind == "stream"}
    out = {}
    for task, dep, stream in stream_dependencies(tasks):
        piece = pieces[dep]
        item = context.plan[piece.entry]
        spec = context.streams(piece.entry, item.build(piece.seed), piece.fold)[piece.stream]
        first = spec.segments()[piece.piece].rows[0]
        fit_date = item.universe.index[first].date().isoformat()
        out[(task.entry, task.seed, task.fold, stream, fit_date)] = forecaster_file_name(
            dep, fit_date
        )
    return out
