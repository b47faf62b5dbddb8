"""``dynafolio rebalance``: next period's target weights for one strategy and the trades from
the holdings given to them (:mod:`dynafolio.experiments.rebalance`)."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.markup import escape
from rich.table import Table

from dynafolio.cli.common import (
    console,
    key_values,
    prepare_out,
    set_torch_threads,
    user_errors,
)
from dynafolio.errors import DataError


def rebalance(
    experiment: Annotated[
        str, typer.Argument(help="Experiment whose strategies and settings to use (default: s1).")
    ] = "s1",
    strategy: Annotated[
        str,
        typer.Option(
            "--strategy",
            "-s",
            help="The strategy: its name in the results table, or tags such as "
            "kind=ppo_topk,k=5 (dynafolio strategies lists the kinds).",
        ),
    ] = ...,  # type: ignore[assignment]
    holdings: Annotated[
        Path | None,
        typer.Option(
            "--holdings",
            help="What the portfolio holds now: CSV asset,units (or asset,weight) with an "
            'optional CASH row, or JSON {"units": {...}, "cash": ...}. Default: what the '
            "strategy's own backtest holds at that date.",
        ),
    ] = None,
    run: Annotated[
        Path | None,
        typer.Option(
            "--run",
            help="A finished run directory: its config and data (checked unchanged), and its "
            "saved PPO agents and forecasters instead of training them.",
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML/TOML file of the experiment.")
    ] = None,
    data: Annotated[
        Path | None, typer.Option("--data", help="CSV/Parquet price file, up to today.")
    ] = None,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Embedded dataset or known-answer market.")
    ] = None,
    market: Annotated[
        list[str] | None,
        typer.Option("--market", help="A known-answer market's setting as KEY=VALUE."),
    ] = None,
    date_format: Annotated[
        str | None, typer.Option("--date-format", help="strptime format of the file's dates.")
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Decide as of this date of the data (default: its last date, which must be "
            "recent); inside a finished run's test period this is the run's own decision.",
        ),
    ] = None,
    today: Annotated[
        str | None, typer.Option("--today", help="Today's date for the staleness check.")
    ] = None,
    value: Annotated[
        float | None,
        typer.Option("--value", help="Portfolio value in currency (default: the holdings')."),
    ] = None,
    lots: Annotated[
        Path | None,
        typer.Option("--lots", help="Lot sizes: CSV asset,lot or JSON {asset: lot}."),
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="First random seed.")] = None,
    seeds: Annotated[
        int | None, typer.Option("--seeds", help="Seeds of a learned strategy (mean target).")
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="Smoke-test training budgets (not for trading).")
    ] = False,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Parent folder of the decision's folder.")
    ] = Path("rebalance"),
    threads: Annotated[int, typer.Option("--threads", min=1, help="CPU threads.")] = 1,
) -> None:
    """Plan the next rebalance: target weights, trades (weights, units, currency) and cost."""
    from dynafolio.backtest import ProportionalCost
    from dynafolio.experiments.artifacts import atomic_run_dir
    from dynafolio.experiments.holdings import Holdings, read_holdings, read_lots
    from dynafolio.experiments.rebalance import plan_rebalance
    from dynafolio.experiments.walk import finished_run, select_entry, walk_to
    from dynafolio.features import periods_per_year
    from dynafolio.paths import file_stem
    from dynafolio.studies import compose_config, study

    set_torch_threads(threads)
    with user_errors():
        study(experiment)
        held = read_holdings(holdings) if holdings is not None else None
        lot_sizes = read_lots(lots) if lots is not None else None
        out = prepare_out(out)
        if run is not None:
            finished = finished_run(run)
            context, agents = finished.context, finished.agents
            forecasters, models = finished.forecasters, finished.models
            source, fingerprint = context.prepared.source, context.prepared.source_sha256
        else:
            composed = compose_config(
                experiment, config_file=config, data_path=data, dataset=dataset,
                market=key_values(market, "--market") if market else None,
                date_format=date_format, seed=seed, n_seeds=seeds, quick=quick,
            )  # fmt: skip
            context, agents, forecasters, models = composed.context, {}, {}, {}
            source, fingerprint = composed.prepared.source, composed.prepared.source_sha256
        entry = select_entry(context.plan, strategy)
        item = context.plan[entry]
        index = item.universe.index
        date = index[-1] if as_of is None else _date(as_of, "--as-of")
        if as_of is None:
            _check_fresh(date, periods_per_year(index), today)
        console.print(
            f"[bold]{escape(item.name)}[/] as of {date.date()} "
            f"({len(item.seeds)} seed{'s' if len(item.seeds) > 1 else ''}; "
            f"{source})",
            highlight=False,
        )
        walked = [
            walk_to(
                context,
                entry,
                s,
                date,
                agents.get(item.name),
                forecasters.get(item.name),
                models.get(item.name),
            )  # fmt: skip
            for s in item.seeds
        ]
        if held is None:  # the backtest's own holdings (seeds averaged), as weights
            own = sum(w.held for w in walked) / len(walked)
            held = Holdings(own[own != 0], "weights", float(1.0 - own.sum()))
        plan = plan_rebalance(
            [w.strategy for w in walked], walked[0].history, held, value=value, lots=lot_sizes,
            cost_model=ProportionalCost(context.config.backtest.transaction_cost),
            constraints=item.constraints, due=walked[0].due,
            decide_from_holdings=holdings is not None,
        )  # fmt: skip
        with atomic_run_dir(out, f"rebalance-{file_stem(item.name)}") as folder:
            plan.trades.to_csv(folder.path / "trades.csv", index_label="asset")
            plan.per_seed.assign(mean=plan.target).to_csv(
                folder.path / "targets.csv", index_label="asset"
            )
            record = {
                **plan.to_json(),
                "experiment": context.config.name,
                "data": source,
                "data_sha256": fingerprint,
                "holdings": str(holdings) if holdings is not None else "the backtest's own",
                "run": str(run) if run is not None else None,
            }
            (folder.path / "rebalance.json").write_text(json.dumps(record, indent=2))
    _print(plan, folder.final)


def _date(text: str, option: str) -> pd.Timestamp:
    try:
        return pd.Timestamp(text)
    except (ValueError, TypeError):
        raise DataError(f"{option} {text!r} is not a date; write it as YYYY-MM-DD") from None


def _check_fresh(last: pd.Timestamp, periods: int, today: str | None) -> None:
    """Refuse prices older than one period of their frequency (plus a weekend)."""
    now = _date(today, "--today") if today is not None else pd.Timestamp(dt.date.today())
    allowed = math.ceil(365 / periods) + 3
    age = (now.normalize() - last.normalize()).days
    if age > allowed:
        raise DataError(
            f"the prices end on {last.date()}, {age} days before {now.date()}; a decision on "
            f"data of {periods} periods a year needs prices from the last {allowed} days. "
            f"Update the price file (--data), or give --as-of {last.date()} to plan as of then"
        )


def _print(plan, folder: Path) -> None:
    table = Table(title=f"Trades for {plan.decision_date.date()}", title_justify="left")
    columns = [c for c in ("current_weight", "target_weight", "trade_weight", "units_trade",
                           "value_trade") if c in plan.trades.columns]  # fmt: skip
    table.add_column("Asset")
    for column in columns:
        table.add_column(column.replace("_", " "), justify="right")
    for asset, row in plan.trades.iterrows():
        cells = [f"{row[c]:.1%}" if c.endswith("weight") else f"{row[c]:,.4g}" for c in columns]
        table.add_row(escape(str(asset)), *cells)
    console.print(table)
    money = "" if plan.value is None else f" ({plan.cost * plan.value:,.2f} of {plan.value:,.2f})"
    console.print(
        f"turnover {plan.turnover:.1%}, estimated cost {plan.cost:.3%} of value{money}"
        + ("" if plan.cash_after is None else f", cash after {plan.cash_after:,.2f}"),
        highlight=False,
    )
    for note in plan.notes:
        console.print(f"[dim]note: {escape(note)}[/]", highlight=False)
    console.print(f"Written to {folder}", highlight=False)
