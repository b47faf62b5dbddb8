"""Serial vs local process pool (vs Ray) on the same experiment, side by side.

Runs an experiment's computation (``run_experiment``: every fit and backtest, no report) with
the serial executor and with the local executor, alternating the two, ``--repeats`` times
each after a warm-up, checks that ``metrics.csv`` is byte-identical between them, and prints
the median times and the speed-up. ``--ray`` adds the Ray executor (local Ray, same number of
workers) for one timed run.

    .venv/bin/python benchmarks/parallel_speed.py                 # S1 --quick, 3 repeats
    .venv/bin/python benchmarks/parallel_speed.py --full --repeats 1 --ray
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from dynafolio.experiments.config import validate_config
from dynafolio.experiments.plan import load_prices
from dynafolio.parallel import ExecutorSettings, available_cores
from dynafolio.strategies.forecast import clear_fitted_cache
from dynafolio.studies import STUDIES as EXPERIMENTS
from dynafolio.studies import run_experiment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("experiment", nargs="?", default="s1")
    parser.add_argument("--full", action="store_true", help="full budgets instead of --quick")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=None, help="workers (default: all cores)")
    parser.add_argument("--ray", action="store_true", help="also time the Ray executor")
    args = parser.parse_args()

    module = EXPERIMENTS[args.experiment]
    settings = module.default_config()
    if not args.full:
        settings = module.quick(settings)
    config = validate_config(settings)
    prepared = load_prices(config)
    jobs = args.jobs or available_cores()
    torch.set_num_threads(1)  # the CLI default; every worker uses one thread too

    def timed(settings: ExecutorSettings) -> tuple[float, str]:
        # This process keeps fitted forecasters between runs (identical fits are shared); a
        # serial run after the warm-up would reuse them and skip every LSTM fit that a fresh
        # worker must do. Each timed run starts without them.
        clear_fitted_cache()
        start = time.perf_counter()
        result = run_experiment(config, prepared=prepared, executor=settings)
        return time.perf_counter() - start, result.table.to_csv()

    serial_settings = ExecutorSettings(kind="serial")
    local_settings = ExecutorSettings(kind="local", jobs=jobs)
    print(
        f"{args.experiment}{'' if args.full else ' --quick'}: {len(config.strategies)} "
        f"strategies x {config.n_seeds} seed(s); local executor with {jobs} workers"
    )
    # Warm-up (imports, first touches of memory are slow on a fresh machine): the quick
    # version of the experiment, once with each executor.
    quick = validate_config(module.quick(module.default_config()))
    for warm in (serial_settings, local_settings):
        run_experiment(quick, prepared=load_prices(quick), executor=warm)
    serial, local, tables = [], [], set()
    for repeat in range(args.repeats):
        for name, runs, settings in (
            ("serial", serial, serial_settings),
            ("local", local, local_settings),
        ):
            seconds, table = timed(settings)
            runs.append(seconds)
            tables.add(table)
            print(f"  run {repeat + 1}: {name:6s} {seconds:7.1f} s", flush=True)
    identical = len(tables) == 1
    print(f"metrics.csv identical across executors: {identical}")
    s, p = statistics.median(serial), statistics.median(local)
    print(f"median serial {s:.1f} s, local ({jobs} workers) {p:.1f} s: speed-up {s / p:.2f}x")
    if args.ray:
        seconds, table = timed(ExecutorSettings(kind="ray", jobs=jobs))
        tables.add(table)
        print(
            f"ray ({jobs} CPUs, one run, includes starting Ray): {seconds:.1f} s, "
            f"{s / seconds:.2f}x serial; identical: {len(tables) == 1}"
        )
    if len(tables) != 1:
        raise SystemExit("the executors disagree: this is a bug")


if __name__ == "__main__":
    main()
