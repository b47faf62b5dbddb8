"""The least-squares AR(p) forecaster: a known AR(1) recovered, statsmodels as the oracle,
NaN rows dropped, no look-ahead, and the config path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from statsmodels.tsa.ar_model import AutoReg

from conftest import make_prices
from dynafolio.backtest import run_backtest
from dynafolio.errors import ConfigError, DataError
from dynafolio.experiments.config import validate_config
from dynafolio.forecast.linear import ARForecaster
from dynafolio.forecast.registry import FORECASTERS
from dynafolio.history import MarketHistory
from dynafolio.strategies.registry import BuildContext
from forecast_probe import assert_no_look_ahead, full_panel_fit, one_row_late, stream_forecasts

PHI, SIGMA = 0.3, 0.03


def ar1_panel(
    n_periods: int = 400, n_assets: int = 20, phi: float = PHI, seed: int = 0
) -> pd.DataFrame:
    """Weekly prices whose log returns follow ``r_t = φ r_{t−1} + N(0, σ²)`` per asset,
    started from the stationary distribution (so the intercept is 0)."""
    rng = np.random.default_rng(seed)
    returns = np.empty((n_periods, n_assets))
    returns[0] = rng.normal(0.0, SIGMA / np.sqrt(1 - phi**2), n_assets)
    for t in range(1, n_periods):
        returns[t] = phi * returns[t - 1] + rng.normal(0.0, SIGMA, n_assets)
    return pd.DataFrame(
        100.0 * np.exp(np.cumsum(returns, axis=0)),
        index=pd.date_range("2015-01-02", periods=n_periods, freq="W-FRI", name="date"),
        columns=pd.Index([f"A{i}" for i in range(n_assets)], name="asset"),
    )


def history_of(prices: pd.DataFrame) -> MarketHistory:
    return MarketHistory(prices, prices.pct_change(fill_method=None))


def lagged(prices: pd.DataFrame, asset: str, p: int) -> pd.DataFrame:
    """Independent construction of the regression rows: ``y = r_{t+1}``, ``lag_k = r_{t+1−k}``,
    NaN kept (statsmodels drops them)."""
    r = np.log(prices[asset] / prices[asset].shift(1))
    return pd.DataFrame({"y": r, **{f"lag_{k}": r.shift(k) for k in range(1, p + 1)}})


def ols(rows: pd.DataFrame) -> np.ndarray:
    """statsmodels OLS of ``y`` on a constant and the lags, rows with NaN dropped."""
    fit = sm.OLS(rows["y"], sm.add_constant(rows.drop(columns="y")), missing="drop").fit()
    return fit.params.to_numpy()


# --- the estimates ------------------------------------------------------------------------


def test_the_pooled_fit_recovers_phi_and_forecasts_phi_r_t_plus_c():
    prices = ar1_panel()
    model = ARForecaster(p=1).fit(history_of(prices))
    c, phi = model.coef_.iloc[0]
    assert (model.coef_.to_numpy() == [c, phi]).all()  # one set of coefficients, all assets
    # 20 × 398 stacked rows: standard errors sqrt((1 − φ²)/n) ≈ 0.011 for φ, σ/√n ≈ 3e-4 for c.
    assert phi == pytest.approx(PHI, abs=0.03)
    assert c == pytest.approx(0.0, abs=1e-3)
    stacked = pd.concat([lagged(prices, asset, 1) for asset in prices.columns])
    np.testing.assert_allclose([c, phi], ols(stacked), rtol=1e-10, atol=1e-14)
    assert model.n_rows_.sum() == len(stacked.dropna()) == 20 * 398
    last = np.log(prices.iloc[-1] / prices.iloc[-2])
    np.testing.assert_allclose(model.predict(history_of(prices)), c + phi * last, rtol=1e-12)
    row = 250  # any decision date: the model reads the return of that date only
    at_row = np.log(prices.iloc[row] / prices.iloc[row - 1])
    np.testing.assert_allclose(
        model.predict(history_of(prices.iloc[: row + 1])), c + phi * at_row, rtol=1e-12
    )


@pytest.mark.parametrize("p", [1, 3])
def test_the_per_asset_fit_agrees_with_statsmodels_autoreg(p):
    prices = ar1_panel(n_assets=4)
    model = ARForecaster(p=p, pooled=False).fit(history_of(prices))
    forecast = model.predict(history_of(prices))
    for asset in prices.columns:
        r = np.log(prices[asset] / prices[asset].shift(1)).to_numpy()[1:]
        reference = AutoReg(r, lags=p, trend="c").fit()
        np.testing.assert_allclose(model.coef_.loc[asset], reference.params, atol=1e-8)
        assert forecast[asset] == pytest.approx(reference.forecast(1)[0], abs=1e-8)
    assert not np.allclose(model.coef_.iloc[0], model.coef_.iloc[1])  # one fit per asset


# --- missing prices ------------------------------------------------------------------------


def gappy_panel() -> pd.DataFrame:
    """An AR(1) panel with a 5-price gap in A1, A2 listed 12 prices before the end (10 rows
    of p = 1, fewer than min_rows = 20) and A3's last price missing."""
    prices = ar1_panel(n_periods=200, n_assets=5, seed=1)
    prices.iloc[90:95, 1] = np.nan
    prices.iloc[:-12, 2] = np.nan
    prices.iloc[-1, 3] = np.nan
    return prices


