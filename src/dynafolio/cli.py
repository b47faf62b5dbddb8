"""Command-line interface: ``dynafolio run`` and ``dynafolio data``.

The CLI only parses arguments, composes the experiment layer and prints; errors the user
can fix are printed as one clear message with a non-zero exit code, never a traceback.
Exit codes: 2 for bad input (nothing ran); 3 when the backtests finished and the run directory
was written but an analysis step failed (:mod:`dynafolio.results.steps`).
"""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

os.environ.setdefault("MPLBACKEND", "Agg")

import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402
from rich.table import Table  # noqa: E402

from dynafolio.errors import DynafolioError  # noqa: E402

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Dynamic portfolio allocation research: learned and classical allocators, "
    "one honest engine.",
)
data_app = typer.Typer(no_args_is_help=True, help="Embedded datasets: list them and inspect one.")
app.add_typer(data_app, name="data")
# Piped output (CI logs, files) gets a wide console so the results table is not squeezed.
console = Console() if Console().is_terminal else Console(width=220)
err_console = Console(stderr=True)
#: Exit code of a run whose backtests were written but whose analysis failed in part.
ANALYSIS_FAILED = 3


def _set_torch_threads(threads: int) -> None:
    """Small recurrent models train several times faster on one CPU thread than on two
    (measured: a 34-asset S1 forecaster fit took 6 s on 1 thread and 31 s on 2 while another
    process shared the cores), so the CLI defaults to one thread."""
    import torch

    torch.set_num_threads(threads)


@contextmanager
def _user_errors():
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
def _progress_bars():
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


def _prepare_out(out: Path) -> Path:
    """Check ``--out`` first (a clear error within a second, not after the run) and clean up
    partial run directories that killed runs left there."""
    from dynafolio.paths import prepare_out_dir, sweep_partial_runs

    out = prepare_out_dir(out)
    for line in sweep_partial_runs(out):
        console.print(f"[yellow]note:[/] {line}", highlight=False)
    return out


