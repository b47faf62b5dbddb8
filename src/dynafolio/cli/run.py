"""``dynafolio run`` and ``dynafolio tune``: parse the options, compose the config
(:func:`dynafolio.studies.compose_config`), run it and print."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

os.environ.setdefault("MPLBACKEND", "Agg")

import typer  # noqa: E402
from rich.markup import escape  # noqa: E402
from rich.table import Table  # noqa: E402

from dynafolio.cli.common import (  # noqa: E402
    ANALYSIS_FAILED,
    console,
    err_console,
    key_values,
    prepare_out,
    progress_bars,
    set_torch_threads,
    user_errors,
)
from dynafolio.errors import DynafolioError  # noqa: E402


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
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume",
            help="Keep each finished task's result in this folder; after an interruption, "
            "the same command with the same folder runs only the unfinished tasks.",
        ),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(
            "--device",
            help="Where torch models and PPO train: auto (a GPU when torch sees one, else the "
            "CPU), cpu or cuda; overrides the config's device (default auto).",
        ),
    ] = None,
) -> None:
    """Run an experiment and write its run directory (metrics, weights, plots, report.html)."""
    from dataclasses import replace

    from dynafolio import devices
    from dynafolio.experiments.artifacts import build_manifest, require_tensorboard, write_run
    from dynafolio.parallel import ExecutorSettings
    from dynafolio.progress import reporting_progress
    from dynafolio.report import write_report
    from dynafolio.studies import compose_config, run_experiment, study

    set_torch_threads(threads)
    with user_errors():
        study(experiment)  # an unknown name is refused before anything else
        out = prepare_out(out)
        workers = ExecutorSettings(kind=executor, jobs=jobs, ray_address=ray_address)
        if tensorboard:
            require_tensorboard()
        if device is not None:
            devices.resolve(device)  # an unknown or GPU-less --device, before any data is read
        composed = compose_config(
            experiment,
            config_file=config,
            data_path=data,
            dataset=dataset,
            market=key_values(market, "--market") if market else None,
            date_format=date_format,
            seed=seed,
            n_seeds=seeds,
            quick=quick,
        )
        if device is not None:
            on_device = composed.config.model_copy(update={"device": device})
            composed = replace(composed, context=replace(composed.context, config=on_device))
        # A config's device: cuda without a GPU is refused before anything trains.
        devices.resolve(composed.config.device)
        cfg, prepared = composed.config, composed.prepared
        for line in composed.notes:
            console.print(f"[yellow]note:[/] {escape(line)}", highlight=False)
        console.print(
            f"[bold]{cfg.title or cfg.name}[/]\n{prepared.source}: "
            f"{prepared.prices.shape[1]} assets, {len(prepared.prices)} periods "
            f"({prepared.prices.index[0].date()}..{prepared.prices.index[-1].date()})"
        )
        with progress_bars() as factory, reporting_progress(factory):
            result = run_experiment(
                composed.context, progress=factory, executor=workers, resume=resume
            )
        # What the composition said (--quick, default entries the data could not carry) is
        # part of the result: the report and metrics.json state it, not only the terminal.
        result = replace(result, notes=(*composed.notes, *result.notes))
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

    set_torch_threads(threads)
    with user_errors():
        study(experiment)
        out = prepare_out(out)
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
        with progress_bars() as factory:
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
    if result.forecasts is not None:
        _print_forecasts(result.forecasts)
    # Names are the user's text: escaped, so brackets in them are printed, not read as markup.
    for line in result.findings:
        console.print(f"• {escape(line)}", highlight=False)
    for line in result.notes:
        console.print(f"[dim]note: {escape(line)}[/]", highlight=False)


def _print_forecasts(evaluation) -> None:
    """The forecast skill table, short: IC, rank IC, R² against the historical mean, DM p."""
    from dynafolio.report.tables import format_analysis

    skill = next(iter(evaluation.tables().values()))
    shown = format_analysis(skill)
    columns = ["IC", "IC 95% CI", "Rank IC", "R² vs historical mean", "R² 95% CI", "DM p"]
    table = Table(title="Forecasts (out of sample, next-period log return)", title_justify="left")
    table.add_column("Forecaster", no_wrap=True)
    for column in columns:
        table.add_column(column, justify="right", no_wrap=True)
    for name, row in shown.iterrows():
        table.add_row(escape(str(name)), *[str(row[c]) for c in columns])
    console.print(table)
