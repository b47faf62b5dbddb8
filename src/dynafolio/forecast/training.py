"""Training loops shared by the forecasters: minibatch Adam on MSE with early stopping.

:func:`train_network` trains one ``nn.Module`` (the multi-output forecasters, and each
per-asset model of the univariate forecaster's loop variant);
:func:`~dynafolio.forecast.stacked.train_stacked` trains many stacked models as one, each
exactly as :func:`train_network` would.

Validation is always the chronological tail of the samples (the latest windows): shuffling
happens within the training part only, so no model is ever validated on data older than what
it trained on.

Both train on the device of :func:`dynafolio.devices.current` and leave the model on the CPU,
where prediction runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dynafolio import devices
from dynafolio.early_stopping import EarlyStopping, n_validation
from dynafolio.errors import ConfigError

__all__ = [
    "TrainSettings",
    "TrainingLog",
    "epoch_draw",
    "n_validation",
    "seeded",
    "no_progress",
    "train_network",
]

Progress = Callable[[int], None]


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings of one training run (Adam on mean squared error).

    ``weight_decay`` is the L2 penalty of ``torch.optim.Adam``; the last minibatch of an
    epoch may be smaller than ``batch_size``; ``patience``: stop after this many epochs
    without a lower validation loss (None trains all ``max_epochs``; the best-validation
    weights are restored either way); ``val_fraction``: share of the samples, from the
    chronological tail, used for validation (0: none, the final weights are kept);
    ``grad_clip``: clip each model's gradient norm to this value (None: no clipping);
    ``epoch_samples``: at most this many training samples per epoch, a fresh random draw
    without replacement every epoch (None, or at least the training samples: all of them,
    in the same order as without the setting). It bounds an epoch's cost when the samples
    grow with the data, e.g. a model pooled over every asset of a large universe (a fixed
    number of batches per epoch, as global forecasting models usually train).
    """

    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 32
    max_epochs: int = 50
    patience: int | None = 10
    val_fraction: float = 0.1
    grad_clip: float | None = None
    epoch_samples: int | None = None

    def __post_init__(self) -> None:
        checks = {
            "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0,
            "batch_size": self.batch_size >= 1,
            "max_epochs": self.max_epochs >= 1,
            "patience": self.patience is None or self.patience >= 1,
            "val_fraction": 0 <= self.val_fraction < 1,
            "grad_clip": self.grad_clip is None or self.grad_clip > 0,
            "epoch_samples": self.epoch_samples is None or self.epoch_samples >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise ConfigError(
                f"invalid training settings: {values}; need lr > 0, weight_decay >= 0, "
                "batch_size >= 1, max_epochs >= 1, patience >= 1 or None, "
                "0 <= val_fraction < 1, grad_clip > 0 or None, epoch_samples >= 1 or None"
            )


@dataclass(frozen=True)
class TrainingLog:
    """What :func:`train_network` did: mean losses per epoch (scaled units) and the split."""

    train_loss: tuple[float, ...]
    val_loss: tuple[float, ...]  # empty without validation
    best_epoch: int  # 0-based epoch whose weights were kept; -1 = the last (no validation)
    n_train: int
    n_val: int


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's global generator inside the block and restore it afterwards.

    Weight initialisation and dropout draw from the global generator; forking it makes a fit
    reproducible from ``seed`` alone without changing the random state the caller sees. On a
    GPU (:func:`dynafolio.devices.current`) its generator, which dropout draws from there, is
    forked too.
    """
    with devices.fork_rng(devices.current()):
        torch.manual_seed(seed)
        yield


def no_progress(n: int) -> None:
    return None


def epoch_draw(rng: np.random.Generator, n_train: int, epoch_samples: int | None) -> np.ndarray:
    """One epoch's training rows: a permutation of ``range(n_train)`` cut to ``epoch_samples``
    (the same draw, and the same random stream, as without the cut when it is not needed)."""
    return rng.permutation(n_train)[:epoch_samples]


def train_network(
    model: nn.Module,
    X: np.ndarray,
    y: np.ndarray,
    settings: TrainSettings,
    *,
    rng: np.random.Generator,
    progress: Progress = no_progress,
) -> TrainingLog:
    """Fit ``model`` to ``y`` from ``X`` by minibatch Adam on MSE, with early stopping.

    The last :func:`n_validation` samples are the validation tail; the rest are shuffled into
    minibatches every epoch. After training, the weights of the epoch with the lowest
    validation loss are restored and the model is left in eval mode, on the CPU.

    Training runs on :func:`dynafolio.devices.current`'s device; on the CPU nothing is
    copied.

    Parameters
    ----------
    model : torch.nn.Module
        Maps a float32 batch ``(batch, *input_shape)`` to ``(batch, *target_shape)``.
    X, y : numpy.ndarray, shapes (n_samples, *input_shape) and (n_samples, *target_shape)
        Inputs and (scaled) targets in chronological order.
    settings : TrainSettings
    rng : numpy.random.Generator
        Shuffles the minibatches (torch's global generator, see :func:`seeded`, drives
        initialisation and dropout).
    progress : callable, optional
        Called with 1 after every epoch, and with the number of epochs skipped by early
        stopping, so a bar of ``settings.max_epochs`` steps always completes.
    """
    device = devices.current()
    # ``.to`` returns the tensor or module itself when it is already there: on the CPU this
    # is the CPU-only computation exactly.
    model.to(device)
    X_all = torch.as_tensor(X, dtype=torch.float32).to(device)
    y_all = torch.as_tensor(y, dtype=torch.float32).to(device)
    n_val = n_validation(len(X_all), settings.val_fraction)
    n_train = len(X_all) - n_val
    X_train, y_train = X_all[:n_train], y_all[:n_train]
    X_val, y_val = X_all[n_train:], y_all[n_train:]
    optimizer = torch.optim.Adam(
        model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    train_losses: list[float] = []
    val_losses: list[float] = []
    stopper = EarlyStopping(settings.patience)
    best_state = None
    for epoch in range(settings.max_epochs):
        model.train()
        order = torch.from_numpy(epoch_draw(rng, n_train, settings.epoch_samples)).to(device)
        total = 0.0
        for start in range(0, len(order), settings.batch_size):
            batch = order[start : start + settings.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = F.mse_loss(model(X_train[batch]), y_train[batch])
            loss.backward()
            if settings.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            optimizer.step()
            total += loss.item() * len(batch)
        train_losses.append(total / len(order))
        progress(1)
        if n_val == 0:
            continue
        model.eval()
        with torch.no_grad():
            val_losses.append(F.mse_loss(model(X_val), y_val).item())
        if stopper.update(val_losses[-1], epoch):
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif stopper.should_stop:
            progress(settings.max_epochs - epoch - 1)
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.to("cpu")
    model.eval()
    best_epoch = int(stopper.best_step)
    return TrainingLog(tuple(train_losses), tuple(val_losses), best_epoch, n_train, n_val)
