"""The cost curve: how each part of a run grows with the number of assets.

What is compared
----------------
The same pieces of work a ``dynafolio run`` does, on synthetic panels of N = 34, 100, 300 and
1,000 assets of the same length (365 weekly prices, the known-answer ``noise`` market of
:mod:`dynafolio.data.markets`, S1's 70/30 split: 255 training weeks, 110 test decisions):

* ``data``: loading, cleaning and resampling a wide CSV of the prices as a run does
  (:func:`dynafolio.experiments.plan.load_prices` on a config whose ``data.path`` is the CSV);
* ``lstm (shared)``: one fit of S1's forecaster (``univariate_lstm``: one LSTM shared by all
  assets, the default) on the training weeks, 5 epochs, no early stop; ``lstm (per asset)``:
  the same with ``shared: false``, one LSTM per asset trained batched (``BatchedLSTM``);
* ``ppo env``: 4,096 steps (512 x 8 environments) of the batched Top-K environment
  (:class:`~dynafolio.rl.vec_env.BatchedPortfolioVecEnv`, K = 5, lookback 30) with random
  logits, on the PPO training rows; ``ppo rollout (P)`` / ``ppo update (P)``: with each
  policy P of :data:`dynafolio.rl.policies.POLICIES` (``per_asset``, ``mlp``), one rollout
  of those 4,096 steps through the policy (SB3's ``collect_rollouts``) and one PPO update on
  it (SB3's ``train``: 10 epochs of minibatches of 128, S1's :class:`PPOSettings`), the model
  built as :func:`dynafolio.rl.training.train_agent` builds it;
* ``inverse_volatility`` ... ``herc``: one fit of each skfolio optimiser as dynafolio uses it
  (:mod:`dynafolio.strategies.classical`, ``estimation: rolling``, 104-week window: one
  ``weights()`` call, the work of one rebalance of a rolling optimiser);
* ``sharpe_table``: the statistics bootstrap of every results table
  (:func:`dynafolio.stats.sharpe_table`, 2,000 replicates) on 10 strategies x 110 periods x
  3 seeds; its input does not grow with N, so its exponent should be about 0;
* ``forecast baselines``: the four baseline forecasters of every forecast table (zero,
  historical mean, AR(1), ridge; :data:`dynafolio.experiments.forecasts.BASELINES`) on the
  110 test decisions, refit every 26 (:func:`~dynafolio.strategies.forecast.compute_stream`);
  ``forecast evaluation``: :func:`dynafolio.results.forecasts.evaluate_forecasts` of one
  learned forecaster (3 seeds) and the four baselines over the N assets (IC, R²,
  Diebold–Mariano, bootstrap intervals);
* ``report`` / ``write_run``: :func:`dynafolio.report.write_report`, and
  :func:`dynafolio.experiments.artifacts.write_run` (the report plus every CSV, JSON and
  weight file), on the result of a small finished run on the N-asset market (equal weight,
  inverse volatility rolling 104, a random Top-5, and an AR(1)-forecast Top-5 — the AR rule
  stands in for a learned strategy, so the report draws the charts it draws for learned
  ones, at milliseconds per fit; one seed, serial).

How it is measured
------------------
Every (part, N) runs in a fresh Python subprocess, so no part inherits another's memory or
caches. In it the inputs are built first (imports, prices, models; not measured), then for
each measurement: the process's peak-RSS mark is reset (``/proc/self/clear_refs``, Linux),
one warm-up call is made, then ``--repeats`` timed calls (default 3); the times are the
**medians** of the timed calls' wall time and CPU time (``time.process_time``: the process's
CPU seconds, all its threads — on a shared machine the less noisy of the two; torch runs on
one thread, as in a run's workers; the BLAS libraries numpy and skfolio call run on as many
threads as the environment gives them — a run's default, one per core — or on
``--blas-threads``). Peak memory is the process's peak resident set during the
warm-up and timed calls above its resident set just before them (``VmHWM − VmRSS``: whole
process, so torch's, cvxpy's and BLAS's native allocations count) — labelled *peak MB*; for
the PPO rows, above the resident set before the model was built (the setup's first
``learn`` already allocates what a rollout and an update use), so they count the model, its
rollout buffer, a rollout and an update. With the run's ``GLIBC_TUNABLES`` freed memory
stays resident, so memory that the setup freed and the part reuses is not counted; the
second memory figure, from a separate untimed call under :mod:`tracemalloc`, counts every
Python and numpy allocation of one call (not torch's or a solver's C allocations) and is
printed beside it. A part whose warm-up alone takes
longer than ``--budget`` seconds (default 150) is timed fewer times, down to its warm-up
call alone; the table marks it (``1x``: one timed call; ``w``: the warm-up call only).

The exponent of each part is the least-squares slope of log(seconds) (wall and CPU) and of
log(peak MB) on log(N) over the sizes run; CPU-time exponents above 1.2 are flagged for the
parts that should be linear in N (everything but the optimisers, whose covariance-based
problems grow faster by nature, and ``sharpe_table``, which should not grow at all).

``--run`` times the end-to-end command ``dynafolio run --quick --data <CSV>`` for each size
(a subprocess; the default local executor with one worker per core; ``--blas-threads`` is
passed on to it as ``OPENBLAS_NUM_THREADS`` and its kin): wall time; the peak of the whole
process tree's footprint (the proportional set sizes of its processes summed) and the
largest peak resident set of any one of its processes (``VmHWM``), both sampled from
``/proc`` every 2 s (reading a large process's ``smaps_rollup`` walks its page tables:
sampling every 0.5 s took a tenth of a core); and, as a cross-check, the kernel's
``RUSAGE_CHILDREN`` maximum in a wrapper process per run — which misses the pool's workers,
reaped by the forkserver rather than by a process the wrapper waits for.

Run it from the repository root (about 25 minutes on 2 CPU cores with N = 1,000; the
machine's other load shows in the times, so compare exponents rather than seconds)::

    T=glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=4294967296
    GLIBC_TUNABLES=$T:glibc.malloc.top_pad=268435456 MPLBACKEND=Agg \\
        .venv/bin/python benchmarks/scaling.py [--sizes 34,100,300,1000] [--repeats 3]
            [--parts lstm,ppo_mlp] [--blas-threads 1] [--run [--run-timeout 1800]]
            [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

SIZES = (34, 100, 300, 1000)
N_PERIODS = 365
TRAIN_SHARE = 0.7
#: Parts (the names ``--parts`` takes) -> the measurements each subprocess makes.
PARTS: dict[str, tuple[str, ...]] = {
    "data": ("data",),
    "lstm": ("lstm (shared)",),
    "lstm_per_asset": ("lstm (per asset)",),
    "ppo_env": ("ppo env",),
    "ppo_per_asset": ("ppo rollout (per_asset)", "ppo update (per_asset)"),
    "ppo_mlp": ("ppo rollout (mlp)", "ppo update (mlp)"),
    "optimisers": ("inverse_volatility", "minimum_variance", "max_sharpe", "hrp", "herc"),
    "stats": ("sharpe_table",),
    "forecasts": ("forecast baselines", "forecast evaluation"),
    "report": ("report", "write_run"),
}
#: Measurements whose cost need not be linear in N (not flagged above an exponent of 1.2).
NOT_LINEAR = {"minimum_variance", "max_sharpe", "hrp", "herc", "inverse_volatility"}
FLAG_EXPONENT = 1.2


# --------------------------------------------------------------------------- memory
def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> int:
    """Reset the kernel's peak-RSS mark to the current RSS; return the current RSS (kB)."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kb("VmRSS")


