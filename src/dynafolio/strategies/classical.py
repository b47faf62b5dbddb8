"""Classical allocation baselines.

Rule-based ones (equal weight, buy-and-hold, asset-class composite) are written here; the
optimisers delegate to skfolio rather than hand-written solvers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

import pandas as pd
from pydantic import model_validator
from skfolio import RiskMeasure
from skfolio.optimization import (
    HierarchicalEqualRiskContribution,
    HierarchicalRiskParity,
    InverseVolatility,
    MeanRisk,
    ObjectiveFunction,
)

from dynafolio.errors import ConfigError, DataError, OptimizationError, some_names
from dynafolio.history import MarketHistory
from dynafolio.settings import parameters
from dynafolio.strategies.base import EstimatedStrategy, Strategy, fit_skfolio
from dynafolio.strategies.registry import (
    BuildContext,
    StrategySpec,
    register_strategy,
    spec_fields,
)


class EqualWeightStrategy(Strategy):
    """1/N over every asset with a price at the decision date, rebalanced every period."""

    label = "Equal weight"

    def weights(self, history: MarketHistory) -> pd.Series:
        available = history.available
        return available.astype(float) / available.sum()


@parameters
class BuyAndHoldStrategy(Strategy):
    """All-in on one asset (an index ETF by default) bought once and held."""

    rebalances = False

    asset: str = "SPY"

    @property
    def name(self) -> str:
        return f"{self.asset} buy & hold"

    def fit(self, history: MarketHistory) -> BuyAndHoldStrategy:
        super().fit(history)
        if self.asset not in history.assets:
            raise DataError(
                f"buy-and-hold asset {self.asset!r} is not in the data; "
                f"choose one of {some_names(history.assets)}"
            )
        return self

    def weights(self, history: MarketHistory) -> pd.Series:
        if not history.available[self.asset]:
            raise DataError(f"{self.asset} has no price on {history.date.date()}, cannot buy it")
        return pd.Series({self.asset: 1.0})


@parameters
class AssetClassCompositeStrategy(Strategy):
    """Equal weight per asset class, equal weight within each class, rebalanced.

    Parameters
    ----------
    asset_classes : mapping of asset -> class name
        Assets without a class are left out. A class with no priced asset on a date is
        skipped and the others share its weight.
    """

    label = "Asset-class composite"

    asset_classes: Mapping[str, str]

    def fit(self, history: MarketHistory) -> AssetClassCompositeStrategy:
        super().fit(history)
        known = [a for a in history.assets if a in self.asset_classes]
        if not known:
            raise DataError(
                "asset-class composite: none of the data's assets has an asset class; "
                "give asset_classes for the columns "
                f"{list(history.assets)[:10]}"
            )
        return self

    def weights(self, history: MarketHistory) -> pd.Series:
        classes = pd.Series(self.asset_classes).reindex(history.assets)
        tradable = classes[history.available & classes.notna()]
        per_class = tradable.groupby(tradable).transform("size")
        n_classes = tradable.nunique()
        return 1.0 / (n_classes * per_class.astype(float))


class InverseVolatilityStrategy(EstimatedStrategy):
    """Weights proportional to 1/σ of each asset over the estimation window (skfolio)."""

    label = "Inverse volatility"

    def _estimate(self, returns: pd.DataFrame) -> pd.Series:
        return fit_skfolio(InverseVolatility(), returns)


def covariance_problem(
    strategy: EstimatedStrategy, n_assets: int, train_periods: int | None
) -> str | None:
    """The mean-variance optimisers invert a sample covariance: from fewer periods than assets
    it is singular (rank below N), so the weights fit estimation noise, and the solve grows
    about as N² on large universes (``benchmarks/scaling.py``: 0.3 s per estimate at 300
    assets, 3 s at 1,000, at every rebalance). Refused when the periods an estimate reads are
    known to be that few: a ``window``, or for a static or expanding estimate without one,
    the training period (``train_periods`` returns; an expanding estimate's first)."""
    if strategy.estimation != "rolling" and train_periods is not None:
        periods = min(strategy.window or train_periods, train_periods)
    else:
        periods = strategy.window
    if periods is None or periods > n_assets:
        return None
    if periods == strategy.window:
        source = f"a window of {periods} periods"
        fix = f"Give `window` at least {n_assets + 1} periods"
    else:
        source = f"the {periods} returns of its training period ({strategy.estimation} estimate)"
        fix = f"Give it at least {n_assets + 1} training periods (more data, larger train_fraction)"
    return (
        f"{strategy.label} estimates the covariance of {n_assets} assets from {source}; "
        "with no more periods than assets the sample covariance is singular and the "
        f"optimiser fits noise. {fix}, or use hrp, herc or inverse_volatility, which invert "
        "no covariance"
    )


class MinimumVarianceStrategy(EstimatedStrategy):
    """Long-only global minimum variance (skfolio ``MeanRisk``, variance objective)."""

    label = "Minimum variance"

    def universe_problem(self, n_assets: int, train_periods: int | None = None) -> str | None:
        return covariance_problem(self, n_assets, train_periods)

    def _estimate(self, returns: pd.DataFrame) -> pd.Series:
        return fit_skfolio(MeanRisk(risk_measure=RiskMeasure.VARIANCE), returns)


@parameters
class MaxSharpeStrategy(EstimatedStrategy):
    """Markowitz long-only maximum Sharpe ratio (skfolio ``MeanRisk``, ratio objective).

    When every expected return is at or below the risk-free rate the maximum-Sharpe
    problem has no solution (no long-only portfolio has a positive excess return); the
    strategy then falls back to minimum variance and records a note saying on how many
    dates that happened.

    Parameters
    ----------
    risk_free_rate : float
        Per-period risk-free rate (same frequency as the returns).
    """

    label = "Max Sharpe (MVO)"

    risk_free_rate: float = 0.0

    def universe_problem(self, n_assets: int, train_periods: int | None = None) -> str | None:
        return covariance_problem(self, n_assets, train_periods)

    def fit(self, history: MarketHistory) -> MaxSharpeStrategy:
        self.n_fallbacks_ = 0
        return super().fit(history)

    def _estimate(self, returns: pd.DataFrame) -> pd.Series:
        if (returns.mean() <= self.risk_free_rate).all():
            return self._fallback(
                "every expected return is at or below the risk-free rate", returns
            )
        optimiser = MeanRisk(
            objective_function=ObjectiveFunction.MAXIMIZE_RATIO,
            risk_measure=RiskMeasure.VARIANCE,
            risk_free_rate=self.risk_free_rate,
        )
        try:
            return fit_skfolio(optimiser, returns)
        except (OptimizationError, ValueError) as error:
            return self._fallback(f"the optimiser failed ({str(error)[:80]})", returns)

    def _fallback(self, why: str, returns: pd.DataFrame) -> pd.Series:
        self.n_fallbacks_ = getattr(self, "n_fallbacks_", 0) + 1
        self.last_fallback_reason_ = why
        return fit_skfolio(MeanRisk(risk_measure=RiskMeasure.VARIANCE), returns)

    def report_notes(self) -> tuple[str, ...]:
        notes = super().report_notes()
        if getattr(self, "n_fallbacks_", 0):
            notes += (
                f"{self.name} fell back to minimum variance on {self.n_fallbacks_} "
                f"estimate(s), e.g. because {self.last_fallback_reason_}",
            )
        return notes


class HRPStrategy(EstimatedStrategy):
    """Hierarchical Risk Parity (López de Prado), skfolio implementation."""

    label = "HRP"

    def _estimate(self, returns: pd.DataFrame) -> pd.Series:
        return fit_skfolio(HierarchicalRiskParity(), returns)


class HERCStrategy(EstimatedStrategy):
    """Hierarchical Equal Risk Contribution (Raffinot), skfolio implementation."""

    label = "HERC"

    def _estimate(self, returns: pd.DataFrame) -> pd.Series:
        return fit_skfolio(HierarchicalEqualRiskContribution(), returns)


# ------------------------------------------------------------------ config declarations
@register_strategy
class EqualWeightSpec(StrategySpec):
    """``equal_weight``: 1/N of the assets priced that day."""

    kind: Literal["equal_weight"]
    strategy_class: ClassVar = EqualWeightStrategy


@register_strategy
class BuyAndHoldSpec(spec_fields(BuyAndHoldStrategy)):
    """``buy_and_hold``: one asset (the index), bought once."""

    kind: Literal["buy_and_hold"]
    strategy_class: ClassVar = BuyAndHoldStrategy


@register_strategy
class CompositeSpec(StrategySpec):
    """``asset_class_composite``: equal weight per asset class, equal within a class."""

    kind: Literal["asset_class_composite"]
    strategy_class: ClassVar = AssetClassCompositeStrategy

    def build(self, context: BuildContext) -> Strategy:
        if not context.asset_classes:
            raise ConfigError(
                "asset_class_composite needs asset classes, which only embedded datasets "
                "provide; remove it when using --data FILE"
            )
        return super().build(context)


class EstimatedSpec(spec_fields(EstimatedStrategy)):
    """Settings of the optimisers estimated on a window of past returns."""

    @model_validator(mode="after")
    def _rolling_needs_window(self) -> EstimatedSpec:
        if self.estimation == "rolling" and self.window is None:
            raise ValueError("a rolling estimate needs `window` (periods)")
        return self


@register_strategy
class InverseVolatilitySpec(EstimatedSpec):
    """``inverse_volatility``: weights ∝ 1/σ (skfolio)."""

    kind: Literal["inverse_volatility"]
    strategy_class: ClassVar = InverseVolatilityStrategy


@register_strategy
class MinimumVarianceSpec(EstimatedSpec):
    """``minimum_variance``: skfolio ``MeanRisk``, minimum variance."""

    kind: Literal["minimum_variance"]
    strategy_class: ClassVar = MinimumVarianceStrategy


@register_strategy
class MaxSharpeSpec(EstimatedSpec):
    """``max_sharpe``: skfolio ``MeanRisk`` maximum Sharpe ratio, with the minimum-variance
    fallback when every expected return is below the risk-free rate (the run's
    ``backtest.risk_free_rate``, per period)."""

    kind: Literal["max_sharpe"]
    strategy_class: ClassVar = MaxSharpeStrategy


@register_strategy
class HRPSpec(EstimatedSpec):
    """``hrp``: hierarchical risk parity (skfolio)."""

    kind: Literal["hrp"]
    strategy_class: ClassVar = HRPStrategy


@register_strategy
class HERCSpec(EstimatedSpec):
    """``herc``: hierarchical equal risk contribution (skfolio)."""

    kind: Literal["herc"]
    strategy_class: ClassVar = HERCStrategy
