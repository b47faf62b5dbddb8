"""What every command shares: the consoles, turning the project's errors into one message and
an exit code, progress bars, the output folder and torch's threads."""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("MPLBACKEND", "Agg")

import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402

from dynafolio.errors import DynafolioError  # noqa: E402

# Piped output (CI logs, files) gets a wide console so the results table is not squeezed.
console = Console() if Console().is_terminal else Console(width=220)
err_console = Console(stderr=True)
#: Exit code of a run whose backtests were written but whose analysis failed in part.
ANALYSIS_FAILED = 3


def set_torch_threads(threads: int) -> None:
    """Small recurrent models train several times faster on one CPU thread than on two
    (measured: a 34-asset S1 forecaster fit took 6 s on 1 thread and 31 s on 2 while another
    process shared the cores), so the CLI defaults to one thread."""
    import torch

    torch.set_num_threads(threads)


@contextmanager
def user_errors():
    """Turn the project's exceptions into a one-line message and exit code 2.

    SIGTERM is turned into ``SystemExit(143)`` for the duration, so that a terminated run
    unwinds like an interrupted one: the partial run directory being written is removed
    (:func:`~dynafolio.experiments.artifacts.atomic_run_dir`) instead of being left behind.
    """

    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        yield
    except DynafolioError as error:
        # Escaped: a message may quote text in brackets (a file name, dynafolio[ray]) that
        # rich would otherwise take for markup and drop.
        err_console.print(
            f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(code=2) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


@contextmanager
def progress_bars():
    """A transient display of progress bars; yields ``factory(description, total)`` that
    opens one bar and returns its ``advance(n)``."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:

        def factory(description: str, total: int):
            task = bar.add_task(description, total=total)
            return lambda n: bar.advance(task, n)

        yield factory


def prepare_out(out: Path) -> Path:
    """Check ``--out`` first (a clear error within a second, not after the run) and clean up
    partial run directories that killed runs left there."""
    from dynafolio.paths import prepare_out_dir, sweep_partial_runs

    out = prepare_out_dir(out)
    for line in sweep_partial_runs(out):
        console.print(f"[yellow]note:[/] {line}", highlight=False)
    return out


def key_values(items: list[str], option: str) -> dict[str, Any]:
    """``["phi=0.3", "seed=4"]`` -> ``{"phi": 0.3, "seed": 4}`` (values read as YAML scalars;
    the config validation then checks names and types)."""
    import yaml

    settings: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DynafolioError(f"{option} {item!r}: write KEY=VALUE, e.g. {option} phi=0.3")
        try:
            settings[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            settings[key.strip()] = value
    return settings
