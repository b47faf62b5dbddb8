"""The backtest engine shared by every strategy (and by the RL environment).

Two layers:

* :func:`simulate` — pure, vectorised accounting of drift, turnover and costs for a schedule
  of target weights. This is the one place where returns are earned and costs are charged.
* :func:`run_backtest` — drives a :class:`~dynafolio.strategies.base.Strategy` through a
  period, handing it only the data available at each decision date, then calls
  :func:`simulate`. The no-look-ahead guarantee lives here, not in each strategy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from dynafolio.backtest.constraints import PortfolioConstraints
from dynafolio.backtest.costs import CostModel, ProportionalCost
from dynafolio.backtest.result import BacktestResult
from dynafolio.errors import DataError, OptimizationError
from dynafolio.features import periods_per_year
from dynafolio.history import MarketHistory, carried_returns


class Allocator(Protocol):
    """What the engine asks of a strategy (:class:`dynafolio.strategies.base.Strategy` is
    one): fit once on the history before the first decision, then target weights for the last
    date of each history it is shown."""

    rebalances: bool

    @property
    def name(self) -> str: ...

    def fit(self, history: MarketHistory) -> object: ...

    def weights(self, history: MarketHistory) -> pd.Series: ...

    def report_notes(self) -> Sequence[str]: ...


@dataclass(frozen=True)
class Simulation:
    """Arrays produced by :func:`simulate`; every row is one holding period.

    Shapes: vectors ``(n_periods,)``, matrices ``(n_periods, n_assets)``.
    """

    gross: np.ndarray
    cost: np.ndarray
    net: np.ndarray
    turnover: np.ndarray
    weights_start: np.ndarray
    weights_end: np.ndarray


def simulate(
    forward_returns: np.ndarray,
    targets: np.ndarray,
    rebalance: np.ndarray,
    cost_model: CostModel,
    initial_weights: np.ndarray | None = None,
) -> Simulation:
    """Account for a schedule of target weights: drift between rebalances, costs at them.

    Parameters
    ----------
    forward_returns : ndarray, shape (n_periods, n_assets)
        Row ``i`` holds the simple return of each asset from decision ``i`` to the next
        date. NaN (a price missing at the end of the period, e.g. data that stops early)
        is carried at the last known price, i.e. treated as 0.
    targets : ndarray, shape (n_periods, n_assets)
        Target weights decided at each date; only rows where ``rebalance`` is True are read.
        The remainder ``1 − Σw`` is cash earning 0.
    rebalance : ndarray of bool, shape (n_periods,)
        Whether the portfolio trades to ``targets[i]`` at decision ``i``. The first entry
        must be True (the portfolio starts from ``initial_weights``).
    cost_model : CostModel
        Charged once per rebalance on ``(target, drifted pre-trade weights)``.
    initial_weights : ndarray, shape (n_assets,), optional
        Holdings before the first decision; default all cash, so the first trade pays
        for buying in.

    Returns
    -------
    Simulation
        ``net[i] = gross[i] − cost[i]``: the cost of the rebalance at decision ``i`` is a
        fraction of the value at that decision and is deducted from the return of the
        period it opens (the additive convention of the S1 reward). Weights are not
        altered by the cost (it is paid pro rata).
    """
    returns = np.nan_to_num(np.asarray(forward_returns, dtype=float), nan=0.0)
    targets = np.asarray(targets, dtype=float)
    rebalance = np.asarray(rebalance, dtype=bool)
    n_periods, n_assets = returns.shape
    if targets.shape != returns.shape or rebalance.shape != (n_periods,):
        raise ValueError(
            f"shape mismatch: returns {returns.shape}, targets {targets.shape}, "
            f"rebalance {rebalance.shape}"
        )
    if n_periods == 0:
        raise ValueError("nothing to simulate: zero periods")
    if not rebalance[0]:
        raise ValueError("the first decision must be a rebalance (rebalance[0] is False)")
    if (returns <= -1.0).any():
        raise ValueError("an asset return is <= -100%; prices must stay positive")

    starts = np.flatnonzero(rebalance)
    segment = np.cumsum(rebalance) - 1  # index of the rebalance that opened each period
    held = targets[starts]  # (n_segments, n_assets)
    cash = 1.0 - held.sum(axis=1)

    # Closed-form drift: holdings at any date are the segment's target weights times each
    # asset's cumulative growth since the segment's rebalance. Cumulative log growth turns the
    # per-segment product into one cumsum and a subtraction, with no Python loop over time.
    log_growth = np.cumsum(np.log1p(returns), axis=0)
    log_growth_before = np.vstack([np.zeros((1, n_assets)), log_growth[:-1]])
    base = log_growth_before[starts][segment]
    holdings_end = held[segment] * np.exp(log_growth - base)
    holdings_start = held[segment] * np.exp(log_growth_before - base)
    value_end = holdings_end.sum(axis=1) + cash[segment]
    value_start = holdings_start.sum(axis=1) + cash[segment]
    if (value_end <= 0).any():
        i = int(np.argmax(value_end <= 0))
        raise OptimizationError(
            f"portfolio value fell to zero or below in period {i}: leverage too high for "
            "these returns; lower max_gross_leverage"
        )
    gross = value_end / value_start - 1.0
    weights_start = holdings_start / value_start[:, None]
    weights_end = holdings_end / value_end[:, None]

    previous = np.zeros(n_assets) if initial_weights is None else np.asarray(initial_weights)
    pre_trade = np.vstack([previous[None, :], weights_end[:-1]])[starts]
    turnover = np.zeros(n_periods)
    cost = np.zeros(n_periods)
    turnover[starts] = np.abs(held - pre_trade).sum(axis=1)
    cost[starts] = cost_model.cost(held, pre_trade)
    return Simulation(
        gross=gross,
        cost=cost,
        net=gross - cost,
        turnover=turnover,
        weights_start=weights_start,
        weights_end=weights_end,
    )


def rebalance_step(
    targets: np.ndarray,
    drifted: np.ndarray,
    forward_returns: np.ndarray,
    cost_model: CostModel,
) -> Simulation:
    """One period of :func:`simulate` for a batch of portfolios that all rebalance now.

    The accounting an RL environment pays its agent with: trade from ``drifted`` to
    ``targets`` (cost on the difference), then earn ``forward_returns``. Identical to a
    :func:`simulate` period that opens with a rebalance, so a policy is rewarded exactly as
    the backtest later reports it (tested).

    Parameters
    ----------
    targets, drifted, forward_returns : ndarray, shape (batch, n_assets)
        Post-trade target weights, pre-trade drifted weights, and the next period's simple
        returns (NaN carried at the last price, i.e. 0).
    cost_model : CostModel

    Returns
    -------
    Simulation
        Vectors of shape ``(batch,)``; ``weights_start`` = targets, ``weights_end`` = drifted
        weights at the end of the period (the next step's ``drifted``).
    """
    targets = np.asarray(targets, dtype=float)
    returns = np.nan_to_num(np.asarray(forward_returns, dtype=float), nan=0.0)
    holdings_end = targets * (1.0 + returns)
    value_end = holdings_end.sum(axis=1) + (1.0 - targets.sum(axis=1))
    gross = value_end - 1.0
    cost = cost_model.cost(targets, drifted)
    return Simulation(
        gross=gross,
        cost=cost,
        net=gross - cost,
        turnover=np.abs(targets - drifted).sum(axis=1),
        weights_start=targets,
        weights_end=holdings_end / value_end[:, None],
    )


def decision_rows(
    index: pd.DatetimeIndex, start: str | pd.Timestamp, end: str | pd.Timestamp | None = None
) -> np.ndarray:
    """Row numbers of the decisions that earn the returns dated in ``[start, end]``.

    The first decision is taken at the close of the last date before ``start`` (it may be
    the last training date: it only uses data up to then) and earns the return realised on
    the first date ``>= start``.
    """
    first = int(index.searchsorted(pd.Timestamp(start), side="left"))
    last = (
        len(index) - 1
        if end is None
        else int(index.searchsorted(pd.Timestamp(end), side="right")) - 1
    )
    if first < 1:
        raise DataError(
            f"evaluation start {pd.Timestamp(start).date()} leaves no earlier date to decide "
            f"on (data begins {index[0].date()}); start the evaluation later"
        )
    if last <= first - 1:
        raise DataError(
            f"no dates to evaluate between {pd.Timestamp(start).date()} and "
            f"{'the end' if end is None else pd.Timestamp(end).date()}"
        )
    return np.arange(first - 1, last)


def rebalance_schedule(
    index: pd.DatetimeIndex,
    start: str | pd.Timestamp,
    end: str | pd.Timestamp | None,
    rebalance_every: int = 1,
    rebalances: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Decision rows of a backtest on ``[start, end]`` and which of them trade.

    Returns ``(rows, trades)``: :func:`decision_rows` and a bool array of the same length,
    True every ``rebalance_every`` decisions from the first (only the first for a rule that
    never rebalances). A strategy's ``weights`` is called exactly at ``rows[trades]``.
    """
    rows = decision_rows(index, start, end)
    trades = np.zeros(len(rows), dtype=bool)
    trades[::rebalance_every] = True
    if not rebalances:
        trades[1:] = False
    return rows, trades


def run_backtest(
    strategy: Allocator,
    prices: pd.DataFrame,
    start: str | pd.Timestamp,
    end: str | pd.Timestamp | None = None,
    *,
    rebalance_every: int = 1,
    cost_model: CostModel | None = None,
    constraints: PortfolioConstraints | None = None,
    fit_start: str | pd.Timestamp | None = None,
    progress: Callable[[int], None] | None = None,
) -> BacktestResult:
    """Fit ``strategy`` on the data before ``start`` and backtest it on ``[start, end]``.

    Parameters
    ----------
    strategy : Allocator
        Fitted here on the history up to the first decision date, then asked for target
        weights at each rebalance date with the history up to that date **only** (a
        :class:`~dynafolio.history.MarketHistory` sliced by the engine).
    prices : pd.DataFrame, shape (n_dates, n_assets)
        Prices on the evaluation frequency; NaN where an asset has no price (not listed yet).
    start, end : date-like
        First and last period-end dates whose returns are evaluated.
    rebalance_every : int
        Trade every k decision dates; in between, weights drift with prices.
    cost_model : CostModel, default ``ProportionalCost(0.001)``
    constraints : PortfolioConstraints, default long-only, fully invested
    fit_start : date-like, optional
        First date of the data given to ``fit`` (default: all history before ``start``).
    progress : callable, optional
        Called with 1 after each decision (for progress bars).
    """
    if rebalance_every < 1:
        raise ValueError(f"rebalance_every must be >= 1, got {rebalance_every}")
    cost_model = cost_model or ProportionalCost(0.001)
    constraints = constraints or PortfolioConstraints()
    returns = prices.pct_change(fill_method=None)
    rows, schedule = rebalance_schedule(
        prices.index, start, end, rebalance_every, strategy.rebalances
    )
    first_row = 0 if fit_start is None else int(prices.index.searchsorted(pd.Timestamp(fit_start)))

    def history_at(row: int) -> MarketHistory:
        return MarketHistory(prices.iloc[first_row : row + 1], returns.iloc[first_row : row + 1])

    strategy.fit(history_at(rows[0]))

    n_assets = prices.shape[1]
    targets = np.zeros((len(rows), n_assets))
    for k, row in enumerate(rows):
        if schedule[k]:
            history = history_at(row)
            weights = strategy.weights(history)
            targets[k] = align_target(weights, history, strategy.name)
        if progress is not None:
            progress(1)

    constraints.check(targets[schedule], prices.index[rows][schedule], prices.columns)
    return _account(prices, rows, targets, schedule, cost_model, strategy.name,
                    strategy.report_notes())  # fmt: skip


def _account(
    prices: pd.DataFrame,
    rows: np.ndarray,
    targets: np.ndarray,
    schedule: np.ndarray,
    cost_model: CostModel,
    name: str,
    notes: tuple[str, ...],
) -> BacktestResult:
    """Simulate target weights decided at ``rows`` of ``prices`` into a result."""
    decision_dates = prices.index[rows]
    # Holdings earn carried returns: 0 while a price is missing, then the whole move since
    # the last price when it resumes (a halt's loss is booked, not skipped).
    forward = carried_returns(prices).to_numpy()[rows + 1]
    sim = simulate(forward, targets, schedule, cost_model)
    period_ends = prices.index[rows + 1]
    ledger = pd.DataFrame(
        {"gross": sim.gross, "cost": sim.cost, "net": sim.net, "turnover": sim.turnover},
        index=period_ends,
    )
    return BacktestResult(
        name=name,
        ledger=ledger,
        weights=pd.DataFrame(sim.weights_start, index=decision_dates, columns=prices.columns),
        drifted_weights=pd.DataFrame(sim.weights_end, index=period_ends, columns=prices.columns),
        rebalanced=pd.Series(schedule, index=decision_dates, name="rebalanced"),
        periods_per_year=periods_per_year(prices.index),
        notes=notes,
    )


def _block_notes(parts: list[BacktestResult]) -> tuple[str, ...]:
    """The parts' notes: said once when every block says it, else with the block's start."""
    shared = set.intersection(*(set(part.notes) for part in parts))
    notes = [note for note in parts[0].notes if note in shared]
    for k, part in enumerate(parts, start=1):
        start = part.weights.index[0].date()
        notes += [f"block {k} (from {start}): {n}" for n in part.notes if n not in shared]
    return tuple(notes)


def chain_backtests(
    parts: list[BacktestResult],
    prices: pd.DataFrame,
    cost_model: CostModel,
    rebalances: bool = True,
) -> BacktestResult:
    """One record from the backtests of consecutive walk-forward blocks of one strategy.

    Each part holds the targets a strategy fitted for its block decided there; the record
    replays them through :func:`simulate` as one portfolio, so the first trade of a block
    trades from the holdings the previous block left, drifted (not from cash), and pays for
    exactly that. A rule that never rebalances (buy and hold) trades once, at the first block.

    Parameters
    ----------
    parts : list of BacktestResult
        In time order; each block's decisions follow the previous block's without a gap.
    prices : pd.DataFrame
        The frame the parts were backtested on.
    cost_model : CostModel
    rebalances : bool
        False for a rule that buys once and holds.
    """
    if len(parts) == 1:
        return parts[0]
    weights = pd.concat([part.weights for part in parts])
    schedule = pd.concat([part.rebalanced for part in parts]).to_numpy(dtype=bool, copy=True)
    rows = prices.index.get_indexer(weights.index)
    if (rows < 0).any() or (np.diff(rows) != 1).any():
        raise ValueError("walk-forward blocks must follow each other on the prices' dates")
    if not rebalances:
        schedule[1:] = False
    notes = _block_notes(parts)
    # Rows that trade hold exactly the block's targets right after trading (weights_start).
    return _account(prices, rows, weights.to_numpy(dtype=float), schedule, cost_model,
                    parts[0].name, notes)  # fmt: skip


def align_target(weights: pd.Series, history: MarketHistory, name: str) -> np.ndarray:
    """Weights on the full asset list; refuse positions in assets without a price today."""
    unknown = weights.index.difference(history.prices.columns)
    if len(unknown):
        raise OptimizationError(
            f"strategy {name!r} returned weights for unknown assets {list(unknown)}"
        )
    aligned = weights.reindex(history.prices.columns, fill_value=0.0).to_numpy(dtype=float)
    untradable = (~history.available.to_numpy()) & (np.abs(aligned) > 1e-12)
    if untradable.any():
        assets = list(history.prices.columns[untradable])
        raise OptimizationError(
            f"strategy {name!r} put weight on {assets} on {history.date.date()}, "
            "when they have no price (not listed yet or missing); weights must be 0 there"
        )
    return aligned
