"""A config's strategy put into the state its backtest reaches just before a date, so that a
decision then is the backtest's own (:mod:`dynafolio.experiments.rebalance` plans the trades).

:func:`walk_to` replays the run's path — the fold whose test block holds the date, fitted on
that fold's history, forecasts computed as the run's stream tasks compute them, every earlier
decision made; :func:`finished_run` reads a run directory's config, data (checked unchanged)
and saved PPO agents; :func:`select_entry` finds a strategy by name or tags.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dynafolio.backtest import ProportionalCost, run_backtest
from dynafolio.errors import ConfigError, DataError
from dynafolio.experiments.config import validate_config
from dynafolio.experiments.plan import PlannedStrategy, load_prices
from dynafolio.experiments.tasks import RunContext, forecaster_files
from dynafolio.forecast.state import load_forecaster
from dynafolio.history import MarketHistory
from dynafolio.paths import unique_stems
from dynafolio.results.result import ExperimentResult
from dynafolio.safe_files import Limits, load_json, read_bytes
from dynafolio.seeding import seed_everything
from dynafolio.strategies.base import Strategy
from dynafolio.strategies.forecast import compute_stream

__all__ = ["FinishedRun", "Walked", "finished_run", "select_entry", "walk_to"]


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
    forecasters: Mapping[tuple[int, int | None, str, str], Path] | None = None,
    models: Mapping[tuple[int, int | None, str], Path] | None = None,
) -> Walked:
    """Strategy ``entry`` of ``context`` for ``seed``, in the state its backtest reaches just
    before deciding at ``date``.

    The walk is the run's own: the fold whose test block holds ``date``, fitted on that
    fold's history, every earlier decision of the block made (and, for a strategy that
    carries holdings, the earlier blocks run to hand it their holdings). ``agents`` maps
    ``(seed, fold or None)`` to a saved PPO agent of a finished run: that agent is loaded
    (and checked against the strategy's settings and assets) instead of trained.
    ``forecasters`` maps ``(seed, fold or None, stream, refit date)`` to a saved forecaster of
    a finished run: the models in force at ``date`` under the run's refit schedule are loaded
    (and checked against the strategy's forecaster, universe and refit date), not fitted.
    ``models`` maps ``(seed, fold or None, fit date)`` to a network the strategy trained
    itself in the run (the end-to-end allocator), loaded at that date instead of trained.
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
            # The run's saved agent, loaded from its path (a walk runs in this process); the
            # bytes of a config's own agent_path would otherwise win in fit().
            strategy.agent_path, strategy.agent_bytes = str(saved), None
        fold_key = f if len(context.folds) > 1 else None
        own = {d: p for (s, k, d), p in (models or {}).items() if s == seed and k == fold_key}
        if own:
            strategy.use_fitted_models(own)
        if previous is not None:
            strategy.hold_from(previous.iloc[-1], previous.index[-1])
        # Forecasts computed as the run computes them (its stream tasks), up to ``date``.
        saved_models = {
            (stream, fit_date): path
            for (s, saved_fold, stream, fit_date), path in (forecasters or {}).items()
            if s == seed and saved_fold == (f if len(context.folds) > 1 else None)
        }
        _replay(context, entry, strategy, f, row if f == fold else None, saved_models)
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


@dataclass(frozen=True)
class FinishedRun:
    """A finished run directory: its plan (its config, on its data, checked unchanged), its
    saved PPO agents (strategy name -> ``(seed, fold or None)`` -> agent file) and its saved
    forecasters (strategy name -> ``(seed, fold or None, stream, refit date)`` -> file)."""

    context: RunContext
    agents: dict[str, dict[tuple[int, int | None], Path]]
    forecasters: dict[str, dict[tuple[int, int | None, str, str], Path]]
    #: Strategy name -> ``(seed, fold or None, fit date)`` -> the strategy's own model file.
    models: dict[str, dict[tuple[int, int | None, str], Path]] = field(default_factory=dict)


def finished_run(folder: Path) -> FinishedRun:
    """Read a run directory written by ``dynafolio run`` (:class:`FinishedRun`).

    Saved files are found where the run wrote them, by names built from the config and the
    data (the stream keys and refit dates of the run's tasks), never by names read from a
    file; a file the run did not write (a forecaster that cannot be saved) is simply absent,
    and the walk then fits that model again."""
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
                label = ExperimentResult.agent_label(seed, fold)  # as the run named it
                path = folder / "agents" / f"{stems[item.name]}-{label}.zip"
                if path.is_file():
                    agents.setdefault(item.name, {})[(seed, fold)] = path
    forecasters: dict[str, dict[tuple[int, int | None, str, str], Path]] = {}
    for (entry, seed, fold, stream, fit_date), name in forecaster_files(context).items():
        path = folder / "forecasters" / name
        if path.is_file():
            key = (seed, fold if folds > 1 else None, stream, fit_date)
            forecasters.setdefault(context.plan[entry].name, {})[key] = path
    models: dict[str, dict[tuple[int, int | None, str], Path]] = {}
    for entry, item in enumerate(context.plan):
        if item.spec.strategy_class.fitted_models is Strategy.fitted_models:
            continue  # a strategy that trains no network of its own saves none
        for seed in item.seeds:
            for fold in range(folds):
                strategy = item.build(seed)
                key_fold = fold if folds > 1 else None
                for row in context.call_rows(entry, strategy, fold):
                    fit_date = item.universe.index[row].date().isoformat()
                    name = ExperimentResult.model_file(stems[item.name], seed, key_fold, fit_date)
                    path = folder / "models" / name
                    if path.is_file():
                        models.setdefault(item.name, {})[(seed, key_fold, fit_date)] = path
    return FinishedRun(context, agents, forecasters, models)


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
    context: RunContext,
    entry: int,
    strategy: Strategy,
    fold: int,
    last_row: int | None,
    saved: Mapping[tuple[str, str], Path],
) -> None:
    """Hand ``strategy`` the forecasts of its streams in ``fold`` (rows up to ``last_row``),
    computed piece by piece exactly as a run's stream tasks compute them; a piece whose
    model ``saved`` holds (stream, refit date -> forecaster file) uses it instead of a fit."""
    universe = context.plan[entry].universe
    columns = list(map(str, universe.columns))
    replays: dict[str, dict] = {}
    for name, spec in context.streams(entry, strategy, fold).items():
        for piece in spec.segments():
            rows = [r for r in piece.rows if last_row is None or r <= last_row]
            if rows:
                fit_date = universe.index[piece.rows[0]]
                path = saved.get((name, fit_date.date().isoformat()))
                fitted = {}
                if path is not None:
                    fitted[fit_date] = load_forecaster(
                        path, piece.template, columns, fit_date.date().isoformat()
                    )
                made = compute_stream(
                    piece.template, piece.schedule, universe, rows, piece.first_row, fitted
                )
                replays.setdefault(name, {}).update(made)
    if replays:
        strategy.replay_forecasts(replays)
