"""Forecast-driven strategies: hand-computed weights, fallbacks, no look-ahead, walk-forward.

The forecasters here are tiny deterministic fakes (no torch) that read only the history
they are given, so any look-ahead a test finds is the strategy's or the engine's.
"""

from __future__ import annotations

import math
from typing import Self

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from skfolio import RiskMeasure
from skfolio.optimization import MeanRisk

from conftest import make_prices
from dynafolio.backtest import PortfolioConstraints, run_backtest
from dynafolio.errors import DataError
from dynafolio.forecast.base import Forecaster
from dynafolio.history import MarketHistory
from dynafolio.strategies.forecast import ForecastStrategy
from dynafolio.strategies.rule import PriceRuleStrategy
from dynafolio.strategies.signal import (
    ForecastHRPStrategy,
    ForecastMeanVarianceStrategy,
    SignalInverseVolStrategy,
    SignalWeightStrategy,
    TopKForecastStrategy,
    cross_sectional_zscore,
)

LONG_SHORT = PortfolioConstraints(
    long_only=False, max_gross_leverage=1.0, max_position=1 / 3, fully_invested=False
)


class FitLog(list):
    """Records every fit; shared by all clones (a recorder, not model state)."""

    def __deepcopy__(self, memo: dict) -> FitLog:
        return self


class MeanReturnForecaster(Forecaster):
    """Next log return = mean of the last ``lookback`` log returns − ½ the training mean.

    The training mean makes what ``fit`` saw matter (so a leaky refit would show), and a
    seeded per-asset jitter makes the seed matter. NaN where the last ``lookback`` returns
    are incomplete (e.g. just listed).
    """

    def __init__(self, lookback: int = 5, seed: int = 0, log: FitLog | None = None) -> None:
        self.lookback = lookback
        self.seed = seed
        self.log = log

    def fit(self, history: MarketHistory) -> Self:
        self.long_run_ = np.log1p(history.returns.iloc[1:]).mean()
        rng = np.random.default_rng(self.seed)
        self.jitter_ = pd.Series(rng.normal(0.0, 1e-4, len(history.assets)), history.assets)
        if self.log is not None:
            self.log.append((history.date, len(history.prices)))
        return self

    def predict(self, history: MarketHistory) -> pd.Series:
        self._check_fitted()
        recent = np.log1p(history.returns.iloc[-self.lookback :])
        forecast = recent.mean().where(recent.notna().all())
        return forecast - 0.5 * self.long_run_.fillna(0.0) + self.jitter_


class MomentumPriceForecaster(MeanReturnForecaster):
    """Next price = last price × exp(the log return :class:`MeanReturnForecaster` predicts)."""

    target = "price"

    def predict(self, history: MarketHistory) -> pd.Series:
        return history.prices.iloc[-1] * np.exp(super().predict(history))


class FixedForecaster(Forecaster):
    """Returns the same forecast at every date (for hand examples)."""

    def __init__(self, values: dict[str, float] | None = None) -> None:
        self.values = values

    def fit(self, history: MarketHistory) -> Self:
        self.fitted_ = True
        return self

    def predict(self, history: MarketHistory) -> pd.Series:
        return pd.Series(self.values, dtype=float).reindex(history.assets)


def all_forecast_strategies(
    seed: int = 0, retrain_every: int | None = 3, log: FitLog | None = None
) -> list[ForecastStrategy]:
    returns = MeanReturnForecaster(seed=seed, log=log)
    estimated = {"window": 30, "min_periods": 10}
    return [
        TopKForecastStrategy(returns, k=3, retrain_every=retrain_every),
        TopKForecastStrategy(returns, k=2, tau=0.45, retrain_every=retrain_every),
        SignalWeightStrategy(returns, retrain_every=retrain_every),
        SignalInverseVolStrategy(returns, vol_window=20, retrain_every=retrain_every),
        ForecastMeanVarianceStrategy(returns, **estimated, retrain_every=retrain_every),
        ForecastHRPStrategy(returns, **estimated, retrain_every=retrain_every),
        PriceRuleStrategy(MomentumPriceForecaster(seed=seed, log=log), retrain_every=retrain_every),
    ]


def backtest(strategy: ForecastStrategy, prices: pd.DataFrame, start: pd.Timestamp):
    constraints = LONG_SHORT if isinstance(strategy, PriceRuleStrategy) else None
    return run_backtest(strategy, prices, start, constraints=constraints)


N_STRATEGIES = len(all_forecast_strategies())
IDS = [s.name for s in all_forecast_strategies()]


def history_of(prices: pd.DataFrame) -> MarketHistory:
    return MarketHistory(prices, prices.pct_change(fill_method=None))


