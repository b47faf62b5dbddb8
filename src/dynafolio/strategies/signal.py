"""Long-only allocation rules driven by per-asset return forecasts (S1 LSTM-only Top-K, S2).

Every strategy here is a :class:`~dynafolio.strategies.forecast.ForecastStrategy`: the base
class fits the forecaster walk-forward and, at the close of each decision date ``t``, asks
it for the next period's log return ``ln(P_{t+1} / P_t)`` of every asset using the history
up to ``t`` only. The rules below turn that forecast into long-only weights that sum to 1
and are held from ``t`` to ``t+1`` (the engine charges costs and books the return).

An asset is *tradable* at ``t`` when it has a price at ``t`` (``history.available``) **and**
a finite forecast: NaN means the model could not forecast it (e.g. too little history since
listing), and a rule must not bet on an asset it knows nothing about. If no asset is
tradable the strategy raises :class:`~dynafolio.errors.DataError` instead of guessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, Self

import numpy as np
import pandas as pd
from pydantic import Field
from skfolio import RiskMeasure
from skfolio.moments import BaseMu
from skfolio.optimization import HierarchicalRiskParity, MeanRisk, ObjectiveFunction
from skfolio.prior import EmpiricalPrior

from dynafolio.errors import DataError, OptimizationError
from dynafolio.forecast.registry import (
    discover_forecasters,
    forecaster_spec,
    forecaster_spec_union,
)
from dynafolio.history import MarketHistory
from dynafolio.rl.projection import top_k_weights
from dynafolio.settings import parameters
from dynafolio.strategies.base import (
    EstimationWindow,
    Strategy,
    TopK,
    TopKTau,
    cross_sectional_zscore,
    fit_skfolio,
    normalise,
)
from dynafolio.strategies.forecast import ForecastStrategy
from dynafolio.strategies.registry import BuildContext, register_strategy, spec_fields

discover_forecasters()
#: Any registered forecaster, chosen by ``model``.
ForecasterUnion = forecaster_spec_union()


@dataclass
class _Fallbacks:
    """How often a rule fell back to its replacement, and one reason, for the report."""

    replacement: str
    count: int = 0
    reason: str = ""

    def record(self, reason: str) -> None:
        self.count += 1
        self.reason = reason

    def notes(self, name: str) -> tuple[str, ...]:
        if not self.count:
            return ()
        return (
            f"{name} fell back to {self.replacement} on {self.count} decision(s), "
            f"e.g. because {self.reason}",
        )


class _FixedMu(BaseMu):
    """skfolio expected-returns estimator that hands back a given vector.

    skfolio estimates ``mu`` from the returns it is fitted on; to optimise on *forecasts*
    instead, this estimator ignores the returns (they still feed the covariance) and sets
    ``mu_`` to ``mu``, shape ``(n_assets,)``: expected simple returns per period, in the
    column order of the returns.
    """

    def __init__(self, mu: np.ndarray | None = None) -> None:
        self.mu = mu

    def fit(self, X, y=None) -> _FixedMu:
        n_assets = np.shape(X)[1]
        mu = np.asarray(self.mu, dtype=float)
        if mu.shape != (n_assets,):
            raise ValueError(f"mu has shape {mu.shape}, the returns have {n_assets} assets")
        self.mu_ = mu.copy()
        self.n_features_in_ = n_assets
        return self


def _tradable_forecast(forecast: pd.Series, history: MarketHistory, name: str) -> pd.Series:
    """The finite forecasts of assets priced today, in the data's column order."""
    aligned = forecast.reindex(history.assets).astype(float)
    tradable = history.available & np.isfinite(aligned)
    if not tradable.any():
        raise DataError(
            f"{name} on {history.date.date()}: no asset has both a price and a finite "
            "forecast; the forecaster needs more history (start the evaluation later or "
            "shorten its lookback)"
        )
    return aligned[tradable]


def _on_all_assets(weights: pd.Series, history: MarketHistory) -> pd.Series:
    return weights.reindex(history.assets, fill_value=0.0).astype(float)


