"""Multi-output forecasters: one network reads windows of all assets and predicts every asset.

=============================  ======  ===================================================
Forecaster                     System  Model
=============================  ======  ===================================================
StackedLSTMForecaster          S2      LSTM(64) → LSTM(32) → Linear(N) on all assets' log
                                       returns or features (``cell="gru"``: the GRU ablation)
TransformerForecaster          S2 abl. small Transformer encoder on all assets
=============================  ======  ===================================================

Timing and training parameters as in :mod:`dynafolio.forecast.lstm`: :meth:`fit` sees only
the history it is given (scalers are fitted on it); :meth:`predict` at the close of
``history.date`` forecasts the period after it from rows up to that date.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar, Literal, Self

import numpy as np
import pandas as pd
import torch
from torch import nn

from dynafolio.errors import ConfigError, DataError
from dynafolio.features import prices_to_returns
from dynafolio.forecast.base import Forecaster
from dynafolio.forecast.lstm import RecurrentRegressor, check_settings
from dynafolio.forecast.registry import register_forecaster
from dynafolio.forecast.scaling import MinMaxScaler
from dynafolio.forecast.state import FittedState, module_arrays, restore_module, take
from dynafolio.forecast.training import TrainSettings, seeded, train_network
from dynafolio.forecast.windows import last_window, make_windows
from dynafolio.history import MarketHistory
from dynafolio.model_inputs import FeatureName, FeatureSet
from dynafolio.progress import progress_bar
from dynafolio.settings import parameters

__all__ = ["StackedLSTMForecaster", "TransformerForecaster"]


class _TransformerNet(nn.Module):
    """Linear embedding + learned positions → Transformer encoder → last token → Linear."""

    def __init__(
        self,
        n_inputs: int,
        n_outputs: int,
        lookback: int,
        d_model: int,
        n_heads: int,
        n_layers: int,
        dim_feedforward: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.embed = nn.Linear(n_inputs, d_model)
        self.position = nn.Parameter(torch.randn(lookback, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, dim_feedforward, dropout, batch_first=True
        )
        # Nested tensors only pay off with padding masks, which fixed windows never have.
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(x) + self.position)[:, -1])


class PanelForecaster(Forecaster):
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
        """What the model predicts (and, without features, reads), ``(n_rows, n_assets)``:
        log returns."""
        return prices_to_returns(prices, "log")

    def _features(self) -> FeatureSet | None:
        """Inputs other than :meth:`_values` (None: the model reads what it predicts)."""
        return None

    @abstractmethod
    def _network(self, n_inputs: int, n_outputs: int) -> nn.Module:
        """A fresh network mapping ``(batch, lookback, n_inputs)`` to ``(batch, n_outputs)``."""

    def _inputs(self, prices: pd.DataFrame, values: pd.DataFrame) -> np.ndarray:
        """Model inputs ``(n_rows, n_inputs)``: the features of every asset, or ``values``."""
        features = self._features()
        if features is None:
            return values.to_numpy()
        built = features.build(prices).reshape(len(prices), -1)
        return built[len(prices) - len(values) :]  # the rows of ``values`` (returns lose one)

    def fit(self, history: MarketHistory) -> Self:
        settings = TrainSettings(
            self.lr, 0.0, self.batch_size, self.epochs, self.patience, self.val_fraction,
            self.grad_clip,
        )  # fmt: skip
        values = self._values(history.prices)
        inputs = self._inputs(history.prices, values)
        scaler = MinMaxScaler.fit(values.to_numpy())
        # Scalers are fitted on this fit's history only (each walk-forward window).
        input_scaler = scaler if self._features() is None else MinMaxScaler.fit(inputs)
        X, y = make_windows(
            input_scaler.transform(inputs), self.lookback, scaler.transform(values.to_numpy())
        )
        if len(X) < self.min_samples:
            raise DataError(
                f"{type(self).__name__}: {len(X)} training windows of lookback="
                f"{self.lookback} rows in which all {values.shape[1]} assets have data, "
                f"needs {self.min_samples} (lookback + {self.min_samples} complete rows; the "
                f"history has {len(history.prices)}). Give a longer history, lower lookback "
                "or drop late-listed assets."
            )
        with seeded(self.seed):
            network = self._network(inputs.shape[1], values.shape[1])
            progress = progress_bar(f"training {type(self).__name__}", self.epochs)
            rng = np.random.default_rng(self.seed)
            self.log_ = train_network(network, X, y, settings, rng=rng, progress=progress)
        self.assets_ = values.columns
        self.scaler_ = scaler
        self.input_scaler_ = input_scaler
        self.network_ = network.eval()
        return self

    def fitted_state(self) -> FittedState:
        self._check_fitted()
        shared = self.input_scaler_ is self.scaler_
        arrays = module_arrays(self.network_)
        arrays |= {"scaler.low": self.scaler_.low, "scaler.span": self.scaler_.span}
        if not shared:
            arrays |= {
                "input_scaler.low": self.input_scaler_.low,
                "input_scaler.span": self.input_scaler_.span,
            }
        n_inputs = len(self.input_scaler_.low)
        return FittedState(tuple(map(str, self.assets_)), arrays, {"n_inputs": n_inputs})

    def restore(self, state: FittedState) -> Self:
        n = len(state.assets)
        n_inputs = state.sizes.get("n_inputs", 0)
        # The network's size follows from the settings and these two counts; a file claiming
        # far more inputs than any feature set gives is refused before anything is built.
        if not 1 <= n_inputs <= 64 * max(n, 1):
            raise DataError(f"its n_inputs {n_inputs} does not fit {n} assets")
        scaler = MinMaxScaler(
            take(state.arrays, "scaler.low", (n,)), take(state.arrays, "scaler.span", (n,))
        )
        input_scaler = scaler
        if self._features() is not None:
            input_scaler = MinMaxScaler(
                take(state.arrays, "input_scaler.low", (n_inputs,)),
                take(state.arrays, "input_scaler.span", (n_inputs,)),
            )
        elif n_inputs != n:
            raise DataError(f"its n_inputs {n_inputs} differs from its {n} assets")
        self.network_ = restore_module(self._network(n_inputs, n), state.arrays)
        self.scaler_, self.input_scaler_ = scaler, input_scaler
        self.assets_ = pd.Index(state.assets)
        return self

    def predict(self, history: MarketHistory) -> pd.Series:
        self._check_fitted()
        prices = history.prices.reindex(columns=self.assets_)
        if self._features() is None:
            # Only the rows the window reads; features (with their own warm-up, and EWMA
            # memory) are computed on the whole history, as in fit.
            prices = prices.iloc[-(self.lookback + self.extra_rows) :]
        inputs = self._inputs(prices, self._values(prices))
        window = last_window(self.input_scaler_.transform(inputs), self.lookback)
        forecast = np.full(len(self.assets_), np.nan)
        if window is not None and np.isfinite(window).all():
            x = torch.as_tensor(window, dtype=torch.float32)[None]
            with torch.no_grad():
                scaled = self.network_(x)[0].double().numpy()
            forecast = self.scaler_.inverse(scaled)
        return pd.Series(forecast, index=self.assets_, dtype=float).reindex(history.assets)


@parameters
class StackedLSTMForecaster(PanelForecaster):
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
    features : tuple of str, default ("log_return",)
        What the model reads, per asset (:mod:`dynafolio.model_inputs`): the log return it
        forecasts, or the source's optional set (``S2_FEATURES``: 1–5 period log returns,
        EWMA volatility, RSI, Bollinger position, regime slopes, fractional difference). The
        target stays the next period's log return.
    market_asset : str, default "SPY"
        The market index of the ``regime`` feature.
    frac_diff_d : float, default 0.4
        Order of the ``frac_diff`` feature (fixed window of 50 periods).
    epochs, batch_size, lr, patience, val_fraction, grad_clip, seed
        Training parameters (module docstring); source: 50, 32, 1e-3, 10, 0.1.
    """

    lookback: int = 30
    units: tuple[int, ...] = (64, 32)
    dropout: float = 0.2
    cell: Literal["lstm", "gru"] = "lstm"
    features: tuple[FeatureName, ...] = ("log_return",)
    market_asset: str = "SPY"
    frac_diff_d: float = 0.4
    epochs: int = 50
    batch_size: int = 32
    lr: float = 1e-3
    patience: int | None = 10
    val_fraction: float = 0.1
    grad_clip: float | None = None
    seed: int = 0

    def _features(self) -> FeatureSet | None:
        if tuple(self.features) == ("log_return",):
            return None  # the log returns it predicts, read directly
        return FeatureSet(tuple(self.features), market=self.market_asset, frac_d=self.frac_diff_d)

    def _network(self, n_inputs: int, n_outputs: int) -> nn.Module:
        check_settings(self, ("lookback",), self.dropout)
        if self.cell not in ("lstm", "gru"):
            raise ConfigError(
                f"{type(self).__name__}: cell must be 'lstm' or 'gru', got {self.cell!r}"
            )
        if not self.units or any(isinstance(u, bool) or not u >= 1 for u in self.units):
            raise ConfigError(
                f"{type(self).__name__}: units must be sizes >= 1, got {self.units!r}"
            )
        return RecurrentRegressor(n_inputs, self.units, n_outputs, self.dropout, self.cell)


