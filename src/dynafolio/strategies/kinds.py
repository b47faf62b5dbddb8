"""Every strategy kind a config can name: importing this module registers all of them.

Each module of :mod:`dynafolio.strategies` declares its kinds next to its classes with
:func:`~dynafolio.strategies.registry.register_strategy`; this module imports them all (found
by listing the package, so a new strategy file needs no edit anywhere else) and builds the
config type :data:`StrategySpecUnion` from what registered.
"""

from __future__ import annotations

import importlib
import pkgutil

import dynafolio.strategies as _package
from dynafolio.forecast.registry import discover_forecasters
from dynafolio.strategies.registry import STRATEGY_SPECS, strategy_spec_union

discover_forecasters()
for _module in sorted(m.name for m in pkgutil.iter_modules(_package.__path__)):
    if _module not in ("kinds", "registry"):
        importlib.import_module(f"{_package.__name__}.{_module}")

#: The type of one ``strategies`` entry of a config: any registered kind, by ``kind``.
StrategySpecUnion = strategy_spec_union()

__all__ = ["STRATEGY_SPECS", "StrategySpecUnion"]