@parameters
class TopKForecastStrategy(ForecastStrategy):
    """S1 "LSTM-only": Top-K softmax of standardised forecasts.

    At each decision the forecasts of the tradable assets are z-scored across assets and
    used as logits of :func:`~dynafolio.rl.projection.top_k_weights` (keep the ``k``
    largest, softmax over them, zero weights below ``tau``, all-in on the arg-max if nothing
    is left). Z-scores rather than raw forecasts because a softmax of weekly log returns of
    order 0.01 is practically uniform (``e^0.03 / e^-0.03 ≈ 1.06``): the ranking would
    decide which ``k`` assets are held but not how much; standardising gives the softmax
    the same unit-scale logits an RL policy produces, whatever the data's frequency. When
    all forecasts are equal the logits are all 0: equal weight on the first ``k`` tradable
    assets (ties broken by column order).

    Parameters
    ----------
    forecaster : Forecaster
        Predicts next-period log returns (``target == "log_return"``).
    k : int
        Number of assets held (at most).
    tau : float
        Minimum weight kept after the softmax, in ``[0, 1)``.
    retrain_every, train_window, forecaster_label
        Walk-forward refitting and the family's name, see :class:`ForecastStrategy`.
    """

    label = "Signal Top-K"

    k: TopK = 5
    tau: TopKTau = 0.0

    @property
    def name(self) -> str:
        family = self.family
        return f"{family} Top-{self.k}" + (f" (tau {self.tau:g})" if self.tau else "")

    def fit(self, history: MarketHistory) -> Self:
        if isinstance(self.k, bool) or not isinstance(self.k, int | np.integer) or self.k < 1:
            raise ValueError(f"{self.label}: k must be an integer >= 1, got {self.k!r}")
        if not 0.0 <= self.tau < 1.0:
            raise ValueError(f"{self.label}: tau must be in [0, 1), got {self.tau!r}")
        return super().fit(history)

    def allocate(self, forecast: pd.Series, history: MarketHistory) -> pd.Series:
        scores = _tradable_forecast(forecast, history, self.name)
        tradable = history.assets.isin(scores.index)
        logits = np.zeros(len(history.assets))
        logits[tradable] = cross_sectional_zscore(scores.to_numpy())
        weights = top_k_weights(logits, self.k, self.tau, tradable)
        return pd.Series(weights, index=history.assets)


@parameters
class _SignalRule(ForecastStrategy):
    """What the S2 allocation rules share: the forecaster's family in the display name
    (``"{family} {suffix}"``), and a fallback that a rule records, and reports, on each
    decision where the forecasts give it nothing to act on."""

    #: Shown after the forecaster's family in the strategy's name.
    suffix: ClassVar[str]
    #: What the rule does instead when the forecasts give it nothing to act on.
    fallback: ClassVar[str]

    @property
    def name(self) -> str:
        return f"{self.family} {self.suffix}"

    def fit(self, history: MarketHistory) -> Self:
        self.fallbacks_ = _Fallbacks(self.fallback)
        return super().fit(history)

    def report_notes(self) -> tuple[str, ...]:
        return super().report_notes() + self.fallbacks_.notes(self.name)


class SignalWeightStrategy(_SignalRule):
    """S2 long-only signal weights: ``w ∝ clip(forecast, 0)`` over the tradable assets.

    Assets forecast to fall get nothing; the rest are weighted by their forecast. When no
    forecast is positive there is nothing to prefer, so the rule holds equal weight over the
    tradable assets (the source's choice) and records a note.

    Parameters
    ----------
    forecaster, retrain_every, train_window, forecaster_label
        As for :class:`TopKForecastStrategy`.
    """

    label = "Signal weights"
    suffix = "signal"
    fallback = "equal weight"

    def allocate(self, forecast: pd.Series, history: MarketHistory) -> pd.Series:
        scores = _tradable_forecast(forecast, history, self.name).clip(lower=0.0)
        if scores.sum() <= 0:
            self.fallbacks_.record("no forecast was positive")
        # normalise() gives equal weight exactly when the clipped scores sum to 0.
        return _on_all_assets(normalise(scores), history)


