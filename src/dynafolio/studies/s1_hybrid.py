"""S1: the hybrid LSTM + PPO Top-K setting (multiasset, weekly, 70/30 split, tc = 0.001).

This is the default ``dynafolio run`` experiment: the source's Table 2 on our data —
LSTM-only, PPO-only and hybrid Top-K for K ∈ {5, 10, 30} — with the benchmarks (equal
weight, SPY, asset-class composite) and the classical baselines.
"""

from __future__ import annotations

import copy
from typing import Any

import pandas as pd

from dynafolio.results.result import ExperimentResult

NAME = "s1"
TITLE = (
    "S1 — multi-asset weekly allocation (hybrid LSTM+PPO setting): "
    "LSTM-only, PPO-only and hybrid Top-K against benchmarks and classical baselines"
)

TOP_K = (5, 10, 30)
_ESTIMATED = ("inverse_volatility", "minimum_variance", "max_sharpe", "hrp", "herc")


def family(k: int) -> list[dict[str, Any]]:
    """S1's four Top-K strategies at ``k``: LSTM-only (one LSTM's forecasts through the Top-K
    projection, refit every 26 weeks on all history so far), PPO-only, the hybrid (PPO whose
    state holds the same LSTM's forecasts, made out-of-sample on the training period by an
    inner walk-forward) and chance through the same projection (seeded random logits)."""
    return [
        {
            "kind": "forecast_topk",
            "name": f"LSTM-only Top-{k}",
            "tags": {"family": "LSTM-only"},
            "k": k,
            "retrain_every": 26,
            "forecaster": {"model": "univariate_lstm", "params": {}},
        },
        {"kind": "ppo_topk", "name": f"PPO-only Top-{k}", "tags": {"family": "PPO-only"}, "k": k},
        {
            "kind": "ppo_topk",
            "name": f"Hybrid LSTM+PPO Top-{k}",
            "tags": {"family": "Hybrid"},
            "k": k,
            "forecaster": {"model": "univariate_lstm", "params": {}},
            "score_refit_every": 26,
        },
        {
            "kind": "random_topk",
            "name": f"Random Top-{k}",
            "tags": {"family": "Random", "role": "control"},
            "k": k,
        },
    ]


def plot_groups() -> dict[str, tuple[str, ...]]:
    """One chart group per K: the four members of :func:`family`, by name."""
    return {f"K = {k}": tuple(entry["name"] for entry in family(k)) for k in TOP_K}


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
    # Each family for every K: all LSTM-only rows first, then PPO-only, hybrid, random.
    strategies += [family(k)[member] for member in range(4) for k in TOP_K]
    return {
        "name": NAME,
        "analyses": NAME,
        "title": TITLE,
        "data": {
            "start": "2018-01-01",
            "end": "2024-12-31",
        },
        "split": {"train_fraction": 0.7},
        "strategies": strategies,
        "plot_groups": plot_groups(),
        "stress_windows": {
            "covid-crash": ["2020-02-15", "2020-04-30"],
            "2022-crypto-winter": ["2022-01-01", "2022-12-31"],
        },
    }


def quick(settings: dict[str, Any]) -> dict[str, Any]:
    """``--quick``: one seed, 5 epochs per forecaster fit, forecasters refit every 26 weeks,
    8k PPO timesteps."""
    settings = copy.deepcopy(settings)
    for entry in settings["strategies"]:
        if entry.get("forecaster"):
            entry["forecaster"]["params"] = {**entry["forecaster"]["params"], "epochs": 5}
        if entry.get("kind") == "forecast_topk":
            entry["retrain_every"] = 26
        if entry.get("kind") == "ppo_topk":
            entry["ppo"] = {**entry.get("ppo", {}), "total_timesteps": 8192, "eval_every": 4096}
            entry["score_refit_every"] = 26
    return {**settings, "n_seeds": 1}


def analyse(result: ExperimentResult, context: Any = None) -> dict[str, pd.DataFrame]:
    """No tables beyond the main one yet."""
    return {}