@app.command()
def run(
    experiment: Annotated[str, typer.Argument(help="Experiment to run (default: s1).")] = "s1",
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="YAML/TOML file overriding the experiment's defaults."),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", help="CSV/Parquet price file to use instead of the embedded dataset."
        ),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset",
            help="Embedded dataset (multiasset, sp500) or known-answer market (noise, momentum, "
            "foresight, static_edge) to use instead of the experiment's, over its whole range.",
        ),
    ] = None,
    market: Annotated[
        list[str] | None,
        typer.Option(
            "--market",
            help="A setting of the known-answer market as KEY=VALUE (n_assets, n_periods, phi, "
            "sigma, drift, edge, n_edge, seed, start, frequency); repeat for several.",
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Parent folder of the run directory.")
    ] = Path("runs"),
    seed: Annotated[int | None, typer.Option("--seed", help="First random seed.")] = None,
    seeds: Annotated[
        int | None, typer.Option("--seeds", help="Number of seeds for learned strategies.")
    ] = None,
    quick: Annotated[
        bool,
        typer.Option("--quick", help="Smoke-test budgets: one seed, smallest training budgets."),
    ] = False,
    threads: Annotated[
        int, typer.Option("--threads", min=1, help="CPU threads for model training.")
    ] = 1,
    date_format: Annotated[
        str | None,
        typer.Option(
            "--date-format",
            help="strptime format of the data file's dates (e.g. %d/%m/%Y) when they are "
            "ambiguous; same as data.date_format in a config.",
        ),
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option("--jobs", "-j", min=1, help="Worker processes (default: all cores)."),
    ] = None,
    executor: Annotated[
        str,
        typer.Option(
            "--executor",
            help="serial (this process), local (a process pool) or ray (local Ray, or a "
            "cluster with --ray-address). The results are identical.",
        ),
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option("--ray-address", help="Address of a running Ray cluster (--executor ray)."),
    ] = None,
    tensorboard: Annotated[
        bool,
        typer.Option(
            "--tensorboard",
            help="Also write each PPO agent's training log as TensorBoard event files "
            "(run directory, tensorboard/; pip install 'dynafolio[tensorboard]').",
        ),
    ] = False,
) -> None:
    """Run an experiment and write its run directory (metrics, weights, plots, report.html)."""
    from dynafolio.experiments.artifacts import build_manifest, require_tensorboard, write_run
    from dynafolio.parallel import ExecutorSettings
    from dynafolio.progress import reporting_progress
    from dynafolio.report import write_report
    from dynafolio.studies import compose_config, run_experiment, study

    _set_torch_threads(threads)
    with _user_errors():
        study(experiment)  # an unknown name is refused before anything else
        out = _prepare_out(out)
        workers = ExecutorSettings(kind=executor, jobs=jobs, ray_address=ray_address)
        if tensorboard:
            require_tensorboard()
        composed = compose_config(
            experiment,
            config_file=config,
            data_path=data,
            dataset=dataset,
            market=_key_values(market, "--market") if market else None,
            date_format=date_format,
            seed=seed,
            n_seeds=seeds,
            quick=quick,
        )
        cfg, prepared = composed.config, composed.prepared
        for line in composed.notes:
            console.print(f"[yellow]note:[/] {escape(line)}", highlight=False)
        console.print(
            f"[bold]{cfg.title or cfg.name}[/]\n{prepared.source}: "
            f"{prepared.prices.shape[1]} assets, {len(prepared.prices)} periods "
            f"({prepared.prices.index[0].date()}..{prepared.prices.index[-1].date()})"
        )
        with _progress_bars() as factory, reporting_progress(factory):
            result = run_experiment(cfg, prepared=prepared, progress=factory, executor=workers)
        manifest = build_manifest(cfg, result, prepared.source, prepared.source_sha256)
        written = write_run(result, manifest, out, write_report, tensorboard=tensorboard)
    _print_results(result)
    run_dir = written.path
    report = run_dir / "report.html"
    opened = f"  (open {report})" if report.is_file() else ""
    console.print(f"\nRun directory: [bold]{run_dir}[/]{opened}")
    if written.failures:
        for failure in written.failures:
            err_console.print(
                f"[bold red]analysis failed:[/] {escape(failure.note)}",
                highlight=False,
                soft_wrap=True,
            )
        raise typer.Exit(code=ANALYSIS_FAILED)