def fitted(strategy: ForecastStrategy, history: MarketHistory) -> ForecastStrategy:
    return strategy.fit(history)


@pytest.fixture
def history() -> MarketHistory:
    """60 weekly prices of A0..A4; A4 unlisted until the last 10 rows, A3 missing today."""
    prices = make_prices(n_periods=60, n_assets=5, seed=3, late=50)
    prices.iloc[-1, 3] = np.nan
    return history_of(prices)


# --- names ----------------------------------------------------------------------------


def test_names_show_family_and_key_parameter():
    lstm = MeanReturnForecaster()
    assert TopKForecastStrategy(lstm, k=5, forecaster_label="LSTM").name == "LSTM Top-5"
    assert TopKForecastStrategy(lstm, k=3).name == "MeanReturn Top-3"
    assert SignalWeightStrategy(lstm, forecaster_label="GRU").name == "GRU signal"
    assert SignalInverseVolStrategy(lstm, forecaster_label="GRU").name == "GRU signal inv-vol"
    assert ForecastMeanVarianceStrategy(lstm, forecaster_label="LSTM").name == "LSTM forecast MVO"
    assert ForecastHRPStrategy(lstm, forecaster_label="LSTM").name == "LSTM forecast HRP"
    assert len(set(IDS)) == len(IDS)


# --- hand examples ----------------------------------------------------------------------


def test_zscore_and_equal_values():
    np.testing.assert_allclose(
        cross_sectional_zscore(np.array([1.0, 2.0, 3.0])), [-1.2247, 0, 1.2247], atol=1e-4
    )
    assert (cross_sectional_zscore(np.array([1.01, 1.01, 1.01])) == 0).all()
    assert (cross_sectional_zscore(np.array([0.7])) == 0).all()
    # 1.01 computed two ways differs in the last bit: still "equal", not a ±1 signal.
    assert (cross_sectional_zscore(np.array([101 / 100, 202 / 200, 1.01])) == 0).all()
    with pytest.raises(ValueError):
        cross_sectional_zscore(np.array([1.0, np.nan]))


def test_top_k_hand_example(history):
    # Tradable: A0, A1, A2 (A3 has no price today, A4 no forecast).
    forecast = pd.Series({"A0": 0.02, "A1": 0.01, "A2": -0.01, "A3": 0.05, "A4": np.nan})
    strategy = fitted(TopKForecastStrategy(FixedForecaster(), k=2), history)
    weights = strategy.allocate(forecast, history)
    # z-scores of (0.02, 0.01, -0.01): mean 0.00667, std 0.012472 -> (1.069, 0.267, -1.336);
    # keep A0, A1; softmax: w_A0 = 1 / (1 + e^(0.267 - 1.069)) = 1 / (1 + e^-0.8018) = 0.6904.
    assert weights["A0"] == pytest.approx(1 / (1 + math.exp(-0.8017837)), abs=1e-6)
    assert weights["A0"] == pytest.approx(0.69037, abs=1e-4)
    assert weights["A1"] == pytest.approx(1 - weights["A0"])
    assert weights[["A2", "A3", "A4"]].eq(0).all()


def test_top_k_is_invariant_to_the_scale_of_forecasts(history):
    forecast = pd.Series({"A0": 0.02, "A1": 0.01, "A2": -0.01})
    strategy = fitted(TopKForecastStrategy(FixedForecaster(), k=3), history)
    small = strategy.allocate(forecast, history)
    pd.testing.assert_series_equal(small, strategy.allocate(forecast * 50, history))
    assert small["A0"] > 0.5  # raw softmax of ~0.01 logits would be ~1/3 each


def test_top_k_equal_forecasts_hold_the_first_k_equally(history):
    forecast = pd.Series(0.01, index=history.assets)
    weights = fitted(TopKForecastStrategy(FixedForecaster(), k=2), history).allocate(
        forecast, history
    )
    assert weights.to_dict() == {"A0": 0.5, "A1": 0.5, "A2": 0.0, "A3": 0.0, "A4": 0.0}


