"""Experiments: one module per system, composed by the runner; the CLI calls these.

Each experiment module defines ``NAME``, ``TITLE``, ``default_config()`` (a plain dict the
config file is merged over; its ``analyses`` key names the module), ``quick(settings) ->
settings`` (what ``--quick`` changes: smaller training budgets, one seed) and
``analyse(result, context) -> dict[str, DataFrame]`` (its own tables, which
:func:`~dynafolio.experiments.runner.run_experiment` adds to the result — from Python as from
the CLI; ``context`` lets an analysis run further experiments, e.g. the S1 study's crisis
windows). Analyses select strategies by their tags (``result.select(family="Hybrid", k=5)``),
never by parsing display names.
"""

from __future__ import annotations

from types import ModuleType

from dynafolio.experiments import (
    controls,
    s1_hybrid,
    s1_study,
    s1_walkforward,
    s2_signal,
    s3_drawdown,
    s4_price_rule,
)

#: experiment name -> module implementing it.
EXPERIMENTS: dict[str, ModuleType] = {
    module.NAME: module
    for module in (
        s1_hybrid,
        s1_study,
        s1_walkforward,
        s2_signal,
        s3_drawdown,
        s4_price_rule,
        controls,
    )
}
DEFAULT_EXPERIMENT = s1_hybrid.NAME
