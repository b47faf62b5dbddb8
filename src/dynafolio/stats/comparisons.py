"""Many strategies judged together: beating a benchmark with the number of strategies tried
allowed for (Hansen's SPA and the Romano–Wolf step-down), differences over seeds and dates, and
the Sharpe table of a run (see :mod:`dynafolio.stats`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from arch.bootstrap import SPA

from dynafolio.stats.sharpe import (
    as_returns,
    as_runs,
    block_length,
    centred_p,
    seed_time_replicates,
)


@dataclass(frozen=True)
class MultipleComparison:
    """``Does any strategy beat the benchmark?`` allowing for how many were tried.

    ``spa_p_value``: Hansen's (2005) SPA test (consistent p-value) of ``H0: none beats the
    benchmark``; ``survivors``: the strategies Romano & Wolf's (2005) StepM finds better than
    the benchmark at ``size`` (family-wise error rate controlled); ``n_tried``.
    """

    spa_p_value: float
    survivors: tuple[str, ...]
    n_tried: int
    size: float


def beat_benchmark_test(
    returns: Mapping[str, Sequence[float]] | pd.DataFrame,
    benchmark: Sequence[float],
    periods_per_year: int,
    size: float = 0.05,
    n_boot: int = 1000,
    seed: int = 0,
) -> MultipleComparison:
    """SPA (``arch.bootstrap``) and StepM (its steps over the same SPA, :func:`_step_down`) on
    the Sharpe ratio against a benchmark.

    arch's tests compare mean *losses*; to compare Sharpe ratios each strategy's returns are
    first scaled to the benchmark's volatility (the M² of Modigliani & Modigliani 1997), so
    that a higher mean scaled return is a higher Sharpe ratio; the losses are the negated
    scaled returns. The scaling uses the full-sample volatilities (their estimation error is
    not resampled — a stated approximation). Stationary bootstrap, studentised, block length
    :func:`block_length`.
    """
    frame = pd.DataFrame(returns)
    base = as_returns(benchmark, "benchmark")
    if len(frame) != base.size:
        raise ValueError("returns and benchmark must cover the same dates")
    scale = base.std(ddof=1) / frame.std(ddof=1).replace(0.0, np.nan)
    scaled = frame.mul(scale, axis=1).dropna(axis=1, how="all")
    if scaled.shape[1] == 0:
        return MultipleComparison(float("nan"), (), 0, size)
    block = block_length(base, *[scaled[c].to_numpy() for c in scaled.columns])
    bench_loss = pd.Series(-base, index=scaled.index)
    model_loss = -scaled
    spa = SPA(bench_loss, model_loss, block_size=int(round(block)), reps=n_boot, seed=seed)
    spa.compute()
    spa_p_value = float(spa.pvalues["consistent"])
    superior = set(_step_down(spa, size))
    survivors = tuple(str(c) for i, c in enumerate(scaled.columns) if i in superior)
    return MultipleComparison(spa_p_value, survivors, scaled.shape[1], size)


def _step_down(spa: SPA, size: float) -> list[int]:
    """Romano & Wolf's (2005) StepM on a computed ``spa``: the column indices of the models
    found superior, each step re-running the SPA on the models not yet found.

    The steps are those of ``arch.bootstrap.StepM.compute`` (same SPA, bootstrap and
    consistent critical values, so the same survivors) with one difference: arch stops when
    a step finds nothing or when *that step* finds all ``k`` models, so when every model is
    superior but found over two or more steps it re-runs the SPA on an empty set, which
    raises "zero-size array to reduction operation maximum". Here the steps stop when no
    model is left: all are superior.
    """
    remaining = np.ones(spa.k, dtype=bool)
    superior: list[int] = []
    while remaining.any():
        # better_models indexes the full set of models, whatever the subset.
        spa.subset(remaining)
        spa.compute()
        found = [int(i) for i in spa.better_models(size)]
        if not found:
            break
        superior.extend(found)
        remaining[found] = False
    spa.subset(np.ones(spa.k, dtype=bool))
    spa.compute()
    return sorted(superior)


def sharpe_table(
    runs: Mapping[str, np.ndarray],
    benchmark: str,
    periods_per_year: int,
    level: float = 0.95,
    risk_free: float = 0.0,
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Interval and paired p-value of every strategy's Sharpe ratio, over time **and** seeds.

    ``runs`` maps each strategy to its net returns, shape ``(n_periods, n_seeds)`` on the
    same dates (one column for a deterministic rule). Each bootstrap replicate draws one set
    of time blocks (stationary bootstrap, :func:`block_length` of the seed-averaged series),
    applied to every strategy so comparisons stay paired, and for each strategy a resample of
    its seeds (with replacement); the statistic is the mean over the drawn seeds of the Sharpe
    ratio on the drawn dates — the table's "mean over seeds". Returns one row per strategy:
    ``sharpe_ci_low``, ``sharpe_ci_high`` (percentile interval) and
    ``sharpe_p_vs_benchmark``, the two-sided bootstrap p-value of ``H0: same Sharpe as the
    benchmark`` (centred replicates of the difference; NaN for the benchmark itself).
    """
    if benchmark not in runs:
        raise ValueError(f"benchmark {benchmark!r} is not among the strategies")
    data = {name: as_runs(values, periods_per_year, risk_free) for name, values in runs.items()}
    if len({len(values) for values in data.values()}) != 1:
        raise ValueError("every strategy must cover the same dates")
    estimates, replicates, block = seed_time_replicates(data, periods_per_year, n_boot, seed)
    alpha = (1.0 - level) / 2.0
    rows = {}
    for name in data:
        low, high = np.nanquantile(replicates[name], [alpha, 1.0 - alpha])
        p = float("nan")
        if name != benchmark:
            diff = estimates[name] - estimates[benchmark]
            p = centred_p(diff, replicates[name] - replicates[benchmark])
        rows[name] = {"sharpe_ci_low": low, "sharpe_ci_high": high, "sharpe_p_vs_benchmark": p}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.attrs["block_length"] = block
    table.attrs["n_boot"] = n_boot
    return table
