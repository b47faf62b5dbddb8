"""Speed and agreement of the backtest engine against a plain per-period pandas loop.

What is compared
----------------
* ``engine``: :func:`dynafolio.backtest.engine.simulate`, the vectorised numpy accounting of
  weight drift between rebalances, turnover and proportional costs.
* ``pandas``: the straightforward implementation a typical user would write — DataFrames of
  returns and target weights, a Python loop over dates with ``.loc`` row access, a Series for
  the current weights, drift ``w = w * (1 + r) / (1 + w·r)`` and cost
  ``tc * |target - w|.sum()`` at each rebalance; ``net = gross - cost``.

Both get the same seeded random inputs: ``--n-schedules`` (default 1,000) long-only weight
schedules (Dirichlet, summing to 1) of 34 assets x 365 weekly periods, one weekly return
matrix (normal, mean 0.002, sd 0.04, clipped above -0.9), a rebalance every ``--rebalance-every``
periods (default 1, i.e. weekly) and ``ProportionalCost(0.001)``. The first rebalance starts
from all cash, so it pays ``tc * sum|w|``.

After a warm-up, the two are timed over ``--repeats`` alternating repetitions (engine on all
schedules, then pandas). The pandas loop takes ~0.1 s per schedule (well over a minute for
1,000), so by default it runs on the first ``--n-pandas`` = 100 schedules and the two are
compared per schedule (median over repetitions of the mean time per schedule). The results
are then checked to agree — gross and net returns, costs, turnover and drifted weights, max
abs difference < 1e-10 — and the script exits with status 1 if they do not, before printing
the speed-up.

Run it with ``make bench`` or ``.venv/bin/python benchmarks/backtest_speed.py`` (``--help``
lists the options).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dynafolio.backtest.costs import ProportionalCost
from dynafolio.backtest.engine import simulate

TOLERANCE = 1e-10
TARGET_SPEEDUP = 50.0
COLUMNS = ("gross", "cost", "net", "turnover")


@dataclass(frozen=True)
class Inputs:
    """Benchmark inputs, as numpy arrays (engine) and as DataFrames (pandas loop)."""

    returns: np.ndarray  # (n_return_sets, n_periods, n_assets); 1 set shared by all, or 1 each
    targets: np.ndarray  # (n_schedules, n_periods, n_assets)
    rebalance: np.ndarray  # (n_periods,) bool
    returns_frames: list[pd.DataFrame]
    target_frames: list[pd.DataFrame]
    rebalance_series: pd.Series

    def returns_of(self, schedule: int) -> np.ndarray:
        return self.returns[schedule % len(self.returns)]

    def returns_frame_of(self, schedule: int) -> pd.DataFrame:
        return self.returns_frames[schedule % len(self.returns_frames)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark dynafolio's vectorised backtest engine against a per-period "
        "pandas loop, after checking that both agree.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--n-schedules",
        type=int,
        default=1000,
        help="random weight schedules run through the engine",
    )
    parser.add_argument(
        "--n-pandas",
        type=int,
        default=100,
        help="schedules (the first ones) run through the pandas loop; "
        "times are compared per schedule",
    )
    parser.add_argument("--n-assets", type=int, default=34, help="assets per schedule")
    parser.add_argument("--n-periods", type=int, default=365, help="weekly periods")
    parser.add_argument(
        "--rebalance-every",
        type=int,
        default=1,
        help="trade every K periods; weights drift in between",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed repetitions (each runs engine, then pandas)"
    )
    parser.add_argument(
        "--cost-rate",
        type=float,
        default=0.001,
        help="proportional transaction cost per unit of turnover",
    )
    parser.add_argument(
        "--returns-per-schedule",
        action="store_true",
        help="draw a different return matrix for every schedule",
    )
    parser.add_argument("--seed", type=int, default=20240601, help="seed of the numpy Generator")
    args = parser.parse_args(argv)
    for name in ("n_schedules", "n_pandas", "n_assets", "n_periods", "rebalance_every", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    args.n_pandas = min(args.n_pandas, args.n_schedules)
    return args


def make_inputs(args: argparse.Namespace) -> Inputs:
    rng = np.random.default_rng(args.seed)
    shape = (args.n_periods, args.n_assets)
    n_return_sets = args.n_schedules if args.returns_per_schedule else 1
    returns = np.clip(rng.normal(0.002, 0.04, size=(n_return_sets, *shape)), -0.9, None)
    targets = rng.dirichlet(np.ones(args.n_assets), size=(args.n_schedules, args.n_periods))
    rebalance = np.zeros(args.n_periods, dtype=bool)
    rebalance[:: args.rebalance_every] = True

    dates = pd.date_range("2017-01-06", periods=args.n_periods, freq="W-FRI")
    assets = [f"A{j:02d}" for j in range(args.n_assets)]
    n_frames = min(n_return_sets, args.n_pandas)
    return Inputs(
        returns=returns,
        targets=targets,
        rebalance=rebalance,
        returns_frames=[pd.DataFrame(r, index=dates, columns=assets) for r in returns[:n_frames]],
        target_frames=[
            pd.DataFrame(t, index=dates, columns=assets) for t in targets[: args.n_pandas]
        ],
        rebalance_series=pd.Series(rebalance, index=dates, name="rebalance"),
    )


def pandas_backtest(
    returns: pd.DataFrame, targets: pd.DataFrame, rebalance: pd.Series, cost_rate: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-period loop a typical user writes; starts from all cash.

    Returns the ledger (gross, cost, net, turnover per period) and the drifted end-of-period
    weights.
    """
    weights = pd.Series(0.0, index=returns.columns)
    records = []
    drifted = []
    for date in returns.index:
        period_returns = returns.loc[date]
        turnover = 0.0
        if rebalance.loc[date]:
            target = targets.loc[date]
            turnover = (target - weights).abs().sum()
            weights = target.copy()
        cost = cost_rate * turnover
        gross = (weights * period_returns).sum()  # cash (1 - sum w) earns 0
        weights = weights * (1 + period_returns) / (1 + gross)
        records.append({"gross": gross, "cost": cost, "net": gross - cost, "turnover": turnover})
        drifted.append(weights)
    return pd.DataFrame(records, index=returns.index), pd.DataFrame(drifted, index=returns.index)


