"""Strategies: everything that turns a history into target weights."""

from __future__ import annotations

from dynafolio.strategies.base import EstimatedStrategy, Strategy
from dynafolio.strategies.classical import (
    AssetClassCompositeStrategy,
    BuyAndHoldStrategy,
    EqualWeightStrategy,
    HERCStrategy,
    HRPStrategy,
    InverseVolatilityStrategy,
    MaxSharpeStrategy,
    MinimumVarianceStrategy,
)

__all__ = [
    "AssetClassCompositeStrategy",
    "BuyAndHoldStrategy",
    "EqualWeightStrategy",
    "EstimatedStrategy",
    "HERCStrategy",
    "HRPStrategy",
    "InverseVolatilityStrategy",
    "MaxSharpeStrategy",
    "MinimumVarianceStrategy",
    "Strategy",
]
