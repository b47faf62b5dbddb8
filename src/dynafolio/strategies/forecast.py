"""Strategies driven by a forecaster, refitted walk-forward on the history they are given."""

from __future__ import annotations

import hashlib
from abc import abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Annotated, ClassVar, Self

import numpy as np
import pandas as pd
from pydantic import Field

from dynafolio.forecast.base import Forecaster
from dynafolio.history import MarketHistory
from dynafolio.settings import parameters
from dynafolio.splits import RefitSchedule
from dynafolio.strategies.base import Strategy, StreamSpec, normalise


class ForecastStream:
    """Walk-forward forecasts of one forecaster: the refit schedule applied call by call.

    :meth:`start` marks the first refit point (the first decision); each :meth:`forecast`
    refits when the :class:`~dynafolio.splits.RefitSchedule` says so — on the history up to
    that decision — and predicts the next period from the history up to the decision. Fits go
    through :func:`fit_shared`, so identical fits are trained once per process.

    A stream can *replay* forecasts computed elsewhere (``replay``: decision date → forecast,
    made by :func:`compute_stream` on the same data, forecaster and schedule, e.g. by another
    worker): a replayed date is not recomputed, and a model is trained only when a date is
    missing from the replay. Replayed and live forecasts are identical (tested), which is what
    lets a parallel run share one forecaster fit between several strategies.
    """

    def __init__(
        self,
        template: Forecaster,
        schedule: RefitSchedule,
        replay: dict[pd.Timestamp, pd.Series] | None = None,
        fitted: Mapping[pd.Timestamp, Forecaster] | None = None,
        on_fit: Callable[[Forecaster, MarketHistory], None] | None = None,
    ) -> None:
        self.template = template
        self.schedule = schedule
        self.replay = replay or {}
        #: Refit date -> a model fitted then (loaded from a run's forecasters/): used instead
        #: of fitting. ``on_fit`` is told of every model the stream fits or is given.
        self.fitted = fitted or {}
        self.on_fit = on_fit
        self.n_fits = 0
        #: Every forecast made or replayed, by decision date (for forecast evaluation).
        self.made: dict[pd.Timestamp, pd.Series] = {}
        self.model: Forecaster | None = None
        self._fit_history: MarketHistory | None = None
        self._since_fit = 0

    def start(self, history: MarketHistory, eager: bool = True) -> None:
        """Make ``history`` (up to the first decision) the first refit point."""
        self._refit_point(history)
        if eager and history.date not in self.replay:
            self._fit()

    def forecast(self, history: MarketHistory) -> pd.Series:
        """The forecast for the period after ``history.date`` (refitting first when due)."""
        if self._fit_history is None or self.schedule.due(self._since_fit):
            self._refit_point(history)
        self._since_fit += 1
        if history.date in self.replay:
            forecast = self.replay[history.date]
        else:
            if self.model is None:
                self._fit()
            forecast = self.model.predict(history)
        self.made[history.date] = forecast
        return forecast

    def frame(self) -> pd.DataFrame:
        """The forecasts made so far, decision dates × assets."""
        if not self.made:
            return pd.DataFrame()
        return pd.DataFrame(self.made).T.sort_index()

    def _refit_point(self, history: MarketHistory) -> None:
        self._fit_history = self.schedule.training_history(history)
        self.model = None
        self._since_fit = 0
        self.n_fits += 1

    def _fit(self) -> None:
        history = self._fit_history
        given = self.fitted.get(history.date)
        self.model = fit_shared(self.template, history) if given is None else given
        if self.on_fit is not None:
            self.on_fit(self.model, history)


