"""The learner checks of a run in its table and findings.

Every PPO configuration of a run is first trained on a known-answer market of the same shape
(:mod:`dynafolio.rl.learnability`, one task per distinct configuration). Its share of the
oracle's Sharpe ratio is shown next to the strategy (column ``learner_check``), and a
strategy whose learner fails is flagged: its row says nothing about the method.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from dynafolio.experiments.tasks import RunContext, learnability_checks, learnability_task_id
from dynafolio.rl.learnability import PASS_SHARE, LearnabilityResult

__all__ = ["collect_learnability", "learnability_findings", "with_learner_checks"]


def collect_learnability(
    context: RunContext, results: dict[str, Any]
) -> dict[str, LearnabilityResult]:
    """Strategy name -> its learner's check, from the executed tasks."""
    return {
        context.plan[entry].name: results[learnability_task_id(check)]
        for entry, check in learnability_checks(context).items()
    }


def with_learner_checks(
    table: pd.DataFrame, learnability: dict[str, LearnabilityResult]
) -> pd.DataFrame:
    """``table`` with a ``learner_check`` column (share of the oracle; NaN where none ran)."""
    if not learnability:
        return table
    table = table.copy()
    table["learner_check"] = [
        learnability[name].share if name in learnability else float("nan") for name in table.index
    ]
    return table


def learnability_findings(learnability: dict[str, LearnabilityResult]) -> list[str]:
    """One sentence for the learners that fail their check, one for those that pass."""
    if not learnability:
        return []
    failed = {n: r for n, r in learnability.items() if not r.passed}
    passed = {n: r for n, r in learnability.items() if r.passed}
    lines = []
    if failed:
        described = "; ".join(
            f"{name} {_share(r)} (Sharpe {r.sharpe:.2f} against the oracle's "
            f"{r.oracle_sharpe:.2f} and chance {r.random_sharpe:.2f} on {r.market})"
            for name, r in failed.items()
        )
        lines.append(
            f"NOT EVIDENCE: the learners of {len(failed)} strateg"
            f"{'y' if len(failed) == 1 else 'ies'} fail their known-answer check (below "
            f"{PASS_SHARE:.0%} of the oracle's Sharpe ratio on a market of the same shape): "
            f"{described}. Their rows say nothing about the method: a learner that cannot "
            "find a planted edge cannot be expected to find a real one."
        )
    if passed:
        described = ", ".join(f"{name} {_share(r)}" for name, r in passed.items())
        lines.append(
            f"Learner checks passed (share of the oracle's Sharpe ratio on a known-answer "
            f"market of the same shape, pass mark {PASS_SHARE:.0%}): {described}."
        )
    return lines


def _share(result: LearnabilityResult) -> str:
    share = result.share
    return "n/a" if share != share else f"{share:.0%}"
