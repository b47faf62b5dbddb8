"""The ``dynafolio`` command: its sub-commands, each defined in its own module."""

from __future__ import annotations

import typer

from dynafolio.cli.catalog import data_list, data_show, strategies_list
from dynafolio.cli.common import ANALYSIS_FAILED, user_errors
from dynafolio.cli.rebalance import rebalance
from dynafolio.cli.run import run, tune

__all__ = ["ANALYSIS_FAILED", "app", "main", "user_errors"]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Dynamic portfolio allocation research: learned and classical allocators, "
    "one honest engine.",
)
data_app = typer.Typer(no_args_is_help=True, help="Embedded datasets: list them and inspect one.")
app.add_typer(data_app, name="data")
app.command()(run)
app.command()(tune)
app.command()(rebalance)
app.command("strategies")(strategies_list)
data_app.command("list")(data_list)
data_app.command("show")(data_show)


def main() -> None:  # pragma: no cover - console entry point
    app()
