"""The studies by name, one function that composes a run's config, and running a config with
its study's analysis.

:func:`compose_config` is the one place a run's settings are put together — the study's
defaults, the user's config file, ``--quick``, the command-line overrides — and checked
against the data, giving one frozen :class:`~dynafolio.experiments.config.ExperimentConfig`
and its prepared prices. The CLI only parses its options, calls it and prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd

from dynafolio.errors import ConfigError
from dynafolio.experiments import runner
from dynafolio.experiments.config import (
    ExperimentConfig,
    load_config_file,
    merge,
    validate_config,
)
from dynafolio.experiments.plan import PreparedData, drop_misfits, load_prices
from dynafolio.experiments.tasks import RunContext
from dynafolio.parallel import ExecutorSettings
from dynafolio.progress import ProgressFactory
from dynafolio.results.result import ExperimentResult
from dynafolio.studies import (
    controls,
    s1_broad,
    s1_hybrid,
    s1_study,
    s1_walkforward,
    s2_signal,
    s3_drawdown,
    s4_price_rule,
)

_ORDER = (
    s1_hybrid, s1_study, s1_walkforward, s1_broad, s2_signal, s3_drawdown, s4_price_rule,
    controls,
)  # fmt: skip
#: Study name -> module implementing it (the names ``dynafolio run`` takes).
STUDIES: dict[str, ModuleType] = {module.NAME: module for module in _ORDER}
DEFAULT_STUDY = s1_hybrid.NAME


def study(name: str) -> ModuleType:
    """The study called ``name``; a :class:`ConfigError` listing the names otherwise."""
    if name not in STUDIES:
        raise ConfigError(
            f"unknown experiment {name!r}; available: {', '.join(sorted(STUDIES))} "
            f"(default {DEFAULT_STUDY})"
        )
    return STUDIES[name]


def analyse(result: ExperimentResult, context: runner.AnalysisContext) -> dict[str, pd.DataFrame]:
    """The tables of the study named by the config's ``analyses`` (none when it is unset)."""
    name = context.config.analyses
    if name is None:
        return {}
    if name not in STUDIES:
        raise ConfigError(
            f"analyses: {name!r} is not an experiment; use one of {', '.join(STUDIES)} "
            "or leave it out"
        )
    return STUDIES[name].analyse(result, context)


def run_experiment(
    config: ExperimentConfig | RunContext,
    *,
    prepared: PreparedData | None = None,
    progress: ProgressFactory | None = None,
    executor: ExecutorSettings | None = None,
    resume: Path | None = None,
) -> ExperimentResult:
    """Run ``config`` (:func:`dynafolio.experiments.runner.run_experiment`) and add its
    study's tables."""
    return runner.run_experiment(
        config, prepared=prepared, progress=progress, executor=executor, analyse=analyse,
        resume=resume,
    )  # fmt: skip


def run_experiments(
    configs: list[ExperimentConfig | RunContext],
    *,
    prepared: list[PreparedData | None] | None = None,
    progress: ProgressFactory | None = None,
    executor: ExecutorSettings | None = None,
    resume: Path | None = None,
) -> list[ExperimentResult]:
    """:func:`run_experiment` for several configs run as one task graph."""
    return runner.run_experiments(
        configs, prepared=prepared, progress=progress, executor=executor, analyse=analyse,
        resume=resume,
    )  # fmt: skip


@dataclass(frozen=True)
class ComposedRun:
    """A run planned once: its validated config, prepared prices and planned strategies
    (``context``, what :func:`run_experiment` runs), and notes for the user (what ``--quick``
    changed, default strategies dropped because the data cannot carry them)."""

    context: RunContext
    notes: tuple[str, ...] = ()

    @property
    def config(self) -> ExperimentConfig:
        return self.context.config

    @property
    def prepared(self) -> PreparedData:
        return self.context.prepared


def compose_config(
    experiment: str = DEFAULT_STUDY,
    *,
    config_file: str | Path | None = None,
    data_path: str | Path | None = None,
    dataset: str | None = None,
    market: dict[str, Any] | None = None,
    date_format: str | None = None,
    seed: int | None = None,
    n_seeds: int | None = None,
    quick: bool = False,
) -> ComposedRun:
    """Compose one run's config, in this order: the study's defaults, the ``config_file``
    merged over them, ``quick`` (the study's smoke-test budgets and one seed, unless the file
    or ``n_seeds`` says how many), then the data and seed overrides. The prices are loaded
    once. When the data comes from the command line and no config file was given, default
    strategies the data cannot carry are dropped with a note
    (:func:`~dynafolio.experiments.plan.drop_misfits`); a user's own config is never
    edited: every entry is planned here (built and checked against the data, training
    nothing), so what does not fit is refused in the first seconds.

    Raises
    ------
    ConfigError
        An unknown study, both ``data_path`` and ``dataset``, or an invalid setting (each
        bad key named).
    DataError
        Data that cannot be read or used.
    """
    module = study(experiment)
    if data_path is not None and dataset is not None:
        raise ConfigError("give either --data FILE or --dataset NAME, not both")
    settings = module.default_config()
    source = "settings (defaults and command-line options)"
    user: dict[str, Any] = {}
    if config_file is not None:
        user = load_config_file(config_file)
        settings = merge(settings, user)
        source = str(config_file)
    notes = []
    if quick:
        settings = module.quick(settings)
        kept = user.get("n_seeds") if n_seeds is None else n_seeds
        if kept is not None:
            settings["n_seeds"] = kept
        notes.append(
            "--quick: smallest training budgets"
            + (f", n_seeds = {kept} as given" if kept is not None else ", one seed")
            + "; a smoke test, not a result to quote"
        )
    data: dict[str, Any] = {}
    if data_path is not None:
        data["path"] = str(data_path)
    if dataset is not None:
        data.update(dataset=dataset, path=None, start=None, end=None)
    if market:
        data["market"] = dict(market)
    if date_format is not None:
        data["date_format"] = date_format
    overrides: dict[str, Any] = {"data": data} if data else {}
    if seed is not None:
        overrides["seed"] = seed
    if n_seeds is not None:
        overrides["n_seeds"] = n_seeds
    config = validate_config(merge(settings, overrides), source)
    prepared = load_prices(config)
    # Every entry is checked against the data here, training nothing.
    if (data_path is not None or dataset is not None) and config_file is None:
        config, dropped = drop_misfits(config, prepared)
        notes += dropped
    return ComposedRun(RunContext.build(config, prepared), tuple(notes))
