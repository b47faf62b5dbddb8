"""S1 walk-forward: every S1 strategy evaluated out-of-sample from January 2020 to December 2024.

The single S1 split tests on one window (December 2022 to December 2024, a crypto bull market)
and keeps the 2020 crash and the 2022 crypto winter inside training. Here the test period is a
rolling-origin record instead: test blocks of ``step`` weeks from the first Friday of 2020, each
preceded by a refit of every model — scalers, LSTMs, PPO agents, optimisers — on the data
before it (expanding by default), the blocks joined into one record of about 260 weeks that is
scored with the same metrics, intervals and tests as any run. The first trade of a block starts
from the previous block's drifted holdings and pays for the change.

Settings that differ from S1, because the first fold has only two years of data: PPO episodes
start after 52 weeks (``score_initial_window``; the same rows for PPO-only and the hybrid) and
last 26 weeks; forecasters are fitted once per block, so LSTM-only and the hybrid's test-time
scores share one fit per fold and seed.
"""

from __future__ import annotations

import copy
from typing import Any

import pandas as pd

from dynafolio.results.result import ExperimentResult
from dynafolio.studies import s1_hybrid

NAME = "s1-walkforward"
TITLE = (
    "S1 walk-forward — every S1 strategy refit before each test block, the blocks joined into "
    "one out-of-sample record from 2020 to 2024"
)

FIRST_TEST = "2020-01-03"
#: Weeks per test block (every model is refit before each). See the README for the
#: measurement behind the choice.
STEP = 26
#: Weeks per block with --quick.
QUICK_STEP = 52
#: Weeks of data before the first PPO episode (and the hybrid's first out-of-sample forecast).
WARM_UP = 52


def default_config() -> dict[str, Any]:
    settings = s1_hybrid.default_config()
    strategies = []
    for entry in copy.deepcopy(settings["strategies"]):
        if entry["kind"] == "forecast_topk":
            entry["retrain_every"] = STEP
        if entry["kind"] == "ppo_topk":
            entry["score_initial_window"] = WARM_UP
            entry["score_refit_every"] = STEP
            entry["ppo"] = {**entry.get("ppo", {}), "episode_length": 26}
        strategies.append(entry)
    return {
        **settings,
        "name": NAME,
        "analyses": None,
        "title": TITLE,
        "split": {"walk_forward": {"first_test": FIRST_TEST, "step": STEP, "mode": "expanding"}},
        "strategies": strategies,
        "stress_windows": {
            "covid-crash": ["2020-02-15", "2020-04-30"],
            "2022-crypto-winter": ["2022-01-01", "2022-12-30"],
            "2023-24-bull-market": ["2023-01-01", "2024-12-31"],
        },
    }


def quick(settings: dict[str, Any]) -> dict[str, Any]:
    """``--quick``: S1's quick budgets (one seed, 5 epochs, 8k PPO timesteps) and 52-week
    blocks (5 folds instead of 10), so the smoke test stays within a few minutes."""
    quick_settings = s1_hybrid.quick(settings)
    walk = {**quick_settings["split"]["walk_forward"], "step": QUICK_STEP}
    quick_settings["split"] = {**quick_settings["split"], "walk_forward": walk}
    for entry in quick_settings["strategies"]:
        if entry["kind"] == "forecast_topk":
            entry["retrain_every"] = QUICK_STEP
        if entry["kind"] == "ppo_topk":
            entry["score_refit_every"] = QUICK_STEP
    return quick_settings


def analyse(result: ExperimentResult, context: Any = None) -> dict[str, pd.DataFrame]:
    """The fold tables are added to every walk-forward run (:mod:`dynafolio.results.folds`)."""
    return {}