@app.command()
def tune(
    experiment: Annotated[
        str, typer.Argument(help="Experiment whose data and split to use.")
    ] = "s2",
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="Forecaster to tune: any registered model with a search space "
            "(univariate_lstm, stacked_lstm, ...; an unknown name lists them).",
        ),
    ] = "stacked_lstm",
    trials: Annotated[int, typer.Option("--trials", "-n", min=1, help="Optuna trials.")] = 10,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML/TOML overrides.")
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Parent folder of the run directory.")
    ] = Path("runs"),
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sampler and the models.")] = 0,
    quick: Annotated[bool, typer.Option("--quick", help="3 trials of 3 epochs each.")] = False,
    threads: Annotated[
        int, typer.Option("--threads", min=1, help="CPU threads for model training.")
    ] = 1,
    jobs: Annotated[
        int | None,
        typer.Option("--jobs", "-j", min=1, help="Worker processes (default: all cores)."),
    ] = None,
    executor: Annotated[
        str, typer.Option("--executor", help="serial, local or ray (identical results).")
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option("--ray-address", help="Address of a running Ray cluster (--executor ray)."),
    ] = None,
) -> None:
    """Search a forecaster's hyper-parameters on a validation period before the test period."""
    import json

    from dynafolio.experiments.artifacts import atomic_run_dir, package_versions, write_manifest
    from dynafolio.parallel import ExecutorSettings
    from dynafolio.studies import compose_config, study
    from dynafolio.studies.tune import tunable_models, tune_forecaster

    _set_torch_threads(threads)
    with _user_errors():
        study(experiment)
        out = _prepare_out(out)
        workers = ExecutorSettings(kind=executor, jobs=jobs, ray_address=ray_address)
        if model not in tunable_models():
            raise DynafolioError(
                f"unknown model {model!r}; choose from {', '.join(tunable_models())}"
            )
        composed = compose_config(experiment, config_file=config, seed=seed)
        cfg, prepared = composed.config, composed.prepared
        folds = cfg.split.folds(prepared.prices.index)
        test_dates = prepared.prices.index[folds[0].test.start : folds[-1].test.stop]
        n_trials = 3 if quick else trials
        fixed = {"epochs": 3} if quick else {}
        with _progress_bars() as factory:
            result = tune_forecaster(
                model,
                prepared.prices,
                folds[0].test.start,
                n_trials=n_trials,
                seed=seed,
                fixed_params=fixed,
                progress=factory(f"tuning {model}", n_trials),
                executor=workers,
            )
        summary = {
            "model": model,
            "best_params": result.best_params,
            "config_snippet": {"forecaster": {"model": model, "params": result.best_params}},
            "validation_mse": result.best_value,
            "zero_forecast_mse": result.baseline_value,
            "fit_period": [str(d.date()) for d in result.fit_dates],
            "validation_period": [str(d.date()) for d in result.validation_dates],
            "test_period_untouched": [
                str(test_dates[0].date()),
                str(test_dates[-1].date()),
            ],
            "fixed_params": fixed,
        }
        with atomic_run_dir(out, f"tune-{experiment}-{model}") as run:
            result.trials.to_csv(run.path / "trials.csv", index=False)
            (run.path / "best_params.json").write_text(json.dumps(summary, indent=2, default=str))
            write_manifest(
                run.path,
                {
                    "command": "tune",
                    "experiment": experiment,
                    "model": model,
                    "seed": seed,
                    "n_trials": n_trials,
                    "config": cfg.model_dump(mode="json"),
                    "data": {"source": prepared.source, "sha256": prepared.source_sha256},
                    "versions": package_versions(),
                },
            )
    console.print(
        f"Best validation MSE {result.best_value:.6g} (zero forecast {result.baseline_value:.6g}) "
        f"on {summary['validation_period'][0]}..{summary['validation_period'][1]}"
    )
    console.print(f"Best parameters: {result.best_params}")
    console.print(f"Run directory: [bold]{run.final}[/]")


def _key_values(items: list[str], option: str) -> dict[str, Any]:
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


def _print_results(result) -> None:
    from dynafolio.metrics import METRICS
    from dynafolio.report.tables import CI_LABEL, format_table

    short = {m.label: m.short for m in METRICS} | {CI_LABEL: "95% CI"}

    shown = format_table(result.table)
    table = Table(
        title=f"{result.title}\nTest period {result.test_dates[0].date()} .. "
        f"{result.test_dates[-1].date()} ({len(result.test_dates)} periods, net of costs)",
        title_justify="left",
    )
    table.add_column("Strategy", no_wrap=True)
    for column in shown.columns:
        table.add_column(short.get(column, column), justify="right", no_wrap=True)
    for name, row in shown.iterrows():
        style = "bold" if name == result.benchmark else None
        table.add_row(escape(str(name)), *[str(v) for v in row], style=style)
    console.print(table)
    # Names are the user's text: escaped, so brackets in them are printed, not read as markup.
    for line in result.findings:
        console.print(f"• {escape(line)}", highlight=False)
    for line in result.notes:
        console.print(f"[dim]note: {escape(line)}[/]", highlight=False)


