"""Top-K softmax projection of action logits (or forecast scores) onto portfolio weights.

``ActionToWeights(a, K, tau)`` of the S1 paper, as a pure, batched numpy function shared by
the LSTM-only Top-K strategy, the PPO allocators and their environment.
"""

from __future__ import annotations

import numpy as np


def top_k_weights(
    logits: np.ndarray,
    k: int,
    tau: float = 0.0,
    tradable: np.ndarray | None = None,
) -> np.ndarray:
    """Keep the ``k`` largest logits, softmax over them, drop weights below ``tau``.

    Steps, per row: (1) assets that are not tradable are excluded; (2) the ``k`` largest
    remaining logits are kept (ties broken by position); (3) softmax over the kept logits,
    every other asset gets 0; (4) weights below ``tau`` are zeroed; (5) if nothing is left,
    all-in on the arg-max; (6) renormalise to sum 1. Long-only.

    Parameters
    ----------
    logits : ndarray, shape (n_assets,) or (batch, n_assets)
        Scores; larger means more attractive. Must be finite where tradable.
    k : int
        Number of assets kept (``k >= 1``; more than the tradable count keeps them all).
    tau : float
        Minimum weight kept after the softmax (0 keeps every one of the top ``k``).
    tradable : ndarray of bool, same shape as ``logits``, optional
        False for assets that may not be bought (e.g. not listed yet). Default all True.

    Returns
    -------
    ndarray, same shape as ``logits``
        Non-negative weights summing to 1 per row, at most ``k`` non-zero.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not 0.0 <= tau < 1.0:
        raise ValueError(f"tau must be in [0, 1), got {tau}")
    scores = np.atleast_2d(np.asarray(logits, dtype=float))
    allowed = np.ones_like(scores, dtype=bool) if tradable is None else np.atleast_2d(tradable)
    if allowed.shape != scores.shape:
        raise ValueError(f"tradable has shape {allowed.shape}, logits {scores.shape}")
    if not allowed.any(axis=1).all():
        raise ValueError("a row has no tradable asset")
    if not np.isfinite(scores[allowed]).all():
        raise ValueError("logits must be finite for tradable assets")
    masked = np.where(allowed, scores, -np.inf)
    n_assets = scores.shape[1]
    k = min(k, n_assets)
    # Stable descending order keeps the earliest asset on ties, so results are reproducible.
    order = np.argsort(-masked, axis=1, kind="stable")
    rows = np.arange(scores.shape[0])[:, None]
    keep = np.zeros_like(allowed)
    keep[rows, order[:, :k]] = True
    keep &= allowed
    shifted = np.where(keep, masked - np.max(masked, axis=1, keepdims=True), -np.inf)
    weights = np.exp(shifted)
    weights /= weights.sum(axis=1, keepdims=True)
    weights[weights < tau] = 0.0
    empty = weights.sum(axis=1) == 0.0
    if empty.any():
        weights[empty, order[empty, 0]] = 1.0
    weights /= weights.sum(axis=1, keepdims=True)
    return weights.reshape(np.shape(logits))
