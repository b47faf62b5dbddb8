"""S4's price forecasters: next-period prices from windows of past prices.

=================================  ==============================================================
Forecaster                         Model
=================================  ==============================================================
UnivariatePriceLSTMForecaster      the source's model: one 2-layer LSTM(256) per stock on its own
                                   24-week price window (x_t ∈ R), early-stopped per stock;
                                   trained batched across stocks (:class:`~dynafolio.forecast.
                                   stacked.BatchedLSTM`)
PriceLSTMForecaster                one 2-layer LSTM(256) over all stocks' MinMax-scaled prices
                                   (multi-output)
=================================  ==============================================================

Scaling. The source scales each stock's prices by their training range (MinMax), so a price
above that range maps above 1 — in 2024 NVDA trades at three times the top of its 2018–2023
range and such a model predicts a fall back into the range. ``scaling="window"`` is the fix a
practitioner would use: every window is divided by its own last price, so the model reads and
predicts relative moves (``P_{t−k}/P_t − 1`` → ``P_{t+1}/P_t − 1``) whatever the price level.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Self

import numpy as np
import pandas as pd
import torch
from torch import nn

from dynafolio.errors import ConfigError, DataError
from dynafolio.forecast.base import Forecaster
from dynafolio.forecast.lstm import RecurrentRegressor, check_settings
from dynafolio.forecast.panel import PanelForecaster
from dynafolio.forecast.registry import register_forecaster
from dynafolio.forecast.scaling import MinMaxScaler
from dynafolio.forecast.stacked import BatchedLSTM, train_stacked
from dynafolio.forecast.state import FittedState, module_arrays, restore_module, take
from dynafolio.forecast.training import TrainSettings, seeded
from dynafolio.forecast.windows import make_windows, stack_windows
from dynafolio.history import MarketHistory
from dynafolio.progress import progress_bar
from dynafolio.settings import parameters

__all__ = ["PriceLSTMForecaster", "UnivariatePriceLSTMForecaster"]

PriceScaling = Literal["minmax", "window"]


@parameters
class UnivariatePriceLSTMForecaster(Forecaster):
    """S4 as the source describes it: one univariate price model per stock.

    Stock ``i``'s model reads the last ``lookback`` prices of stock ``i`` only and predicts
    its next price; the models are independent (own weights, own early stop — the source set
    epochs per stock) and trained together as one :class:`BatchedLSTM`. A stock with fewer
    than ``min_windows`` complete windows gets no model (NaN forecast).

    Parameters
    ----------
    lookback : int, default 24
        Weeks (rows) of prices per window.
    hidden : int, default 256
    n_layers : int, default 2
    dropout : float, default 0.0
        After each LSTM layer (the source used none).
    scaling : {"minmax", "window"}, default "minmax"
        ``minmax``: each stock's prices mapped by its fit history's [min, max] (the source);
        ``window``: each window divided by its last price (module docstring).
    epochs, batch_size, lr, patience, val_fraction, grad_clip, seed
        Training parameters (:mod:`dynafolio.forecast.lstm`); source: 100, 16, 1e-3, 10, 0.1.
    min_windows : int, default 20
    """

    target: ClassVar[Literal["log_return", "price"]] = "price"

    lookback: int = 24
    hidden: int = 256
    n_layers: int = 2
    dropout: float = 0.0
    scaling: PriceScaling = "minmax"
    epochs: int = 100
    batch_size: int = 16
    lr: float = 1e-3
    patience: int | None = 10
    val_fraction: float = 0.1
    grad_clip: float | None = None
    min_windows: int = 20
    seed: int = 0

    def fit(self, history: MarketHistory) -> Self:
        check_settings(self, ("lookback", "hidden", "n_layers", "min_windows"), self.dropout)
        if self.scaling not in ("minmax", "window"):
            raise ConfigError(
                f"{type(self).__name__}: scaling must be 'minmax' or 'window', got {self.scaling!r}"
            )
        settings = TrainSettings(
            self.lr, 0.0, self.batch_size, self.epochs, self.patience, self.val_fraction,
            self.grad_clip,
        )  # fmt: skip
        prices = history.prices.to_numpy(dtype=np.float64)
        self.scaler_ = MinMaxScaler.fit(prices)  # fit history only; per stock
        windows = []
        for j in range(prices.shape[1]):
            column = MinMaxScaler(self.scaler_.low[[j]], self.scaler_.span[[j]])
            windows.append(self._one_stock(prices[:, [j]], column))
        keep = [j for j, (X, _) in enumerate(windows) if len(X) >= self.min_windows]
        if not keep:
            raise DataError(
                f"{type(self).__name__}: no stock has {self.min_windows} windows of "
                f"lookback={self.lookback} consecutive prices in {len(prices)} rows; give a "
                "longer history or lower lookback"
            )
        with seeded(self.seed):
            network = BatchedLSTM(len(keep), 1, self.hidden, 1, self.dropout, self.n_layers)
            X, y, counts = stack_windows([windows[j] for j in keep])
            progress = progress_bar(f"training {type(self).__name__}", self.epochs)
            rng = np.random.default_rng(self.seed)
            self.log_ = train_stacked(network, X, y, counts, settings, rng=rng, progress=progress)
        self.assets_ = history.prices.columns[keep]
        self.scaler_ = MinMaxScaler(self.scaler_.low[keep], self.scaler_.span[keep])
        self.network_ = network.eval()
        return self

    def fitted_state(self) -> FittedState:
        self._check_fitted()
        arrays = module_arrays(self.network_)
        arrays |= {"scaler.low": self.scaler_.low, "scaler.span": self.scaler_.span}
        return FittedState(tuple(map(str, self.assets_)), arrays)

    def restore(self, state: FittedState) -> Self:
        n = len(state.assets)
        network = BatchedLSTM(n, 1, self.hidden, 1, self.dropout, self.n_layers)
        self.network_ = restore_module(network, state.arrays)
        self.scaler_ = MinMaxScaler(
            take(state.arrays, "scaler.low", (n,)), take(state.arrays, "scaler.span", (n,))
        )
        self.assets_ = pd.Index(state.assets)
        return self

    def _one_stock(self, prices: np.ndarray, scaler: MinMaxScaler) -> tuple[np.ndarray, np.ndarray]:
        """``(X, y)`` of one stock's prices ``(n_rows, 1)``, scaled as the model reads them."""
        if self.scaling == "minmax":
            return make_windows(scaler.transform(prices), self.lookback)
        X, y = make_windows(prices, self.lookback)
        last = X[:, -1:, :]  # each window's own last price
        return X / last - 1.0, y / last[:, 0] - 1.0

    def predict(self, history: MarketHistory) -> pd.Series:
        self._check_fitted()
        tail = history.prices.reindex(columns=self.assets_).iloc[-self.lookback :]
        forecast = pd.Series(np.nan, index=self.assets_, dtype=float)
        if len(tail) == self.lookback:
            window = tail.to_numpy(dtype=np.float64).T[:, :, None]  # (stock, lookback, 1)
            if self.scaling == "minmax":
                x = self.scaler_.transform(window[:, :, 0].T).T[:, :, None]
            else:
                x = window / window[:, -1:, :] - 1.0
            usable = np.isfinite(x).all(axis=(1, 2))
            with torch.no_grad():
                out = self.network_(torch.as_tensor(np.nan_to_num(x), dtype=torch.float32)[:, None])
            scaled = out[:, 0, 0].double().numpy()
            if self.scaling == "minmax":
                values = self.scaler_.inverse(scaled)
            else:
                values = window[:, -1, 0] * (1.0 + scaled)
            forecast[:] = np.where(usable, values, np.nan)
        return forecast.reindex(history.assets)