@parameters
class SignalInverseVolStrategy(_SignalRule):
    """S2 signal-scaled inverse volatility: ``w ∝ clip(forecast, 0) / σ``.

    ``σ_i`` is the standard deviation (ddof 1) of asset ``i``'s simple returns over the last
    ``vol_window`` periods up to the decision date, each asset on its own valid returns (no
    cross-asset terms are needed, so no rows are dropped for other assets' gaps). Assets with
    fewer than ``min_periods`` valid returns in the window, or zero volatility, are left out:
    their σ is too noisy to size on. When no forecast is positive the rule falls back to
    plain inverse volatility ``w ∝ 1/σ`` and records a note.

    Parameters
    ----------
    forecaster, retrain_every, train_window, forecaster_label
        As for :class:`TopKForecastStrategy`.
    vol_window : int
        Periods in the volatility window (63 ≈ a quarter of trading days).
    min_periods : int
        Fewest valid returns in the window for an asset's σ (capped at ``vol_window``).
    """

    label = "Signal inverse volatility"
    suffix = "signal inv-vol"
    fallback = "plain inverse volatility"

    vol_window: int = 63
    min_periods: int = 10

    def fit(self, history: MarketHistory) -> Self:
        if self.vol_window < 2:
            raise ValueError(f"{self.label}: vol_window must be >= 2, got {self.vol_window}")
        return super().fit(history)

    def allocate(self, forecast: pd.Series, history: MarketHistory) -> pd.Series:
        scores = _tradable_forecast(forecast, history, self.name)
        window = history.returns.iloc[1:].iloc[-self.vol_window :][scores.index]
        sigma = window.std(ddof=1)
        enough = window.notna().sum() >= max(2, min(self.min_periods, self.vol_window))
        usable = enough & (sigma > 0)
        if not usable.any():
            raise DataError(
                f"{self.name} on {history.date.date()}: no tradable asset has "
                f"{self.min_periods} returns in the last {self.vol_window} periods to "
                "estimate its volatility; start the evaluation later or lower min_periods"
            )
        scores, sigma = scores[usable], sigma[usable]
        sized = scores.clip(lower=0.0) / sigma
        if sized.sum() <= 0:
            self.fallbacks_.record("no forecast was positive")
            sized = 1.0 / sigma
        return _on_all_assets(normalise(sized), history)


@parameters
class ForecastMeanVarianceStrategy(EstimationWindow, _SignalRule):
    """S2 forecasts as expected returns of a long-only maximum-Sharpe portfolio (skfolio).

    Expected simple returns are the forecasts converted from log returns, ``exp(f) − 1``;
    the covariance is the sample covariance of the last ``window`` periods of returns (the
    tradable assets with ``min_coverage`` of the window, complete rows only — the same
    sample the classical :class:`~dynafolio.strategies.classical.MaxSharpeStrategy` uses).
    The forecasts reach skfolio's ``MeanRisk`` through an ``EmpiricalPrior`` whose mean
    estimator returns them unchanged. When every expected return is at or below the
    risk-free rate, max-Sharpe has no long-only solution; the rule then falls back to
    minimum variance on the same window (as ``MaxSharpeStrategy`` does) and records a note,
    likewise if the solver fails.

    Parameters
    ----------
    forecaster, retrain_every, train_window, forecaster_label
        As for :class:`TopKForecastStrategy`.
    window, min_coverage, min_periods
        The covariance's estimation window (:class:`~dynafolio.strategies.base.EstimationWindow`,
        the tradable assets with ``min_coverage`` of it; None: all history).
    risk_free_rate : float
        Per-period risk-free rate (simple, same frequency as the data).
    """

    label = "Forecast mean-variance"
    suffix = "forecast MVO"
    fallback = "minimum variance"

    risk_free_rate: float = 0.0

    def allocate(self, forecast: pd.Series, history: MarketHistory) -> pd.Series:
        scores = _tradable_forecast(forecast, history, self.name)
        returns = self.estimation_sample(history, self.name, scores.index)
        expected = np.expm1(scores[returns.columns])
        if returns.shape[1] == 1:
            return _on_all_assets(pd.Series(1.0, index=returns.columns), history)
        if (expected <= self.risk_free_rate).all():
            self.fallbacks_.record("every forecast was at or below the risk-free rate")
            return self._minimum_variance(returns, history)
        optimiser = MeanRisk(
            objective_function=ObjectiveFunction.MAXIMIZE_RATIO,
            risk_measure=RiskMeasure.VARIANCE,
            risk_free_rate=self.risk_free_rate,
            prior_estimator=EmpiricalPrior(mu_estimator=_FixedMu(expected.to_numpy())),
        )
        try:
            weights = fit_skfolio(optimiser, returns)
        except (OptimizationError, ValueError) as error:
            self.fallbacks_.record(f"the optimiser failed ({str(error)[:80]})")
            return self._minimum_variance(returns, history)
        return _on_all_assets(_clean(weights, self.name, history), history)

    def _minimum_variance(self, returns: pd.DataFrame, history: MarketHistory) -> pd.Series:
        weights = fit_skfolio(MeanRisk(risk_measure=RiskMeasure.VARIANCE), returns)
        return _on_all_assets(_clean(weights, self.name, history), history)