@parameters
class TransformerForecaster(PanelForecaster):
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

    lookback: int = 30
    d_model: int = 32
    n_heads: int = 4
    n_layers: int = 2
    dim_feedforward: int = 64
    dropout: float = 0.1
    epochs: int = 50
    batch_size: int = 32
    lr: float = 1e-3
    patience: int | None = 10
    val_fraction: float = 0.1
    grad_clip: float | None = None
    seed: int = 0

    def _network(self, n_inputs: int, n_outputs: int) -> nn.Module:
        sizes = ("lookback", "d_model", "n_heads", "n_layers", "dim_feedforward")
        check_settings(self, sizes, self.dropout)
        if self.d_model % self.n_heads:
            raise ConfigError(
                f"{type(self).__name__}: d_model={self.d_model} must be divisible by "
                f"n_heads={self.n_heads}"
            )
        return _TransformerNet(
            n_inputs, n_outputs, self.lookback, self.d_model, self.n_heads, self.n_layers,
            self.dim_feedforward, self.dropout,
        )  # fmt: skip


def _recurrent_space(trial: Any) -> dict[str, Any]:
    """``dynafolio tune``'s draw of the stacked LSTM's or GRU's hyper-parameters."""
    first = trial.suggest_categorical("units_1", [32, 64, 128])
    second = trial.suggest_categorical("units_2", [16, 32, 64])
    return {
        "units": (first, second),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
        "lookback": trial.suggest_categorical("lookback", [20, 30, 60]),
    }


def _transformer_space(trial: Any) -> dict[str, Any]:
    """``dynafolio tune``'s draw of the Transformer's hyper-parameters."""
    return {
        "d_model": trial.suggest_categorical("d_model", [16, 32, 64]),
        "n_layers": trial.suggest_int("n_layers", 1, 3),
        "dropout": trial.suggest_float("dropout", 0.0, 0.3),
        "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
        "lookback": trial.suggest_categorical("lookback", [20, 30, 60]),
    }


for _cell, _label in (("lstm", "LSTM"), ("gru", "GRU")):
    register_forecaster(
        f"stacked_{_cell}",
        StackedLSTMForecaster,
        label=_label,
        fixed={"cell": _cell},
        search_space=_recurrent_space,
    )
register_forecaster(
    "transformer", TransformerForecaster, label="Transformer", search_space=_transformer_space
)
