"""Scalers fitted on training data only, applied unchanged to later data."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ZScoreScaler:
    """Per-column ``(x − mean) / std`` with statistics from the fitting data.

    Attributes ``mean`` and ``std`` have shape ``(n_columns,)``; a column with zero or
    undefined spread gets std 1 so it maps to 0 instead of infinity.
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray) -> ZScoreScaler:
        """Statistics of ``values``, shape ``(n_rows, n_columns)``; NaN rows are ignored."""
        values = np.asarray(values, dtype=float)
        with warnings.catch_warnings():
            # A column with no data yet (an asset not listed) is expected: it maps to 0.
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(values, axis=0)
            std = np.nanstd(values, axis=0)
        std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
        return cls(np.nan_to_num(mean), std)

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (np.asarray(values, dtype=float) - self.mean) / self.std

    def inverse(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype=float) * self.std + self.mean


@dataclass(frozen=True)
class MinMaxScaler:
    """Per-column map of the fitting data's ``[min, max]`` to ``[0, 1]``.

    Later data may fall outside ``[0, 1]``: it is not clipped, so a new high stays a new
    high. A constant column maps to 0.
    """

    low: np.ndarray
    span: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray) -> MinMaxScaler:
        values = np.asarray(values, dtype=float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            low = np.nanmin(values, axis=0)
            span = np.nanmax(values, axis=0) - low
        span = np.where(np.isfinite(span) & (span > 1e-12), span, 1.0)
        return cls(np.nan_to_num(low), span)

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (np.asarray(values, dtype=float) - self.low) / self.span

    def inverse(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype=float) * self.span + self.low
