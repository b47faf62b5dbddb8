"""The shared feature builders: hand-computed values, closed forms, and no look-ahead."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import make_prices
from dynafolio.errors import ConfigError, DataError
from dynafolio.experiments.config import validate_config
from dynafolio.forecast.panel import StackedLSTMForecaster
from dynafolio.history import MarketHistory
from dynafolio.model_inputs import (
    FEATURE_NAMES,
    S2_FEATURES,
    FeatureSet,
    bollinger_position,
    ewma_volatility,
    frac_diff,
    frac_diff_weights,
    trend_slope,
)
from forecast_probe import assert_no_look_ahead, full_panel_fit, stream_forecasts


def test_frac_diff_weights_match_the_binomial_series():
    np.testing.assert_allclose(frac_diff_weights(1.0, 4), [1.0, -1.0, 0.0, 0.0])
    np.testing.assert_allclose(frac_diff_weights(0.0, 3), [1.0, 0.0, 0.0])
    # (1 − B)^0.5 = 1 − 0.5B − 0.125B² − 0.0625B³ − ...
    np.testing.assert_allclose(frac_diff_weights(0.5, 4), [1.0, -0.5, -0.125, -0.0625])


def test_frac_diff_of_order_one_is_the_first_difference_and_order_zero_the_series():
    x = pd.Series([1.0, 4.0, 2.0, 7.0, 3.0])
    np.testing.assert_allclose(frac_diff(x, 1.0, 3).to_numpy()[2:], x.diff().to_numpy()[2:])
    np.testing.assert_allclose(frac_diff(x, 0.0, 2).to_numpy()[1:], x.to_numpy()[1:])
    # By hand, d = 0.5 and a window of 3: x_t − 0.5 x_{t−1} − 0.125 x_{t−2}.
    assert frac_diff(x, 0.5, 3).iloc[3] == pytest.approx(7.0 - 0.5 * 2.0 - 0.125 * 4.0)
    assert frac_diff(x, 0.5, 3).iloc[:2].isna().all()


def test_ewma_volatility_follows_the_riskmetrics_recursion():
    r = pd.DataFrame({"a": [np.nan, 0.01, -0.02, 0.03]})
    variance = 0.01**2
    expected = [np.nan, 0.01]
    for x in (-0.02, 0.03):
        variance = 0.94 * variance + 0.06 * x**2
        expected.append(np.sqrt(variance))
    np.testing.assert_allclose(ewma_volatility(r)["a"].to_numpy(), expected)


def test_bollinger_position_is_plus_one_on_the_upper_band():
    prices = pd.DataFrame({"a": [1.0, 2.0, 3.0]})
    mean, std = 2.0, 1.0  # sample std of 1, 2, 3
    value = bollinger_position(prices, window=3)["a"].iloc[-1]
    assert value == pytest.approx((3.0 - mean) / (2 * std))


def test_trend_slope_of_a_line_is_its_slope():
    line = pd.Series(5.0 + 0.3 * np.arange(30))
    slope = trend_slope(line, 20)
    assert slope.iloc[:19].isna().all()
    np.testing.assert_allclose(slope.iloc[19:], 0.3)


def test_the_regime_feature_is_the_market_trend_for_every_asset():
    prices = make_prices(n_periods=80, n_assets=3, late=0).rename(columns={"A0": "SPY"})
    built = FeatureSet(("regime",)).build(prices)
    assert built.shape == (80, 3, 2)
    np.testing.assert_allclose(built[:, 1, :], built[:, 0, :])
    expected = trend_slope(np.log(prices["SPY"]), 60).to_numpy()
    np.testing.assert_allclose(built[:, 2, 1], expected)
    with pytest.raises(DataError, match="market asset 'QQQ'"):
        FeatureSet(("regime",), market="QQQ").build(prices)


def test_log_returns_1_5_are_the_k_period_log_returns():
    prices = make_prices(n_periods=20, n_assets=2, late=0)
    built = FeatureSet(("log_returns_1_5",)).build(prices)
    for k in range(1, 6):
        expected = np.log(prices / prices.shift(k)).to_numpy()
        np.testing.assert_allclose(built[:, :, k - 1], expected)


@pytest.mark.parametrize("name", FEATURE_NAMES)
def test_no_feature_looks_ahead(name):
    """The features of prices cut at t are the first rows of those of the full prices, and a
    change to prices after t changes no earlier row."""
    prices = make_prices(n_periods=150, n_assets=3, late=20).rename(columns={"A0": "SPY"})
    if name == "ff_factors":  # the factors cover 1960–2018
        prices.index = pd.date_range("2005-01-07", periods=len(prices), freq="W-FRI")
    features = FeatureSet((name,))
    full = features.build(prices)
    t = 110
    np.testing.assert_array_equal(features.build(prices.iloc[: t + 1]), full[: t + 1])
    changed = prices.copy()
    changed.iloc[t + 1 :] *= np.random.default_rng(0).uniform(0.5, 2.0, changed.iloc[t + 1 :].shape)
    changed.iloc[t + 5 : t + 15, 1] = np.nan
    np.testing.assert_array_equal(features.build(changed)[: t + 1], full[: t + 1])
    assert np.isfinite(full[-1]).all()


def test_the_french_factors_are_compounded_over_each_period_known_at_its_close():
    from dynafolio.data.datasets import french_factors_per_period, load_french_factors

    daily = load_french_factors()
    weeks = pd.date_range("1987-10-02", periods=6, freq="W-FRI")
    prices = pd.DataFrame({"a": np.arange(6.0) + 10, "b": 20.0}, index=weeks)
    built = FeatureSet(("ff_factors",)).build(prices)
    assert built.shape == (6, 2, 5)
    np.testing.assert_array_equal(built[:, 0, :], built[:, 1, :])  # the same for every asset
    for t in range(1, 6):  # the trading days after the previous Friday, up to this one
        days = daily.loc[(daily.index > weeks[t - 1]) & (daily.index <= weeks[t])]
        np.testing.assert_allclose(built[t, 0, :], (1 + days).prod() - 1, rtol=1e-12)
    crash = weeks.get_loc(pd.Timestamp("1987-10-23"))  # the week of 19 October 1987
    assert built[crash, 0, 0] < -0.10  # Mkt-RF: -17% on the Monday, part regained later
    with pytest.raises(DataError, match="factors cover 1960-01-04..2018-12-31"):
        french_factors_per_period(pd.date_range("2020-01-03", periods=3, freq="W-FRI"))


def test_unknown_or_repeated_features_are_refused():
    with pytest.raises(ConfigError, match="choose from"):
        FeatureSet(("momentum",))
    with pytest.raises(ConfigError, match="twice"):
        FeatureSet(("rsi", "rsi"))


def test_a_config_names_the_bad_feature_key_before_anything_runs():
    with pytest.raises(ConfigError, match=r"strategies\.0\.forecaster\.params\.features"):
        validate_config(
            {
                "name": "x",
                "strategies": [
                    {
                        "kind": "forecast_signal",
                        "forecaster": {"model": "stacked_lstm", "params": {"features": ["vix"]}},
                    }
                ],
            }
        )


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from threads, and lose a lot when other jobs share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def feature_lstm() -> StackedLSTMForecaster:
    return StackedLSTMForecaster(
        lookback=5, units=(4,), epochs=2, features=S2_FEATURES, frac_diff_d=0.5, seed=1
    )


def spy_prices() -> pd.DataFrame:
    return make_prices(n_periods=200, n_assets=3, late=0).rename(columns={"A0": "SPY"})


@pytest.mark.usefixtures("one_torch_thread")
def test_the_stacked_lstm_reads_features_and_never_the_future():
    """Walk-forward over the full 200-row frame (refits at rows 148, 150, 152, each on the
    features of the history up to its decision): perturbing the prices after row 150 inside
    that frame changes no forecast made up to it, and changes a later one."""
    forecasts = assert_no_look_ahead(stream_forecasts(feature_lstm()), spy_prices(), t=150)
    assert all(np.isfinite(f.to_numpy()).all() for f in forecasts.values())
    prices = spy_prices().iloc[:151]
    fitted = feature_lstm().fit(MarketHistory(prices, prices.pct_change(fill_method=None)))
    # Eleven feature columns per asset (5 returns, EWMA vol, RSI, Bollinger, 2 regime, frac diff
    # = 11) feed the network; it still predicts one log return per asset.
    assert fitted.network_.layers[0].input_size == 3 * 11


@pytest.mark.usefixtures("one_torch_thread")
def test_the_probe_catches_a_feature_lstm_fitted_on_the_whole_panel():
    """The same probe fails when the model is fitted on the full frame, future included."""
    with pytest.raises(AssertionError, match="forecast at"):
        assert_no_look_ahead(full_panel_fit(feature_lstm()), spy_prices(), t=150)
