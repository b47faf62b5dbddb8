"""Analysis steps that may fail without losing the backtests they summarise.

A run computes its backtests first (minutes to hours) and analyses them afterwards
(intervals and tests, findings, stress windows, rolling alpha and beta, walk-forward and
experiment tables, the report). An analysis step that raises must not throw the backtests
away: :class:`AnalysisSteps` runs each step, and when one raises it records an
:class:`AnalysisFailure` and hands back the step's fallback instead, so the run directory is
still written, with the failure in the report, ``metrics.json`` and the manifest, and the CLI
exits with a non-zero code.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["AnalysisFailure", "AnalysisSteps"]

T = TypeVar("T")


@dataclass(frozen=True)
class AnalysisFailure:
    """An analysis step that raised: which ``step``, the exception's type name (``error``)
    and ``message``, and the formatted ``traceback`` (for whoever debugs it)."""

    step: str
    error: str
    message: str
    traceback: str = ""

    @property
    def note(self) -> str:
        """One sentence for the report and the terminal."""
        return (
            f"Analysis step '{self.step}' failed ({self.error}: {self.message}); its results "
            "are missing from this run, the backtests are complete."
        )

    def to_json(self) -> dict[str, str]:
        return {
            "step": self.step,
            "error": self.error,
            "message": self.message,
            "traceback": self.traceback,
        }


class AnalysisSteps:
    """Runs analysis steps one at a time and keeps the failures of those that raised.

    Only ``Exception`` is caught: an interrupt (``KeyboardInterrupt``) or a termination
    (``SystemExit``) still stops the run.
    """

    def __init__(self) -> None:
        self.failures: list[AnalysisFailure] = []

    def run(self, step: str, function: Callable[..., T], *args: Any, fallback: T) -> T:
        """``function(*args)``, or ``fallback`` after recording the failure if it raises.

        ``step`` names the step for people ("inference", "report"); ``fallback`` is what the
        rest of the run uses in its place (an empty table, no findings).
        """
        try:
            return function(*args)
        except Exception as error:
            self.failures.append(
                AnalysisFailure(step, type(error).__name__, str(error), traceback.format_exc())
            )
            return fallback
