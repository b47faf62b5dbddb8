"""What an experiment's results support: intervals, paired tests, multiple testing, and the
plain sentences that say only that.

:func:`infer` adds ``sharpe_ci_low``, ``sharpe_ci_high`` and ``sharpe_p_vs_benchmark`` to the
results table (:func:`dynafolio.stats.sharpe_table`: one block bootstrap over dates and seeds,
paired on dates), tests whether any strategy beats the benchmark allowing for how many were
tried (SPA and StepM, :func:`dynafolio.stats.beat_benchmark_test`) and deflates the best
Sharpe ratio (:func:`dynafolio.stats.deflated_sharpe_ratio`). :func:`findings` turns that into
sentences.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from dynafolio import stats
from dynafolio.results.result import ControlComparison, Inference, StrategyRuns

#: Level of every interval and test in the tables and findings.
LEVEL = 0.95
N_BOOT = 2000


def infer(
    all_runs: list[StrategyRuns],
    table: pd.DataFrame,
    benchmark: str,
    periods_per_year: int,
    risk_free: float | np.ndarray,
    seed: int,
) -> tuple[pd.DataFrame, Inference]:
    """The table with the three inference columns, and the run-level statistics.
    ``risk_free``: annual, a float or one rate per test period."""
    runs = {r.name: r.net_return_matrix() for r in all_runs}
    sharpe = stats.sharpe_table(
        runs, benchmark, periods_per_year, LEVEL, risk_free, n_boot=N_BOOT, seed=seed
    )
    table = table.join(sharpe)
    rf = stats.per_period_rate(risk_free, periods_per_year)
    means = {name: values.mean(axis=1) - rf for name, values in runs.items()}
    others = {name: values for name, values in means.items() if name != benchmark}
    if others:
        multiple = stats.beat_benchmark_test(
            others, means[benchmark], periods_per_year, size=1 - LEVEL, seed=seed
        )
    else:
        multiple = stats.MultipleComparison(float("nan"), (), 0, 1 - LEVEL)
    best = str(table["sharpe"].idxmax())
    best_returns = means[best]
    variance = float(table["sharpe"].var(ddof=1)) if len(table) > 1 else 0.0
    skew = float(sps.skew(best_returns, bias=False))
    kurt = float(sps.kurtosis(best_returns, fisher=False, bias=False))
    n = len(best_returns)
    best_sharpe = float(table.loc[best, "sharpe"])
    dsr = stats.deflated_sharpe_ratio(
        best_sharpe, n, periods_per_year, len(table), variance, skew, kurt
    )
    psr = stats.probabilistic_sharpe_ratio(best_sharpe, n, periods_per_year, skew, kurt)
    controls = []
    for r in all_runs:
        if not r.learned or "k" not in r.tags:
            continue
        control = next(
            (
                c
                for c in all_runs
                if c.tags.get("kind") == "random_topk" and c.tags.get("k") == r.tags["k"]
            ),
            None,
        )
        if control is not None:
            test = stats.sharpe_difference_test(
                runs[r.name],
                runs[control.name],
                periods_per_year,
                level=LEVEL,
                risk_free=risk_free,
                seed=seed,
            )
            controls.append(ControlComparison(r.name, control.name, test))
    return table, Inference(
        level=LEVEL,
        n_boot=N_BOOT,
        block_length=float(sharpe.attrs["block_length"]),
        n_tried=len(table),
        spa_p_value=multiple.spa_p_value,
        survivors=multiple.survivors,
        best=best,
        best_dsr=dsr,
        best_psr=psr,
        sharpe_variance=variance,
        controls=tuple(controls),
    )


def _p(value: float) -> str:
    return (
        "p < 0.001"
        if value < 0.001
        else f"p = {value:.2f}"
        if value >= 0.01
        else f"p = {value:.3f}"
    )


def verdict(row: pd.Series, base_sharpe: float, benchmark: str, level: float = LEVEL) -> str:
    """``beats``/``loses to``/``is not distinguishable from`` the benchmark, with its p-value."""
    alpha = 1.0 - level
    p = row["sharpe_p_vs_benchmark"]
    if not np.isfinite(p):
        return f"cannot be compared with {benchmark}"
    if p < alpha:
        word = "beats" if row["sharpe"] > base_sharpe else "loses to"
        return f"{word} {benchmark} at the {alpha:.0%} level ({_p(p)})"
    side = "higher" if row["sharpe"] > base_sharpe else "lower"
    return (
        f"has a {side} Sharpe ratio than {benchmark} but is not distinguishable from it ({_p(p)})"
    )


def findings(
    table: pd.DataFrame, inference: Inference, all_runs: list[StrategyRuns], benchmark: str
) -> list[str]:
    """Plain statements that say only what the tests support."""
    alpha = 1.0 - inference.level
    base = table.loc[benchmark]
    lines = [
        f"Benchmark {benchmark}: Sharpe {base['sharpe']:.2f} "
        f"({inference.level:.0%} CI {base['sharpe_ci_low']:.2f} to {base['sharpe_ci_high']:.2f}), "
        f"CAGR {base['cagr']:.1%}, max drawdown {base['max_drawdown']:.1%}."
    ]
    best = table.loc[inference.best]
    lines.append(
        f"Highest Sharpe: {inference.best} ({best['sharpe']:.2f}, CI {best['sharpe_ci_low']:.2f} "
        f"to {best['sharpe_ci_high']:.2f}). Its deflated Sharpe ratio is "
        f"{inference.best_dsr:.2f}: after allowing for {inference.n_tried} strategies tried, the "
        "probability that its true Sharpe ratio is positive — not that it beats the benchmark."
    )
    others = table.drop(index=benchmark)
    p = others["sharpe_p_vs_benchmark"]
    beat = others.index[(p < alpha) & (others["sharpe"] > base["sharpe"])]
    lost = others.index[(p < alpha) & (others["sharpe"] < base["sharpe"])]
    level = others.index[~(p < alpha)]
    if len(beat):
        lines.append(
            f"Beat {benchmark} at the {alpha:.0%} level (one at a time): " + ", ".join(beat) + "."
        )
    if len(lost):
        lines.append(f"Lost to {benchmark} at the {alpha:.0%} level: " + ", ".join(lost) + ".")
    if len(level):
        lines.append(
            f"Not distinguishable from {benchmark} at the {alpha:.0%} level: "
            + ", ".join(level)
            + "."
        )
    if inference.survivors:
        lines.append(
            f"After allowing for {inference.n_tried - 1} strategies tried against {benchmark}, "
            f"some beat it (SPA {_p(inference.spa_p_value)}); Romano–Wolf StepM keeps: "
            + ", ".join(inference.survivors)
            + "."
        )
    elif np.isfinite(inference.spa_p_value):
        lines.append(
            f"After allowing for {inference.n_tried - 1} strategies tried against {benchmark}, "
            f"none beats it (SPA {_p(inference.spa_p_value)}; Romano–Wolf StepM keeps none)."
        )
    for comparison in inference.controls:
        t = comparison.test
        if t.p_value < alpha:
            word = "beats" if t.difference > 0 else "does worse than"
            judged = f"{word} its random control {comparison.control} at the {alpha:.0%} level"
        else:
            judged = f"is not distinguishable from its random control {comparison.control}"
        lines.append(
            f"{comparison.strategy} {judged}: Sharpe difference {t.difference:+.2f} "
            f"(CI {t.ci_low:+.2f} to {t.ci_high:+.2f}, {_p(t.p_value)})."
        )
    for runs in all_runs:
        if not runs.learned or runs.name == benchmark:
            continue
        row = table.loc[runs.name]
        spread = f" ± {row['sharpe_std']:.2f} over seeds" if row["n_seeds"] > 1 else ""
        lines.append(
            f"{runs.name} (learned, Sharpe {row['sharpe']:.2f}{spread}, CI "
            f"{row['sharpe_ci_low']:.2f} to {row['sharpe_ci_high']:.2f}) "
            + verdict(row, base["sharpe"], benchmark, inference.level)
            + "."
        )
    return lines
