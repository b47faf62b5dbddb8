"""Project exceptions. Each message says what was wrong, where, and how to fix it."""

from __future__ import annotations


class DynafolioError(Exception):
    """Base class of every error dynafolio raises on purpose."""


class DataError(DynafolioError, ValueError):
    """Input data is malformed or insufficient (names the file, column and row when known)."""


class ConfigError(DynafolioError, ValueError):
    """An experiment configuration is invalid (names the offending key)."""


class OptimizationError(DynafolioError, RuntimeError):
    """A portfolio optimiser failed or produced weights that break the portfolio's constraints."""
