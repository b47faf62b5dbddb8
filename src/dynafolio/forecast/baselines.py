"""Simple forecasters a learned one has to beat: zero, the historical mean, ridge regression.

=============================  ==============  ============================================
Forecaster                     model           forecast of ``ln(P_{t+1}/P_t)`` at the close of t
=============================  ==============  ============================================
ZeroForecaster                 ``zero``        0: no move
HistoricalMeanForecaster       ``hist_mean``   each asset's mean log return up to t (all of
                                               its history, or the last ``window`` periods)
RidgeForecaster                ``ridge``       ridge regression, pooled over assets, on the last
                                               ``lags`` log returns and any ``model_inputs``
=============================  ==============  ============================================

With the least-squares AR(p) of :mod:`dynafolio.forecast.linear` these are the yardsticks of
every forecast table (:mod:`dynafolio.results.forecasts`): the historical mean is the benchmark
of the out-of-sample R² and of the Diebold–Mariano test. Like any forecaster they can also
drive a strategy (``forecaster: {model: hist_mean}``).

Timing: each reads the history up to the decision date only; the ridge fit learns from the
history it is given (its scaler included).
"""

from __future__ import annotations

from typing import Annotated, Self

import numpy as np
import pandas as pd
from pydantic import Field
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from dynafolio.errors import DataError
from dynafolio.features import prices_to_returns
from dynafolio.forecast.base import Forecaster
from dynafolio.forecast.registry import register_forecaster
from dynafolio.forecast.state import FittedState, take
from dynafolio.history import MarketHistory
from dynafolio.model_inputs import FeatureName, FeatureSet
from dynafolio.settings import parameters

__all__ = ["HistoricalMeanForecaster", "RidgeForecaster", "ZeroForecaster"]


def _log_returns(prices: pd.DataFrame) -> np.ndarray:
    """``ln(P_t/P_{t−1})`` on every row of ``prices`` (NaN on the first and across gaps)."""
    return np.log(prices.astype(float)).diff().to_numpy()


class RuleForecaster(Forecaster):
    """A forecaster with nothing to learn: :meth:`fit` only marks it fitted."""

    def fit(self, history: MarketHistory) -> Self:
        self.fitted_ = True
        return self

    def fitted_state(self) -> FittedState:
        self._check_fitted()
        return FittedState()

    def restore(self, state: FittedState) -> Self:
        self.fitted_ = True
        return self


@parameters
class ZeroForecaster(RuleForecaster):
    """Forecasts no move: 0 for every asset priced at the decision date."""

    seed: int = 0

    def predict(self, history: MarketHistory) -> pd.Series:
        self._check_fitted()
        return pd.Series(0.0, index=history.assets).where(history.available)


@parameters
class HistoricalMeanForecaster(RuleForecaster):
    """Each asset's mean log return over the history up to the decision date — the
    benchmark of Campbell & Thompson's out-of-sample R².

    Parameters
    ----------
    window : int, optional
        Periods of returns averaged (rolling); None averages all of them (expanding).
    """

    window: Annotated[int | None, Field(ge=1)] = None
    seed: int = 0

    def predict(self, history: MarketHistory) -> pd.Series:
        self._check_fitted()
        returns = prices_to_returns(history.prices, "log")
        if self.window is not None:
            returns = returns.iloc[-self.window :]
        return returns.mean().where(history.available)


