"""Hyper-parameter search: scored before the test period, reproducible, stored atomically."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import make_prices
from dynafolio.forecast.base import Forecaster
from dynafolio.studies.tune import tune_forecaster, validation_mse, zero_forecast_mse


class _LastReturn(Forecaster):
    """Predicts the last log return; records the last date it was fitted on."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def fit(self, history):
        self.fit_end_ = history.date
        return self

    def predict(self, history):
        return np.log(history.prices.iloc[-1] / history.prices.iloc[-2])


def test_validation_mse_fits_before_the_validation_rows_and_scores_one_step_ahead():
    prices = make_prices(n_periods=60, n_assets=3, late=0)
    forecaster = _LastReturn()
    value = validation_mse(forecaster, prices, first_val_row=40, end_row=50)
    assert forecaster.fit_end_ == prices.index[39]
    log = np.log(prices / prices.shift(1)).to_numpy()
    expected = np.mean((log[39:49] - log[40:50]) ** 2)
    assert value == pytest.approx(expected)
    assert zero_forecast_mse(prices, 40, 50, "log_return") == pytest.approx(
        np.mean(log[40:50] ** 2)
    )


def test_search_is_reproducible_and_never_reads_the_test_period():
    prices = make_prices(n_periods=140, n_assets=3, late=0)
    n_train = 100
    fixed = {"epochs": 2, "units": (8, 4)}
    first = tune_forecaster("stacked_gru", prices, n_train, n_trials=2, seed=3, fixed_params=fixed)
    changed = prices.copy()
    changed.iloc[n_train:] *= 3.0  # the test period
    second = tune_forecaster(
        "stacked_gru", changed, n_train, n_trials=2, seed=3, fixed_params=fixed
    )
    assert first.best_params == second.best_params
    assert first.best_value == second.best_value
    assert first.validation_dates[1] == prices.index[n_train - 1]
    assert first.best_params["units"] == [8, 4]
    json.dumps(first.best_params)  # pastes into a config file


def test_parallel_trials_give_the_serial_search():
    from dynafolio.parallel import ExecutorSettings

    prices = make_prices(n_periods=140, n_assets=3, late=0)
    fixed = {"epochs": 2, "units": (8, 4)}
    runs = [
        tune_forecaster(
            "stacked_lstm", prices, 100, n_trials=6, seed=1, fixed_params=fixed, executor=executor
        )
        for executor in (ExecutorSettings(kind="serial"), ExecutorSettings(kind="local", jobs=2))
    ]
    serial, parallel = (r.trials[["number", "value"]] for r in runs)
    assert serial.equals(parallel) and len(serial) == 6
    assert runs[0].best_params == runs[1].best_params
