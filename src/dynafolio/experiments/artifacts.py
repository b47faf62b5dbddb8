"""Write a run directory atomically: everything lands in a hidden temporary folder that is
renamed into place only once complete, so a failed run leaves nothing that looks finished.

A run whose analysis failed (:mod:`dynafolio.results.steps`) is complete in that sense:
its backtests are written, with the failures recorded."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import platform
import shutil
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from dynafolio.errors import ConfigError
from dynafolio.experiments.config import ExperimentConfig
from dynafolio.paths import PARTIAL_MARKER, file_stem, unique_stems, write_partial_marker
from dynafolio.results.forecasts import BENCHMARK, FORECAST_MEASURES, ForecastEvaluation
from dynafolio.results.result import ExperimentResult
from dynafolio.results.steps import AnalysisFailure, AnalysisSteps

_PACKAGES = (
    "dynafolio",
    "numpy",
    "pandas",
    "scipy",
    "skfolio",
    "scikit-learn",
    "cvxpy-base",
    "matplotlib",
    "pydantic",
    "torch",
    "stable_baselines3",
    "gymnasium",
)


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in _PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def build_manifest(
    config: ExperimentConfig, result: ExperimentResult, source: str, source_sha256: str
) -> dict[str, Any]:
    prices = result.prices
    prepared = pd.util.hash_pandas_object(prices, index=True).to_numpy().tobytes()

    return {
        "experiment": config.name,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "seed": config.seed,
        "seeds": list(config.seeds),
        "config": config.model_dump(mode="json"),
        "data": {
            "source": source,
            "sha256": source_sha256,
            "prepared_sha256": hashlib.sha256(prepared).hexdigest(),
            "assets": list(prices.columns),
            "first_date": str(prices.index[0].date()),
            "last_date": str(prices.index[-1].date()),
            "n_periods": int(len(prices)),
            "periods_per_year": result.periods_per_year,
        },
        "split": {
            "train": [str(result.train_dates[0].date()), str(result.train_dates[-1].date())],
            "test": [str(result.test_dates[0].date()), str(result.test_dates[-1].date())],
            "n_train": int(len(result.train_dates)),
            "n_test": int(len(result.test_dates)),
        },
        "versions": package_versions(),
    }


class _RunDir:
    """Where to write now (``path``) and where the run will live when complete (``final``)."""

    def __init__(self, path: Path, final: Path) -> None:
        self.path = path
        self.final = final


@contextmanager
def atomic_run_dir(out_dir: Path, name: str) -> Iterator[_RunDir]:
    """Yield a hidden temporary folder that becomes ``out_dir/<stem>-<timestamp>`` on success.

    ``name`` is a display name: only its safe file stem (:func:`dynafolio.paths.file_stem`)
    is used, so the run directory always lies directly inside ``out_dir``. On any error —
    including SIGINT, and SIGTERM once the CLI has turned it into ``SystemExit`` — the
    temporary folder is removed and the error propagates, so a failed run leaves nothing that
    looks complete. A marker inside it records the writing process, so that a folder left by
    a killed run (SIGKILL) is recognised and removed by the next run
    (:func:`dynafolio.paths.sweep_partial_runs`). The yielded holder has ``path`` (write
    here) and ``final`` (where the run lives once the block completes).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    stem = file_stem(name)
    final = out_dir / f"{stem}-{stamp}"
    suffix = 1
    while final.exists():
        suffix += 1
        final = out_dir / f"{stem}-{stamp}-{suffix}"
    partial = out_dir / f".{final.name}.partial-{uuid.uuid4().hex[:8]}"
    partial.mkdir()
    holder = _RunDir(partial, final)
    try:
        write_partial_marker(partial)
        yield holder
        (partial / PARTIAL_MARKER).unlink()
        partial.rename(final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


@dataclass(frozen=True)
class WrittenRun:
    """A complete run directory (``path``) and the analysis steps that failed on the way:
    the run's own (``ExperimentResult.failures``), then the report's."""

    path: Path
    failures: tuple[AnalysisFailure, ...] = ()


def write_run(
    result: ExperimentResult,
    manifest: dict[str, Any],
    out_dir: Path,
    write_report: Callable[[ExperimentResult, Path, dict[str, Any]], Path],
    tensorboard: bool = False,
) -> WrittenRun:
    """Write every artifact of ``result`` under ``out_dir/<experiment>-<timestamp>``.

    ``tensorboard``: also write each agent's training log as TensorBoard event files under
    ``tensorboard/<agent>/`` (needs the ``tensorboard`` package). The report is an analysis
    step: if ``write_report`` raises, the run is written without a complete report and the
    failure joins ``result.failures`` in ``metrics.json`` and the manifest
    (``analysis_failures``). The manifest is written last: its presence marks a complete run.
    """
    with atomic_run_dir(out_dir, result.experiment) as run:
        steps = AnalysisSteps()
        # The report first, so that its failure, if any, is recorded with the others.
        steps.run("report", write_report, result, run.path, manifest, fallback=None)
        failures = (*result.failures, *steps.failures)
        _write_tables(result, run.path, failures)
        if tensorboard:
            _write_tensorboard(result, run.path)
        recorded = [failure.to_json() for failure in failures]
        write_manifest(run.path, {**manifest, "analysis_failures": recorded})
    return WrittenRun(run.final, failures)


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))


