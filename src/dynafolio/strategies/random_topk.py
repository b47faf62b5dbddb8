"""The random-policy control of the Top-K allocators: chance through the same projection."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Self

import numpy as np
import pandas as pd
from pydantic import Field

from dynafolio.history import MarketHistory
from dynafolio.rl.projection import top_k_weights
from dynafolio.settings import parameters
from dynafolio.strategies.base import Strategy, TopK, TopKTau
from dynafolio.strategies.registry import register_strategy, spec_fields


@parameters
class RandomTopKStrategy(Strategy):
    """Seeded random logits through the Top-K projection — what a Top-K policy earns by luck.

    At a decision, N standard normal logits (one per asset) go through
    :func:`~dynafolio.rl.projection.top_k_weights` with the same ``k`` and ``tau`` and the same
    tradable assets (a return at the decision date) as the PPO allocators. The logits are
    redrawn every ``hold`` decisions and kept in between (the projection is re-applied, so a
    newly untradable asset is dropped), which lets the control match a learned policy's
    turnover. A draw depends only on ``seed`` and the date it is made (not on when the
    control was fitted), so every walk-forward block draws afresh and a block run alone draws
    what the whole record draws there; the control runs once per seed, like the learned
    strategies it controls.
    """

    label = "Random"
    seeded: ClassVar[bool] = True

    k: TopK = 5
    tau: TopKTau = 0.0
    hold: Annotated[int, Field(ge=1, description="decisions each random draw is kept")] = 1
    seed: int = 0

    @property
    def name(self) -> str:
        return f"Random Top-{self.k}" + (f" (hold {self.hold})" if self.hold > 1 else "")

    def fit(self, history: MarketHistory) -> Self:
        super().fit(history)
        self.logits_: np.ndarray | None = None
        self.since_draw_ = 0
        return self

    def weights(self, history: MarketHistory) -> pd.Series:
        if not hasattr(self, "since_draw_"):
            raise RuntimeError(f"{self.name} is not fitted; call fit() first")
        n_assets = len(history.assets)
        if self.logits_ is None or self.since_draw_ >= self.hold:
            day = int(history.date.toordinal())
            self.logits_ = np.random.default_rng([self.seed, day]).standard_normal(n_assets)
            self.since_draw_ = 0
        self.since_draw_ += 1
        tradable = history.returns.iloc[-1].notna().to_numpy()
        if not tradable.any():
            tradable = history.available.to_numpy()
        weights = top_k_weights(self.logits_, self.k, self.tau, tradable)
        return pd.Series(weights, index=history.assets)


@register_strategy
class RandomTopKSpec(spec_fields(RandomTopKStrategy)):
    """``random_topk``: seeded random logits through the Top-K projection (a chance control)."""

    kind: Literal["random_topk"]
    strategy_class: ClassVar = RandomTopKStrategy
