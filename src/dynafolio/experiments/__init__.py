"""Experiments: one module per system, composed by the runner; the CLI calls these.

Each experiment module defines ``NAME``, ``TITLE``, ``default_config()`` (a plain dict the
config file is merged over), ``quick(settings) -> settings`` (what ``--quick`` changes: smaller
training budgets, one seed) and ``analyse(result) -> dict[str, DataFrame]`` (its own tables).
"""

from __future__ import annotations

from types import ModuleType

from dynafolio.experiments import s1_hybrid

#: experiment name -> module implementing it.
EXPERIMENTS: dict[str, ModuleType] = {s1_hybrid.NAME: s1_hybrid}
DEFAULT_EXPERIMENT = s1_hybrid.NAME
