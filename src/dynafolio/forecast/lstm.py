"""Recurrent (and Transformer) forecasters of next-period log returns or prices.

=============================  ======  ===================================================
Forecaster                     System  Model
=============================  ======  ===================================================
UnivariateLSTMForecaster       S1      one LSTM per asset on its own z-scored log returns
StackedLSTMForecaster          S2      LSTM(64) → LSTM(32) → Linear(N) on all assets
                                       (``cell="gru"``: the GRU ablation)
TransformerForecaster          S2 abl. small Transformer encoder on all assets
PriceLSTMForecaster            S4      2-layer LSTM(256) on MinMax-scaled prices
=============================  ======  ===================================================

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

from abc import abstractmethod
from collections.abc import Sequence
from typing import ClassVar, Literal, Self

import numpy as np
import pandas as pd
import torch
from torch import nn

from dynafolio.errors import ConfigError, DataError
from dynafolio.features import prices_to_returns
from dynafolio.forecast.base import Forecaster
from dynafolio.forecast.registry import register_forecaster
from dynafolio.forecast.scaling import MinMaxScaler, ZScoreScaler
from dynafolio.forecast.training import (
    BatchedLSTM,
    TrainSettings,
    seeded,
    train_network,
    train_stacked,
)
from dynafolio.forecast.windows import last_window, make_windows, stack_windows
from dynafolio.history import MarketHistory
from dynafolio.progress import progress_bar

__all__ = [
    "PriceLSTMForecaster",
    "RecurrentRegressor",
    "StackedLSTMForecaster",
    "TransformerForecaster",
    "UnivariateLSTMForecaster",
]


def _check(owner: object, ints: Sequence[str] = (), dropout: float | None = None) -> None:
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


class _TransformerNet(nn.Module):
    """Linear embedding + learned positions → Transformer encoder → last token → Linear."""

    def __init__(
        self,
        n_features: int,
        lookback: int,
        d_model: int,
        n_heads: int,
        n_layers: int,
        dim_feedforward: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.embed = nn.Linear(n_features, d_model)
        self.position = nn.Parameter(torch.randn(lookback, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, dim_feedforward, dropout, batch_first=True
        )
        # Nested tensors only pay off with padding masks, which fixed windows never have.
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, n_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(x) + self.position)[:, -1])


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
    min_windows : int, default 20
        Fewest windows an asset needs to get a model.
    batched : bool, default True
        Train all assets' models together with :class:`BatchedLSTM`, or one ``nn.LSTM``
        after another. Same model and procedure either way (only the random streams
        differ); the default is the faster one in ``benchmarks/lstm_speed.py``.
    """

    def __init__(
        self,
        lookback: int = 30,
        hidden: int = 64,
        dropout: float = 0.2,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 64,
        epochs: int = 40,
        patience: int | None = 5,
        val_fraction: float = 0.1,
        grad_clip: float | None = None,
        min_windows: int = 20,
        batched: bool = True,
        seed: int = 0,
    ) -> None:
        self.lookback = lookback
        self.hidden = hidden
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.epochs = epochs
        self.patience = patience
        self.val_fraction = val_fraction
        self.grad_clip = grad_clip
        self.min_windows = min_windows
        self.batched = batched
        self.seed = seed

    def fit(self, history: MarketHistory) -> Self:
        _check(self, ("lookback", "hidden", "min_windows"), self.dropout)
        settings = TrainSettings(
            self.lr, self.weight_decay, self.batch_size, self.epochs, self.patience,
            self.val_fraction, self.grad_clip,
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
            if self.batched:
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

    def predict(self, history: MarketHistory) -> pd.Series:
        self._check_fitted()
        tail = history.prices.reindex(columns=self.assets_).iloc[-(self.lookback + 1) :]
        returns = prices_to_returns(tail, "log").to_numpy()
        window = last_window(self.scaler_.transform(returns), self.lookback)
        forecast = np.full(len(self.assets_), np.nan)
        if window is not None:
            usable = np.isfinite(window).all(axis=0)
            x = torch.as_tensor(np.nan_to_num(window.T), dtype=torch.float32)[:, None, :, None]
            with torch.no_grad():
                scaled = self.network_(x)[:, 0, 0].double().numpy()
            forecast = np.where(usable, self.scaler_.inverse(scaled), np.nan)
        return pd.Series(forecast, index=self.assets_, dtype=float).reindex(history.assets)


class _PanelForecaster(Forecaster):
    """Shared data handling of the multi-output forecasters (S2, its ablations, S4).

    Inputs are windows of ``lookback`` rows of all N assets, MinMax-scaled with a scaler
    fitted on the fit history only; the target is the next row (scaled), inverse-scaled at
    prediction. Training uses only windows in which every asset has a value (others are
    dropped, never filled); prediction is NaN for every asset when the last ``lookback``
    rows are incomplete. Subclasses store the constructor arguments and build the network.
    """

    #: Fewest complete windows fit() accepts.
    min_samples: ClassVar[int] = 10
    #: Price rows needed for ``lookback`` rows of :meth:`_values` (1 more for returns).
    extra_rows: ClassVar[int] = 1
    lookback: int
    epochs: int
    batch_size: int
    lr: float
    patience: int | None
    val_fraction: float
    grad_clip: float | None
    seed: int

    def _values(self, prices: pd.DataFrame) -> pd.DataFrame:
        """What the model reads and predicts, ``(n_rows, n_assets)``: log returns."""
        return prices_to_returns(prices, "log")

    @abstractmethod
    def _network(self, n_features: int) -> nn.Module:
        """A fresh network mapping ``(batch, lookback, n_features)`` to ``(batch, n_features)``."""

    def fit(self, history: MarketHistory) -> Self:
        settings = TrainSettings(
            self.lr, 0.0, self.batch_size, self.epochs, self.patience, self.val_fraction,
            self.grad_clip,
        )  # fmt: skip
        values = self._values(history.prices)
        scaler = MinMaxScaler.fit(values.to_numpy())
        X, y = make_windows(scaler.transform(values.to_numpy()), self.lookback)
        if len(X) < self.min_samples:
            raise DataError(
                f"{type(self).__name__}: {len(X)} training windows of lookback="
                f"{self.lookback} rows in which all {values.shape[1]} assets have data, "
                f"needs {self.min_samples} (lookback + {self.min_samples} complete rows; the "
                f"history has {len(history.prices)}). Give a longer history, lower lookback "
                "or drop late-listed assets."
            )
        with seeded(self.seed):
            network = self._network(values.shape[1])
            progress = progress_bar(f"training {type(self).__name__}", self.epochs)
            rng = np.random.default_rng(self.seed)
            self.log_ = train_network(network, X, y, settings, rng=rng, progress=progress)
        self.assets_ = values.columns
        self.scaler_ = scaler
        self.network_ = network.eval()
        return self

    def predict(self, history: MarketHistory) -> pd.Series:
        self._check_fitted()
        tail = history.prices.reindex(columns=self.assets_)
        tail = tail.iloc[-(self.lookback + self.extra_rows) :]
        window = last_window(self.scaler_.transform(self._values(tail).to_numpy()), self.lookback)
        forecast = np.full(len(self.assets_), np.nan)
        if window is not None and np.isfinite(window).all():
            x = torch.as_tensor(window, dtype=torch.float32)[None]
            with torch.no_grad():
                scaled = self.network_(x)[0].double().numpy()
            forecast = self.scaler_.inverse(scaled)
        return pd.Series(forecast, index=self.assets_, dtype=float).reindex(history.assets)


class StackedLSTMForecaster(_PanelForecaster):
    """S2: ``LSTM(64, full sequence) → Dropout → LSTM(32) → Dropout → Linear(N)``.

    Reads MinMax-scaled log returns of all N assets; MSE on the next period's.

    Parameters
    ----------
    lookback : int, default 30
    units : tuple of int, default (64, 32)
        Units of each recurrent layer (any number of layers).
    dropout : float, default 0.2
        After each recurrent layer.
    cell : {"lstm", "gru"}, default "lstm"
        ``"gru"`` is the GRU ablation of S2.
    epochs, batch_size, lr, patience, val_fraction, grad_clip, seed
        Training parameters (module docstring); source: 50, 32, 1e-3, 10, 0.1.
    """

    def __init__(
        self,
        lookback: int = 30,
        units: tuple[int, ...] = (64, 32),
        dropout: float = 0.2,
        cell: Literal["lstm", "gru"] = "lstm",
        epochs: int = 50,
        batch_size: int = 32,
        lr: float = 1e-3,
        patience: int | None = 10,
        val_fraction: float = 0.1,
        grad_clip: float | None = None,
        seed: int = 0,
    ) -> None:
        self.lookback = lookback
        self.units = units
        self.dropout = dropout
        self.cell = cell
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.patience = patience
        self.val_fraction = val_fraction
        self.grad_clip = grad_clip
        self.seed = seed

    def _network(self, n_features: int) -> nn.Module:
        _check(self, ("lookback",), self.dropout)
        if self.cell not in ("lstm", "gru"):
            raise ConfigError(
                f"{type(self).__name__}: cell must be 'lstm' or 'gru', got {self.cell!r}"
            )
        if not self.units or any(isinstance(u, bool) or not u >= 1 for u in self.units):
            raise ConfigError(
                f"{type(self).__name__}: units must be sizes >= 1, got {self.units!r}"
            )
        return RecurrentRegressor(n_features, self.units, n_features, self.dropout, self.cell)


class TransformerForecaster(_PanelForecaster):
    """S2 ablation: a small Transformer encoder over the MinMax-scaled log returns.

    Each row of N returns is embedded linearly to ``d_model``, a learned positional
    embedding is added, ``n_layers`` encoder layers follow, and the last time step's
    encoding goes through ``Linear(N)``.

    Parameters
    ----------
    lookback : int, default 30
    d_model, n_heads, n_layers, dim_feedforward : int, default 32, 4, 2, 64
        Encoder sizes (``d_model`` must be divisible by ``n_heads``).
    dropout : float, default 0.1
    epochs, batch_size, lr, patience, val_fraction, grad_clip, seed
        Training parameters (module docstring); as for :class:`StackedLSTMForecaster`.
    """

    def __init__(
        self,
        lookback: int = 30,
        d_model: int = 32,
        n_heads: int = 4,
        n_layers: int = 2,
        dim_feedforward: int = 64,
        dropout: float = 0.1,
        epochs: int = 50,
        batch_size: int = 32,
        lr: float = 1e-3,
        patience: int | None = 10,
        val_fraction: float = 0.1,
        grad_clip: float | None = None,
        seed: int = 0,
    ) -> None:
        self.lookback = lookback
        self.d_model = d_model
        self.n_heads = n_heads
        self.n_layers = n_layers
        self.dim_feedforward = dim_feedforward
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.patience = patience
        self.val_fraction = val_fraction
        self.grad_clip = grad_clip
        self.seed = seed

    def _network(self, n_features: int) -> nn.Module:
        sizes = ("lookback", "d_model", "n_heads", "n_layers", "dim_feedforward")
        _check(self, sizes, self.dropout)
        if self.d_model % self.n_heads:
            raise ConfigError(
                f"{type(self).__name__}: d_model={self.d_model} must be divisible by "
                f"n_heads={self.n_heads}"
            )
        return _TransformerNet(
            n_features, self.lookback, self.d_model, self.n_heads, self.n_layers,
            self.dim_feedforward, self.dropout,
        )  # fmt: skip


class PriceLSTMForecaster(_PanelForecaster):
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

    def __init__(
        self,
        lookback: int = 24,
        hidden: int = 256,
        n_layers: int = 2,
        dropout: float = 0.0,
        epochs: int = 100,
        batch_size: int = 16,
        lr: float = 1e-3,
        patience: int | None = 10,
        val_fraction: float = 0.1,
        grad_clip: float | None = None,
        seed: int = 0,
    ) -> None:
        self.lookback = lookback
        self.hidden = hidden
        self.n_layers = n_layers
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.patience = patience
        self.val_fraction = val_fraction
        self.grad_clip = grad_clip
        self.seed = seed

    def _values(self, prices: pd.DataFrame) -> pd.DataFrame:
        return prices.astype(np.float64)

    def _network(self, n_features: int) -> nn.Module:
        _check(self, ("lookback", "hidden", "n_layers"), self.dropout)
        units = (self.hidden,) * self.n_layers
        return RecurrentRegressor(n_features, units, n_features, self.dropout)


# Config names of the forecasters (``forecaster: {model: ..., params: {...}}``).
register_forecaster("univariate_lstm", UnivariateLSTMForecaster, label="LSTM")
register_forecaster(
    "univariate_lstm_loop", UnivariateLSTMForecaster, label="LSTM", fixed={"batched": False}
)
register_forecaster("stacked_lstm", StackedLSTMForecaster, label="LSTM", fixed={"cell": "lstm"})
register_forecaster("stacked_gru", StackedLSTMForecaster, label="GRU", fixed={"cell": "gru"})
register_forecaster("transformer", TransformerForecaster, label="Transformer")
register_forecaster("price_lstm", PriceLSTMForecaster, label="LSTM")