# --------------------------------------------------------------------------- inputs
def _market_prices(n: int):
    from dynafolio.experiments.plan import load_prices

    return load_prices(_config({"dataset": "noise", "market": _market(n)})).prices


def _market(n: int) -> dict[str, Any]:
    return {"n_assets": n, "n_periods": N_PERIODS}


def _config(data: dict[str, Any], strategies: list[dict] | None = None):
    from dynafolio.experiments.config import validate_config

    return validate_config(
        {
            "name": "scaling",
            "data": data,
            "split": {"train_fraction": TRAIN_SHARE},
            "strategies": strategies or [{"kind": "equal_weight"}],
            "n_seeds": 1,
        },
        "scaling benchmark",
    )


def _history(prices, rows: int | None = None):
    from dynafolio.history import MarketHistory

    part = prices if rows is None else prices.iloc[:rows]
    return MarketHistory(part, part.pct_change(fill_method=None))


def _train_rows() -> int:
    return int(N_PERIODS * TRAIN_SHARE)


def write_csv(n: int, folder: Path) -> Path:
    """The N-asset noise market as a wide CSV (a date column, one column per asset)."""
    from dynafolio.data.markets import KnownMarket, MarketSettings, generate_market

    path = folder / f"noise_{n}.csv"
    if not path.exists():
        market = KnownMarket(kind="noise", settings=MarketSettings(**_market(n)))
        generate_market(market).to_csv(path)
    return path


