"""Progress reporting that lower layers can use without knowing who displays it.

The CLI installs a factory (rich progress bars); library code calls :func:`progress_bar`
and gets a no-op when nothing is installed, so tests and notebooks stay quiet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

#: (description, total steps) -> function advancing the bar by n steps.
ProgressFactory = Callable[[str, int], Callable[[int], None]]

_FACTORY: ContextVar[ProgressFactory | None] = ContextVar("dynafolio_progress", default=None)


def progress_bar(description: str, total: int) -> Callable[[int], None]:
    """A step function for a task of ``total`` steps (a no-op without a display)."""
    factory = _FACTORY.get()
    if factory is None:
        return _ignore
    return factory(description, total)


@contextmanager
def reporting_progress(factory: ProgressFactory) -> Iterator[None]:
    """Send every :func:`progress_bar` inside the block to ``factory``."""
    token = _FACTORY.set(factory)
    try:
        yield
    finally:
        _FACTORY.reset(token)


def _ignore(n: int) -> None:
    return None
