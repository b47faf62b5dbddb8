"""Cross-sectional momentum: equal weight on the assets that rose most over a lookback."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import pandas as pd
from pydantic import Field, model_validator

from dynafolio.history import MarketHistory
from dynafolio.settings import parameters
from dynafolio.strategies.base import Strategy
from dynafolio.strategies.registry import register_strategy, spec_fields


@parameters
class MomentumStrategy(Strategy):
    """Hold the ``top`` assets with the highest return over the last ``lookback`` periods,
    skipping the most recent ``skip`` (the classic 12-1 rule on monthly data), equally.

    Only assets priced today with a price ``lookback`` periods ago are ranked; with none,
    the rule holds equal weight over the priced assets.
    """

    label = "Momentum"

    lookback: Annotated[int, Field(ge=2, description="periods of the trailing return")] = 52
    skip: Annotated[int, Field(ge=0, description="most recent periods left out of it")] = 4
    top: Annotated[int, Field(ge=1, description="assets held")] = 5

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
class MomentumSpec(spec_fields(MomentumStrategy)):
    """``momentum``: equal weight on the top assets by trailing return (skipping the latest)."""

    kind: Literal["momentum"]
    strategy_class: ClassVar = MomentumStrategy

    @model_validator(mode="after")
    def _skip_inside_lookback(self) -> MomentumSpec:
        if self.skip >= self.lookback:
            raise ValueError(f"skip ({self.skip}) must be shorter than lookback ({self.lookback})")
        return self