# --------------------------------------------------------------------------- parts
# Each builder takes N (and the CSV) and returns {measurement: zero-argument callable}; the
# setup it does before returning is not measured.
def part_data(n: int, csv: Path) -> dict[str, Callable[[], Any]]:
    from dynafolio.experiments.plan import load_prices

    config = _config({"path": str(csv)})
    return {"data": lambda: load_prices(config)}


def _lstm(n: int, shared: bool, name: str) -> dict[str, Callable[[], Any]]:
    from dynafolio.forecast.lstm import UnivariateLSTMForecaster

    history = _history(_market_prices(n), _train_rows())

    def fit():
        model = UnivariateLSTMForecaster(epochs=5, patience=None, shared=shared, seed=0)
        return model.fit(history)

    return {name: fit}


def part_lstm(n: int, csv: Path) -> dict[str, Callable[[], Any]]:
    return _lstm(n, True, "lstm (shared)")


def part_lstm_per_asset(n: int, csv: Path) -> dict[str, Callable[[], Any]]:
    return _lstm(n, False, "lstm (per asset)")


def _ppo_returns(n: int):
    from dynafolio.early_stopping import n_validation
    from dynafolio.rl.settings import PPOSettings

    prices = _market_prices(n).iloc[: _train_rows()]
    returns = prices.pct_change(fill_method=None).to_numpy()
    return returns[: len(returns) - n_validation(len(returns), PPOSettings().val_fraction)]


def _vec_env(returns, settings):
    from dynafolio.rl.vec_env import BatchedPortfolioVecEnv

    return BatchedPortfolioVecEnv(
        returns, settings.n_envs, lookback=30, k=5, tau=0.0, transaction_cost=0.001,
        lambda_sparse=0.0, start=29, episode_length=settings.episode_length, seed=0,
    )  # fmt: skip


def part_ppo_env(n: int, csv: Path) -> dict[str, Callable[[], Any]]:
    import numpy as np

    from dynafolio.rl.settings import PPOSettings

    settings = PPOSettings()
    env = _vec_env(_ppo_returns(n), settings)
    rng = np.random.default_rng(0)
    actions = rng.normal(size=(settings.n_steps, settings.n_envs, n)).astype(np.float32)

    def steps():
        env.reset()
        for action in actions:
            env.step(action)

    return {"ppo env": steps}


def _ppo(n: int, policy: str) -> dict[str, Callable[[], Any]]:
    from stable_baselines3 import PPO
    from stable_baselines3.common.logger import Logger
    from stable_baselines3.common.vec_env import VecMonitor, VecNormalize

    from dynafolio.rl.policies import POLICIES, policy_kwargs
    from dynafolio.rl.settings import PPOSettings

    settings = PPOSettings(policy=policy)
    returns = _ppo_returns(n)
    # The setup's first learn() already allocates what a rollout and an update need, so both
    # measurements count memory from here: the model, its buffers, a rollout and an update.
    memory_from = _reset_peak()
    env = VecNormalize(
        VecMonitor(_vec_env(returns, settings)),
        norm_obs=policy == "mlp",
        norm_reward=True,
        clip_obs=10.0,
        gamma=settings.gamma,
    )
    model = PPO(
        POLICIES[policy],
        env,
        **settings.sb3_kwargs(),
        policy_kwargs=policy_kwargs(policy, settings.net_arch, n, 30, False),
        seed=0,
        device="cpu",
        verbose=0,
    )
    model.set_logger(Logger(folder=None, output_formats=[]))
    rollout_size = settings.n_steps * settings.n_envs
    model.learn(rollout_size)  # sets up the callback and the first observation
    callback = model._init_callback(None)

    def rollout():
        model.collect_rollouts(model.env, callback, model.rollout_buffer, settings.n_steps)

    def update():
        model.train()

    rollout.memory_from = update.memory_from = memory_from
    return {f"ppo rollout ({policy})": rollout, f"ppo update ({policy})": update}


