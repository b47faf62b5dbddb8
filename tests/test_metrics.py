"""Tests of dynafolio.metrics: hand-computed oracles, quantstats cross-checks, properties."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dynafolio import metrics as m

# The hand-oracle series used throughout: four periods.
R = [0.10, -0.20, 0.05, 0.10]
# sum = 0.05, mean = 0.0125
# equity: 1.1, 1.1*0.8 = 0.88, 0.88*1.05 = 0.924, 0.924*1.1 = 1.0164
# deviations from the mean: 0.0875, -0.2125, 0.0375, 0.0875
# squares: 0.00765625 + 0.04515625 + 0.00140625 + 0.00765625 = 0.061875
# sample variance (ddof=1): 0.061875 / 3 = 0.020625
VAR = 0.020625
# An annual rate that is exactly 1 % per quarter: 1.01 ** 4 - 1 = 0.04060401.
RF_QUARTERLY_1PCT = 0.04060401


def weekly(values) -> pd.Series:
    idx = pd.date_range("2020-01-03", periods=len(values), freq="W-FRI")
    return pd.Series(values, index=idx, dtype="float64")


# ---------------------------------------------------------------- hand-computed oracles


def test_annualized_mean_return_oracle():
    # 12 * 0.0125 = 0.15
    assert m.annualized_mean_return(R, 12) == pytest.approx(0.15)


def test_cagr_oracle():
    # 4 quarters = 1 year: 1.0164 ** (4/4) - 1 = 0.0164
    assert m.cagr(R, 4) == pytest.approx(0.0164)
    # periods=8 -> half a year: 1.0164 ** 2 - 1 = 1.03306896 - 1 = 0.03306896
    assert m.cagr(R, 8) == pytest.approx(0.03306896)


def test_cagr_negative_terminal_wealth_is_nan():
    # 1 + (-1.5) = -0.5 < 0: no real-valued growth rate.
    assert math.isnan(m.cagr([0.1, -1.5], 52))


def test_annualized_volatility_oracle():
    # sqrt(4) * sqrt(0.020625) = sqrt(0.0825) ~= 0.287228
    assert m.annualized_volatility(R, 4) == pytest.approx(math.sqrt(0.0825))


def test_excess_returns_constant_rf_oracle():
    # per-period rf = 1.04060401 ** (1/4) - 1 = 0.01 -> R - 0.01
    ex = m.excess_returns(R, RF_QUARTERLY_1PCT, 4)
    np.testing.assert_allclose(ex, [0.09, -0.21, 0.04, 0.09], atol=1e-12)


def test_excess_returns_series_rf_keeps_index():
    r = weekly(R)
    # annual rates 0.04060401 (-> 0.01 per quarter), 0, 0, 0.04060401; periods=4 is just a
    # convenient de-annualisation here, the index frequency is not used.
    rf = pd.Series([RF_QUARTERLY_1PCT, 0.0, 0.0, RF_QUARTERLY_1PCT], index=r.index)
    ex = m.excess_returns(r, rf, 4)
    assert isinstance(ex, pd.Series) and ex.index.equals(r.index)
    np.testing.assert_allclose(ex.to_numpy(), [0.09, -0.20, 0.05, 0.09], atol=1e-12)
    # The same rates as a plain array of the right length are accepted too.
    np.testing.assert_allclose(m.excess_returns(r, rf.to_numpy(), 4), ex.to_numpy())


def test_excess_returns_misaligned_rf_raises():
    r = weekly(R)
    with pytest.raises(ValueError, match="one annual rate per period"):
        m.excess_returns(R, [0.01, 0.02], 4)
    shifted = pd.Series(0.01, index=r.index + pd.Timedelta(days=1))
    with pytest.raises(ValueError, match="index"):
        m.excess_returns(r, shifted, 52)
    with pytest.raises(ValueError, match="greater than -1"):
        m.sharpe_ratio(R, 4, risk_free=-1.0)


def test_sharpe_oracle():
    # rf = 0: sqrt(4) * 0.0125 / sqrt(0.020625) = 0.025 / 0.1436141 ~= 0.174078
    assert m.sharpe_ratio(R, 4) == pytest.approx(0.025 / math.sqrt(VAR))
    # rf = 1 % per quarter: mean excess 0.0025, std unchanged by the constant shift
    # -> 2 * 0.0025 / sqrt(0.020625)
    assert m.sharpe_ratio(R, 4, RF_QUARTERLY_1PCT) == pytest.approx(0.005 / math.sqrt(VAR))


def test_sortino_oracle():
    # rf = 0: only -0.20 is negative: sqrt(0.04 / 4) = 0.1; 2 * 0.0125 / 0.1 = 0.25
    assert m.sortino_ratio(R, 4) == pytest.approx(0.25)
    # rf = 1 %: excess [0.09, -0.21, 0.04, 0.09]; downside sqrt(0.0441 / 4) = 0.105;
    # 2 * 0.0025 / 0.105 = 1/21
    assert m.sortino_ratio(R, 4, RF_QUARTERLY_1PCT) == pytest.approx(1 / 21)


def test_degenerate_ratios_are_nan():
    # Constant returns: std is (numerically) 0, so Sharpe is undefined rather than huge.
    assert math.isnan(m.sharpe_ratio([0.01] * 5, 52))
    # No negative period: downside deviation 0.
    assert math.isnan(m.sortino_ratio([0.01, 0.02, 0.0], 52))
    # No drawdown: Calmar undefined.
    assert math.isnan(m.calmar_ratio([0.01, 0.02, 0.0], 52))


def test_equity_curve_oracle():
    np.testing.assert_allclose(m.equity_curve(R), [1.1, 0.88, 0.924, 1.0164])
    np.testing.assert_allclose(m.equity_curve(R, initial=100.0), [110.0, 88.0, 92.4, 101.64])
    curve = m.equity_curve(weekly(R))
    assert isinstance(curve, pd.Series) and curve.index.equals(weekly(R).index)
    with pytest.raises(ValueError, match="initial"):
        m.equity_curve(R, initial=0.0)


def test_drawdown_series_oracle():
    # running peak max(1, V): 1.1, 1.1, 1.1, 1.1
    # dd: 0, 0.88/1.1 - 1 = -0.2, 0.924/1.1 - 1 = -0.16, 1.0164/1.1 - 1 = -0.076
    np.testing.assert_allclose(m.drawdown_series(R), [0.0, -0.2, -0.16, -0.076], atol=1e-12)
    dd = m.drawdown_series(weekly(R))
    assert isinstance(dd, pd.Series) and dd.index.equals(weekly(R).index)


def test_first_period_loss_is_a_drawdown():
    # V = 0.9, 0.945; the peak is the initial 1.0 -> dd = -0.1, -0.055
    np.testing.assert_allclose(m.drawdown_series([-0.1, 0.05]), [-0.1, -0.055])
    assert m.max_drawdown([-0.1, 0.05]) == pytest.approx(-0.1)


def test_max_drawdown_calmar_total_return_oracle():
    assert m.max_drawdown(R) == pytest.approx(-0.2)
    # CAGR (periods=4) 0.0164 / |-0.2| = 0.082
    assert m.calmar_ratio(R, 4) == pytest.approx(0.082)
    # 1.0164 - 1
    assert m.total_return(R) == pytest.approx(0.0164)
    assert m.max_drawdown([0.01, 0.02]) == 0.0


def test_average_turnover_oracle():
    # (0.2 + 0.0 + 0.1 + 0.3) / 4 = 0.15
    assert m.average_turnover([0.2, 0.0, 0.1, 0.3]) == pytest.approx(0.15)
    with pytest.raises(ValueError, match="non-negative"):
        m.average_turnover([0.2, -0.1])


def test_rolling_alpha_beta_oracle():
    b = pd.Series([0.01, 0.02, 0.03, 0.05])
    r = pd.Series([0.02, 0.01, 0.04, 0.03])
    out = m.rolling_alpha_beta(r, b, window=3, periods_per_year=12)
    assert list(out.columns) == ["alpha", "beta"] and out.index.equals(r.index)
    assert out.iloc[:2].isna().all().all()
    # In percent. Row 2: b = [1, 2, 3] (mean 2), r = [2, 1, 4] (mean 7/3).
    #   cov = ((-1)(-1/3) + 0 + (1)(5/3)) / 2 = 1; var(b) = (1 + 0 + 1) / 2 = 1 -> beta = 1
    #   alpha = 12 * (7/3 - 2) % = 4 % = 0.04
    # Row 3: b = [2, 3, 5] (mean 10/3), r = [1, 4, 3] (mean 8/3).
    #   cov = (20/9 - 4/9 + 5/9) / 2 = 7/6; var(b) = (16/9 + 1/9 + 25/9) / 2 = 7/3 -> beta = 0.5
    #   alpha = 12 * (8/3 - 0.5 * 10/3) % = 12 % = 0.12
    np.testing.assert_allclose(out["beta"].iloc[2:], [1.0, 0.5], rtol=1e-9)
    np.testing.assert_allclose(out["alpha"].iloc[2:], [0.04, 0.12], rtol=1e-9)


def test_summary_oracle():
    s = m.summary(R, 4, turnover=[0.2, 0.0, 0.1, 0.3])
    assert list(s) == list(m.SUMMARY_KEYS)
    expected = {
        "ann_return": 4 * 0.0125,
        "cagr": 0.0164,
        "ann_volatility": math.sqrt(0.0825),
        "sharpe": 0.025 / math.sqrt(VAR),
        "sortino": 0.25,
        "max_drawdown": -0.2,
        "calmar": 0.082,
        "total_return": 0.0164,
        "avg_turnover": 0.15,
        "n_periods": 4,
    }
    for key, value in expected.items():
        assert s[key] == pytest.approx(value), key
    assert math.isnan(m.summary(R, 4)["avg_turnover"])


def test_summary_keys_and_labels():
    assert list(m.SUMMARY_KEYS) == [
        "ann_return", "cagr", "ann_volatility", "sharpe", "sortino", "max_drawdown",
        "calmar", "total_return", "avg_turnover", "n_periods",
    ]  # fmt: skip
    assert list(m.METRIC_LABELS) == list(m.SUMMARY_KEYS)
    assert m.METRIC_LABELS["ann_return"] == "Ann. return (mean×periods)"
    assert m.METRIC_LABELS["calmar"] == "Calmar"
    # Every key of summary() is described once, with a unit and a direction.
    summary = m.summary(np.array([0.01, -0.02, 0.03]), 52, turnover=np.array([0.1, 0.2]))
    assert set(summary) == {k for k, info in m.METRIC_INFO.items() if info.source == "summary"}
    assert m.METRIC_INFO["ann_volatility"].better == "lower"
    assert m.METRIC_INFO["max_drawdown"].unit == "fraction"


# ---------------------------------------------------------------- input validation


ALL_ON_R = [
    lambda r: m.annualized_mean_return(r, 52),
    lambda r: m.cagr(r, 52),
    lambda r: m.annualized_volatility(r, 52),
    lambda r: m.excess_returns(r, 0.02, 52),
    lambda r: m.sharpe_ratio(r, 52),
    lambda r: m.sortino_ratio(r, 52),
    lambda r: m.equity_curve(r),
    m.drawdown_series,
    m.max_drawdown,
    lambda r: m.calmar_ratio(r, 52),
    m.total_return,
    m.average_turnover,
    lambda r: m.summary(r, 52),
    lambda r: m.rolling_alpha_beta(r, r * 0.5, 2, 52),
    lambda r: m.window_summary(r, {"all": ("2020-01-01", "2030-01-01")}, 52),
]


@pytest.mark.parametrize("func", ALL_ON_R)
def test_nan_input_raises_with_location(func):
    r = weekly([0.01, 0.02, np.nan, 0.03])
    with pytest.raises(ValueError, match=r"NaN at position 2 \(index label Timestamp\('2020-01-17"):
        func(r)


def test_nan_in_plain_array_and_inf_raise():
    with pytest.raises(ValueError, match="NaN at position 1"):
        m.sharpe_ratio(np.array([0.01, np.nan, 0.02]), 52)
    with pytest.raises(ValueError, match="infinite at position 0"):
        m.total_return([np.inf, 0.01])
    with pytest.raises(ValueError, match="NaN"):
        m.total_return(pd.Series([0.01, pd.NA], dtype="Float64"))


def test_bad_shapes_and_periods_raise():
    with pytest.raises(ValueError, match="1-D"):
        m.total_return(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="at least 2"):
        m.sharpe_ratio([0.01], 52)
    with pytest.raises(ValueError, match="at least 1"):
        m.total_return([])
    for bad in (0, -52, 52.0, True, "52"):
        with pytest.raises(ValueError, match="periods_per_year"):
            m.annualized_mean_return(R, bad)


def test_rolling_alpha_beta_validation():
    r = weekly(R)
    with pytest.raises(ValueError, match="identical indexes"):
        m.rolling_alpha_beta(r, r.iloc[:3], 2, 52)
    with pytest.raises(ValueError, match="pd.Series"):
        m.rolling_alpha_beta(np.array(R), r, 2, 52)
    with pytest.raises(ValueError, match="window"):
        m.rolling_alpha_beta(r, r, 1, 52)


# ---------------------------------------------------------------- rolling alpha / beta


def test_rolling_alpha_beta_exact_linear_relation():
    rng = np.random.default_rng(7)
    b = weekly(rng.normal(0.001, 0.02, 120))
    r = 2 * b + 0.001
    window = 26
    out = m.rolling_alpha_beta(r, b, window, 52)
    assert out.iloc[: window - 1].isna().all().all()
    warm = out.iloc[window - 1 :]
    assert warm.notna().all().all()
    np.testing.assert_allclose(warm["beta"], 2.0, rtol=1e-9)
    np.testing.assert_allclose(warm["alpha"], 52 * 0.001, rtol=1e-7)


def test_rolling_alpha_beta_matches_per_window_ols():
    rng = np.random.default_rng(11)
    b = weekly(rng.normal(0.001, 0.02, 60))
    r = 0.7 * b + rng.normal(0.0005, 0.01, 60)
    out = m.rolling_alpha_beta(r, b, 20, 52)
    for end in range(19, 60):
        slope, intercept = np.polyfit(b.iloc[end - 19 : end + 1], r.iloc[end - 19 : end + 1], 1)
        assert out["beta"].iloc[end] == pytest.approx(slope, rel=1e-8)
        assert out["alpha"].iloc[end] == pytest.approx(52 * intercept, rel=1e-6, abs=1e-10)


# ---------------------------------------------------------------- window_summary


def test_window_summary_covered_and_uncovered_windows():
    r = weekly([0.01, -0.02, 0.03, 0.01, -0.01, 0.02])  # Fridays 2020-01-03 .. 2020-02-07
    windows = {
        "jan": ("2020-01-01", "2020-01-24"),  # inclusive end: 01-03, 10, 17, 24
        "outside": ("2021-01-01", "2021-12-31"),
        "one_week": ("2020-01-30", "2020-02-05"),  # only 2020-01-31 -> not covered
    }
    out = m.window_summary(r, windows, 52)
    assert list(out.index) == list(windows)
    assert list(out.columns) == ["start", "end", *m.SUMMARY_KEYS]
    jan = out.loc["jan"]
    assert jan["start"] == pd.Timestamp("2020-01-03") and jan["end"] == pd.Timestamp("2020-01-24")
    assert jan["n_periods"] == 4
    expected = m.summary(r.iloc[:4], 52)
    for key in m.SUMMARY_KEYS:
        assert jan[key] == pytest.approx(expected[key], nan_ok=True), key
    for name in ("outside", "one_week"):
        row = out.loc[name]
        assert row["n_periods"] == 0
        assert pd.isna(row["start"]) and pd.isna(row["end"])
        assert row.drop(["start", "end", "n_periods"]).isna().all()


def test_window_summary_slices_rf_series_and_validates():
    r = weekly([0.01, -0.02, 0.03, 0.01, -0.01, 0.02])
    rf = pd.Series(np.linspace(0.01, 0.06, 6), index=r.index)
    out = m.window_summary(r, {"w": ("2020-01-10", "2020-01-31")}, 52, risk_free=rf)
    piece = r.loc["2020-01-10":"2020-01-31"]
    expected = m.sharpe_ratio(piece, 52, rf.loc[piece.index])
    assert out.loc["w", "sharpe"] == pytest.approx(expected)
    with pytest.raises(ValueError, match="starts after it ends"):
        m.window_summary(r, {"w": ("2020-02-01", "2020-01-01")}, 52)
    with pytest.raises(ValueError, match="DatetimeIndex"):
        m.window_summary(pd.Series(R), {"w": ("2020-01-01", "2020-02-01")}, 52)


# ---------------------------------------------------------------- quantstats cross-checks


@pytest.fixture(scope="module")
def qs():
    return pytest.importorskip("quantstats.stats")


@pytest.fixture(scope="module")
def weekly_returns() -> pd.Series:
    rng = np.random.default_rng(20240607)
    values = rng.normal(0.002, 0.025, 260)
    # A positive first return makes the first period's value a peak above the initial 1.0, so
    # drawdowns agree whichever initial-peak convention is used: dynafolio starts the running
    # peak at the initial value 1.0; quantstats 0.0.86 adds a phantom 1.0 baseline too, but
    # older releases started the peak at the first period's value, hiding a first-period loss.
    values[0] = abs(values[0]) + 0.001
    return weekly(values)


def test_quantstats_sharpe(qs, weekly_returns):
    r = weekly_returns
    assert m.sharpe_ratio(r, 52) == pytest.approx(qs.sharpe(r, rf=0.0, periods=52), rel=1e-10)
    # quantstats de-annualises a constant rf as (1 + rf) ** (1 / periods) - 1 and divides the
    # mean excess return by the std of the excess returns, exactly as dynafolio does. It only
    # subtracts rf when rf > 0 (utils._rf_is_nonzero), so a *negative* constant rate is
    # silently ignored there; the definitions disagree for rf < 0, which is not compared.
    rf = 0.03
    ours = m.sharpe_ratio(r, 52, risk_free=rf)
    assert ours == pytest.approx(qs.sharpe(r, rf=rf, periods=52, annualize=True), rel=1e-10)
    assert ours < m.sharpe_ratio(r, 52)
    # A time-varying annual rate aligned on the same dates: quantstats reindexes (and ffills)
    # it onto the returns, which is a no-op for an exactly aligned series.
    rf_series = pd.Series(np.linspace(0.0, 0.05, len(r)), index=r.index)
    assert m.sharpe_ratio(r, 52, rf_series) == pytest.approx(
        qs.sharpe(r, rf=rf_series, periods=52), rel=1e-10
    )


def test_quantstats_sortino(qs, weekly_returns):
    r = weekly_returns
    assert m.sortino_ratio(r, 52) == pytest.approx(qs.sortino(r, rf=0.0, periods=52), rel=1e-10)
    assert m.sortino_ratio(r, 52, 0.03) == pytest.approx(
        qs.sortino(r, rf=0.03, periods=52), rel=1e-10
    )


def test_quantstats_volatility_drawdown_total_return(qs, weekly_returns):
    r = weekly_returns
    assert m.annualized_volatility(r, 52) == pytest.approx(
        qs.volatility(r, periods=52, annualize=True), rel=1e-10
    )
    assert m.max_drawdown(r) == pytest.approx(qs.max_drawdown(r), rel=1e-10)
    np.testing.assert_allclose(m.drawdown_series(r), qs.to_drawdown_series(r), atol=1e-12)
    assert m.total_return(r) == pytest.approx(qs.comp(r), rel=1e-10)


def test_quantstats_cagr_and_calmar(qs, weekly_returns):
    # quantstats 0.0.86 measures the horizon as returns.count() / periods years, the same as
    # dynafolio, so CAGR and Calmar (= cagr / |max drawdown|) are directly comparable. (Older
    # releases used calendar days between the first and last date instead; on those this
    # comparison would not hold exactly.)
    r = weekly_returns
    assert m.cagr(r, 52) == pytest.approx(qs.cagr(r, periods=52), rel=1e-10)
    assert m.calmar_ratio(r, 52) == pytest.approx(qs.calmar(r, periods=52), rel=1e-10)


# ---------------------------------------------------------------- properties


returns_gt_minus_one = st.lists(
    st.floats(min_value=-1.0, max_value=1.0, exclude_min=True, allow_subnormal=False),
    min_size=1,
    max_size=200,
)


@settings(max_examples=200, deadline=None)
@given(returns_gt_minus_one)
def test_drawdowns_are_bounded(r):
    dd = m.drawdown_series(r)
    assert np.all(dd <= 0.0)
    assert -1.0 <= m.max_drawdown(r) <= 0.0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.floats(min_value=-0.5, max_value=0.5, allow_subnormal=False), min_size=2, max_size=100
    ),
    st.floats(min_value=1e-3, max_value=1e3),
)
def test_sharpe_is_scale_invariant(r, scale):
    assume(np.std(r) > 1e-6)
    scaled = [scale * x for x in r]
    assert m.sharpe_ratio(scaled, 52) == pytest.approx(m.sharpe_ratio(r, 52), rel=1e-9)


@settings(max_examples=200, deadline=None)
@given(returns_gt_minus_one)
def test_equity_curve_ends_at_total_return(r):
    assert m.equity_curve(r)[-1] - 1.0 == m.total_return(r)
    assert m.equity_curve(weekly(r)).iloc[-1] - 1.0 == m.total_return(weekly(r))
