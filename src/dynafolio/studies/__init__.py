"""The named experiments: S1 … S4, the S1 study and walk-forward, the known-answer controls,
and forecaster tuning.

Each study module defines ``NAME``, ``TITLE``, ``default_config()`` (a plain dict the config
file is merged over; its ``analyses`` key names the module), ``quick(settings) -> settings``
(what ``--quick`` changes: smaller training budgets, one seed) and ``analyse(result,
context) -> dict[str, DataFrame]`` (its own tables). :mod:`dynafolio.studies.catalog` lists
them, composes a run's config and runs it with its study's analysis — from Python as from the
CLI. Analyses select strategies by their tags (``result.select(family="Hybrid", k=5)``),
never by parsing display names.
"""

from __future__ import annotations

from dynafolio.studies.catalog import (
    DEFAULT_STUDY,
    STUDIES,
    analyse,
    compose_config,
    run_experiment,
    run_experiments,
    study,
)

__all__ = [
    "DEFAULT_STUDY",
    "STUDIES",
    "analyse",
    "compose_config",
    "run_experiment",
    "run_experiments",
    "study",
]