def run_engine(inputs: Inputs, schedules: range, cost_model: ProportionalCost) -> list:
    return [
        simulate(inputs.returns_of(k), inputs.targets[k], inputs.rebalance, cost_model)
        for k in schedules
    ]


def run_pandas(
    inputs: Inputs, schedules: range, cost_rate: float
) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    return [
        pandas_backtest(
            inputs.returns_frame_of(k), inputs.target_frames[k], inputs.rebalance_series, cost_rate
        )
        for k in schedules
    ]


def max_differences(
    engine_results: list, pandas_results: list[tuple[pd.DataFrame, pd.DataFrame]]
) -> dict[str, float]:
    worst = dict.fromkeys((*COLUMNS, "weights_end"), 0.0)
    for sim, (ledger, drifted) in zip(engine_results, pandas_results, strict=True):
        for column in COLUMNS:
            diff = np.abs(getattr(sim, column) - ledger[column].to_numpy(dtype=float)).max()
            worst[column] = max(worst[column], float(diff))
        diff = np.abs(sim.weights_end - drifted.to_numpy(dtype=float)).max()
        worst["weights_end"] = max(worst["weights_end"], float(diff))
    return worst


def timed(function, *arguments) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*arguments)
    return time.perf_counter() - start, result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cost_model = ProportionalCost(args.cost_rate)
    inputs = make_inputs(args)
    all_schedules = range(args.n_schedules)
    pandas_schedules = range(args.n_pandas)

    print("dynafolio backtest speed: engine.simulate vs a per-period pandas loop")
    is_subset = args.n_pandas < args.n_schedules
    subset_note = ", a subset: times compared per schedule" if is_subset else ""
    print(f"  schedules: {args.n_schedules} (engine), {args.n_pandas} (pandas{subset_note})")
    print(
        f"  shape: {args.n_periods} periods x {args.n_assets} assets; "
        f"rebalance every {args.rebalance_every} period(s) "
        f"({int(inputs.rebalance.sum())} rebalances); "
        f"return matrices: {len(inputs.returns)}"
    )
    print(
        f"  costs: ProportionalCost({args.cost_rate}); repetitions: {args.repeats} "
        f"(after a warm-up), alternating engine / pandas; seed {args.seed}"
    )

    # Warm-up (imports, caches, allocator), then the agreement check on every pandas schedule.
    run_engine(inputs, range(min(10, args.n_schedules)), cost_model)
    run_pandas(inputs, range(min(2, args.n_pandas)), args.cost_rate)

    engine_times: list[float] = []
    pandas_times: list[float] = []
    pandas_results: list[tuple[pd.DataFrame, pd.DataFrame]] = []
    engine_results: list = []
    for repetition in range(args.repeats):
        engine_seconds, engine_results = timed(run_engine, inputs, all_schedules, cost_model)
        pandas_seconds, pandas_results = timed(run_pandas, inputs, pandas_schedules, args.cost_rate)
        engine_times.append(engine_seconds / args.n_schedules)
        pandas_times.append(pandas_seconds / args.n_pandas)
        print(
            f"  repetition {repetition + 1}: engine {engine_seconds:7.3f} s "
            f"({args.n_schedules} schedules), pandas {pandas_seconds:7.3f} s "
            f"({args.n_pandas} schedules)"
        )

    differences = max_differences(engine_results[: args.n_pandas], pandas_results)
    worst = max(differences.values())
    detail = ", ".join(f"{name} {value:.1e}" for name, value in differences.items())
    print(f"agreement over {args.n_pandas} schedules (max abs diff): {detail}")
    if worst >= TOLERANCE:
        print(
            f"ERROR: engine and pandas loop disagree by {worst:.3e} >= {TOLERANCE:.0e}",
            file=sys.stderr,
        )
        return 1
    print(f"agreement: OK (max abs diff {worst:.1e} < {TOLERANCE:.0e})")

    engine_median = float(np.median(engine_times))
    pandas_median = float(np.median(pandas_times))
    print(f"engine: median {engine_median * 1e3:8.3f} ms per schedule")
    print(f"pandas: median {pandas_median * 1e3:8.3f} ms per schedule")
    print(f"speed-up: {pandas_median / engine_median:.1f}x (target >= {TARGET_SPEEDUP:.0f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