@parameters
class PriceLSTMForecaster(PanelForecaster):
    """S4: next-period prices of all assets from MinMax-scaled price windows.

    ``LSTM(hidden) × n_layers → last hidden state → Linear(N)``, MSE on the next row of
    scaled prices, inverse-scaled to prices (``target = "price"``). A later price above
    the fit history's range maps above 1 (not clipped).

    Parameters
    ----------
    lookback : int, default 24
        Weeks (rows) of prices per window.
    hidden : int, default 256
    n_layers : int, default 2
    dropout : float, default 0.0
        After each LSTM layer (the source used none).
    epochs, batch_size, lr, patience, val_fraction, grad_clip, seed
        Training parameters (module docstring); source: 100, 16, 1e-3, 10, 0.1.
    """

    target: ClassVar[Literal["log_return", "price"]] = "price"
    extra_rows: ClassVar[int] = 0

    lookback: int = 24
    hidden: int = 256
    n_layers: int = 2
    dropout: float = 0.0
    epochs: int = 100
    batch_size: int = 16
    lr: float = 1e-3
    patience: int | None = 10
    val_fraction: float = 0.1
    grad_clip: float | None = None
    seed: int = 0

    def _values(self, prices: pd.DataFrame) -> pd.DataFrame:
        return prices.astype(np.float64)

    def _network(self, n_inputs: int, n_outputs: int) -> nn.Module:
        check_settings(self, ("lookback", "hidden", "n_layers"), self.dropout)
        units = (self.hidden,) * self.n_layers
        return RecurrentRegressor(n_inputs, units, n_outputs, self.dropout)


def _search_space(trial: Any) -> dict[str, Any]:
    """``dynafolio tune``'s draw of a price LSTM's hyper-parameters."""
    return {
        "hidden": trial.suggest_categorical("hidden", [64, 128, 256]),
        "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
        "lookback": trial.suggest_categorical("lookback", [12, 24, 36]),
    }


register_forecaster(
    "price_lstm_per_stock",
    UnivariatePriceLSTMForecaster,
    label="LSTM per stock",
    search_space=_search_space,
)
register_forecaster(
    "price_lstm", PriceLSTMForecaster, label="LSTM (multi-output)", search_space=_search_space
)
