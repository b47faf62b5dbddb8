"""What a run produced and what it supports: the result objects, the run-level inference
(intervals, tests, findings), the walk-forward fold tables and the analysis steps that keep a
failing analysis from losing the backtests. The experiments build these; the report reads
them; neither is imported from here."""

from __future__ import annotations

from dynafolio.results.result import ExperimentResult, StrategyRuns, agent_run

__all__ = ["ExperimentResult", "StrategyRuns", "agent_run"]
