"""From a result to a decision: next period's target weights and the trades to get there.

:func:`plan_rebalance` asks fitted strategies (one per seed) for their target at a decision
date, from the user's holdings, and turns the mean target into trades — in weight, and in units
and currency when the portfolio's value is known, rounded to lots, with the cost the run's cost
model charges. :func:`walk_to` puts a config's strategy into exactly the state its backtest
was in just before that date — fitted on the same training data, refitted on the same
schedule, having made the same earlier decisions — so a decision "as of" a date of a finished
run is the one the run made there (tested for every strategy kind).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dynafolio.backtest import ProportionalCost, run_backtest
from dynafolio.backtest.constraints import PortfolioConstraints
from dynafolio.backtest.costs import CostModel
from dynafolio.backtest.engine import align_target
from dynafolio.errors import ConfigError, DataError
from dynafolio.experiments.config import validate_config
from dynafolio.experiments.holdings import Holdings
from dynafolio.experiments.plan import PlannedStrategy, load_prices
from dynafolio.experiments.tasks import RunContext
from dynafolio.history import MarketHistory
from dynafolio.paths import unique_stems
from dynafolio.safe_files import Limits, load_json, read_bytes
from dynafolio.seeding import seed_everything
from dynafolio.strategies.base import Strategy
from dynafolio.strategies.forecast import compute_stream
from dynafolio.strategies.rule import cap_positions

__all__ = [
    "RebalancePlan",
    "Walked",
    "finished_run",
    "plan_rebalance",
    "select_entry",
    "walk_to",
]


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


def select_entry(plan: list[PlannedStrategy], wanted: str) -> int:
    """The plan entry named ``wanted`` or, for ``key=value[,key=value]``, the one entry whose
    tags match (``family=Hybrid,k=5``)."""
    if "=" in wanted:
        tags: dict[str, str] = {}
        for part in wanted.split(","):
            key, _, value = part.partition("=")
            tags[key.strip()] = value.strip()
        found = [
            i for i, item in enumerate(plan)
            if all(str(item.tags.get(k)) == v for k, v in tags.items())
        ]  # fmt: skip
        what = f"tags {tags}"
    else:
        found = [i for i, item in enumerate(plan) if item.name == wanted]
        what = f"the name {wanted!r}"
    if len(found) != 1:
        names = ", ".join(repr(plan[i].name) for i in (found or range(len(plan))))
        raise ConfigError(
            f"--strategy: {len(found)} strategies match {what}; "
            f"{'they are' if found else 'choose one of'} {names} (a name, or tags such as "
            "kind=ppo_topk,k=5)"
        )
    return found[0]


@dataclass(frozen=True)
class Walked:
    """A strategy in the state its backtest reaches just before deciding at ``history.date``:
    the history it decides on, whether it trades then (``due``) and what the backtest holds
    at that close, before trading (``held``, weights; cash at a block's first decision)."""

    strategy: Strategy
    history: MarketHistory
    due: bool
    held: pd.Series


def walk_to(
    context: RunContext,
    entry: int,
    seed: int,
    date: pd.Timestamp,
    agents: Mapping[tuple[int, int | None], Path] | None = None,
) -> Walked:
    """Strategy ``entry`` of ``context`` for ``seed``, in the state its backtest reaches just
    before deciding at ``date``.

    The walk is the run's own: the fold whose test block holds ``date``, fitted on that
    fold's history, every earlier decision of the block made (and, for a strategy that
    carries holdings, the earlier blocks run to hand it their holdings). ``agents`` maps
    ``(seed, fold or None)`` to a saved PPO agent of a finished run: that agent is loaded
    (and checked against the strategy's settings and assets) instead of trained.
    """
    item = context.plan[entry]
    universe = item.universe
    index = universe.index
    if date not in index:
        raise DataError(
            f"{date.date()} is not a date of the data (frequency {index.freqstr or 'as read'}; "
            f"{index[0].date()} .. {index[-1].date()}); give one of its dates"
        )
    row = int(index.get_loc(date))
    # A block's first decision is at the close before its first evaluated period.
    starts = [int(index.get_loc(fold.test_dates[0])) - 1 for fold in context.folds]
    fold = max((f for f, start in enumerate(starts) if start <= row), default=None)
    if fold is None:
        raise DataError(
            f"{date.date()} comes before the first decision of this config's test period "
            f"({index[starts[0]].date()}): a strategy is fitted on the data before its test "
            "period; give a later date"
        )
    backtest = context.config.backtest
    cost = ProportionalCost(backtest.transaction_cost)
    previous = None
    for f in range(fold + 1):
        strategy = item.build(seed)
        saved = (agents or {}).get((seed, f if len(context.folds) > 1 else None))
        if saved is not None and hasattr(strategy, "agent_path"):
            strategy.agent_path = str(saved)
        if previous is not None:
            strategy.hold_from(previous.iloc[-1], previous.index[-1])
        # Forecasts computed as the run computes them (its stream tasks), up to ``date``.
        _replay(context, entry, strategy, f, row if f == fold else None)
        seed_everything(seed)
        dates = context.folds[f].test_dates
        fit_start = context.fit_start(f)
        if f < fold:
            if strategy.carries_holdings:
                previous = run_backtest(
                    strategy, universe, dates[0], dates[-1],
                    rebalance_every=backtest.rebalance_every, cost_model=cost,
                    constraints=item.constraints, fit_start=fit_start,
                ).weights  # fmt: skip
            continue
        first_row = 0 if fit_start is None else int(index.searchsorted(fit_start))
        returns = universe.pct_change(fill_method=None)
        history = MarketHistory(
            universe.iloc[first_row : row + 1], returns.iloc[first_row : row + 1]
        )
        made = row - starts[fold]  # decisions of this block before the one at ``date``
        held = pd.Series(0.0, index=universe.columns)
        if made:
            # The engine decides at the close before each evaluated period: evaluating up to
            # ``date`` makes every decision before it.
            held = run_backtest(
                strategy, universe, dates[0], date, rebalance_every=backtest.rebalance_every,
                cost_model=cost, constraints=item.constraints, fit_start=fit_start,
            ).drifted_weights.loc[date]  # fmt: skip
        else:
            strategy.fit(history)
            if previous is not None:  # the previous block's last target, drifted to ``date``
                held = _drift(previous.iloc[-1], returns.loc[previous.index[-1] : date].iloc[1:])
        due = made % backtest.rebalance_every == 0 and (strategy.rebalances or made == 0)
        return Walked(strategy, history, due, held)
    raise AssertionError("unreachable")  # pragma: no cover


def finished_run(
    folder: Path,
) -> tuple[RunContext, dict[str, dict[tuple[int, int | None], Path]]]:
    """A finished run directory's plan (its config, on its data, checked unchanged) and its
    saved PPO agents: strategy name -> ``(seed, fold or None)`` -> agent file."""
    folder = Path(folder)
    where = f"run directory {folder}"
    fix = "give a run directory written by dynafolio run (it has manifest.json)"
    data = read_bytes(folder / "manifest.json", f"{where}: manifest.json", 1 << 22, fix)
    manifest = load_json(data, f"{where}/manifest.json", Limits(max_bytes=1 << 22), fix)
    if not isinstance(manifest, dict) or "config" not in manifest:
        raise DataError(f"{where}: manifest.json has no config; {fix}")
    config = validate_config(manifest["config"], f"{where}/manifest.json")
    prepared = load_prices(config)
    saved = (manifest.get("data") or {}).get("sha256")
    if saved != prepared.source_sha256:
        raise DataError(
            f"{where}: the data changed since the run ({prepared.source}: sha256 "
            f"{prepared.source_sha256[:12]}…, the run used {str(saved)[:12]}…); a decision "
            "as of the run needs the prices it used. Restore them, or leave --run out to "
            "plan on today's data"
        )
    context = RunContext.build(config, prepared)
    stems = unique_stems([item.name for item in context.plan])
    folds = len(context.folds)
    agents: dict[str, dict[tuple[int, int | None], Path]] = {}
    for item in context.plan:
        for seed in item.seeds:
            for fold in range(folds) if folds > 1 else [None]:
                label = f"seed{seed}" + ("" if fold is None else f"-fold{fold + 1}")
                path = folder / "agents" / f"{stems[item.name]}-{label}.zip"
                if path.is_file():
                    agents.setdefault(item.name, {})[(seed, fold)] = path
    return context, agents


def _drift(weights: pd.Series, returns: pd.DataFrame) -> pd.Series:
    """``weights`` (the rest in cash) after the periods of ``returns`` (a missing return: no
    move)."""
    values = weights.to_numpy(dtype=float)
    cash = 1.0 - values.sum()
    for row in returns.fillna(0.0).to_numpy(dtype=float):
        values = values * (1.0 + row)
        total = values.sum() + cash
        values, cash = values / total, cash / total
    return pd.Series(values, index=weights.index)


def _replay(
    context: RunContext, entry: int, strategy: Strategy, fold: int, last_row: int | None
) -> None:
    """Hand ``strategy`` the forecasts of its streams in ``fold`` (rows up to ``last_row``),
    computed piece by piece exactly as a run's stream tasks compute them."""
    universe = context.plan[entry].universe
    replays: dict[str, dict] = {}
    for name, spec in context.streams(entry, strategy, fold).items():
        for piece in spec.segments():
            rows = [r for r in piece.rows if last_row is None or r <= last_row]
            if rows:
                made = compute_stream(
                    piece.template, piece.schedule, universe, rows, piece.first_row
                )
                replays.setdefault(name, {}).update(made)
    if replays:
        strategy.replay_forecasts(replays)


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
    ``decide_from_holdings=False``, from those its own backtest path left (:func:`walk_to`).
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
