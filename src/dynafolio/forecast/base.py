"""The forecaster contract shared by every model (LSTM, GRU, Transformer, ...)."""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

import pandas as pd

from dynafolio.history import MarketHistory

if TYPE_CHECKING:
    from dynafolio.forecast.state import FittedState


class Forecaster(ABC):
    """Predicts, at the close of ``history.date``, one value per asset for the next period.

    Contract (scikit-learn habit): ``__init__`` only stores keyword arguments (including
    ``seed``); :meth:`fit` learns scalers and weights from the history it is given — and
    nothing else — sets trailing-underscore state and returns ``self``; :meth:`predict` uses
    the fitted state and the history up to the decision date only. Same seed and same data
    give the same predictions.

    ``target`` says what is predicted: ``"log_return"`` (``ln(P_{t+1}/P_t)``) or
    ``"price"`` (``P_{t+1}``).
    """

    target: ClassVar[Literal["log_return", "price"]] = "log_return"

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments (public attributes without a trailing underscore)."""
        return {
            k: v for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_")
        }

    def clone(self) -> Self:
        """An unfitted copy with the same parameters (for refitting per walk-forward fold)."""
        return type(self)(**copy.deepcopy(self.get_params()))

    @abstractmethod
    def fit(self, history: MarketHistory) -> Self:
        """Learn from ``history`` (prices and returns up to its last date)."""

    @abstractmethod
    def predict(self, history: MarketHistory) -> pd.Series:
        """Forecast for the period after ``history.date``, indexed by asset.

        NaN for assets the model cannot forecast (e.g. too little history).
        """

    def fitted_state(self) -> FittedState:
        """What :meth:`fit` learned, as arrays and sizes (:mod:`dynafolio.forecast.state`),
        so a run can save the model and a later decision can reuse it."""
        raise NotImplementedError(f"{type(self).__name__} does not define fitted_state()")

    def restore(self, state: FittedState) -> Self:
        """Become the fitted model of ``state`` (from :meth:`fitted_state` of a model with
        these parameters); raises :class:`~dynafolio.errors.DataError` if it does not fit."""
        raise NotImplementedError(f"{type(self).__name__} does not define restore()")

    def _check_fitted(self) -> None:
        if not any(k.endswith("_") and not k.startswith("_") for k in vars(self)):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")
