"""Transaction-cost models: one method, ``cost(target, drifted) -> per-rebalance cost``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


class CostModel(Protocol):
    """What the engine needs from a cost model.

    ``cost`` receives the target weights and the drifted (pre-trade) weights of every
    rebalance, each of shape ``(n_rebalances, n_assets)``, and returns the cost of each
    rebalance as a fraction of portfolio value, shape ``(n_rebalances,)``.
    """

    def cost(self, target: np.ndarray, drifted: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class ProportionalCost:
    """Cost ``tc · ‖w_target − w_drifted‖₁``: a fixed fraction of the value traded.

    Parameters
    ----------
    rate : float
        Cost per unit of one-way turnover (0.001 = 10 bp of the value traded).
    """

    rate: float = 0.001

    def __post_init__(self) -> None:
        if not np.isfinite(self.rate) or self.rate < 0:
            raise ValueError(f"transaction cost rate must be a finite number >= 0, got {self.rate}")

    def cost(self, target: np.ndarray, drifted: np.ndarray) -> np.ndarray:
        return self.rate * np.abs(target - drifted).sum(axis=-1)
