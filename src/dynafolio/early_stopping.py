"""The one validation split and early-stopping rule shared by every training loop.

The forecasters' minibatch loops, the batched per-asset LSTMs, the S3 end-to-end allocator and
the PPO agents all hold out the chronological tail of their training samples
(:func:`n_validation`) and stop with :class:`EarlyStopping`, so "validation" and "patience" mean
the same thing everywhere.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

__all__ = ["EarlyStopping", "n_validation"]


def n_validation(n_samples: int, val_fraction: float) -> int:
    """Validation samples at the tail: ``ceil(val_fraction · n)``, at least 1, leaving 1 to train.

    0 when ``val_fraction`` is 0 or there are fewer than 2 samples. The tail is the latest
    samples, so no model is ever validated on data older than what it trained on.
    """
    if val_fraction <= 0 or n_samples < 2:
        return 0
    # The 1e-9 keeps 0.1 · 100 (= 10.000000000000002 in floating point) at 10.
    return min(n_samples - 1, max(1, math.ceil(val_fraction * n_samples - 1e-9)))


class EarlyStopping:
    """Track the best validation score; stop after ``patience`` evaluations without a better one.

    Works for one model (``shape=()``) or for a batch of independent models trained together
    (``shape=(n_models,)``): every array attribute has ``shape``.

    Parameters
    ----------
    patience : int or None
        Evaluations without improvement before stopping; None never stops early.
    mode : {"min", "max"}
        Whether a lower (a loss) or a higher (a validation log-growth) score is better.
    shape : tuple of int
        Shape of the scores passed to :meth:`update`.

    Attributes
    ----------
    best : ndarray
        Best score so far (±inf before the first finite score).
    best_step : ndarray of int
        Evaluation index of the best score (-1: none yet).
    stopped : ndarray of bool
        Models whose patience ran out.
    """

    def __init__(
        self,
        patience: int | None,
        mode: Literal["min", "max"] = "min",
        shape: tuple[int, ...] = (),
    ) -> None:
        if patience is not None and patience < 1:
            raise ValueError(f"patience must be >= 1 or None, got {patience}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.patience = patience
        self.sign = 1.0 if mode == "min" else -1.0
        self.best = np.full(shape, np.inf * self.sign)
        self.best_step = np.full(shape, -1, dtype=int)
        self.stopped = np.zeros(shape, dtype=bool)

    def update(self, scores, step: int, active=True) -> np.ndarray:
        """Record the scores of evaluation ``step``; return where they improved on the best.

        NaN never improves. Only ``active`` models (default all) can improve or stop.
        """
        scores = np.asarray(scores, dtype=float)
        active = np.asarray(active, dtype=bool) & ~self.stopped
        with np.errstate(invalid="ignore"):
            improved = active & (self.sign * scores < self.sign * self.best)
        self.best = np.where(improved, scores, self.best)
        self.best_step = np.where(improved, step, self.best_step)
        if self.patience is not None:
            self.stopped = self.stopped | (active & (step - self.best_step >= self.patience))
        return improved

    @property
    def should_stop(self) -> bool:
        """Whether every model has stopped."""
        return bool(np.all(self.stopped))
