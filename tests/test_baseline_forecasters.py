"""The simple forecasters every forecast table includes: zero, historical mean, ridge."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dynafolio.errors import DataError
from dynafolio.experiments.config import validate_config
from dynafolio.forecast.baselines import (
    HistoricalMeanForecaster,
    RidgeForecaster,
    ZeroForecaster,
)
from dynafolio.history import MarketHistory
from forecast_probe import assert_no_look_ahead, full_panel_fit, one_row_late, stream_forecasts
from test_linear_forecaster import PHI, ar1_panel


def history_of(prices: pd.DataFrame) -> MarketHistory:
    return MarketHistory(prices, prices.pct_change(fill_method=None))


def test_zero_and_historical_mean_forecasts():
    prices = ar1_panel(n_periods=60, n_assets=4)
    prices.iloc[-1, 3] = np.nan  # not priced at the decision date: no forecast
    history = history_of(prices)
    zero = ZeroForecaster().fit(history).predict(history)
    assert zero.iloc[:3].tolist() == [0.0, 0.0, 0.0] and np.isnan(zero.iloc[3])
    log_returns = np.log(prices).diff()
    mean = HistoricalMeanForecaster().fit(history).predict(history)
    assert mean.iloc[:3].to_numpy() == pytest.approx(log_returns.iloc[:, :3].mean().to_numpy())
    rolling = HistoricalMeanForecaster(window=10).fit(history).predict(history)
    expected = log_returns.iloc[-10:, :3].mean().to_numpy()
    assert rolling.iloc[:3].to_numpy() == pytest.approx(expected)


def test_ridge_learns_an_ar1_panel():
    prices = ar1_panel(n_periods=400, n_assets=20)
    train = history_of(prices.iloc[:300])
    model = RidgeForecaster(lags=3, alpha=1e-3).fit(train)
    log_returns = np.log(prices).diff()
    truth, made = [], []
    for t in range(300, 399):
        made.append(model.predict(history_of(prices.iloc[: t + 1])).to_numpy())
        truth.append(PHI * log_returns.iloc[t].to_numpy())
    made, truth = np.concatenate(made), np.concatenate(truth)
    assert np.corrcoef(made, truth)[0, 1] > 0.95


def test_ridge_reads_model_inputs_and_refuses_too_little_history():
    prices = ar1_panel(n_periods=120, n_assets=5)
    model = RidgeForecaster(lags=2, features=("rsi", "volatility")).fit(history_of(prices))
    assert model.model_[-1].coef_.shape == (4,)
    assert np.isfinite(model.predict(history_of(prices))).all()
    with pytest.raises(DataError, match="complete rows"):
        RidgeForecaster(lags=5, min_rows=5000).fit(history_of(prices))


@pytest.mark.parametrize(
    "template",
    [HistoricalMeanForecaster(), HistoricalMeanForecaster(window=20), RidgeForecaster(lags=2)],
    ids=["hist_mean", "hist_mean_rolling", "ridge"],
)
def test_no_look_ahead(template):
    assert_no_look_ahead(stream_forecasts(template), ar1_panel(n_periods=200, n_assets=6), t=150)


@pytest.mark.parametrize("leak", [full_panel_fit, one_row_late])
def test_the_probe_catches_a_leaky_ridge(leak):
    with pytest.raises(AssertionError):
        assert_no_look_ahead(leak(RidgeForecaster(lags=2)), ar1_panel(n_periods=200), t=150)


def test_the_baselines_are_models_a_config_can_name():
    config = validate_config(
        {
            "name": "baselines",
            "strategies": [
                {"kind": "forecast_topk", "k": 2, "forecaster": {"model": "hist_mean"}},
                {"kind": "forecast_topk", "k": 2, "forecaster": {"model": "zero"}},
                {
                    "kind": "forecast_topk",
                    "k": 2,
                    "forecaster": {"model": "ridge", "params": {"lags": 3, "features": ["rsi"]}},
                },
            ],
        },
        "test",
    )
    built = [spec.forecaster.build(seed=0) for spec in config.strategies]
    assert [type(f) for f in built] == [HistoricalMeanForecaster, ZeroForecaster, RidgeForecaster]
    assert built[2].features == ("rsi",)