def part_ppo_per_asset(n: int, csv: Path) -> dict[str, Callable[[], Any]]:
    return _ppo(n, "per_asset")


def part_ppo_mlp(n: int, csv: Path) -> dict[str, Callable[[], Any]]:
    return _ppo(n, "mlp")


def part_optimisers(n: int, csv: Path) -> dict[str, Callable[[], Any]]:
    from dynafolio.strategies.classical import (
        HERCStrategy,
        HRPStrategy,
        InverseVolatilityStrategy,
        MaxSharpeStrategy,
        MinimumVarianceStrategy,
    )

    history = _history(_market_prices(n), _train_rows())
    out = {}
    for name, cls in {
        "inverse_volatility": InverseVolatilityStrategy,
        "minimum_variance": MinimumVarianceStrategy,
        "max_sharpe": MaxSharpeStrategy,
        "hrp": HRPStrategy,
        "herc": HERCStrategy,
    }.items():
        strategy = cls(estimation="rolling", window=104).fit(history)
        out[name] = lambda strategy=strategy: strategy.weights(history)
    return out


def part_stats(n: int, csv: Path) -> dict[str, Callable[[], Any]]:
    import numpy as np

    from dynafolio import stats

    rng = np.random.default_rng(0)
    runs = {f"s{i}": rng.normal(0.002, 0.03, size=(110, 3)) for i in range(10)}
    return {"sharpe_table": lambda: stats.sharpe_table(runs, "s0", 52, n_boot=2000, seed=0)}


def part_forecasts(n: int, csv: Path) -> dict[str, Callable[[], Any]]:
    import numpy as np
    import pandas as pd

    from dynafolio.experiments.forecasts import BASELINES
    from dynafolio.results.forecasts import BENCHMARK, ForecastRun, evaluate_forecasts
    from dynafolio.splits import RefitSchedule
    from dynafolio.strategies.forecast import compute_stream

    prices = _market_prices(n)
    rows = list(range(_train_rows() - 1, N_PERIODS - 1))  # the 110 test decisions
    schedule = RefitSchedule(every=26)

    def baselines():
        return {
            name: pd.DataFrame(compute_stream(template, schedule, prices, rows)).T
            for name, template in BASELINES.items()
        }

    made = baselines()
    rng = np.random.default_rng(0)
    dates = prices.index[rows]
    learned = tuple(
        pd.DataFrame(rng.normal(0, 0.01, (len(rows), n)), index=dates, columns=prices.columns)
        for _ in range(3)
    )
    runs = [ForecastRun("LSTM", "LSTM", True, (0, 1, 2), learned, ("LSTM-only Top-5",))]
    runs += [ForecastRun(name, name, False, (0,), (frame,)) for name, frame in made.items()]
    assert any(run.name == BENCHMARK for run in runs)
    return {
        "forecast baselines": baselines,
        "forecast evaluation": lambda: evaluate_forecasts(runs, prices, [dates[0]], k=5),
    }