@app.command("strategies")
def strategies_list(
    kind: Annotated[
        str | None, typer.Argument(help="Show one kind's settings (default: list all).")
    ] = None,
) -> None:
    """List the strategy kinds a config may use, or one kind's settings and defaults."""
    from dynafolio.forecast.registry import FORECASTERS
    from dynafolio.strategies.kinds import STRATEGY_SPECS
    from dynafolio.strategies.registry import StrategySpec

    with _user_errors():
        if kind is not None and kind not in STRATEGY_SPECS:
            raise DynafolioError(
                f"unknown strategy kind {kind!r}; available: {', '.join(STRATEGY_SPECS)}"
            )
        if kind is None:
            table = Table(title="Strategy kinds (config: strategies: - kind: ...)")
            for column in ("kind", "learned", "builds", "what it does"):
                table.add_column(column)
            for name, spec in STRATEGY_SPECS.items():
                doc = " ".join((spec.__doc__ or "").split("\n\n")[0].replace("``", "").split())
                table.add_row(
                    name,
                    "yes" if spec.strategy_class.learned else "",
                    spec.strategy_class.__name__,
                    doc,
                )
            console.print(table)
            console.print(
                "forecaster models: "
                + ", ".join(f"{m} ({e.label})" for m, e in FORECASTERS.items())
            )
            return
        spec = STRATEGY_SPECS[kind]
        table = Table(title=f"{kind}: settings ({spec.strategy_class.__name__})")
        for column in ("setting", "type", "default"):
            table.add_column(column)
        common = set(StrategySpec.model_fields)
        for field_name, info in spec.model_fields.items():
            if field_name == "kind" or field_name in common:
                continue
            table.add_row(field_name, _type_name(info.annotation), _default_text(info))
        console.print(table)
        console.print("Every kind also takes: name, universe, constraints, tags.")


def _type_name(annotation: Any) -> str:
    from pydantic import BaseModel

    text = str(annotation)
    if "forecast.registry" in text:
        return "forecaster {model, params}" + (" or null" if "None" in text else "")
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping of settings"
    if isinstance(annotation, type):
        return annotation.__name__
    return text.replace("typing.", "").replace("pathlib.", "")


def _default_text(info: Any) -> str:
    from pydantic import BaseModel

    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return ", ".join(f"{k}={v!r}" for k, v in value.model_dump().items())
    return repr(value)


@data_app.command("list")
def data_list() -> None:
    """List the embedded datasets."""
    from dynafolio.data import list_datasets, load_dataset

    with _user_errors():
        table = Table(title="Embedded datasets", title_justify="left")
        for column in ("Name", "Assets", "From", "To", "Frequency", "Source"):
            table.add_column(column)
        for info in list_datasets():
            prices = load_dataset(info.name)
            table.add_row(
                info.name,
                str(prices.shape[1]),
                str(prices.index[0].date()),
                str(prices.index[-1].date()),
                info.frequency,
                info.source,
            )
        console.print(table)


@data_app.command("show")
def data_show(name: Annotated[str, typer.Argument(help="Dataset name, e.g. multiasset.")]) -> None:
    """Show a dataset's assets, classes, date ranges and first valid date per asset."""
    from dynafolio.data import dataset_info, describe_prices, load_dataset

    with _user_errors():
        info = dataset_info(name)
        prices = load_dataset(name)
        described = describe_prices(prices, asset_classes=info.asset_classes)
        console.print(
            f"[bold]{info.name}[/]: {info.description}\n"
            f"Source: {info.source}\nLicense: {info.license}"
        )
        table = Table(title_justify="left")
        table.add_column("Asset", no_wrap=True)
        for column in described.columns:
            table.add_column(str(column).replace("_", " "), justify="right")
        for asset, row in described.iterrows():
            table.add_row(str(asset), *[_fmt(v) for v in row])
        console.print(table)


def _fmt(value: Any) -> str:
    if hasattr(value, "date") and callable(value.date):
        return str(value.date())
    if isinstance(value, float):
        return f"{value:,.6g}"
    return str(value)


def main() -> None:  # pragma: no cover - console entry point
    app()
