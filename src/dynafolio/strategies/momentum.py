"""Cross-sectional momentum: equal weight on the assets that rose most over a lookback."""

from __future__ import annotations

from typing import ClassVar, Literal

import pandas as pd
from pydantic import Field, model_validator

from dynafolio.history import MarketHistory
from dynafolio.strategies.base import Strategy
from dynafolio.strategies.registry import BuildContext, StrategySpec, register_strategy


class MomentumStrategy(Strategy):
    """Hold the ``top`` assets with the highest return over the last ``lookback`` periods,
    skipping the most recent ``skip`` (the classic 12-1 rule on monthly data), equally.

    Only assets priced today with a price ``lookback`` periods ago are ranked; with none,
    the rule holds equal weight over the priced assets.
    """

    label = "Momentum"

    def __init__(self, lookback: int = 52, skip: int = 4, top: int = 5) -> None:
        self.lookback = lookback
        self.skip = skip
        self.top = top

    @property
    def name(self) -> str:
        return f"Momentum {self.lookback}-{self.skip} top {self.top}"

    def weights(self, history: MarketHistory) -> pd.Series:
        prices = history.prices
        available = history.available
        if len(prices) <= self.lookback:
            return available.astype(float) / available.sum()
        past = prices.iloc[-self.lookback - 1]
        recent = prices.iloc[-self.skip - 1]
        score = (recent / past - 1.0).where(available).dropna()
        if score.empty:
            return available.astype(float) / available.sum()
        chosen = score.nlargest(min(self.top, len(score))).index
        return pd.Series(1.0 / len(chosen), index=chosen).reindex(prices.columns, fill_value=0.0)


@register_strategy
class MomentumSpec(StrategySpec):
    """``momentum``: equal weight on the top assets by trailing return (skipping the latest)."""

    kind: Literal["momentum"]
    lookback: int = Field(52, ge=2, description="periods of the trailing return")
    skip: int = Field(4, ge=0, description="most recent periods left out of it")
    top: int = Field(5, ge=1, description="assets held")
    strategy_class: ClassVar = MomentumStrategy

    @model_validator(mode="after")
    def _skip_inside_lookback(self) -> MomentumSpec:
        if self.skip >= self.lookback:
            raise ValueError(f"skip ({self.skip}) must be shorter than lookback ({self.lookback})")
        return self

    def build(self, context: BuildContext) -> Strategy:
        return MomentumStrategy(lookback=self.lookback, skip=self.skip, top=self.top)
