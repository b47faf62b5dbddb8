"""Sliding windows of past rows paired with the next row: the samples every forecaster trains on."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from dynafolio.errors import DataError

__all__ = ["last_window", "make_windows", "stack_windows"]


def _check(values: np.ndarray, lookback: int, what: str) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if values.ndim != 2:
        raise DataError(
            f"{what} expects a 2-D array (n_rows, n_features), got shape {values.shape}; "
            "pass one column as values[:, [j]]"
        )
    if isinstance(lookback, bool) or not isinstance(lookback, int | np.integer) or lookback < 1:
        raise DataError(f"{what}: lookback must be a whole number of rows >= 1, got {lookback!r}")
    return values


def make_windows(
    values: np.ndarray, lookback: int, target: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs of ``lookback`` consecutive rows and the row that follows each, NaN-free.

    Sample ``i`` uses rows ``i .. i + lookback - 1`` as input and row ``i + lookback`` (of
    ``target``, default ``values`` itself) as target, so a target is always later than every
    input row. Samples whose input or target contains a NaN (or inf) are dropped rather than
    filled: a window never spans a missing price, and an asset listed late simply has fewer
    samples. Samples stay in chronological order, so the last ones are the latest (the
    validation tail).

    Parameters
    ----------
    values : numpy.ndarray, shape (n_rows, n_features)
        Rows in ascending date order (e.g. scaled log returns or prices).
    lookback : int
        Rows per input window (>= 1).
    target : numpy.ndarray, shape (n_rows, n_targets), optional
        What the model predicts, on the same rows (e.g. next returns from a window of
        features); default ``values``.

    Returns
    -------
    X : numpy.ndarray, shape (n_samples, lookback, n_features)
        Input windows, float64.
    y : numpy.ndarray, shape (n_samples, n_targets)
        The target row after each window.

    Raises
    ------
    DataError
        If ``values`` is not 2-D, ``target`` has other rows, or ``lookback`` is not an int >= 1.
    """
    values = _check(values, lookback, "make_windows")
    target = values if target is None else _check(target, lookback, "make_windows target")
    if len(target) != len(values):
        raise DataError(f"make_windows: target has {len(target)} rows, the inputs {len(values)}")
    n_rows, n_features = values.shape
    if n_rows <= lookback:
        return np.empty((0, lookback, n_features)), np.empty((0, target.shape[1]))
    # Read-only views, no copy until the NaN filter keeps the valid samples.
    windows = sliding_window_view(values[:-1], lookback, axis=0).transpose(0, 2, 1)
    following = target[lookback:]
    keep = np.isfinite(windows).all(axis=(1, 2)) & np.isfinite(following).all(axis=1)
    return windows[keep].copy(), following[keep].copy()


def last_window(values: np.ndarray, lookback: int) -> np.ndarray | None:
    """The last ``lookback`` rows, or None if there are fewer rows.

    Parameters
    ----------
    values : numpy.ndarray, shape (n_rows, n_features)

    Returns
    -------
    numpy.ndarray, shape (lookback, n_features), or None
        May contain NaN; the caller decides which features it can still forecast.
    """
    values = _check(values, lookback, "last_window")
    if len(values) < lookback:
        return None
    return values[-lookback:].copy()


def stack_windows(
    samples: Sequence[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pad several sample sets (one per model, e.g. per asset) into rectangular arrays.

    Parameters
    ----------
    samples : sequence of (X, y)
        Output of :func:`make_windows` per set, ``X`` of shape (n_i, lookback, n_features),
        ``y`` of shape (n_i, n_features); the same lookback and n_features for all.

    Returns
    -------
    X : numpy.ndarray, shape (n_sets, max n_i, lookback, n_features)
    y : numpy.ndarray, shape (n_sets, max n_i, n_features)
        Set ``i`` fills rows ``0 .. n_i - 1`` in its order; the padding is zeros and must be
        masked by the caller.
    counts : numpy.ndarray of int, shape (n_sets,)
        ``n_i`` per set.
    """
    counts = np.array([len(X) for X, _ in samples], dtype=int)
    X0, y0 = samples[0]
    X = np.zeros((len(samples), counts.max(initial=0), *X0.shape[1:]))
    y = np.zeros((len(samples), counts.max(initial=0), *y0.shape[1:]))
    for i, (X_i, y_i) in enumerate(samples):
        X[i, : counts[i]], y[i, : counts[i]] = X_i, y_i
    return X, y, counts
