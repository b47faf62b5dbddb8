"""S1: the hybrid LSTM + PPO Top-K setting (multiasset, weekly, 70/30 split, tc = 0.001).

This is the default ``dynafolio run`` experiment. It currently holds the benchmarks and the
classical baselines; learned strategies join the same list as they are built.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from dynafolio.experiments.result import ExperimentResult

NAME = "s1"
TITLE = (
    "S1 — multi-asset weekly allocation (hybrid LSTM+PPO setting): "
    "benchmarks and classical baselines"
)

_ESTIMATED = ("inverse_volatility", "minimum_variance", "max_sharpe", "hrp", "herc")


def default_config() -> dict[str, Any]:
    """The source's settings on the embedded ``multiasset`` data, as a plain dict."""
    strategies: list[dict[str, Any]] = [
        {"kind": "equal_weight"},
        {"kind": "buy_and_hold", "asset": "SPY"},
        {"kind": "asset_class_composite"},
    ]
    # Each optimiser twice: re-estimated at every rebalance on the last two years, and
    # estimated once on the training period and held (what the S3 source does for MVO).
    strategies += [{"kind": k, "estimation": "rolling", "window": 104} for k in _ESTIMATED]
    strategies += [{"kind": k, "estimation": "static", "window": None} for k in _ESTIMATED]
    return {
        "name": NAME,
        "title": TITLE,
        "data": {
            "dataset": "multiasset",
            "start": "2018-01-01",
            "end": "2024-12-31",
            "frequency": "W",
        },
        "split": {"train_fraction": 0.7},
        "backtest": {"transaction_cost": 0.001, "rebalance_every": 1},
        "strategies": strategies,
        "seed": 0,
        "n_seeds": 3,
        "benchmark": "Equal weight",
        "index_asset": "SPY",
        "stress_windows": {
            "covid-crash": ["2020-02-15", "2020-04-30"],
            "2022-crypto-winter": ["2022-01-01", "2022-12-31"],
        },
    }


def quick(settings: dict[str, Any]) -> dict[str, Any]:
    """``--quick``: one seed (learned strategies join with smaller budgets)."""
    return {**settings, "n_seeds": 1}


def analyse(result: ExperimentResult) -> dict[str, pd.DataFrame]:
    """No tables beyond the main one yet."""
    return {}
