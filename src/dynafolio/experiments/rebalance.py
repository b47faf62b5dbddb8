"""From a result to a decision: next period's target weights and the trades to get there.

:func:`plan_rebalance` asks fitted strategies (one per seed) for their target at a decision
date, from the user's holdings, and turns the mean target into trades — in weight, and in units
and currency when the portfolio's value is known, rounded to lots, with the cost the run's cost
model charges. :func:`~dynafolio.experiments.walk.walk_to` puts a config's strategy into
exactly the state its backtest was in just before that date, so a decision "as of" a date of a
finished run is the one the run made there (tested for every strategy kind).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dynafolio.backtest import ProportionalCost
from dynafolio.backtest.constraints import PortfolioConstraints
from dynafolio.backtest.costs import CostModel
from dynafolio.backtest.engine import align_target
from dynafolio.errors import DataError
from dynafolio.experiments.holdings import Holdings
from dynafolio.history import MarketHistory
from dynafolio.strategies.base import Strategy
from dynafolio.strategies.rule import cap_positions

__all__ = ["RebalancePlan", "plan_rebalance"]


@dataclass(frozen=True)
class RebalancePlan:
    """A rebalance decision: targets, trades, the cost, and what the user should know.

    ``trades`` has one row per asset held or targeted: ``current_weight``, ``target_weight``,
    ``trade_weight``, and with a known value ``price``, ``units_now``, ``units_target``,
    ``units_trade``, ``value_trade``. Weights are fractions of the portfolio's value.
    """

    strategy: str
    decision_date: pd.Timestamp
    target: pd.Series
    per_seed: pd.DataFrame
    trades: pd.DataFrame
    turnover: float
    cost: float
    value: float | None = None
    cash_after: float | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "decision_date": str(self.decision_date.date()),
            "value": self.value,
            "turnover": self.turnover,
            "estimated_cost": self.cost,
            "estimated_cost_value": None if self.value is None else self.cost * self.value,
            "cash_after": self.cash_after,
            "target": {a: float(w) for a, w in self.target.items() if w != 0.0},
            "per_seed": {
                str(seed): {a: float(w) for a, w in column.items() if w != 0.0}
                for seed, column in self.per_seed.items()
            },
            "notes": list(self.notes),
        }


def _project(weights: pd.Series, strategy: Strategy, limits: PortfolioConstraints) -> pd.Series:
    """The seeds' mean target back on the strategy's constraints: its Top-K support, then
    long-only and the position cap."""
    out = weights.copy()
    k = getattr(strategy, "k", None)
    if isinstance(k, int) and (out != 0).sum() > k:
        keep = out.abs().sort_values(ascending=False, kind="stable").index[:k]
        gross = out.abs().sum()
        out = out.where(out.index.isin(keep), 0.0)
        out *= gross / out.abs().sum()
    if limits.long_only and (out < 0).any():
        out = out.clip(lower=0.0)
        out /= out.sum()
    if (out.abs() > limits.max_position + 1e-12).any() and limits.max_position < 1.0:
        out = pd.Series(cap_positions(out.to_numpy(), limits.max_position), index=out.index)
    return out


def plan_rebalance(
    strategy: Strategy | Sequence[Strategy],
    history: MarketHistory | pd.DataFrame,
    holdings: Holdings,
    prices: pd.Series | None = None,
    value: float | None = None,
    lots: pd.Series | None = None,
    cost_model: CostModel | None = None,
    constraints: PortfolioConstraints | None = None,
    due: bool = True,
    decide_from_holdings: bool = True,
) -> RebalancePlan:
    """Target weights at ``history.date`` and the trades from ``holdings`` to them.

    ``strategy`` is one fitted strategy or one per seed (an unfitted one is fitted on
    ``history``); their targets are averaged and projected back onto the strategy's
    constraints. ``prices`` (default: the last row of the history) value the holdings and
    size the trades; ``value`` overrides the holdings' value (needed for units when the
    holdings are weights); ``lots`` rounds each target position down to whole lots (the
    residual stays in cash). ``due=False`` (the strategy does not trade at this date, e.g. a
    buy-and-hold after its first trade) keeps the holdings. A strategy whose decisions read
    its holdings (a PPO agent) decides from ``holdings``, or, with
    ``decide_from_holdings=False``, from those its own backtest path left
    (:func:`~dynafolio.experiments.walk.walk_to`).
    """
    if isinstance(history, pd.DataFrame):
        history = MarketHistory(history, history.pct_change(fill_method=None))
    strategies = [strategy] if isinstance(strategy, Strategy) else list(strategy)
    limits = constraints or PortfolioConstraints()
    cost_model = cost_model or ProportionalCost(0.001)
    assets, date = history.assets, history.date
    prices = history.prices.iloc[-1] if prices is None else prices.reindex(assets)
    _check_holdings(holdings, assets, prices, limits, date, history)
    current = holdings.weights(prices, assets)
    targets = {}
    notes: list[str] = []
    for seed, one in enumerate(strategies):
        if not hasattr(one, "notes_"):
            one.fit(history)
        if due:
            if one.carries_holdings and decide_from_holdings:
                one.holding(current, date)
            targets[getattr(one, "seed", seed)] = pd.Series(
                align_target(one.weights(history), history, one.name), index=assets
            )
        else:
            targets[getattr(one, "seed", seed)] = current
    if not due:
        notes.append(f"{strategies[0].name} does not trade on {date.date()}: the holdings stay")
    per_seed = pd.DataFrame(targets)
    target = _project(per_seed.mean(axis=1), strategies[0], limits) if due else current
    value = holdings.value(prices) if value is None else float(value)
    if value is not None:
        # The trades pay their cost out of the portfolio: invest what is left after it.
        first = float(cost_model.cost(target.to_numpy()[None], current.to_numpy()[None])[0])
        target = target * (1.0 - first)
    trades, target, cash_after = _trades(current, target, prices, value, lots, holdings, notes)
    turnover = float(np.abs(target - current).sum())
    cost = float(cost_model.cost(target.to_numpy()[None], current.to_numpy()[None])[0])
    if value is not None and cash_after is not None:
        cash_after -= cost * value
    return RebalancePlan(
        strategies[0].name, date, target, per_seed, trades, turnover, cost, value, cash_after,
        tuple(notes),
    )  # fmt: skip


def _check_holdings(
    holdings: Holdings,
    assets: pd.Index,
    prices: pd.Series,
    limits: PortfolioConstraints,
    date: pd.Timestamp,
    history: MarketHistory,
) -> None:
    unknown = holdings.amounts.index.difference(assets)
    if len(unknown):
        raise DataError(
            f"holdings name {list(unknown)[:10]}, which are not in the data "
            f"({len(assets)} assets, e.g. {list(assets[:8])}); sell them outside dynafolio or "
            "give prices that include them"
        )
    if holdings.kind == "weights":
        total = float(holdings.amounts.sum() + holdings.cash)
        if abs(total - 1.0) > 1e-6:
            raise DataError(
                f"holding weights and CASH sum to {total:.6f}, not 1; give each position's "
                "share of the portfolio's value, and CASH for the rest"
            )
    if limits.long_only and holdings.cash < 0:
        raise DataError(
            f"cash is {holdings.cash:g}, below zero, but the strategy is long-only and cannot "
            "borrow; give the cash actually held"
        )
    if limits.long_only and (holdings.amounts < 0).any():
        short = holdings.amounts[holdings.amounts < 0]
        raise DataError(
            f"holdings have negative positions {dict(short)} but the strategy is long-only; "
            "give the positions as held (units or weights >= 0)"
        )
    held = holdings.amounts[holdings.amounts != 0].index
    missing = [a for a in held if not math.isfinite(float(prices.get(a, np.nan)))]
    if missing:
        last = history.prices[missing].ffill().iloc[-1]
        raise DataError(
            f"no price on {date.date()} for held {missing}: the engine values a position "
            f"without a price at its last price ({dict(last.round(6))}) and cannot trade it; "
            "give prices that include the decision date, or a decision date on which it trades"
        )


def _trades(
    current: pd.Series,
    target: pd.Series,
    prices: pd.Series,
    value: float | None,
    lots: pd.Series | None,
    holdings: Holdings,
    notes: list[str],
) -> tuple[pd.DataFrame, pd.Series, float | None]:
    """Trades per asset; with a value, in units (rounded down to lots) and currency."""
    table = pd.DataFrame({"current_weight": current, "target_weight": target})
    if value is None or value <= 0:
        table["trade_weight"] = table["target_weight"] - table["current_weight"]
        if lots is not None:
            notes.append("lots are ignored: without a value there are no units to round")
        rows = table[(table["current_weight"] != 0) | (table["target_weight"] != 0)]
        return rows, target, None
    lot = (lots if lots is not None else pd.Series(dtype=float)).reindex(target.index)
    wanted = target * value / prices
    units_target = wanted.copy()
    has_lot = lot.notna() & np.isfinite(wanted)
    units_target[has_lot] = np.trunc(wanted[has_lot] / lot[has_lot]) * lot[has_lot]
    if lots is not None and (target[has_lot] != 0).any() and (units_target[has_lot] == 0).all():
        cheapest = (lot * prices)[target != 0].dropna().sort_values()
        raise DataError(
            f"a value of {value:,.2f} is too small to buy one lot of any asset the target "
            f"holds: the cheapest lot costs {cheapest.iloc[0]:,.2f} ({cheapest.index[0]}); "
            "give a larger --value or smaller lots"
        )
    units_target = units_target.fillna(0.0)
    units_now = (
        holdings.amounts.reindex(target.index, fill_value=0.0)
        if holdings.kind == "units"
        else current * value / prices
    ).fillna(0.0)
    realised = units_target * prices.fillna(0.0) / value
    table = pd.DataFrame(
        {
            "current_weight": current,
            "target_weight": realised,
            "trade_weight": realised - current,
            "price": prices,
            "units_now": units_now,
            "units_target": units_target,
            "units_trade": units_target - units_now,
            "value_trade": (units_target - units_now) * prices.fillna(0.0),
        }
    )
    if (realised - target).abs().max() > 1e-9:
        notes.append("target positions rounded down to whole lots; the remainder stays in cash")
    rows = table[(table["units_now"] != 0) | (table["units_target"] != 0)]
    return rows, realised, float(value - (units_target * prices.fillna(0.0)).sum())
