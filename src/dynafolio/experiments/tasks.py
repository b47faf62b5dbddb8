"""An experiment as a graph of tasks: shared forecast streams, then one backtest per
(strategy, seed).

Each task is a pure function of the run's context (validated config + prepared prices) and its
own small description, returning a result object; nothing it does depends on which process
runs it or on what ran before. The graph is assembled in a fixed order, so the results — and
``metrics.csv`` byte for byte — are the same whatever the executor and the number of workers
(:mod:`dynafolio.experiments.executors`).

*Stream tasks* compute a walk-forward forecast stream once
(:func:`~dynafolio.strategies.forecast.compute_stream`) for every strategy that needs it: the
LSTM-only Top-K rules and the hybrid's test-time scores of one seed share one stream, the three
hybrids share their training-period stream, the S2 allocation rules share one LSTM stream.
*Backtest tasks* depend on the streams their strategy replays.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from dynafolio.backtest import ProportionalCost, run_backtest
from dynafolio.backtest.engine import rebalance_schedule
from dynafolio.backtest.result import BacktestResult
from dynafolio.experiments.config import ExperimentConfig
from dynafolio.seeding import seed_everything
from dynafolio.splits import chronological_split
from dynafolio.strategies.base import StreamSpec


@dataclass(frozen=True)
class Task:
    """One unit of work: ``kind`` is "stream" or "backtest"; ``deps`` are task ids whose
    results it receives (in order) as its last argument."""

    id: str
    kind: str
    entry: int
    seed: int
    label: str
    stream: str | None = None  # stream tasks: the stream's name in the strategy
    deps: tuple[str, ...] = ()
    dep_names: tuple[str, ...] = ()  # backtest tasks: the stream name of each dependency
    weight: int = 1  # rough cost, to start long tasks first


@dataclass(frozen=True)
class BacktestOutcome:
    """What a backtest task returns: the run and, for a freshly trained RL agent, the agent."""

    result: BacktestResult
    agent: Any = None


@dataclass
class RunContext:
    """Everything a task needs, built once per process from the config and the prices."""

    config: ExperimentConfig
    prepared: Any  # runner.PreparedData
    plan: list = field(default_factory=list)  # runner.PlannedStrategy, in config order
    test_start: pd.Timestamp | None = None
    test_end: pd.Timestamp | None = None

    @classmethod
    def build(cls, config: ExperimentConfig, prepared) -> RunContext:
        from dynafolio.experiments.runner import plan_strategies

        split = chronological_split(
            prepared.prices.index, config.split.train_fraction, config.split.test_start
        )
        return cls(
            config=config,
            prepared=prepared,
            plan=plan_strategies(config, prepared),
            test_start=split.test_dates[0],
            test_end=split.test_dates[-1],
        )

    def run(self, task: Task, dep_results: list[Any]) -> Any:
        """Execute one task of this run (what every executor calls)."""
        return run_task(self, task, dep_results)

    def call_rows(self, entry: int, strategy) -> list[int]:
        """Rows at which the engine will ask ``strategy`` (of plan ``entry``) for weights."""
        item = self.plan[entry]
        rows, trades = rebalance_schedule(
            item.universe.index,
            self.test_start,
            self.test_end,
            self.config.backtest.rebalance_every,
            strategy.rebalances,
        )
        return [int(r) for r in rows[trades]]


def stream_key(spec: StreamSpec, prices: pd.DataFrame) -> str:
    """Identity of a forecast stream: forecaster class and parameters (seed included), refit
    schedule, decision rows and the prices they see. Equal keys give equal forecasts."""
    digest = hashlib.sha256()
    digest.update(type(spec.template).__qualname__.encode())
    digest.update(repr(sorted(spec.template.get_params().items())).encode())
    digest.update(repr(spec.schedule).encode())
    digest.update(repr(spec.rows).encode())
    digest.update(repr(list(prices.columns)).encode())
    seen = prices.iloc[: max(spec.rows) + 1] if spec.rows else prices.iloc[:0]
    digest.update(pd.util.hash_pandas_object(seen, index=True).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def build_tasks(context: RunContext) -> list[Task]:
    """The run's tasks in a fixed order: streams first (each distinct one once), then every
    (strategy, seed) backtest in config order."""
    streams: dict[str, Task] = {}
    backtests: list[Task] = []
    for entry, item in enumerate(context.plan):
        for seed in item.seeds:
            strategy = item.build(seed)
            specs = strategy.streams(context.call_rows(entry, strategy))
            deps, names = [], []
            for name, spec in specs.items():
                key = "stream-" + stream_key(spec, item.universe)
                if key not in streams:
                    streams[key] = Task(
                        id=key,
                        kind="stream",
                        entry=entry,
                        seed=seed,
                        label=f"forecasts for {item.name} ({name}, seed {seed})",
                        stream=name,
                        weight=30,  # first: hybrids and forecast rules wait for them
                    )
                deps.append(key)
                names.append(name)
            backtests.append(
                Task(
                    id=f"backtest-{entry}-{seed}",
                    kind="backtest",
                    entry=entry,
                    seed=seed,
                    label=f"{item.name} (seed {seed})",
                    deps=tuple(deps),
                    dep_names=tuple(names),
                    weight=20 if item.learned else 1,
                )
            )
    return [*streams.values(), *backtests]


def run_task(context: RunContext, task: Task, dep_results: list[Any]) -> Any:
    """Execute ``task`` in this process (the same code for every executor)."""
    from dynafolio.strategies.forecast import compute_stream

    item = context.plan[task.entry]
    strategy = item.build(task.seed)
    if task.kind == "stream":
        spec = strategy.streams(context.call_rows(task.entry, strategy))[task.stream]
        return compute_stream(spec.template, spec.schedule, item.universe, list(spec.rows))
    if task.kind != "backtest":  # pragma: no cover - build_tasks makes only these two
        raise ValueError(f"unknown task kind {task.kind!r}")
    if task.deps:
        strategy.replay_forecasts(dict(zip(task.dep_names, dep_results, strict=True)))
    # Seeded after building, so torch (imported by learned strategies) is seeded too, in
    # every process alike.
    seed_everything(task.seed)
    from dynafolio.progress import progress_bar

    n_decisions = len(item.universe.loc[context.test_start : context.test_end])
    result = run_backtest(
        strategy,
        item.universe,
        context.test_start,
        context.test_end,
        rebalance_every=context.config.backtest.rebalance_every,
        cost_model=ProportionalCost(context.config.backtest.transaction_cost),
        constraints=item.constraints,
        progress=progress_bar(task.label, n_decisions),
    )
    agent = None
    if hasattr(strategy, "agent_") and getattr(strategy, "agent_path", None) is None:
        agent = strategy.agent_
    return BacktestOutcome(result, agent)
