"""The strategy contract: fit on the data available, return weights for a decision date."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

import numpy as np
import pandas as pd
from pydantic import Field

from dynafolio.errors import DataError, OptimizationError
from dynafolio.history import MarketHistory
from dynafolio.settings import parameters

try:  # skfolio raises its own error type when cvxpy's solver fails
    from skfolio.exceptions import OptimizationError as SkfolioOptimizationError
except ImportError:  # pragma: no cover - older skfolio
    SkfolioOptimizationError = RuntimeError  # type: ignore[assignment,misc]

Estimation = Literal["static", "rolling", "expanding"]
#: Top-K's ``k``: the assets a Top-K rule holds.
TopK = Annotated[int, Field(ge=1, description="assets held")]
#: Top-K's ``tau``: the weight left spread over the other tradable assets (0: none).
TopKTau = Annotated[float, Field(ge=0.0, lt=1.0, description="weight spread beyond the top k")]


class Strategy(ABC):
    """A rule that maps the history up to a decision date to target weights.

    Contract (the scikit-learn / skfolio estimator habit): ``__init__`` only stores its
    arguments; :meth:`fit` learns from the history it is given (the training period) and
    returns ``self``; :meth:`weights` answers for one decision date. The engine slices the
    history, so neither method can see data after the date it is asked about.

    Subclasses set ``label`` (a display name) and may set ``rebalances = False`` for
    buy-and-hold rules that trade once and then let weights drift.
    """

    label: ClassVar[str] = "strategy"
    rebalances: ClassVar[bool] = True
    #: Trains a model (and so runs once per seed).
    learned: ClassVar[bool] = False
    #: Runs once per seed although it learns nothing (a random control).
    seeded: ClassVar[bool] = False
    #: Its decisions depend on the holdings it starts from: a walk-forward block of it waits
    #: for the block before and starts from what that left (``hold_from(weights, date)``).
    carries_holdings: ClassVar[bool] = False

    @property
    def name(self) -> str:
        return self.label

    def fit(self, history: MarketHistory) -> Self:
        """Learn from ``history`` (the training period). The default learns nothing."""
        self.notes_: list[str] = []
        return self

    @abstractmethod
    def weights(self, history: MarketHistory) -> pd.Series:
        """Target weights for the close of ``history.date``, indexed by asset.

        Assets left out get 0. Weights on assets without a price at the decision date are
        refused by the engine.
        """

    def universe_problem(self, n_assets: int, train_periods: int | None = None) -> str | None:
        """Why this strategy cannot be run on ``n_assets`` assets, naming the alternative (a
        run refuses the entry; an experiment's default entry is skipped with this as its note),
        or None. ``train_periods``: the returns in the run's shortest training period, where
        known. The default: any number."""
        return None

    def report_notes(self) -> tuple[str, ...]:
        """What a reader of the results should know about this run (fallbacks, skipped assets)."""
        return tuple(getattr(self, "notes_", ()))

    def streams(self, decision_rows: list[int], first_row: int = 0) -> dict[str, StreamSpec]:
        """The walk-forward forecast streams a backtest at ``decision_rows`` computes, its
        history starting at ``first_row`` (``run_backtest``'s ``fit_start``).

        A parallel run computes each distinct stream once and hands it to every strategy
        that needs it (:meth:`replay_forecasts`). Strategies without a forecaster have none.
        """
        return {}

    def holding(self, weights: pd.Series, date: pd.Timestamp) -> None:  # noqa: B027 (a hook)
        """The portfolio holds ``weights`` at the close of ``date``, before the decision then
        (a user's actual holdings, ``dynafolio rebalance``). A strategy whose decisions read
        its holdings (``carries_holdings``) decides from these; the others read none."""

    def forecasts_made(self) -> dict[str, pd.DataFrame]:
        """The forecasts this strategy acted on in its last backtest, by stream name
        (decision dates × assets; for forecast evaluation). None without a forecaster."""
        return {}

    def replay_forecasts(self, forecasts: dict[str, dict[pd.Timestamp, pd.Series]]) -> Self:
        """Use precomputed forecasts of :meth:`streams` (by stream name) instead of refitting."""
        self.replay_ = forecasts
        return self

    def fitted_models(self) -> dict[str, bytes]:
        """Networks this strategy trained itself in its last backtest (not through forecast
        streams or a PPO agent), as model files (:mod:`dynafolio.forecast.state`) by fit date
        (ISO): a run saves them under ``models/``. None for most strategies."""
        return {}

    def use_fitted_models(self, files: Mapping[str, Path]) -> Self:
        """Load the model files of a finished run (fit date -> file) at those dates instead of
        training (a rebalance as of a date of the run)."""
        self.saved_models_ = dict(files)
        return self


@dataclass(frozen=True)
class StreamSpec:
    """A forecast stream: ``template`` refit on ``schedule``, forecasting at ``rows``.

    ``rows`` index the price frame the strategy is backtested on, whose history starts at
    ``first_row`` (a rolling walk-forward fold); the forecasts are those of
    :func:`dynafolio.strategies.forecast.compute_stream` on that frame.
    """

    template: Any
    schedule: Any
    rows: tuple[int, ...]
    first_row: int = 0

    def segments(self) -> list[StreamSpec]:
        """The stream cut at its refits, each piece starting with a fit.

        A piece computed alone gives the forecasts the whole stream gives at its rows: the
        refit schedule counts decisions from the stream's first, so each piece's first
        decision is a refit on the same history either way. Pieces are independent, so a
        parallel run computes them side by side instead of one fit after another.
        """
        starts = self.schedule.fit_positions(len(self.rows))
        bounds = [*starts, len(self.rows)]
        return [
            StreamSpec(self.template, self.schedule, self.rows[a:b], self.first_row)
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        ]


def normalise(weights: pd.Series) -> pd.Series:
    """Scale non-negative weights to sum to 1; equal weight if they sum to 0."""
    total = float(weights.sum())
    if total <= 0:
        return pd.Series(1.0 / len(weights), index=weights.index)
    return weights / total


def estimation_returns(
    history: MarketHistory,
    window: int | None,
    min_coverage: float,
    min_periods: int,
    name: str,
    assets: pd.Index | None = None,
) -> pd.DataFrame:
    """NaN-free returns for an estimate, refusing samples too small to estimate on.

    Assets without enough coverage (:meth:`MarketHistory.window_returns`) or whose returns
    are all equal over the window (a stale price: zero variance) are left out.

    ``assets`` restricts the columns *before* :meth:`MarketHistory.window_returns`, so
    incomplete rows are dropped only for the assets that matter and as many periods as
    possible are kept. Raises :class:`DataError` naming the strategy and date when no asset
    has enough coverage or fewer than ``min_periods`` complete rows remain.
    """
    if assets is not None:
        columns = list(assets)
        history = MarketHistory(history.prices[columns], history.returns[columns])
    returns = history.window_returns(window, min_coverage)
    # An asset whose price did not move over the window (a stale quote) has no risk to
    # estimate: covariance-based optimisers cannot use it, so it sits this estimate out,
    # like an asset without enough coverage.
    flat = returns.std(ddof=1) <= 1e-12 if len(returns) > 1 else returns.columns.isin([])
    returns = returns.loc[:, ~np.asarray(flat)]
    if returns.shape[1] == 0:
        raise DataError(
            f"{name} on {history.date.date()}: no tradable asset has moving prices on "
            f"{min_coverage:.0%} of the last {window or 'all'} periods; start the evaluation "
            "later, shorten the window or lower min_coverage"
        )
    if len(returns) < min_periods:
        raise DataError(
            f"{name} on {history.date.date()}: only {len(returns)} complete periods to "
            f"estimate on, at least {min_periods} needed; use a longer window, lower "
            "min_coverage, or start the evaluation later"
        )
    return returns


@parameters
class EstimationWindow:
    """The window of past returns an estimate reads (:func:`estimation_returns`).

    Parameters
    ----------
    window : int, optional
        Periods in the estimation window (rolling; also trims a static fit if given).
    min_coverage : float
        Assets with valid returns on fewer than this fraction of the window are left out of
        an estimate (see :meth:`MarketHistory.window_returns`).
    min_periods : int
        Fewest complete rows an estimate may use; fewer raises :class:`DataError`.
    """

    window: Annotated[
        int | None, Field(ge=2, description="estimation window in periods (rolling)")
    ] = 104
    min_coverage: Annotated[float, Field(gt=0.0, le=1.0)] = 0.9
    min_periods: Annotated[int, Field(ge=2)] = 26

    def estimation_sample(
        self, history: MarketHistory, name: str, assets: pd.Index | None = None
    ) -> pd.DataFrame:
        """The window's complete returns of ``assets`` (default: all) at ``history.date``."""
        return estimation_returns(
            history, self.window, self.min_coverage, self.min_periods, name, assets
        )


@parameters
class EstimatedStrategy(EstimationWindow, Strategy):
    """A strategy whose weights come from an estimate on a window of past returns.

    Parameters
    ----------
    estimation : {"static", "rolling", "expanding"}
        ``static``: estimated once by :meth:`fit` on the training period and held (weights of
        assets that later lose their price are dropped and the rest renormalised);
        ``rolling``: re-estimated at every rebalance on the last ``window`` periods;
        ``expanding``: re-estimated at every rebalance on all history so far.
    window, min_coverage, min_periods
        The estimation window (:class:`EstimationWindow`).
    """

    estimation: Estimation = "rolling"

    @property
    def name(self) -> str:
        if self.estimation == "static":
            return f"{self.label} (static)"
        if self.estimation == "expanding":
            return f"{self.label} (expanding)"
        return f"{self.label} (rolling {self.window})"

    def fit(self, history: MarketHistory) -> Self:
        super().fit(history)
        if self.estimation not in ("static", "rolling", "expanding"):
            raise ValueError(
                f"estimation must be static, rolling or expanding, got {self.estimation!r}"
            )
        if self.estimation == "rolling" and not self.window:
            raise ValueError(f"{self.label}: a rolling estimate needs a window (periods)")
        if self.estimation == "static":
            self.static_weights_ = self._estimate_on(history, self.window)
        return self

    def weights(self, history: MarketHistory) -> pd.Series:
        if self.estimation == "static":
            if not hasattr(self, "static_weights_"):
                raise RuntimeError(f"{self.name} is not fitted; call fit() first")
            held = self.static_weights_.reindex(history.assets, fill_value=0.0)
            return normalise(held.where(history.available, 0.0))
        window = self.window if self.estimation == "rolling" else None
        return self._estimate_on(history, window)

    def _estimate_on(self, history: MarketHistory, window: int | None) -> pd.Series:
        returns = estimation_returns(
            history, window, self.min_coverage, self.min_periods, self.name
        )
        if returns.shape[1] == 1:
            estimate = pd.Series(1.0, index=returns.columns)
        else:
            estimate = self._estimate(returns)
        if not np.isfinite(estimate.to_numpy()).all():
            raise OptimizationError(
                f"{self.name} on {history.date.date()} produced non-finite weights"
            )
        return estimate.clip(lower=0.0).pipe(normalise)

    @abstractmethod
    def _estimate(self, returns: pd.DataFrame) -> pd.Series:
        """Weights from a NaN-free ``(n_periods, n_assets)`` frame of simple returns."""


def fit_skfolio(estimator, returns: pd.DataFrame) -> pd.Series:
    """Fit a skfolio optimiser and return its weights by asset; solver failures become ours."""
    try:
        estimator.fit(returns)
    except SkfolioOptimizationError as error:
        raise OptimizationError(
            f"{type(estimator).__name__} failed on {returns.shape[0]} periods x "
            f"{returns.shape[1]} assets ending {returns.index[-1].date()}: {error}"
        ) from error
    return pd.Series(estimator.weights_, index=returns.columns)


def cross_sectional_zscore(values: np.ndarray, rtol: float = 1e-9) -> np.ndarray:
    """Standardise scores across assets: ``(x − mean(x)) / std(x)``, population std.

    Parameters
    ----------
    values : ndarray, shape (n_assets,)
        Finite scores of the assets being compared (e.g. the tradable assets' forecasts).
    rtol : float
        Scores whose spread ``max − min`` is at most ``rtol · max|x|`` count as equal and
        map to zeros. Without this, rounding noise between "equal" values (say 1.01 computed
        two ways) would be blown up to z-scores of order one and read as a signal.

    Returns
    -------
    ndarray, shape (n_assets,)
        Z-scores (mean 0, std 1), or zeros when the scores are (numerically) equal.
    """
    values = np.asarray(values, dtype=float)
    if not np.isfinite(values).all():
        raise ValueError("cross_sectional_zscore needs finite values; drop NaN/inf first")
    if values.size == 0 or np.ptp(values) <= rtol * np.abs(values).max():
        return np.zeros_like(values)
    return (values - values.mean()) / values.std()
