"""Command-line interface: ``dynafolio run``, ``tune``, ``strategies`` and ``data``.

The CLI only parses arguments, composes the experiment layer and prints; errors the user
can fix are printed as one clear message with a non-zero exit code, never a traceback.
Exit codes: 2 for bad input (nothing ran); 3 when the backtests finished and the run directory
was written but an analysis step failed (:mod:`dynafolio.results.steps`).
"""

from dynafolio.cli.app import ANALYSIS_FAILED, app, main, user_errors

__all__ = ["ANALYSIS_FAILED", "app", "main", "user_errors"]