def training_log(agent) -> pd.DataFrame:
    """One row per policy update (SB3's log) merged with the validation evaluations."""
    log = pd.DataFrame(agent.diagnostics)
    evaluations = pd.DataFrame(agent.history)
    if log.empty:
        return evaluations
    if evaluations.empty:
        return log
    return pd.merge(log, evaluations, on="timesteps", how="outer").sort_values("timesteps")


def _stems(result: ExperimentResult) -> dict[str, str]:
    """File stems of the strategies' and agents' display names: never a path, never two
    strategies in one file."""
    return unique_stems(
        [runs.name for runs in result.strategies] + [key[0] for key in result.agents]
    )


def require_tensorboard() -> None:
    """Raise a clear error, before anything runs, when TensorBoard logs cannot be written."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(
            "--tensorboard needs the tensorboard package, which is not installed; install it "
            "with pip install 'dynafolio[tensorboard]', or leave --tensorboard out (the same "
            "logs are written as CSV under training/)"
        )


def _write_tensorboard(result: ExperimentResult, run_dir: Path) -> None:
    """Each agent's SB3 log and validation evaluations as TensorBoard event files.

    Training runs in worker processes before the run directory exists, so SB3's log is
    recorded in memory (every key SB3 dumps, per policy update) and replayed here through
    SB3's own TensorBoard writer; validation evaluations go under ``validation/``.
    """
    from stable_baselines3.common.logger import TensorBoardOutputFormat

    stems = _stems(result)
    for (name, seed, fold), agent in result.agents.items():
        folder = run_dir / "tensorboard" / f"{stems[name]}-{result.agent_label(seed, fold)}"
        writer = TensorBoardOutputFormat(str(folder))
        try:
            for row in agent.diagnostics:
                values = {k: v for k, v in row.items() if k != "timesteps"}
                writer.write(values, dict.fromkeys(values, ()), int(row["timesteps"]))
            for row in agent.history:
                values = {f"validation/{k}": v for k, v in row.items() if k != "timesteps"}
                writer.write(values, dict.fromkeys(values, ()), int(row["timesteps"]))
        finally:
            writer.close()


def _inference(result: ExperimentResult) -> dict[str, Any] | None:
    """The run-level statistics behind the findings, for metrics.json."""
    inference = result.inference
    if inference is None:
        return None
    return {
        "level": inference.level,
        "bootstrap_replicates": inference.n_boot,
        "block_length": inference.block_length,
        "strategies_tried": inference.n_tried,
        "spa_p_value": inference.spa_p_value,
        "stepm_survivors": list(inference.survivors),
        "best": inference.best,
        "best_deflated_sharpe_ratio": inference.best_dsr,
        "best_probabilistic_sharpe_ratio": inference.best_psr,
        "sharpe_variance_across_strategies": inference.sharpe_variance,
        "learned_vs_random_control": [
            {
                "strategy": c.strategy,
                "control": c.control,
                "sharpe_difference": c.test.difference,
                "ci": [c.test.ci_low, c.test.ci_high],
                "p_value": c.test.p_value,
                "method": c.test.method,
            }
            for c in inference.controls
        ],
        "columns": {
            "sharpe_ci_low": "lower end of the Sharpe ratio's interval (dates and seeds)",
            "sharpe_ci_high": "upper end of the Sharpe ratio's interval",
            "sharpe_p_vs_benchmark": "two-sided paired p-value of equal Sharpe ratios with "
            "the benchmark, not adjusted for multiple testing",
        },
    }


def _write_forecasts(evaluation: ForecastEvaluation, run_dir: Path) -> None:
    """``forecasts.csv``/``.json`` (one row per forecaster × seed, and per fold),
    ``forecast_ic.csv`` (each forecaster's IC per decision date, seeds averaged) and
    ``forecasts/`` (each forecaster's forecasts per seed)."""
    evaluation.table.to_csv(run_dir / "forecasts.csv", index=False)
    evaluation.ic.to_csv(run_dir / "forecast_ic.csv", index_label="date")
    # The forecasts themselves (next-period log returns), one file per forecaster and seed.
    folder = run_dir / "forecasts"
    folder.mkdir()
    stems = unique_stems([run.name for run in evaluation.runs])
    for run in evaluation.runs:
        for seed, frame in zip(run.seeds, run.forecasts, strict=True):
            tag = stems[run.name] + (f"-seed{seed}" if len(run.forecasts) > 1 else "")
            frame.to_csv(folder / f"{tag}.csv", index_label="date", float_format="%.8g")
    (run_dir / "forecasts.json").write_text(
        json.dumps(
            {
                "target": "next-period log return ln(P[t+1]/P[t]) of each asset",
                "benchmark": BENCHMARK,
                "measures": FORECAST_MEASURES,
                "rows": json.loads(evaluation.table.to_json(orient="records")),
                "findings": list(evaluation.findings),
            },
            indent=2,
        )
    )


def _write_tables(
    result: ExperimentResult, run_dir: Path, failures: tuple[AnalysisFailure, ...] = ()
) -> None:
    table = result.table.copy()
    table.to_csv(run_dir / "metrics.csv", index_label="strategy")
    per_seed = result.metrics.reset_index()
    (run_dir / "metrics.json").write_text(
        json.dumps(
            {
                "periods_per_year": result.periods_per_year,
                "test_period": [
                    str(result.test_dates[0].date()),
                    str(result.test_dates[-1].date()),
                ],
                "benchmark": result.benchmark,
                "table": json.loads(table.reset_index(names="strategy").to_json(orient="records")),
                "per_seed": json.loads(per_seed.to_json(orient="records")),
                "stress": json.loads(result.stress.to_json(orient="records", date_format="iso"))
                if not result.stress.empty
                else [],
                "findings": list(result.findings),
                "inference": _inference(result),
                # Each PPO learner's known-answer check (dynafolio.rl.learnability).
                "learner_checks": {
                    name: check.as_dict() for name, check in result.learnability.items()
                },
                "analysis_failures": [failure.to_json() for failure in failures],
                "notes": [*(failure.note for failure in failures), *result.notes],
            },
            indent=2,
        )
    )
    per_seed.to_csv(run_dir / "metrics_per_seed.csv", index=False)
    if result.forecasts is not None:
        _write_forecasts(result.forecasts, run_dir)
    if not result.stress.empty:
        result.stress.to_csv(run_dir / "stress.csv", index=False)
    if not result.rolling.empty:
        result.rolling.to_csv(run_dir / "rolling_alpha_beta.csv", index_label="date")
    stems = _stems(result)
    if result.agents:
        agents_dir = run_dir / "agents"
        agents_dir.mkdir()
        training_dir = run_dir / "training"
        training_dir.mkdir()
        for (name, seed, fold), agent in result.agents.items():
            stem = f"{stems[name]}-{result.agent_label(seed, fold)}"
            agent.save(agents_dir / f"{stem}.zip")
            training_log(agent).to_csv(training_dir / f"{stem}.csv", index=False)
    if result.model_files:
        models_dir = run_dir / "models"
        models_dir.mkdir()
        for (name, seed, fold, fit_date), data in result.model_files.items():
            (models_dir / result.model_file(stems[name], seed, fold, fit_date)).write_bytes(data)
    if result.forecaster_files:
        # Names are built by the run (stream key and date), never read from a file.
        models_dir = run_dir / "forecasters"
        models_dir.mkdir()
        for name, data in result.forecaster_files.items():
            (models_dir / name).write_bytes(data)
        (models_dir / "index.json").write_text(
            json.dumps({"version": 1, "fits": list(result.forecaster_index)}, indent=1)
        )
    if result.tables:
        tables_dir = run_dir / "tables"
        tables_dir.mkdir()
        table_stems = unique_stems(list(result.tables))
        for title, frame in result.tables.items():
            frame.to_csv(tables_dir / f"{table_stems[title]}.csv")
    returns = pd.concat([runs.mean_net_returns() for runs in result.strategies], axis=1)
    returns.to_csv(run_dir / "net_returns.csv", index_label="date")
    weights_dir = run_dir / "weights"
    ledgers_dir = run_dir / "ledgers"
    weights_dir.mkdir()
    ledgers_dir.mkdir()
    for runs in result.strategies:
        for seed, run in zip(runs.seeds, runs.runs, strict=True):
            tag = stems[runs.name] + (f"-seed{seed}" if len(runs.runs) > 1 else "")
            run.weights.to_csv(weights_dir / f"{tag}.csv", index_label="date", float_format="%.6g")
            run.ledger.to_csv(ledgers_dir / f"{tag}.csv", index_label="date", float_format="%.8g")