@pytest.mark.parametrize("p", [1, 2])
def test_per_asset_rows_with_a_missing_lag_or_target_are_dropped_not_filled(p):
    prices = gappy_panel()
    model = ARForecaster(p=p, pooled=False).fit(history_of(prices))
    for asset in ("A0", "A1", "A3"):
        rows = lagged(prices, asset, p)
        np.testing.assert_allclose(model.coef_.loc[asset], ols(rows), atol=1e-10)
        assert model.n_rows_[asset] == len(rows.dropna())
    # The gap costs A1 the rows whose lag or target touches one of its 6 missing returns.
    assert model.n_rows_["A1"] == model.n_rows_["A0"] - (6 + p)
    assert model.n_rows_["A2"] == 11 - p and model.coef_.loc["A2"].isna().all()
    forecast = model.predict(history_of(prices))
    assert forecast[["A2", "A3"]].isna().all()  # too few rows; no price today
    assert np.isfinite(forecast[["A0", "A1", "A4"]]).all()


def test_pooled_rows_drop_missing_values_and_a_short_asset_still_gets_a_forecast():
    prices = gappy_panel()
    model = ARForecaster(p=1).fit(history_of(prices))
    stacked = pd.concat([lagged(prices, asset, 1) for asset in prices.columns])
    np.testing.assert_allclose(model.coef_.iloc[0], ols(stacked), atol=1e-10)
    c, phi = model.coef_.iloc[0]
    forecast = model.predict(history_of(prices))
    last = np.log(prices.iloc[-1] / prices.iloc[-2])
    assert forecast["A2"] == pytest.approx(c + phi * last["A2"], rel=1e-12)  # its 10 rows
    assert np.isnan(forecast["A3"])
    early = model.predict(history_of(prices.iloc[:92]))  # A1's last return is missing then
    assert np.isnan(early["A1"]) and early.drop(["A1", "A2"]).notna().all()


# --- the forecaster contract -----------------------------------------------------------------


@pytest.mark.parametrize("pooled", [True, False])
def test_no_look_ahead(pooled):
    """Walk-forward over the full frame (refits at rows 298, 300, 302): perturbing the prices
    after row 300 changes no forecast made up to it, and does change a later one."""
    assert_no_look_ahead(stream_forecasts(ARForecaster(p=2, pooled=pooled)), ar1_panel(), t=300)


@pytest.mark.parametrize("leak", [full_panel_fit, one_row_late])
def test_the_look_ahead_probe_catches_a_leaky_ar_fit(leak):
    with pytest.raises(AssertionError, match="forecast at"):
        assert_no_look_ahead(leak(ARForecaster(p=2)), ar1_panel(), t=300)


def test_deterministic_seed_ignored_and_clone_refits_the_same():
    history = history_of(ar1_panel(n_assets=5))
    model = ARForecaster(p=2, pooled=False, seed=3)
    first = model.fit(history).predict(history)
    for other in (ARForecaster(p=2, pooled=False, seed=4), model.clone()):
        pd.testing.assert_series_equal(other.fit(history).predict(history), first, check_exact=True)
    assert model.clone().get_params() == {"p": 2, "pooled": False, "min_rows": 20, "seed": 3}


def test_bad_settings_and_too_little_data_fail_loudly():
    history = history_of(ar1_panel(n_periods=60, n_assets=3))
    with pytest.raises(RuntimeError, match="not fitted"):
        ARForecaster().predict(history)
    for bad in ({"p": 0}, {"p": True}, {"min_rows": 0}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            ARForecaster(**bad).fit(history)
    short = history_of(ar1_panel(n_periods=12, n_assets=1))
    with pytest.raises(DataError, match=r"p=1.*min_rows"):
        ARForecaster().fit(short)
    with pytest.raises(DataError, match="best asset has 10"):
        ARForecaster(pooled=False).fit(short)
    # Fewer than p + 1 prices at the decision date: nothing to forecast from.
    fitted = ARForecaster(p=3).fit(history)
    assert fitted.predict(history_of(history.prices.iloc[:3])).isna().all()


# --- the config path -------------------------------------------------------------------------


def test_a_forecast_topk_config_selects_the_ar_forecaster():
    assert FORECASTERS["ar"].cls is ARForecaster and FORECASTERS["ar"].label == "AR"
    strategy = {"kind": "forecast_topk", "k": 2, "retrain_every": 10}
    config = validate_config(
        {
            "name": "ar baseline",
            "strategies": [{**strategy, "forecaster": {"model": "ar", "params": {"p": 1}}}],
        }
    )
    (spec,) = config.strategies
    forecaster = spec.forecaster.build(seed=0)
    assert isinstance(forecaster, ARForecaster)
    assert forecaster.get_params() == {"p": 1, "pooled": True, "min_rows": 20, "seed": 0}
    with pytest.raises(ConfigError, match=r"strategies\.0\.forecaster\.params\.lags"):
        validate_config(
            {
                "name": "x",
                "strategies": [{**strategy, "forecaster": {"model": "ar", "params": {"lags": 2}}}],
            }
        )
    # The built strategy runs through the engine: a late listing is NaN until it has p returns.
    prices = make_prices(n_periods=120, n_assets=6, late=30)
    result = run_backtest(spec.build(BuildContext()), prices, prices.index[60])
    assert "AR" in result.name
    np.testing.assert_allclose(result.weights.sum(axis=1), 1.0)
    assert ((result.weights > 0).sum(axis=1) == 2).all()