def part_report(n: int, csv: Path) -> dict[str, Callable[[], Any]]:
    from dynafolio.experiments.artifacts import build_manifest, write_run
    from dynafolio.report import write_report
    from dynafolio.studies import run_experiment

    strategies = [
        {"kind": "equal_weight"},
        {"kind": "inverse_volatility", "estimation": "rolling", "window": 104},
        {"kind": "random_topk", "k": 5},
        {
            "kind": "forecast_topk",
            "name": "AR(1) Top-5",
            "k": 5,
            "retrain_every": 26,
            "forecaster": {"model": "ar", "params": {"p": 1}},
        },
    ]
    config = _config({"dataset": "noise", "market": _market(n)}, strategies)
    result = run_experiment(config)
    manifest = build_manifest(config, result, "scaling benchmark", "0" * 64)
    out = Path(tempfile.mkdtemp(prefix=f"scaling-report-{n}-"))
    counter = iter(range(1_000_000))

    def report():
        folder = out / f"report-{next(counter)}"
        folder.mkdir()
        return write_report(result, folder, manifest)

    return {
        "report": report,
        "write_run": lambda: write_run(result, manifest, out / "runs", write_report),
    }


BUILDERS: dict[str, Callable[[int, Path], dict[str, Callable[[], Any]]]] = {
    name: globals()[f"part_{name}"] for name in PARTS
}


# --------------------------------------------------------------------------- one subprocess
def measure(call: Callable[[], Any], repeats: int, budget: float) -> dict[str, Any]:
    """Warm-up, then up to ``repeats`` timed calls (wall and CPU seconds); peak RSS above
    the start (or above ``call.memory_from``, an RSS the builder recorded when it reset the
    peak mark itself), and the peak traced allocation of one more call."""
    rss = getattr(call, "memory_from", None) or _reset_peak()
    start = time.perf_counter()
    call()
    warm = time.perf_counter() - start
    n_timed = repeats if warm * repeats <= budget else max(0, int(budget // warm))
    times, cpu = [], []
    for _ in range(n_timed):
        start, start_cpu = time.perf_counter(), time.process_time()
        call()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    peak_mb = (_status_kb("VmHWM") - rss) / 1024
    tracemalloc.start()
    start_cpu = time.process_time()
    call()
    traced_cpu = time.process_time() - start_cpu
    traced_mb = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return {
        "seconds": statistics.median(times) if times else warm,
        # The CPU time of the call under tracemalloc when no call was timed: an upper bound.
        "cpu_seconds": statistics.median(cpu) if cpu else traced_cpu,
        "times": times,
        "warm_up": warm,
        "timed": len(times),
        "peak_mb": peak_mb,
        "traced_mb": traced_mb,
    }


def child(part: str, n: int, csv: Path, repeats: int, budget: float) -> None:
    import torch

    # As a run's workers: one torch thread each (two threads on a busy 2-core machine spin
    # against each other and can be ten times slower).
    torch.set_num_threads(1)
    calls = BUILDERS[part](n, csv)
    rows = []
    for name, call in calls.items():
        rows.append({"part": part, "measure": name, "n": n, **measure(call, repeats, budget)})
    print("RESULT " + json.dumps(rows), flush=True)


def blas_env(threads: int | None) -> dict[str, str]:
    """This environment, with the BLAS libraries held to ``threads`` threads (None: as is)."""
    env = dict(os.environ)
    if threads is not None:
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[name] = str(threads)
    return env


def run_part(
    part: str, n: int, csv: Path, repeats: int, budget: float, timeout: float, blas: int | None
) -> list:
    command = [sys.executable, __file__, "--child", part, "--n", str(n), "--csv", str(csv),
               "--repeats", str(repeats), "--budget", str(budget)]  # fmt: skip
    start = time.perf_counter()
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=blas_env(blas)
        )
    except subprocess.TimeoutExpired:
        print(f"  {part} N={n}: timed out after {timeout:.0f} s", flush=True)
        return [{"part": part, "measure": m, "n": n, "timed_out": timeout} for m in PARTS[part]]
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        print(f"  {part} N={n}: failed (exit {done.returncode})\n{done.stderr[-3000:]}")
        return [{"part": part, "measure": m, "n": n, "failed": True} for m in PARTS[part]]
    rows = json.loads(lines[-1].removeprefix("RESULT "))
    for row in rows:
        print(
            f"  {row['measure']:<26} N={n:>5}: {row['seconds']:9.3f} s, CPU "
            f"{row['cpu_seconds']:8.3f} s (timed {row['timed']}, warm-up {row['warm_up']:.2f} s), "
            f"peak {row['peak_mb']:8.1f} "
            f"MB, traced {row['traced_mb']:8.1f} MB  [{time.perf_counter() - start:.0f} s]",
            flush=True,
        )
    return rows


# --------------------------------------------------------------------------- end to end
def _tree_memory_kb(root: int) -> tuple[int, int]:
    """``root`` and its descendants, a /proc snapshot: their proportional set sizes (PSS)
    summed, and the largest peak resident set (VmHWM) of any one of them.

    PSS splits a page shared by several processes (forked workers share their parent's
    pages until they write them) between them, so the sum is the tree's real footprint.
    """
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [c for c, p in parents.items() if p == pid and c not in tree]
        tree.update(children)
        frontier += children
    total = largest = 0
    for pid in tree:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    largest = max(largest, int(line.split()[1]))
        except OSError:
            continue
    return total, largest


def wrap(command: list[str]) -> None:
    """Run ``command`` and print the largest resident set of any of its processes: a fresh
    process per run, so the kernel's children maximum covers this run only."""
    code = subprocess.run(command).returncode
    print(f"MAXRSS {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}", flush=True)
    sys.exit(code)


def end_to_end(n: int, csv: Path, timeout: float, blas: int | None) -> dict[str, Any]:
    """Wall time and peak memory of ``dynafolio run --quick --data CSV`` (a subprocess)."""
    out = Path(tempfile.mkdtemp(prefix=f"scaling-run-{n}-"))
    exe = Path(sys.executable).with_name("dynafolio")
    command = [sys.executable, __file__, "--wrap", str(exe), "run", "--quick", "--data",
               str(csv), "--out", str(out)]  # fmt: skip
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, text=True, env=blas_env(blas)
        )
        tree_peak = largest = 0
        while process.poll() is None:
            total, hwm = _tree_memory_kb(process.pid)
            tree_peak, largest = max(tree_peak, total), max(largest, hwm)
            if time.perf_counter() - start > timeout:
                process.kill()
                break
            time.sleep(2.0)
        process.wait()
        wall = time.perf_counter() - start
        log.seek(0)
        output = log.read()
    found = [line for line in output.splitlines() if line.startswith("MAXRSS ")]
    return {
        "n": n,
        "seconds": wall,
        "returncode": process.returncode,
        "largest_process_mb": largest / 1024,
        "rusage_children_mb": int(found[-1].split()[1]) / 1024 if found else float("nan"),
        "tree_peak_mb": tree_peak / 1024,
        "tail": output[-1500:],
        "out": str(out),
    }


