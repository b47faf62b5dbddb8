"""S3: an LSTM that outputs portfolio weights directly, trained on a drawdown-sensitive loss.

The model maps a window of per-asset features (by default the source's daily return, RSI and
realised volatility; any set of :mod:`dynafolio.model_inputs`) of all assets to long-only
weights through an LSTM, a linear layer and a softmax, and is trained end to end on the
portfolio return those weights would have earned:

``L = −mean(R_p) + λ·mean(max(0, −R_p)²)`` with ``R_p = w_d · r_{d+1}``.

Timing: the weights decided at the close of ``d`` use features computed from prices up to
``d`` only and earn the simple return from ``d`` to ``d + 1``. During training the target
``r_{d+1}`` is taken from the training history itself, so the last training date (which
has no next return inside that history) is never a training sample. The engine hands
:meth:`DrawdownLSTMAllocator.fit` only the data before the evaluation starts.

``R_p`` is computed on **real, unscaled** simple returns. (The public notebook of the source
paper fed min-max-scaled returns in ``[0, 1]`` into the loss, so ``max(0, −R_p)`` was always
0 and λ had no effect; only the model *inputs* are scaled here.)
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, ClassVar, Literal, Self

import numpy as np
import pandas as pd
import torch
from pydantic import Field
from torch import nn

from dynafolio import devices
from dynafolio.early_stopping import EarlyStopping, n_validation
from dynafolio.errors import ConfigError, DataError
from dynafolio.forecast.scaling import MinMaxScaler
from dynafolio.forecast.state import (
    FittedState,
    forecaster_bytes,
    module_arrays,
    restore_from,
    restore_module,
    take,
)
from dynafolio.history import MarketHistory
from dynafolio.model_inputs import S3_FEATURES, FeatureName, FeatureSet
from dynafolio.progress import progress_bar
from dynafolio.settings import parameters, params_model
from dynafolio.splits import RefitSchedule
from dynafolio.strategies.base import Strategy
from dynafolio.strategies.e2e_model import (
    AllocationNet,
    drawdown_loss,
    features_for_allocation,
    full_windows,
    net_portfolio_returns,
)
from dynafolio.strategies.registry import BuildContext, register_strategy, spec_fields

__all__ = ["DrawdownAllocatorSpec", "DrawdownLSTMAllocator"]


@parameters
class DrawdownLSTMAllocator(Strategy):
    """End-to-end LSTM allocator trained on a drawdown-sensitive loss (system S3).

    An asset is *tradable* at a decision date when it has a price then and all its
    features are defined over the whole window (so a newly listed asset waits ``lookback``
    periods after the features' warm-up before it can be bought); the others are masked out of the
    softmax and get weight 0. Missing features of masked assets are fed to the LSTM as the
    training mean of that feature, so they carry no signal.

    Parameters
    ----------
    lam : float, default 10.0
        λ of :func:`drawdown_loss` (>= 0).
    lookback : int, default 30
        Periods of features per decision window.
    hidden : int, default 64
        LSTM hidden units.
    lr : float, default 5e-4
        Adam learning rate.
    epochs : int, default 50
        Maximum training epochs.
    batch_size : int, default 64
    grad_clip : float, default 1.0
        Maximum gradient norm.
    cost_in_loss : float, default 0.0
        Turnover cost per unit charged inside the training loss (e.g. 0.001); batches are
        then chronological runs so each sample trades from the previous one's weights.
    val_fraction : float, default 0.1
        Chronological tail of the training samples held out for early stopping; 0 trains
        for ``epochs`` epochs and keeps the last model.
    patience : int, default 10
        Epochs without a lower validation loss before training stops (the best model is kept).
    retrain_every : int, optional
        None: train once on the training period. Else retrain from scratch (scaler included)
        on all history up to the decision every ``retrain_every`` decisions (walk-forward).
    features : tuple of str, default ("return", "rsi", "volatility")
        Per-asset inputs (:mod:`dynafolio.model_inputs`); the default is the source's.
    market_asset : str, default "SPY"
        The market index of the ``regime`` feature.
    seed : int, default 0
        Seeds initialisation and batch order locally; the same seed gives the same weights.
    """

    label: ClassVar[str] = "E2E drawdown LSTM"
    learned: ClassVar[bool] = True

    lam: Annotated[float, Field(ge=0.0)] = 10.0
    lookback: int = 30
    hidden: int = 64
    lr: float = 5e-4
    epochs: int = 50
    batch_size: int = 64
    grad_clip: float = 1.0
    cost_in_loss: float = 0.0
    val_fraction: float = 0.1
    patience: int = 10
    retrain_every: Annotated[int | None, Field(ge=1)] = None
    features: tuple[FeatureName, ...] = S3_FEATURES
    market_asset: str = "SPY"
    seed: int = 0

    @property
    def name(self) -> str:
        return f"{self.label} (λ={self.lam:g})"

    @property
    def feature_set(self) -> FeatureSet:
        return FeatureSet(tuple(self.features), market=self.market_asset)

    def fit(self, history: MarketHistory) -> Self:
        """Train on ``history`` (the training period); returns ``self``."""
        super().fit(history)
        self._check_params()
        self.fits_: dict[str, bytes] = {}
        self._train(history)
        self.n_fits_ = 1
        self.decisions_since_fit_ = 0
        self.final_weights_: pd.Series | None = None
        return self

    def weights(self, history: MarketHistory) -> pd.Series:
        """Long-only weights summing to 1 for the close of ``history.date``.

        Only the last ``lookback`` rows of features (computed from ``history``) are used.
        """
        if not hasattr(self, "model_"):
            raise RuntimeError(f"{self.name} is not fitted; call fit() first")
        if not history.assets.equals(self.assets_):
            raise DataError(
                f"{self.name} was trained on assets {list(self.assets_)} but asked about "
                f"{list(history.assets)}; refit on the same universe"
            )
        if RefitSchedule(self.retrain_every).due(self.decisions_since_fit_):
            self._train(history)
            self.decisions_since_fit_ = 0
            self.n_fits_ += 1
        self.decisions_since_fit_ += 1

        features = features_for_allocation(history.prices, self.feature_set)[-self.lookback :]
        available = history.available.to_numpy()
        tradable = np.zeros_like(available)
        if len(features) == self.lookback:
            tradable = available & full_windows(features, self.lookback)[-1]
        if not tradable.any():
            # Too little history for any asset's window: hold the available assets equally.
            self.notes_.append(
                f"{history.date.date()}: no asset had {self.lookback} periods of features; "
                "equal weight on the available assets"
            )
            values = available / max(int(available.sum()), 1)
        else:
            windows = torch.from_numpy(self._scale(features)[None])
            self.model_.eval()
            with torch.no_grad():
                out = self.model_(windows, torch.from_numpy(tradable)[None])[0]
            values = out.double().numpy()
            values = np.where(tradable, values, 0.0)
            values = values / values.sum()
        weights = pd.Series(values, index=history.assets, name=history.date)
        self.final_weights_ = weights
        return weights

    def _check_params(self) -> None:
        self.feature_set  # noqa: B018 - raises ConfigError on unknown or repeated features
        for key in ("lookback", "hidden", "epochs", "batch_size", "patience"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ConfigError(f"{self.label}: {key} must be an integer >= 1, got {value!r}")
        if self.retrain_every is not None and (
            not isinstance(self.retrain_every, int | np.integer) or self.retrain_every < 1
        ):
            raise ConfigError(
                f"{self.label}: retrain_every must be an integer >= 1 or None, "
                f"got {self.retrain_every!r}"
            )
        if not self.lam >= 0 or not self.cost_in_loss >= 0:
            raise ConfigError(
                f"{self.label}: lam and cost_in_loss must be >= 0, got lam={self.lam!r}, "
                f"cost_in_loss={self.cost_in_loss!r}"
            )
        if not (self.lr > 0 and self.grad_clip > 0):
            raise ConfigError(f"{self.label}: lr and grad_clip must be > 0")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(
                f"{self.label}: val_fraction must be in [0, 1), got {self.val_fraction!r}"
            )

    def _scale(self, features: np.ndarray) -> np.ndarray:
        """Scaled, NaN-free model inputs ``(n_dates, n_features·n_assets)`` float32."""
        scaled = self.scaler_.transform(features)  # per feature, broadcast over assets
        scaled = np.where(np.isnan(scaled), self.fill_, scaled)
        return scaled.reshape(len(features), -1).astype(np.float32)

    def fitted_models(self) -> dict[str, bytes]:
        return dict(getattr(self, "fits_", {}))

    def fitted_state(self) -> FittedState:
        """The network, the scaler and its fill values (:mod:`dynafolio.forecast.state`)."""
        arrays = module_arrays(self.model_)
        arrays |= {"scaler.low": self.scaler_.low, "scaler.span": self.scaler_.span}
        arrays |= {"fill": np.asarray(self.fill_, dtype=float)}
        return FittedState(tuple(map(str, self.assets_)), arrays)

    def restore(self, state: FittedState) -> Self:
        n_assets, n_features = len(state.assets), self.feature_set.n_columns
        network = AllocationNet(n_assets, n_features, self.hidden)
        self.model_ = restore_module(network, state.arrays)
        self.scaler_ = MinMaxScaler(
            take(state.arrays, "scaler.low", (n_features,)),
            take(state.arrays, "scaler.span", (n_features,)),
        )
        self.fill_ = take(state.arrays, "fill", (n_features,))
        self.assets_ = pd.Index(state.assets)
        return self

    def _train(self, history: MarketHistory) -> None:
        """Fit the scaler and the network on ``history`` — or load the model a finished run
        fitted then (:meth:`use_fitted_models`) — and keep it as a file by fit date."""
        date = history.date.date().isoformat()
        universe = list(map(str, history.assets))
        saved = getattr(self, "saved_models_", {}).get(date)
        if saved is not None:
            restore_from(saved, self, universe, date)
        else:
            self._fit_network(history)
        fit_period = (history.prices.index[0].date().isoformat(), date)
        self.fits_[date] = forecaster_bytes(self, universe, fit_period)

    def _fit_network(self, history: MarketHistory) -> None:
        """Fit the scaler and the network on ``history``; set the fitted state.

        Trains on :func:`dynafolio.devices.current`'s device; the fitted network is left on
        the CPU, where :meth:`weights` runs it.
        """
        features = features_for_allocation(history.prices, self.feature_set)
        n_dates, n_assets, n_features = features.shape
        tradable = full_windows(features, self.lookback) & history.prices.notna().to_numpy()
        # Sample d needs r_{d+1} inside this history: the last row is never a sample.
        rows = np.flatnonzero(tradable[:-1].any(axis=1))
        if len(rows) < 2:
            raise DataError(
                f"{self.name}: the training history ({n_dates} periods to "
                f"{history.date.date()}) has {len(rows)} dates with a full {self.lookback}-period "
                "window of features (after their warm-up) and a next return; "
                "start the evaluation later or shorten the lookback"
            )
        # Pooled per feature over assets, so volatility and return levels stay comparable
        # across assets (the allocator chooses between them); training rows only.
        pooled = features.reshape(-1, n_features)
        self.scaler_ = MinMaxScaler.fit(pooled)
        self.fill_ = self.scaler_.transform(np.nanmean(pooled, axis=0))
        self.assets_ = history.assets.copy()

        device = devices.current()
        # ``.to`` returns the tensor or module itself when it is already there: on the CPU
        # this is the CPU-only computation exactly.
        inputs = torch.from_numpy(self._scale(features))
        windows = inputs.unfold(0, self.lookback, 1).transpose(1, 2)  # window ending at d: d-L+1
        x = windows[rows - self.lookback + 1].contiguous().to(device)
        mask = torch.from_numpy(tradable[rows]).to(device)
        # Real next-period simple returns; NaN (no price at d+1) is held at the last price = 0.
        next_returns = history.returns.to_numpy(dtype=np.float64, na_value=np.nan)[rows + 1]
        y = torch.from_numpy(np.where(tradable[rows], np.nan_to_num(next_returns), 0.0)).float()
        y = y.to(device)

        n_val = n_validation(len(rows), self.val_fraction)
        n_train = len(rows) - n_val
        if n_train < 1:
            raise DataError(f"{self.name}: no training samples left after the validation split")
        step = progress_bar(f"{self.name}: training", self.epochs)
        with devices.fork_rng(device):
            torch.manual_seed(self.seed)
            model = AllocationNet(n_assets, n_features, self.hidden).to(device)
            optimiser = torch.optim.Adam(model.parameters(), lr=self.lr)
            stopper, best_state = EarlyStopping(self.patience), None
            self.train_losses_: list[float] = []
            self.val_losses_: list[float] = []
            for epoch in range(self.epochs):
                model.train()
                batch_losses = []
                for batch in self._batches(n_train):
                    batch = batch.to(device)  # drawn on the CPU: the same order on any device
                    weights = model(x[batch], mask[batch])
                    loss = drawdown_loss(
                        net_portfolio_returns(weights, y[batch], cost=self.cost_in_loss),
                        self.lam,
                    )
                    optimiser.zero_grad()
                    loss.backward()
                    nn.utils.clip_grad_norm_(model.parameters(), self.grad_clip)
                    optimiser.step()
                    batch_losses.append(loss.item())
                self.train_losses_.append(float(np.mean(batch_losses)))
                step(1)
                if n_val == 0:
                    continue
                model.eval()
                with torch.no_grad():
                    weights = model(x[n_train:], mask[n_train:])
                    returns = net_portfolio_returns(weights, y[n_train:], cost=self.cost_in_loss)
                    val_loss = drawdown_loss(returns, self.lam).item()
                self.val_losses_.append(val_loss)
                if stopper.update(val_loss, epoch):
                    best_state = copy.deepcopy(model.state_dict())
                elif stopper.should_stop:
                    step(self.epochs - epoch - 1)  # complete the bar on an early stop
                    break
        if best_state is not None:
            model.load_state_dict(best_state)
            best_epoch = int(stopper.best_step)
        else:
            best_epoch = len(self.train_losses_) - 1
        model.to("cpu")
        model.eval()
        self.model_ = model
        self.best_epoch_ = best_epoch
        self.n_samples_ = (n_train, n_val)

    def _batches(self, n_samples: int) -> list[torch.Tensor]:
        """Sample indices per mini-batch for one epoch (uses torch's global RNG)."""
        if self.cost_in_loss == 0.0:
            order = torch.randperm(n_samples)
            return list(order.split(self.batch_size))
        # The turnover term needs each sample next to the previous date's: shuffle the
        # order of chronological runs, with boundaries shifted at random every epoch.
        offset = int(torch.randint(self.batch_size, ()).item())
        edges = [0, *range(offset or self.batch_size, n_samples, self.batch_size), n_samples]
        runs = [torch.arange(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]
        return [runs[i] for i in torch.randperm(len(runs)).tolist()]


# ------------------------------------------------------------------ config declarations
DrawdownLSTMParams = params_model(
    DrawdownLSTMAllocator,
    "DrawdownLSTMParams",
    __name__,
    exclude={"lam", "retrain_every", "seed"},
)


@register_strategy
class DrawdownAllocatorSpec(
    spec_fields(DrawdownLSTMAllocator, exclude=set(DrawdownLSTMParams.model_fields))
):
    """``e2e_drawdown`` (S3): an LSTM → softmax allocator trained on the drawdown loss."""

    kind: Literal["e2e_drawdown"]
    params: DrawdownLSTMParams = Field(default_factory=DrawdownLSTMParams)  # type: ignore[valid-type]
    strategy_class: ClassVar = DrawdownLSTMAllocator

    def arguments(self, context: BuildContext) -> dict[str, Any]:
        return {**super().arguments(context), **self.params.model_dump()}