def compute_stream(
    template: Forecaster,
    schedule: RefitSchedule,
    prices: pd.DataFrame,
    rows: list[int],
    first_row: int = 0,
    fitted: Mapping[pd.Timestamp, Forecaster] | None = None,
    on_fit: Callable[[Forecaster, MarketHistory], None] | None = None,
) -> dict[pd.Timestamp, pd.Series]:
    """The forecasts a :class:`ForecastStream` makes at decision ``rows`` of ``prices``.

    Each decision sees ``prices.iloc[first_row : row + 1]`` exactly as
    :func:`~dynafolio.backtest.engine.run_backtest` slices it, so the result can be replayed
    by a strategy backtested on the same frame. ``fitted`` and ``on_fit`` as for
    :class:`ForecastStream` (saved models used, fitted models handed over).
    """
    returns = prices.pct_change(fill_method=None)
    stream = ForecastStream(template, schedule, fitted=fitted, on_fit=on_fit)
    out: dict[pd.Timestamp, pd.Series] = {}
    for position, row in enumerate(rows):
        history = MarketHistory(prices.iloc[first_row : row + 1], returns.iloc[first_row : row + 1])
        if position == 0:
            stream.start(history)
        out[history.date] = stream.forecast(history)
    return out


@parameters
class ForecastStrategy(Strategy):
    """Base of every forecast-driven strategy: walk-forward forecasts + an allocation rule.

    Timing: the forecaster is trained at the first decision on the history up to it (the
    training period) and, every ``retrain_every`` decisions, retrained on the history up to
    that decision — the last ``train_window`` periods (rolling) or all of it (expanding,
    ``train_window=None``): :class:`~dynafolio.splits.RefitSchedule`. At each decision the
    forecast for the next period uses the history up to the decision date only, which the
    engine enforces by slicing.

    Parameters
    ----------
    forecaster : Forecaster
        Unfitted template; cloned for every refit.
    retrain_every : int, optional
        Decisions between refits; None fits once on the training period.
    train_window : int, optional
        Periods of history per fit (rolling); None uses all history (expanding).
    forecaster_label : str, optional
        Model family shown in the name ("LSTM", "GRU"); default from the forecaster's class.
    """

    learned: ClassVar[bool] = True
    #: Long-only rules hold equal weight over the priced assets when no tradable asset has a
    #: finite forecast (a multi-asset model whose input window has a gap in one asset); the
    #: report counts such decisions. Rules that may hold cash set this to False.
    equal_weight_without_forecast: ClassVar[bool] = True

    forecaster: Forecaster
    retrain_every: Annotated[
        int | None,
        Field(ge=1, description="decisions between walk-forward refits (None: fit once)"),
    ] = None
    train_window: Annotated[
        int | None, Field(ge=10, description="periods of history per fit (None: expanding)")
    ] = None
    forecaster_label: str | None = None

    @property
    def family(self) -> str:
        """The forecaster's family in display names: ``forecaster_label`` (its registered
        label, "LSTM", "GRU") or else its class name without "Forecaster"."""
        if self.forecaster_label:
            return self.forecaster_label
        name = type(self.forecaster).__name__
        return name.removesuffix("Forecaster") or name

    @property
    def schedule(self) -> RefitSchedule:
        return RefitSchedule(self.retrain_every, self.train_window)

    def streams(self, decision_rows: list[int], first_row: int = 0) -> dict[str, StreamSpec]:
        return {"test": StreamSpec(self.forecaster, self.schedule, tuple(decision_rows), first_row)}

    def fit(self, history: MarketHistory) -> Self:
        super().fit(history)
        replay = getattr(self, "replay_", {}).get("test")
        self.stream_ = ForecastStream(self.forecaster, self.schedule, replay)
        self.stream_.start(history)
        self.forecasts_: dict[pd.Timestamp, pd.Series] = {}
        self.n_without_forecast_ = 0
        return self

    @property
    def n_fits_(self) -> int:
        return self.stream_.n_fits

    def weights(self, history: MarketHistory) -> pd.Series:
        if not hasattr(self, "stream_"):
            raise RuntimeError(f"{self.name} is not fitted; call fit() first")
        forecast = self.stream_.forecast(history)
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

    def forecasts_made(self) -> dict[str, pd.DataFrame]:
        return {"test": self.stream_.frame()} if hasattr(self, "stream_") else {}

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
