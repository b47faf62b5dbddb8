"""Experiments: one module per system, composed by the runner; the CLI calls these."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dynafolio.experiments import s1_hybrid

#: experiment name -> function returning its default configuration (a plain dict).
EXPERIMENTS: dict[str, Callable[[], dict[str, Any]]] = {
    s1_hybrid.NAME: s1_hybrid.default_config,
}
DEFAULT_EXPERIMENT = s1_hybrid.NAME
