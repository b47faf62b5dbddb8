"""Strategies driven by a forecaster, refitted walk-forward on the history they are given."""

from __future__ import annotations

import hashlib
from abc import abstractmethod
from collections import OrderedDict
from typing import ClassVar, Self

import numpy as np
import pandas as pd

from dynafolio.forecast.base import Forecaster
from dynafolio.history import MarketHistory
from dynafolio.strategies.base import Strategy, normalise


class ForecastStrategy(Strategy):
    """Base of every forecast-driven strategy: walk-forward fitting + an allocation rule.

    Timing: :meth:`fit` trains the forecaster on the training period (history up to the
    first decision). Every ``retrain_every`` decisions it is retrained on the history up to
    that decision — the last ``train_window`` periods (rolling) or all of it (expanding,
    ``train_window=None``). At each decision the forecast for the next period uses the
    history up to the decision date only, which the engine enforces by slicing.

    Parameters
    ----------
    forecaster : Forecaster
        Unfitted template; cloned for every refit.
    retrain_every : int, optional
        Decisions between refits; None fits once on the training period.
    train_window : int, optional
        Periods of history per fit (rolling); None uses all history (expanding).
    """

    learned: ClassVar[bool] = True
    #: Long-only rules hold equal weight over the priced assets when no tradable asset has a
    #: finite forecast (a multi-asset model whose input window has a gap in one asset); the
    #: report counts such decisions. Rules that may hold cash set this to False.
    equal_weight_without_forecast: ClassVar[bool] = True

    def __init__(
        self,
        forecaster: Forecaster,
        retrain_every: int | None = None,
        train_window: int | None = None,
    ) -> None:
        self.forecaster = forecaster
        self.retrain_every = retrain_every
        self.train_window = train_window

    def fit(self, history: MarketHistory) -> Self:
        super().fit(history)
        if self.retrain_every is not None and self.retrain_every < 1:
            raise ValueError(f"retrain_every must be >= 1 or None, got {self.retrain_every}")
        self.model_ = self._train(history)
        self.decisions_since_fit_ = 0
        self.n_fits_ = 1
        self.forecasts_: dict[pd.Timestamp, pd.Series] = {}
        self.n_without_forecast_ = 0
        return self

    def weights(self, history: MarketHistory) -> pd.Series:
        if not hasattr(self, "model_"):
            raise RuntimeError(f"{self.name} is not fitted; call fit() first")
        due = self.retrain_every is not None and self.decisions_since_fit_ >= self.retrain_every
        if due:
            self.model_ = self._train(history)
            self.decisions_since_fit_ = 0
            self.n_fits_ += 1
        forecast = self.model_.predict(history)
        self.decisions_since_fit_ += 1
        self.forecasts_[history.date] = forecast
        if self.equal_weight_without_forecast:
            known = np.isfinite(forecast.reindex(history.assets).to_numpy(dtype=float))
            if not (known & history.available.to_numpy()).any():
                self.n_without_forecast_ += 1
                return normalise(history.available.astype(float))
        return self.allocate(forecast, history)

    def report_notes(self) -> tuple[str, ...]:
        notes = super().report_notes()
        if getattr(self, "n_without_forecast_", 0):
            notes += (
                f"{self.name} held equal weight on {self.n_without_forecast_} decision(s) when "
                "no tradable asset had a forecast (e.g. a price gap inside the model's input "
                "window)",
            )
        return notes

    def forecast_frame(self) -> pd.DataFrame:
        """Every forecast made so far, ``(n_decisions, n_assets)``, indexed by decision date."""
        return pd.DataFrame(self.forecasts_).T.sort_index()

    def _train(self, history: MarketHistory) -> Forecaster:
        if self.train_window is not None:
            history = MarketHistory(
                history.prices.iloc[-self.train_window :],
                history.returns.iloc[-self.train_window :],
            )
        return self.forecaster.clone().fit(history)

    @abstractmethod
    def allocate(self, forecast: pd.Series, history: MarketHistory) -> pd.Series:
        """Target weights from the forecast (indexed by asset) and the history up to today."""


_FITTED: OrderedDict[str, Forecaster] = OrderedDict()
_CACHE_SIZE = 256


def fit_shared(template: Forecaster, history: MarketHistory) -> Forecaster:
    """Fit a clone of ``template`` on ``history``, reusing an identical earlier fit.

    Several allocation rules often sit on the same forecaster (S2 compares four), and a fit
    is a pure function of the forecaster's parameters (seed included) and the data, so the
    fitted model is shared instead of trained again. The key covers the class, every
    parameter and a hash of the prices, so a different seed, window or datum refits.
    """
    digest = hashlib.sha256()
    digest.update(type(template).__qualname__.encode())
    digest.update(repr(sorted(template.get_params().items())).encode())
    digest.update(repr(list(history.prices.columns)).encode())
    digest.update(pd.util.hash_pandas_object(history.prices, index=True).to_numpy().tobytes())
    key = digest.hexdigest()
    if key in _FITTED:
        _FITTED.move_to_end(key)
        return _FITTED[key]
    fitted = template.clone().fit(history)
    _FITTED[key] = fitted
    if len(_FITTED) > _CACHE_SIZE:
        _FITTED.popitem(last=False)
    return fitted


def clear_fitted_cache() -> None:
    """Forget every shared fit (tests that count fits call this first)."""
    _FITTED.clear()