def test_signal_weights_hand_example_and_equal_weight_fallback(history):
    strategy = fitted(SignalWeightStrategy(FixedForecaster()), history)
    forecast = pd.Series({"A0": 0.02, "A1": -0.01, "A2": 0.03, "A3": 0.04, "A4": np.nan})
    weights = strategy.allocate(forecast, history)
    assert weights.to_dict() == pytest.approx({"A0": 0.4, "A1": 0, "A2": 0.6, "A3": 0, "A4": 0})
    assert strategy.report_notes() == ()
    # Nothing tradable is forecast to rise (A3 has no price today, A4 no forecast).
    falling = pd.Series({"A0": -0.01, "A1": -0.02, "A2": 0.0, "A3": 0.04, "A4": np.nan})
    weights = strategy.allocate(falling, history)
    assert weights.to_dict() == pytest.approx(
        {"A0": 1 / 3, "A1": 1 / 3, "A2": 1 / 3, "A3": 0, "A4": 0}
    )
    assert strategy.fallbacks_.count == 1
    assert "equal weight on 1 decision" in strategy.report_notes()[0]


def test_no_tradable_asset_is_a_clear_error(history):
    strategy = fitted(SignalWeightStrategy(FixedForecaster(), forecaster_label="LSTM"), history)
    with pytest.raises(DataError, match="LSTM signal on .* no asset has both a price"):
        strategy.allocate(pd.Series({"A3": 0.1, "A4": np.nan}), history)


def test_signal_inverse_vol_hand_example_and_fallback(history):
    strategy = fitted(SignalInverseVolStrategy(FixedForecaster(), vol_window=20), history)
    sigma = history.returns.iloc[-20:].std(ddof=1)
    weights = strategy.allocate(pd.Series({"A0": 0.02, "A1": 0.01, "A2": -0.01}), history)
    expected = pd.Series({"A0": 0.02 / sigma["A0"], "A1": 0.01 / sigma["A1"]})
    expected /= expected.sum()
    assert weights[["A0", "A1"]].to_numpy() == pytest.approx(expected.to_numpy())
    assert weights[["A2", "A3", "A4"]].eq(0).all()
    # All forecasts <= 0: plain inverse volatility. A4 has 9 returns (< min_periods 10): out.
    weights = strategy.allocate(pd.Series(-0.01, index=history.assets), history)
    inverse = 1 / sigma[["A0", "A1", "A2"]]
    assert weights[["A0", "A1", "A2"]].to_numpy() == pytest.approx(inverse / inverse.sum())
    assert weights[["A3", "A4"]].eq(0).all()
    assert strategy.fallbacks_.count == 1 and "inverse volatility" in strategy.report_notes()[0]


def test_forecast_mvo_recovers_the_tangency_portfolio(history):
    """Analytic oracle: if Σ⁻¹μ > 0 the long-only max-Sharpe weights are Σ⁻¹μ normalised.

    Choose μ = c·Σ·w* for a positive w*, feed log(1 + μ) as the forecast: expect w*.
    """
    strategy = fitted(ForecastMeanVarianceStrategy(FixedForecaster(), window=40), history)
    returns = history.window_returns(40).loc[:, ["A0", "A1", "A2"]]
    target = np.array([0.5, 0.3, 0.2])
    mu = 20 * np.cov(returns.to_numpy().T) @ target
    forecast = pd.Series(np.log1p(mu), index=["A0", "A1", "A2"])
    weights = strategy.allocate(forecast, history)
    assert weights[["A0", "A1", "A2"]].to_numpy() == pytest.approx(target, abs=1e-3)
    assert weights[["A3", "A4"]].eq(0).all() and weights.sum() == pytest.approx(1.0)
    assert strategy.fallbacks_.count == 0


def test_forecast_mvo_falls_back_to_minimum_variance(history):
    strategy = fitted(ForecastMeanVarianceStrategy(FixedForecaster(), window=40), history)
    weights = strategy.allocate(pd.Series({"A0": -0.01, "A1": 0.0, "A2": -0.02}), history)
    returns = history.window_returns(40).loc[:, ["A0", "A1", "A2"]]
    oracle = MeanRisk(risk_measure=RiskMeasure.VARIANCE).fit(returns).weights_
    assert weights[["A0", "A1", "A2"]].to_numpy() == pytest.approx(oracle, abs=1e-6)
    notes = strategy.report_notes()
    assert len(notes) == 1 and "minimum variance" in notes[0]


def test_forecast_hrp_two_assets_is_inverse_variance(history):
    """HRP on two assets splits by inverse variance: w_0 = σ₁² / (σ₀² + σ₁²)."""
    strategy = fitted(ForecastHRPStrategy(FixedForecaster(), window=40), history)
    weights = strategy.allocate(pd.Series({"A0": 0.02, "A1": -0.01, "A2": 0.01}), history)
    var = history.window_returns(40)[["A0", "A2"]].var()
    assert weights["A0"] == pytest.approx(var["A2"] / var.sum(), abs=1e-9)
    assert weights["A1"] == 0 and weights.sum() == pytest.approx(1.0)
    single = strategy.allocate(pd.Series({"A0": -0.02, "A1": 0.01, "A2": -0.01}), history)
    assert single.to_dict() == {"A0": 0.0, "A1": 1.0, "A2": 0.0, "A3": 0.0, "A4": 0.0}
    assert strategy.report_notes() == ()
    none = strategy.allocate(pd.Series(-0.01, index=history.assets), history)
    assert (none[["A0", "A1", "A2"]] > 0).all() and none[["A3", "A4"]].eq(0).all()
    assert strategy.fallbacks_.count == 1