# --------------------------------------------------------------------------- the table
def slope(sizes: list[int], values: list[float]) -> float:
    """Least-squares slope of log(values) on log(sizes) (NaN with fewer than 2 usable)."""
    pairs = [(math.log(s), math.log(v)) for s, v in zip(sizes, values, strict=True) if v > 0]
    if len(pairs) < 2:
        return float("nan")
    mx = sum(x for x, _ in pairs) / len(pairs)
    my = sum(y for _, y in pairs) / len(pairs)
    sxx = sum((x - mx) ** 2 for x, _ in pairs)
    return sum((x - mx) * (y - my) for x, y in pairs) / sxx


def print_table(rows: list[dict[str, Any]], sizes: list[int]) -> None:
    by = {(r["measure"], r["n"]): r for r in rows}
    measures = list(dict.fromkeys(r["measure"] for r in rows))
    width = 24
    header = (
        f"{'part':<24}" + "".join(f"{f'N={n}':>{width}}" for n in sizes)
        + "   exp wall  exp CPU  exp MB"
    )  # fmt: skip
    print("\nwall s / CPU s (medians of the timed calls), peak MB (tracemalloc MB)")
    print(header)
    print("-" * len(header))
    for measure in measures:
        cells, wall, cpu, memory, ns = [], [], [], [], []
        for n in sizes:
            row = by.get((measure, n))
            if row is None or "seconds" not in row:
                cells.append(f"{'timeout' if row and 'timed_out' in row else '–':>{width}}")
                continue
            mark = "" if row["timed"] >= 3 else (f"{row['timed']}x" if row["timed"] else "w")
            text = (
                f"{row['seconds']:.3g}/{row['cpu_seconds']:.3g}{mark} "
                f"{row['peak_mb']:.0f}({row['traced_mb']:.0f})"
            )
            cells.append(f"{text:>{width}}")
            wall.append(row["seconds"])
            cpu.append(row["cpu_seconds"])
            memory.append(max(row["peak_mb"], row["traced_mb"]))
            ns.append(n)
        e_wall, e_cpu, e_mem = slope(ns, wall), slope(ns, cpu), slope(ns, memory)
        flag = "  <-- faster than linear" if (
            e_cpu > FLAG_EXPONENT and measure not in NOT_LINEAR
        ) else ""  # fmt: skip
        print(
            f"{measure:<24}" + "".join(cells) + f"   {e_wall:8.2f} {e_cpu:8.2f} {e_mem:7.2f}{flag}"
        )
    print(
        "\nMB: peak resident set above the process's before the part (whole process); in "
        "brackets the peak traced by tracemalloc (Python and numpy allocations of one call); "
        "the memory exponent uses the larger of the two. Exponents: least-squares slope of "
        f"log value on log N; flagged above {FLAG_EXPONENT} (CPU) for parts that should be "
        "linear. '1x'/'2x': fewer timed calls than --repeats; 'w': the warm-up call alone "
        "(see --budget)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="asset counts")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per part (3)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"of {', '.join(PARTS)}")
    parser.add_argument(
        "--budget", type=float, default=150.0, help="seconds of timed calls per measure (150)"
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="per subprocess (1800)")
    parser.add_argument(
        "--run", action="store_true", help="time `dynafolio run --quick --data CSV` instead"
    )
    parser.add_argument("--run-timeout", type=float, default=1800.0, help="per run (1800)")
    parser.add_argument(
        "--blas-threads", type=int, help="OPENBLAS/OMP/MKL_NUM_THREADS (default: as set)"
    )
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    parser.add_argument("--data-dir", type=Path, help="where the CSVs go (a temp folder)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--wrap", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--csv", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.wrap:
        wrap(args.wrap)
    if args.child:
        child(args.child, args.n, args.csv, args.repeats, args.budget)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    parts = [p.strip() for p in args.parts.split(",")]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown parts {unknown}; choose from {', '.join(PARTS)}")
    if "GLIBC_TUNABLES" not in os.environ:
        print("note: GLIBC_TUNABLES is not set; torch timings and RSS differ from a run's")
    folder = args.data_dir or Path(tempfile.mkdtemp(prefix="scaling-data-"))
    folder.mkdir(parents=True, exist_ok=True)
    csvs = {n: write_csv(n, folder) for n in sizes}
    blas = "as set" if args.blas_threads is None else args.blas_threads
    print(f"noise market, {N_PERIODS} weekly prices, N = {sizes}; CSVs in {folder}; "
          f"{os.cpu_count()} CPUs; BLAS threads {blas}", flush=True)  # fmt: skip
    if args.run:
        results = []
        for n in sizes:
            row = end_to_end(n, csvs[n], args.run_timeout, args.blas_threads)
            results.append(row)
            print(
                f"  dynafolio run --quick, N={n}: {row['seconds']:.0f} s, exit "
                f"{row['returncode']}, largest process {row['largest_process_mb']:.0f} MB "
                f"(RUSAGE_CHILDREN {row['rusage_children_mb']:.0f} MB), process tree peak "
                f"{row['tree_peak_mb']:.0f} MB ({row['out']})",
                flush=True,
            )
            if row["returncode"] != 0:
                print(row["tail"])
        done = [r for r in results if r["returncode"] == 0]
        print(f"\nend-to-end exponent (time): "
              f"{slope([r['n'] for r in done], [r['seconds'] for r in done]):.2f}")  # fmt: skip
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
        return
    rows = []
    for part in parts:
        for n in sizes:
            rows += run_part(
                part, n, csvs[n], args.repeats, args.budget, args.timeout, args.blas_threads
            )
            if args.json:
                args.json.write_text(json.dumps(rows, indent=1))
    print_table(rows, sizes)


if __name__ == "__main__":
    main()
