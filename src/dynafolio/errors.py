"""Project exceptions. Each message says what was wrong, where, and how to fix it."""

from __future__ import annotations

from collections.abc import Iterable


class DynafolioError(Exception):
    """Base class of every error dynafolio raises on purpose."""


class DataError(DynafolioError, ValueError):
    """Input data is malformed or insufficient (names the file, column and row when known)."""


class ConfigError(DynafolioError, ValueError):
    """An experiment configuration is invalid (names the offending key)."""


class OptimizationError(DynafolioError, RuntimeError):
    """A portfolio optimiser failed or produced weights that break the portfolio's constraints."""


def some_names(names: Iterable[object], limit: int = 20) -> str:
    """``names`` for a message: the first ``limit`` as a list, then how many more (a universe
    of hundreds of assets would otherwise fill the screen)."""
    listed = [str(name) for name in names]
    more = f" and {len(listed) - limit} more" if len(listed) > limit else ""
    return f"{listed[:limit]}{more}"