def test_parameters_are_validated_at_fit(history):
    with pytest.raises(ValueError, match="k must be"):
        TopKForecastStrategy(FixedForecaster(), k=0).fit(history)
    with pytest.raises(ValueError, match="tau"):
        TopKForecastStrategy(FixedForecaster(), tau=1.0).fit(history)
    with pytest.raises(ValueError, match="vol_window"):
        SignalInverseVolStrategy(FixedForecaster(), vol_window=1).fit(history)


# --- engine-level properties ----------------------------------------------------------


@pytest.mark.parametrize("index", range(N_STRATEGIES), ids=IDS)
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 1000), cut=st.integers(0, 14), scale=st.floats(0.8, 1.25))
def test_changing_prices_after_t_never_changes_weights_up_to_t(index, seed, cut, scale):
    prices = make_prices(n_periods=80, seed=seed, late=20)
    start, t = prices.index[60], prices.index[59 + cut]
    perturbed = prices.copy()
    after = perturbed.index > t
    # A new price path after t (random walk of ±10% steps, shifted by `scale`): different
    # enough to change every later forecast, mild enough that the long-short rule's book
    # cannot be wiped out (the engine refuses a portfolio value <= 0).
    steps = np.random.default_rng(seed + 1).uniform(0.9, 1.1, (after.sum(), prices.shape[1]))
    perturbed.loc[after] = perturbed.loc[after] * np.cumprod(steps, axis=0) * scale
    strategy_a, strategy_b = (
        all_forecast_strategies(seed)[index],
        all_forecast_strategies(seed)[index],
    )
    original = backtest(strategy_a, prices, start)
    changed = backtest(strategy_b, perturbed, start)
    pd.testing.assert_frame_equal(original.weights.loc[:t], changed.weights.loc[:t])
    # The test has teeth: the perturbation does reach the forecasts of later decisions.
    forecasts_a, forecasts_b = strategy_a.forecast_frame(), strategy_b.forecast_frame()
    pd.testing.assert_frame_equal(forecasts_a.loc[:t], forecasts_b.loc[:t])
    assert not forecasts_a.loc[t:].iloc[1:].equals(forecasts_b.loc[t:].iloc[1:])


@pytest.mark.parametrize("index", range(N_STRATEGIES), ids=IDS)
def test_same_seed_and_data_give_identical_weights(index, prices):
    start = prices.index[60]
    first = backtest(all_forecast_strategies(seed=7)[index], prices, start)
    second = backtest(all_forecast_strategies(seed=7)[index], prices, start)
    pd.testing.assert_frame_equal(first.weights, second.weights)
    assert np.isfinite(first.ledger.to_numpy()).all()


@pytest.mark.parametrize("every", [1, 3, None])
@pytest.mark.parametrize("index", range(N_STRATEGIES), ids=IDS)
def test_walk_forward_refits_on_schedule_with_history_ending_at_the_decision(index, every, prices):
    log = FitLog()
    strategy = all_forecast_strategies(retrain_every=every, log=log)[index]
    strategy.train_window = 40
    result = backtest(strategy, prices, prices.index[60])
    decisions = result.weights.index
    n_fits = 1 if every is None else math.ceil(len(decisions) / every)
    assert strategy.n_fits_ == len(log) == n_fits
    assert [date for date, _ in log] == list(decisions[:: every or len(decisions)])
    assert all(n_rows == 40 for _, n_rows in log)  # rolling train_window honoured


@pytest.mark.parametrize("index", range(N_STRATEGIES), ids=IDS)
def test_late_listing_gets_weight_only_once_forecastable(index):
    prices = make_prices(n_periods=80, seed=1, late=62)
    strategy = all_forecast_strategies()[index]
    result = backtest(strategy, prices, prices.index[60])
    # Listed at row 62: first return at row 63, five complete returns from row 67 on.
    forecasts = strategy.forecast_frame()["A5"]
    assert forecasts.loc[: prices.index[66]].isna().all()
    assert forecasts.loc[prices.index[67] :].notna().all()
    assert result.weights.loc[: prices.index[66], "A5"].eq(0).all()
