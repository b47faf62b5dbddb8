"""Sharpe-ratio statistics: closed forms, the papers' worked examples, coverage and size."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dynafolio import metrics, stats

P = 52


def _ar_t(n: int, phi: float, sharpe: float, rng: np.random.Generator, df: int = 5):
    """AR(1) returns with Student-t shocks, unit variance scaled to 2% a period; their true
    per-period Sharpe ratio is ``sharpe`` (mean / unconditional std)."""
    shocks = rng.standard_t(df, size=n + 100) / np.sqrt(df / (df - 2))
    x = np.zeros(n + 100)
    for t in range(1, n + 100):
        x[t] = phi * x[t - 1] + np.sqrt(1 - phi**2) * shocks[t]
    return 0.02 * (sharpe + x[100:])


def test_deflated_sharpe_reproduces_the_worked_example_of_bailey_and_lopez_de_prado_2014():
    # 100 trials, variance of their (annualised) Sharpe ratios 0.5, best SR 2.5 a year over
    # five years of daily data (T = 1250, 250 days a year), skewness −3, kurtosis 10.
    threshold = stats.expected_max_sharpe(100, 0.5 / 250)  # per day
    assert threshold == pytest.approx(0.1132, abs=5e-4)
    dsr = stats.deflated_sharpe_ratio(2.5, 1250, 250, 100, 0.5, skew=-3.0, kurt=10.0)
    assert dsr == pytest.approx(0.9004, abs=5e-4)


def test_probabilistic_sharpe_is_one_half_at_the_benchmark_and_grows_with_evidence():
    assert stats.probabilistic_sharpe_ratio(1.0, 500, P, benchmark=1.0) == pytest.approx(0.5)
    short = stats.probabilistic_sharpe_ratio(1.0, 52, P)
    long = stats.probabilistic_sharpe_ratio(1.0, 520, P)
    assert 0.5 < short < long < 1.0


def test_hac_standard_error_reduces_to_the_iid_normal_formula():
    x = np.random.default_rng(0).normal(0.002, 0.02, 5000)
    sr = x.mean() / x.std(ddof=1)
    expected = np.sqrt(P) * np.sqrt((1 + sr**2 / 2) / x.size)
    assert stats.sharpe_se(x, P, lags=0) == pytest.approx(expected, rel=0.03)


def test_intervals_contain_the_estimate_and_the_two_methods_agree_on_long_iid_data():
    x = np.random.default_rng(1).normal(0.003, 0.02, 3000)
    estimate = metrics.sharpe_ratio(x, P)
    for method in ("bootstrap", "analytic"):
        low, high = stats.sharpe_ci(x, P, method=method)
        assert low < estimate < high
    (b_low, b_high), (a_low, a_high) = (
        stats.sharpe_ci(x, P, method=m) for m in ("bootstrap", "analytic")
    )
    assert b_low == pytest.approx(a_low, abs=0.06) and b_high == pytest.approx(a_high, abs=0.06)
    assert stats.sharpe_ci(x, P, seed=3) == stats.sharpe_ci(x, P, seed=3)


def test_autocorrelation_widens_the_interval():
    rng = np.random.default_rng(2)
    iid = _ar_t(1000, 0.0, 0.1, rng)
    persistent = _ar_t(1000, 0.6, 0.1, rng)
    width = lambda x: np.diff(stats.sharpe_ci(x, P, method="analytic"))[0]  # noqa: E731
    assert width(persistent) > 1.3 * width(iid)


def test_paired_tests_agree_with_each_other_and_detect_a_planted_difference():
    rng = np.random.default_rng(3)
    common = rng.normal(0, 0.02, 400)
    a = 0.004 + common + rng.normal(0, 0.01, 400)
    b = 0.0 + common + rng.normal(0, 0.01, 400)
    lw = stats.sharpe_difference_test(a, b, P, n_boot=500)
    jk = stats.sharpe_difference_test(a, b, P, method="analytic")
    assert lw.difference == pytest.approx(metrics.sharpe_ratio(a, P) - metrics.sharpe_ratio(b, P))
    assert lw.p_value < 0.01 and jk.p_value < 0.01
    assert lw.ci_low > 0 and jk.ci_low > 0


def test_seed_spread_widens_the_learned_strategy_interval_and_pairing_is_kept():
    rng = np.random.default_rng(4)
    base = rng.normal(0.002, 0.02, 200)
    same = np.column_stack([base, base, base])
    spread = np.column_stack([base, base + rng.normal(0.003, 0.01, 200), base - 0.003])
    table = stats.sharpe_table(
        {"Equal weight": base[:, None], "same": same, "spread": spread}, "Equal weight", P
    )
    width = table["sharpe_ci_high"] - table["sharpe_ci_low"]
    assert width["spread"] > width["same"]
    # Identical to the benchmark on every date: the paired difference is exactly 0.
    assert table.loc["same", "sharpe_p_vs_benchmark"] == pytest.approx(1.0)
    assert np.isnan(table.loc["Equal weight", "sharpe_p_vs_benchmark"])


def test_spa_and_stepm_find_a_planted_winner():
    rng = np.random.default_rng(5)
    bench = rng.normal(0.001, 0.02, 500)
    returns = {f"null {i}": bench + rng.normal(0, 0.01, 500) for i in range(5)}
    returns["winner"] = 2.0 * (bench + 0.004 + rng.normal(0, 0.01, 500))  # leverage is no skill
    result = stats.beat_benchmark_test(returns, bench, P, n_boot=500)
    assert result.spa_p_value < 0.05
    assert result.survivors == ("winner",) and result.n_tried == 6


def _two_step_winners(rng: np.random.Generator):
    """A benchmark and two strategies that both beat it, found superior in two StepM steps:
    ``far`` is far better but its loss differential is noisy, which raises the first step's
    critical value above ``close``'s small, steady edge; ``close`` is rejected only once
    ``far`` has left the set."""
    bench = rng.normal(0.0, 0.01, 500)
    returns = {
        "far": 0.01 + rng.normal(0, 0.01, 500),
        "close": bench + 0.0005 + rng.normal(0, 0.001, 500),
    }
    return returns, bench


def test_stepm_keeps_every_strategy_when_all_beat_the_benchmark():
    # arch's StepM re-runs SPA on an empty set once every model is superior after two or
    # more steps, and raised "zero-size array to reduction operation maximum".
    returns, bench = _two_step_winners(np.random.default_rng(0))
    result = stats.beat_benchmark_test(returns, bench, P, n_boot=500)
    assert result.survivors == ("far", "close") and result.n_tried == 2
    assert result.spa_p_value < 0.05


def test_stepm_agrees_with_arch_where_arch_completes():
    from arch.bootstrap import StepM

    returns, bench = _two_step_winners(np.random.default_rng(1))
    returns.update({f"null {i}": bench + np.random.default_rng(i).normal(0, 0.001, 500)
                    for i in range(3)})  # fmt: skip
    result = stats.beat_benchmark_test(returns, bench, P, n_boot=500, seed=3)
    assert result.survivors == ("far", "close")  # two steps, then the nulls stay
    # arch's StepM on the same losses (M²-scaled, negated), block length and seed.
    frame = pd.DataFrame(returns)
    scaled = frame.mul(bench.std(ddof=1) / frame.std(ddof=1), axis=1)
    block = stats.block_length(bench, *[scaled[c].to_numpy() for c in scaled.columns])
    reference = StepM(
        pd.Series(-bench), -scaled, size=0.05, block_size=int(round(block)), reps=500, seed=3
    )
    reference.compute()
    assert reference.superior_models == list(result.survivors)


@pytest.mark.parametrize(
    ("phi", "df", "method"),
    [
        (0.0, 1000, "bootstrap"),
        (0.0, 1000, "analytic"),
        (0.3, 5, "bootstrap"),
        (0.3, 5, "analytic"),
    ],
)
def test_95_percent_intervals_cover_the_true_sharpe_ratio(phi, df, method):
    rng = np.random.default_rng(11)
    true_sr = 0.1  # per week: 0.72 a year
    covered = 0
    n_reps = 300
    for rep in range(n_reps):
        x = _ar_t(520, phi, true_sr, rng, df=df)
        low, high = stats.sharpe_ci(x, P, method=method, n_boot=500, seed=rep)
        covered += low <= np.sqrt(P) * true_sr <= high
    assert 0.92 <= covered / n_reps <= 0.98, covered / n_reps


def test_the_paired_test_has_its_nominal_size_and_power():
    rng = np.random.default_rng(12)
    n_reps, rejected, detected = 200, 0, 0
    for rep in range(n_reps):
        common = rng.normal(0, 0.02, 300)
        a = 0.002 + common + rng.normal(0, 0.015, 300)
        b = 0.002 + common + rng.normal(0, 0.015, 300)  # same Sharpe ratio
        rejected += stats.sharpe_difference_test(a, b, P, n_boot=300, seed=rep).p_value < 0.05
        c = a + 0.006
        detected += stats.sharpe_difference_test(c, b, P, n_boot=300, seed=rep).p_value < 0.05
    assert 0.02 <= rejected / n_reps <= 0.09, rejected / n_reps
    assert detected / n_reps > 0.8, detected / n_reps


def test_spa_rejects_at_about_its_nominal_rate_on_nulls():
    rng = np.random.default_rng(13)
    n_reps, rejected = 100, 0
    for rep in range(n_reps):
        factor = rng.normal(0, 1, 300)
        # Same mean and volatility as the benchmark, hence the same Sharpe ratio.
        draw = lambda f=factor: 0.002 + 0.02 * (0.6 * f + 0.8 * rng.normal(0, 1, 300))  # noqa: E731
        bench = draw()
        returns = {f"null {i}": draw() for i in range(4)}
        result = stats.beat_benchmark_test(returns, bench, P, n_boot=300, seed=rep)
        rejected += result.spa_p_value < 0.05
    assert 0.01 <= rejected / n_reps <= 0.10, rejected / n_reps