@parameters
class RidgeForecaster(Forecaster):
    """Ridge regression of the next log return on the last ``lags`` log returns and the
    chosen ``model_inputs`` at t, one regression pooled over every asset's rows.

    Inputs are standardised with the fit history's means and deviations
    (scikit-learn's ``StandardScaler`` and ``Ridge`` in one pipeline); rows with a missing
    value are dropped, never filled.

    Parameters
    ----------
    lags : int
        Log returns per row, the latest first.
    features : tuple of str
        Extra per-asset inputs at t (:mod:`dynafolio.model_inputs`); none by default.
    alpha : float
        The ridge penalty on the standardised coefficients.
    market_asset : str
        The market index of the ``regime`` feature.
    min_rows : int
        Fewest complete rows the fit needs.
    """

    lags: Annotated[int, Field(ge=1)] = 5
    features: tuple[FeatureName, ...] = ()
    alpha: Annotated[float, Field(gt=0.0)] = 1.0
    market_asset: str = "SPY"
    min_rows: Annotated[int, Field(ge=2)] = 30
    seed: int = 0

    def _inputs(self, prices: pd.DataFrame) -> np.ndarray:
        """Rows ``(n_dates, n_assets, n_inputs)``: lags of the log return, then features."""
        returns = _log_returns(prices)
        lagged = [np.roll(returns, k, axis=0) for k in range(self.lags)]
        for k, values in enumerate(lagged):
            values[:k] = np.nan
        columns = np.stack(lagged, axis=-1)
        if self.features:
            built = FeatureSet(tuple(self.features), market=self.market_asset).build(prices)
            columns = np.concatenate([columns, built], axis=-1)
        return columns

    def fit(self, history: MarketHistory) -> Self:
        prices = history.prices
        inputs = self._inputs(prices)[:-1]  # the last row has no next return to learn
        target = _log_returns(prices)[1:]
        X = inputs.reshape(-1, inputs.shape[-1])
        y = target.reshape(-1)
        complete = np.isfinite(X).all(axis=1) & np.isfinite(y)
        if complete.sum() < self.min_rows:
            raise DataError(
                f"{type(self).__name__}: {int(complete.sum())} complete rows of {self.lags} "
                f"lagged returns{' and features' if self.features else ''} in "
                f"{len(prices)} price rows, at least {self.min_rows} needed; give a longer "
                "history or fewer lags"
            )
        self.model_ = make_pipeline(StandardScaler(), Ridge(alpha=self.alpha))
        self.model_.fit(X[complete], y[complete])
        self.assets_ = prices.columns
        return self

    def fitted_state(self) -> FittedState:
        self._check_fitted()
        scaler, ridge = self.model_[0], self.model_[-1]
        arrays = {
            "scaler.mean": scaler.mean_,
            "scaler.var": scaler.var_,
            "scaler.scale": scaler.scale_,
            "ridge.coef": np.asarray(ridge.coef_, dtype=float),
            "ridge.intercept": np.atleast_1d(np.asarray(ridge.intercept_, dtype=float)),
        }
        sizes = {"n_samples": int(scaler.n_samples_seen_)}
        return FittedState(tuple(map(str, self.assets_)), arrays, sizes)

    def restore(self, state: FittedState) -> Self:
        # scikit-learn's fitted attributes set from the saved arrays: the same arithmetic
        # as the fitted pipeline, without unpickling one.
        n_inputs = self.lags + (
            FeatureSet(tuple(self.features), market=self.market_asset).n_columns
            if self.features
            else 0
        )
        scaler = StandardScaler()
        scaler.mean_ = take(state.arrays, "scaler.mean", (n_inputs,))
        scaler.var_ = take(state.arrays, "scaler.var", (n_inputs,))
        scaler.scale_ = take(state.arrays, "scaler.scale", (n_inputs,))
        scaler.n_samples_seen_ = state.sizes.get("n_samples", 0)
        scaler.n_features_in_ = n_inputs
        ridge = Ridge(alpha=self.alpha)
        ridge.coef_ = take(state.arrays, "ridge.coef", (n_inputs,))
        ridge.intercept_ = float(take(state.arrays, "ridge.intercept", (1,))[0])
        ridge.n_features_in_ = n_inputs
        self.model_ = make_pipeline(scaler, ridge)
        self.assets_ = pd.Index(state.assets)
        return self

    def predict(self, history: MarketHistory) -> pd.Series:
        self._check_fitted()
        prices = history.prices.reindex(columns=self.assets_)
        last = self._inputs(prices)[-1]
        forecast = np.full(len(last), np.nan)
        known = np.isfinite(last).all(axis=1)
        if known.any():
            forecast[known] = self.model_.predict(last[known])
        return pd.Series(forecast, index=self.assets_).reindex(history.assets)


register_forecaster("zero", ZeroForecaster, label="Zero")
register_forecaster("hist_mean", HistoricalMeanForecaster, label="Historical mean")
register_forecaster("ridge", RidgeForecaster, label="Ridge")
