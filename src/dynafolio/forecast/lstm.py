"""Recurrent forecasters of next-period log returns: S1's per-asset LSTM, and the recurrent
regressor the other forecasters build on.

=============================  ======  ===================================================
Forecaster                     System  Model
=============================  ======  ===================================================
UnivariateLSTMForecaster       S1      one LSTM per asset on its own z-scored log returns
=============================  ======  ===================================================

The multi-output forecasters of S2 are in :mod:`dynafolio.forecast.panel`, S4's price
models in :mod:`dynafolio.forecast.price`.

Timing: :meth:`fit` sees only the history it is given (scalers are fitted on it, the
validation tail is its latest windows); :meth:`predict` at the close of ``history.date``
reads only the last ``lookback`` rows (``lookback + 1`` prices for returns) and forecasts
the period after it. Predictions are in original units (log return ``ln(P_{t+1}/P_t)``, or
the price ``P_{t+1}`` for ``target = "price"``).

Training parameters shared by every class, see
:class:`~dynafolio.forecast.training.TrainSettings`: ``lr`` (Adam), ``batch_size``,
``epochs`` (upper bound on the training epochs), ``patience`` (early stopping on the chronological
validation tail; None = no early stop), ``val_fraction`` (share of the latest windows used
for validation), ``grad_clip`` (None = no clipping), ``seed`` (initialisation, dropout and
shuffling: same seed and data give bit-identical predictions; the caller's global random
state is left untouched).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Self

import numpy as np
import pandas as pd
import torch
from torch import nn

from dynafolio.errors import ConfigError, DataError
from dynafolio.features import prices_to_returns
from dynafolio.forecast.base import Forecaster
from dynafolio.forecast.registry import register_forecaster
from dynafolio.forecast.scaling import ZScoreScaler
from dynafolio.forecast.stacked import BatchedLSTM, train_stacked
from dynafolio.forecast.state import FittedState, module_arrays, restore_module, take
from dynafolio.forecast.training import TrainSettings, seeded, train_network
from dynafolio.forecast.windows import last_window, make_windows, stack_windows
from dynafolio.history import MarketHistory
from dynafolio.progress import progress_bar
from dynafolio.settings import parameters

__all__ = ["RecurrentRegressor", "UnivariateLSTMForecaster"]


def check_settings(owner: object, ints: Sequence[str] = (), dropout: float | None = None) -> None:
    """Raise ConfigError naming the constructor arguments that are out of range."""
    bad = [n for n in ints if isinstance(getattr(owner, n), bool) or not getattr(owner, n) >= 1]
    if bad:
        values = ", ".join(f"{n}={getattr(owner, n)!r}" for n in bad)
        raise ConfigError(f"{type(owner).__name__}: {values} must be whole numbers >= 1")
    if dropout is not None and not 0 <= dropout < 1:
        raise ConfigError(f"{type(owner).__name__}: dropout must be in [0, 1), got {dropout!r}")


class RecurrentRegressor(nn.Module):
    """Stacked LSTM/GRU layers, each followed by dropout, then a linear head on the last step.

    ``units=(hidden,)`` is S1's per-asset model, ``(64, 32)`` S2's and ``(256, 256)`` with
    no dropout S4's (identical to ``nn.LSTM(num_layers=2)``). Maps ``(batch, lookback,
    n_inputs)`` to ``(batch, n_outputs)``.
    """

    def __init__(
        self,
        n_inputs: int,
        units: Sequence[int],
        n_outputs: int,
        dropout: float,
        cell: Literal["lstm", "gru"] = "lstm",
    ) -> None:
        super().__init__()
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        sizes = [n_inputs, *units]
        self.layers = nn.ModuleList(
            rnn(a, b, batch_first=True) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(sizes[-1], n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = self.dropout(layer(x)[0])
        return self.head(x[:, -1])


@parameters
class UnivariateLSTMForecaster(Forecaster):
    """S1: one LSTM per asset, input its own z-scored log returns, output the next one.

    Each asset is trained on its own NaN-free windows only (an asset listed late has fewer);
    an asset with fewer than ``min_windows`` windows is skipped and forecast as NaN. The
    z-score statistics are per asset, from the fit history only; the target is z-scored too
    and inverse-transformed at prediction.

    Parameters
    ----------
    lookback : int, default 30
        Weeks (rows) of returns per input window.
    hidden : int, default 64
        LSTM units.
    dropout : float, default 0.2
        Dropout on the LSTM's last output, before the linear head.
    lr, weight_decay, batch_size, epochs, patience, val_fraction, grad_clip, seed
        Training parameters (module docstring), applied to each asset's model separately
        (per-asset early stopping); ``weight_decay`` is Adam's L2 penalty.
    epoch_samples : int or None, default 16384
        At most this many training windows per epoch, a fresh random draw each epoch
        (:class:`~dynafolio.forecast.training.TrainSettings`); None trains on every window
        every epoch. With ``shared``, the windows of all assets are pooled, so an epoch grows
        with the universe: 34 assets and a few hundred weeks give fewer than 16,384
        windows (every window every epoch, as without the cap), while 1,000 assets give
        over 200,000 and an epoch would cost 13 times as much for a model of 17,000
        weights. Each model of the per-asset variants has its own few hundred windows.
    min_windows : int, default 20
        Fewest windows an asset needs to get a model.
    batched : bool, default True
        Train all assets' models together with :class:`BatchedLSTM`, or one ``nn.LSTM``
        after another. Same model and procedure either way (only the random streams
        differ); the default is the faster one in ``benchmarks/lstm_speed.py``.
    shared : bool, default True
        One univariate LSTM for all assets (a *global* model: the same weights read each
        asset's own z-scored returns), trained on every asset's windows pooled and ordered
        by date, so the validation tail is the latest dates of all assets. ``False`` is the
        source's model, one LSTM per asset: with a few hundred weekly returns per asset it
        cannot find even a strong AR(1) edge (cross-sectional IC 0.02-0.09 against the
        least-squares AR fit's 0.20 on the ``momentum`` market with φ 0.2, 20 assets, 255
        weeks), while the shared model, seeing twenty times the samples, reaches 0.18-0.19.
    """

    lookback: int = 30
    hidden: int = 64
    dropout: float = 0.2
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 64
    epochs: int = 40
    patience: int | None = 5
    val_fraction: float = 0.1
    grad_clip: float | None = None
    epoch_samples: int | None = 16_384
    min_windows: int = 20
    batched: bool = True
    shared: bool = True
    seed: int = 0

    def fit(self, history: MarketHistory) -> Self:
        check_settings(self, ("lookback", "hidden", "min_windows"), self.dropout)
        settings = TrainSettings(
            self.lr, self.weight_decay, self.batch_size, self.epochs, self.patience,
            self.val_fraction, self.grad_clip, self.epoch_samples,
        )  # fmt: skip
        returns = prices_to_returns(history.prices, "log")
        scaler = ZScoreScaler.fit(returns.to_numpy())
        scaled = scaler.transform(returns.to_numpy())
        windows = [make_windows(scaled[:, [j]], self.lookback) for j in range(scaled.shape[1])]
        keep = [j for j, (X, _) in enumerate(windows) if len(X) >= self.min_windows]
        if not keep:
            most = max((len(X) for X, _ in windows), default=0)
            raise DataError(
                f"{type(self).__name__}: no asset has enough history: a model needs "
                f"min_windows={self.min_windows} windows of lookback={self.lookback} returns "
                f"(lookback + min_windows + 1 consecutive prices); the best asset has {most} "
                f"in {len(history.prices)} rows. Give a longer history or lower lookback."
            )
        name = type(self).__name__
        with seeded(self.seed):
            rng = np.random.default_rng(self.seed)
            if self.shared:
                progress = progress_bar(f"training {name}", self.epochs)
                network = BatchedLSTM(1, 1, self.hidden, 1, self.dropout)
                X, y = _pooled_by_date(scaled[:, keep], self.lookback)
                self.log_ = train_stacked(
                    network, X[None], y[None], np.array([len(X)]), settings, rng=rng,
                    progress=progress,
                )  # fmt: skip
            elif self.batched:
                progress = progress_bar(f"training {name}", self.epochs)
                network = BatchedLSTM(len(keep), 1, self.hidden, 1, self.dropout)
                X, y, counts = stack_windows([windows[j] for j in keep])
                self.log_ = train_stacked(
                    network, X, y, counts, settings, rng=rng, progress=progress
                )
            else:
                progress = progress_bar(f"training {name}", self.epochs * len(keep))
                models = [RecurrentRegressor(1, (self.hidden,), 1, self.dropout) for _ in keep]
                self.log_ = [
                    train_network(model, *windows[j], settings, rng=rng, progress=progress)
                    for model, j in zip(models, keep, strict=True)
                ]
                network = BatchedLSTM.from_regressors(models)  # one prediction path for both
        self.assets_ = returns.columns[keep]
        self.scaler_ = ZScoreScaler(scaler.mean[keep], scaler.std[keep])
        self.network_ = network.eval()
        return self

    def fitted_state(self) -> FittedState:
        self._check_fitted()
        arrays = module_arrays(self.network_)
        arrays |= {"scaler.mean": self.scaler_.mean, "scaler.std": self.scaler_.std}
        return FittedState(tuple(map(str, self.assets_)), arrays)

    def restore(self, state: FittedState) -> Self:
        n = len(state.assets)
        network = BatchedLSTM(1 if self.shared else n, 1, self.hidden, 1, self.dropout)
        self.network_ = restore_module(network, state.arrays)
        self.scaler_ = ZScoreScaler(
            take(state.arrays, "scaler.mean", (n,)), take(state.arrays, "scaler.std", (n,))
        )
        self.assets_ = pd.Index(state.assets)
        return self

    def predict(self, history: MarketHistory) -> pd.Series:
        self._check_fitted()
        tail = history.prices.reindex(columns=self.assets_).iloc[-(self.lookback + 1) :]
        returns = prices_to_returns(tail, "log").to_numpy()
        window = last_window(self.scaler_.transform(returns), self.lookback)
        forecast = np.full(len(self.assets_), np.nan)
        if window is not None:
            usable = np.isfinite(window).all(axis=0)
            x = torch.as_tensor(np.nan_to_num(window.T), dtype=torch.float32)[:, None, :, None]
            if getattr(self, "shared", False):
                x = x.transpose(0, 1)  # every asset through the one model: (1, assets, ...)
            with torch.no_grad():
                scaled = self.network_(x).reshape(-1).double().numpy()
            forecast = np.where(usable, self.scaler_.inverse(scaled), np.nan)
        return pd.Series(forecast, index=self.assets_, dtype=float).reindex(history.assets)


def _pooled_by_date(scaled: np.ndarray, lookback: int) -> tuple[np.ndarray, np.ndarray]:
    """Every column's windows (:func:`make_windows`) pooled, in the order of their target
    dates (ties in column order), so a chronological tail is the latest dates of all assets.

    Returns ``X`` of shape (n_samples, lookback, 1) and ``y`` of shape (n_samples, 1).
    """
    rows = np.arange(len(scaled), dtype=float)[:, None]
    parts = [make_windows(scaled[:, [j]], lookback, np.hstack([scaled[:, [j]], rows]))
             for j in range(scaled.shape[1])]  # fmt: skip
    X = np.concatenate([X for X, _ in parts])
    y = np.concatenate([y for _, y in parts])
    order = np.argsort(y[:, 1], kind="stable")
    return X[order], y[order, :1]


def _search_space(trial: Any) -> dict[str, Any]:
    """``dynafolio tune``'s draw of the univariate LSTM's hyper-parameters."""
    return {
        "hidden": trial.suggest_categorical("hidden", [16, 32, 64, 128]),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
        "lookback": trial.suggest_categorical("lookback", [13, 26, 30, 52]),
    }


# Config names of the forecasters (``forecaster: {model: ..., params: {...}}``).
register_forecaster(
    "univariate_lstm", UnivariateLSTMForecaster, label="LSTM", search_space=_search_space
)
register_forecaster(
    "univariate_lstm_loop", UnivariateLSTMForecaster, label="LSTM", fixed={"batched": False}
)