@parameters
class ForecastHRPStrategy(EstimationWindow, _SignalRule):
    """S2 forecasts fed into HRP: Hierarchical Risk Parity over the assets forecast to rise.

    The forecast selects, HRP sizes: the candidates are the tradable assets with
    ``min_coverage`` of the ``window`` (those HRP can estimate), of which the ones with a
    positive forecast are allocated by skfolio's ``HierarchicalRiskParity`` on their returns
    over the window. A single selected asset gets weight 1. When no candidate has a positive
    forecast the rule has no view, so it runs HRP over all candidates and records a note.

    Parameters
    ----------
    forecaster, retrain_every, train_window, forecaster_label
        As for :class:`TopKForecastStrategy`.
    window, min_coverage, min_periods
        Estimation window, as for :class:`ForecastMeanVarianceStrategy`.
    """

    label = "Forecast HRP"
    suffix = "forecast HRP"
    fallback = "HRP over every tradable asset"

    def allocate(self, forecast: pd.Series, history: MarketHistory) -> pd.Series:
        scores = _tradable_forecast(forecast, history, self.name)
        candidates = self.estimation_sample(history, self.name, scores.index).columns
        chosen = candidates[(scores[candidates] > 0).to_numpy()]
        if chosen.empty:
            self.fallbacks_.record("no forecast was positive")
            chosen = candidates
        if len(chosen) == 1:
            return _on_all_assets(pd.Series(1.0, index=chosen), history)
        # Re-read the window for the chosen assets only: fewer columns, fewer dropped rows.
        returns = self.estimation_sample(history, self.name, chosen)
        weights = fit_skfolio(HierarchicalRiskParity(), returns)
        return _on_all_assets(_clean(weights, self.name, history), history)


def _clean(weights: pd.Series, name: str, history: MarketHistory) -> pd.Series:
    """Solver output as long-only weights summing to 1 (solvers leave ~1e-10 negatives)."""
    if not np.isfinite(weights.to_numpy()).all():
        raise OptimizationError(f"{name} on {history.date.date()} produced non-finite weights")
    return normalise(weights.clip(lower=0.0))


# ------------------------------------------------------------------ config declarations
#: A forecaster parameter comes from a config's ``forecaster`` entry (built per seed, its
#: registered label naming the family); the rest of a forecast-driven class's parameters
#: are the entry's own.
FORECASTER = frozenset({"forecaster", "forecaster_label"})


@register_strategy
class TopKSpec(spec_fields(TopKForecastStrategy, exclude=FORECASTER)):
    """``forecast_topk`` (S1 LSTM-only): forecasts through the Top-K softmax projection."""

    kind: Literal["forecast_topk"]
    forecaster: ForecasterUnion = Field(default_factory=lambda: forecaster_spec("univariate_lstm"))
    strategy_class: ClassVar = TopKForecastStrategy


_ALLOCATIONS = {
    "clip": SignalWeightStrategy,
    "inverse_vol": SignalInverseVolStrategy,
    "mean_variance": ForecastMeanVarianceStrategy,
    "hrp": ForecastHRPStrategy,
}


@register_strategy
class SignalSpec(spec_fields(ForecastStrategy, exclude=FORECASTER)):
    """``forecast_signal`` (S2): long-only weights from forecasts — ``clip`` (w ∝ max(f, 0)),
    ``inverse_vol`` (signal × inverse volatility), ``mean_variance`` (forecasts as expected
    returns, skfolio) or ``hrp`` (HRP over the assets forecast to rise)."""

    kind: Literal["forecast_signal"]
    allocation: Literal["clip", "inverse_vol", "mean_variance", "hrp"] = "clip"
    forecaster: ForecasterUnion = Field(default_factory=lambda: forecaster_spec("stacked_lstm"))
    strategy_class: ClassVar = SignalWeightStrategy  # every allocation is learned alike

    def build(self, context: BuildContext) -> Strategy:
        cls = _ALLOCATIONS[self.allocation]
        return cls(**self.arguments(context, cls))
