"""Runs as task graphs: the same results whatever executes them, shared forecast streams,
replayed forecasts equal to live ones, Ctrl-C stops every worker."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import TINY_LSTM, TINY_PPO, make_prices
from dynafolio.backtest import ProportionalCost, run_backtest
from dynafolio.cli import app
from dynafolio.experiments.config import validate_config
from dynafolio.experiments.plan import PreparedData
from dynafolio.experiments.tasks import RunContext, build_tasks
from dynafolio.parallel import ExecutorSettings, execute
from dynafolio.studies import run_experiment

STRATEGIES = [
    {"kind": "equal_weight"},
    {"kind": "hrp", "window": 30, "min_periods": 10},
    *[
        {
            "kind": "forecast_topk",
            "name": f"LSTM-only Top-{k}",
            "k": k,
            "retrain_every": 10,
            "forecaster": {"model": "univariate_lstm", "params": TINY_LSTM},
        }
        for k in (1, 2)
    ],
    {
        "kind": "ppo_topk",
        "name": "PPO-only Top-2",
        "k": 2,
        "lookback": 4,
        "ppo": TINY_PPO,
        "score_initial_window": 40,
    },
    *[
        {
            "kind": "ppo_topk",
            "name": f"Hybrid Top-{k}",
            "k": k,
            "lookback": 4,
            "ppo": TINY_PPO,
            "score_initial_window": 40,
            "score_refit_every": 10,
            "forecaster": {"model": "univariate_lstm", "params": TINY_LSTM},
        }
        for k in (1, 2)
    ],
]


def _setup(n_seeds: int = 2, strategies=STRATEGIES):
    prices = make_prices(n_periods=150, n_assets=4, late=20)
    config = validate_config(
        {
            "name": "tasks",
            "split": {"train_fraction": None, "test_start": str(prices.index[110].date())},
            "strategies": strategies,
            "n_seeds": n_seeds,
        }
    )
    return config, PreparedData(prices, "synthetic", "0" * 64, {})


@pytest.fixture(scope="module")
def serial():
    config, prepared = _setup()
    return run_experiment(config, prepared=prepared)


def _same(a, b) -> None:
    assert a.table.to_csv() == b.table.to_csv()
    assert a.metrics.to_csv() == b.metrics.to_csv()
    for x, y in zip(a.strategies, b.strategies, strict=True):
        for run_x, run_y in zip(x.runs, y.runs, strict=True):
            pd.testing.assert_frame_equal(run_x.weights, run_y.weights)


def test_local_workers_give_the_serial_result_exactly(serial):
    config, prepared = _setup()
    local = run_experiment(
        config, prepared=prepared, executor=ExecutorSettings(kind="local", jobs=2)
    )
    _same(serial, local)


def test_ray_gives_the_serial_result_exactly_on_a_two_node_cluster(serial):
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False},
    )
    cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        config, prepared = _setup()
        on_ray = run_experiment(config, prepared=prepared, executor=ExecutorSettings(kind="ray"))
    finally:
        ray.shutdown()
        cluster.shutdown()
    _same(serial, on_ray)


def test_rolling_optimisers_start_with_the_learners_not_last():
    # A rolling HRP re-estimates at every rebalance (minutes on a large universe): started
    # last, it ran alone on one core at the end of a 1,000-asset run.
    strategies = [{"kind": "equal_weight"}, {"kind": "hrp", "estimation": "rolling", "window": 26},
                  {"kind": "hrp", "estimation": "static", "window": None}]  # fmt: skip
    config, prepared = _setup(n_seeds=1, strategies=strategies)
    weights = {t.label: t.weight for t in build_tasks(RunContext.build(config, prepared))}
    assert weights["HRP (rolling 26) (seed 0)"] > weights["Equal weight (seed 0)"]
    assert weights["HRP (static) (seed 0)"] == weights["Equal weight (seed 0)"]


def _pieces(context, entry: int, seed: int, name: str) -> int:
    strategy = context.plan[entry].build(seed)
    return len(context.streams(entry, strategy, 0)[name].segments())


def test_strategies_sharing_a_forecaster_share_one_stream_per_seed():
    config, prepared = _setup()
    context = RunContext.build(config, prepared)
    tasks = build_tasks(context)
    streams = [t for t in tasks if t.kind == "stream"]
    # Per seed: the pieces (one per refit) of one test-period stream (LSTM-only Top-1/2 and
    # both hybrids' test scores) and of one training-period stream (both hybrids).
    test, train = _pieces(context, 5, 1, "test"), _pieces(context, 5, 1, "train")
    assert test >= 2 and train >= 2
    assert len(streams) == 2 * (test + train)
    hybrid = next(t for t in tasks if t.label.startswith("Hybrid Top-2 (seed 1)"))
    lstm = next(t for t in tasks if t.label.startswith("LSTM-only Top-1 (seed 1)"))
    assert set(lstm.deps) < set(hybrid.deps) and len(hybrid.deps) == test + train


def test_the_s2_allocation_rules_train_one_lstm_stream():
    rules = [
        {
            "kind": "forecast_signal",
            "allocation": allocation,
            "retrain_every": 20,
            "forecaster": {"model": "stacked_lstm", "params": {"lookback": 6, "epochs": 1}},
        }
        for allocation in ("clip", "inverse_vol", "mean_variance", "hrp")
    ]
    config, prepared = _setup(n_seeds=1, strategies=[{"kind": "equal_weight"}, *rules])
    context = RunContext.build(config, prepared)
    tasks = build_tasks(context)
    # One stream (two refits over the 40 test periods: two pieces), shared by the four rules.
    assert sum(t.kind == "stream" for t in tasks) == _pieces(context, 1, 0, "test") == 2


def test_replayed_forecasts_equal_live_ones(serial):
    """The task graph replays shared streams; a plain backtest computes them live."""
    config, prepared = _setup()
    context = RunContext.build(config, prepared)
    for entry in (2, 5):  # LSTM-only Top-1 and Hybrid Top-1
        item = context.plan[entry]
        live = run_backtest(
            item.build(1),
            item.universe,
            context.test_start,
            context.test_end,
            cost_model=ProportionalCost(config.backtest.transaction_cost),
        )
        replayed = serial.strategies[entry].runs[1]
        pd.testing.assert_frame_equal(live.weights, replayed.weights)


@dataclass(frozen=True)
class _Job:
    """What :func:`execute` needs of a task: ``id``, ``deps``, ``weight``."""

    id: str
    weight: int
    deps: tuple[str, ...] = ()


@dataclass(frozen=True)
class _BlockingContext:
    """Runs ``block-*`` jobs forever (they write their worker's pid to ``folder`` first);
    ``quick`` returns once every blocking job is running."""

    folder: Path
    n_blocking: int

    def run(self, task: _Job, dep_results) -> int:
        if task.id.startswith("block"):
            (self.folder / f"{task.id}.pid").write_text(str(os.getpid()))
            while True:  # a task that never ends: only killing its worker stops it
                time.sleep(1)
        deadline = time.monotonic() + 60
        while len(list(self.folder.glob("*.pid"))) < self.n_blocking:
            if time.monotonic() > deadline:
                raise TimeoutError("the blocking jobs never started")
            time.sleep(0.01)
        return os.getpid()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    # A zombie has exited; its parent (the fork server) has just not reaped it yet.
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[-1].split()[0] == "Z")


def test_ctrl_c_stops_every_worker(tmp_path):
    # Two workers run tasks that never end; Ctrl-C arrives (as a KeyboardInterrupt from the
    # progress display) when the third worker's task completes. The executor must kill the
    # two workers and return at once: waiting for their tasks would wait forever.
    jobs = [_Job("block-1", weight=10), _Job("block-2", weight=10), _Job("quick", weight=2)]
    context = _BlockingContext(tmp_path, n_blocking=2)
    interrupted: list[float] = []

    def interrupting(description, total):
        def advance(n):
            if description.startswith("tasks"):
                interrupted.append(time.monotonic())
                raise KeyboardInterrupt

        return advance

    raised: list[BaseException] = []

    def run() -> None:
        try:
            execute(jobs, context, ExecutorSettings(kind="local", jobs=3), interrupting)
        except BaseException as error:  # the interrupt is what is tested
            raised.append(error)

    # In a thread, so that an executor that waits for its workers fails the test instead of
    # hanging it.
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120  # the first workers of a session start in seconds
    while not interrupted and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    thread.join(timeout=10)
    try:
        assert interrupted, "the quick task never completed"
        assert not thread.is_alive(), "execute did not return after Ctrl-C"
        returned = time.monotonic() - interrupted[0]
    finally:
        for child in multiprocessing.active_children():  # a failed run's workers
            child.kill()
        thread.join(timeout=10)
    assert len(raised) == 1 and isinstance(raised[0], KeyboardInterrupt)
    assert returned < 5.0, f"{returned:.1f} s from Ctrl-C to return"
    pids = [int(p.read_text()) for p in sorted(tmp_path.glob("*.pid"))]
    assert len(pids) == 2 and not any(_alive(pid) for pid in pids)
    assert multiprocessing.active_children() == []


def test_executor_settings_are_checked():
    from dynafolio.errors import ConfigError

    with pytest.raises(ConfigError, match="choose one of serial, local, ray"):
        ExecutorSettings(kind="threads")
    with pytest.raises(ConfigError, match="--ray-address needs --executor ray"):
        ExecutorSettings(kind="local", ray_address="auto")


@pytest.mark.parametrize("args", [["--jobs", "2"], ["--executor", "ray", "--jobs", "2"]])
def test_the_cli_writes_the_same_metrics_csv_with_any_executor(tmp_path, args):
    prices = make_prices(n_periods=150, n_assets=4, late=0)
    data = tmp_path / "prices.csv"
    prices.to_csv(data, index_label="date")
    config = tmp_path / "c.yaml"
    config.write_text(
        "n_seeds: 2\nstrategies:\n  - kind: equal_weight\n"
        "  - {kind: forecast_topk, k: 2, forecaster: {model: univariate_lstm, params: "
        "{lookback: 6, hidden: 4, epochs: 2}}}\n"
    )
    outputs = []
    for extra in (["--executor", "serial"], args):
        out = tmp_path / "-".join(extra)
        result = CliRunner().invoke(
            app, ["run", "--data", str(data), "--config", str(config), "--out", str(out), *extra]
        )
        assert result.exit_code == 0, result.output
        (run_dir,) = out.iterdir()
        outputs.append((run_dir / "metrics.csv").read_bytes())
    assert outputs[0] == outputs[1]


def test_progress_bars_of_two_workers_never_share_an_id():
    """Two workers with the same process id (two nodes of a cluster) open distinct bars."""
    from dynafolio.parallel import _forwarding_factory

    class Events(list):
        def put(self, item):
            self.append(item)

    events = Events()
    _forwarding_factory(events)("a", 3)
    _forwarding_factory(events)("b", 3)
    opened = [item[1] for item in events if item[0] == "open"]
    assert len(opened) == 2 and opened[0] != opened[1]


def test_a_ray_run_without_an_address_starts_its_own_instance(monkeypatch):
    """Without ``--ray-address``, Ray would join whatever cluster this machine ran last
    (``RAY_ADDRESS``, /tmp/ray/ray_current_cluster), which refuses ``num_cpus`` and is
    shared with its other users: the run asks for a new local instance instead."""
    ray = pytest.importorskip("ray")
    asked: dict = {}

    class Started(Exception):
        pass

    def init(**options):
        asked.update(options)
        raise Started  # nothing needs to run: the options are what is tested

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    with pytest.raises(Started):
        execute([_Job("a", weight=1)], object(), ExecutorSettings(kind="ray", jobs=2))
    assert asked["address"] == "local" and asked["num_cpus"] == 2
    asked.clear()
    with pytest.raises(Started):
        execute([_Job("a", weight=1)], object(), ExecutorSettings("ray", ray_address="h:6379"))
    assert asked["address"] == "h:6379" and "num_cpus" not in asked
