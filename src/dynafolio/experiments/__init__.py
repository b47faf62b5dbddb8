"""Experiments: one module per system, composed by the runner; the CLI calls these.

Each experiment module defines ``NAME``, ``TITLE``, ``default_config()`` (a plain dict the
config file is merged over), ``quick(settings) -> settings`` (what ``--quick`` changes: smaller
training budgets, one seed) and ``analyse(result) -> dict[str, DataFrame]`` (its own tables). A
module may define ``run(config, prepared=..., progress=...)`` to compose several runs (the S1
study's crisis windows); otherwise :func:`~dynafolio.experiments.runner.run_experiment` runs.
"""

from __future__ import annotations

from types import ModuleType

from dynafolio.experiments import s1_hybrid, s1_study, s2_signal, s3_drawdown, s4_price_rule

#: experiment name -> module implementing it.
EXPERIMENTS: dict[str, ModuleType] = {
    module.NAME: module for module in (s1_hybrid, s1_study, s2_signal, s3_drawdown, s4_price_rule)
}
DEFAULT_EXPERIMENT = s1_hybrid.NAME
