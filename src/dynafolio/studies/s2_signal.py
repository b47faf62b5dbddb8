"""S2: LSTM signal pipeline with walk-forward retraining (504-day window, 63-day step).

SPY, TLT and GLD, daily on NYSE days. Forecasters are refit every 63 days on the last 504
days; four allocation rules share the LSTM's forecasts, and GRU and Transformer forecasters
replace the LSTM in the ablation. The test period starts once the first 504-day training
window is available, so the COVID crash of 2020 is out-of-sample.
"""

from __future__ import annotations

import copy
from typing import Any

import pandas as pd

from dynafolio import stats
from dynafolio.forecast.registry import FORECASTERS
from dynafolio.model_inputs import S2_FEATURES
from dynafolio.results.result import ExperimentResult

NAME = "s2"
TITLE = "S2 — LSTM signal pipeline, walk-forward 504/63 days (SPY, TLT, GLD)"

_WALK = {"retrain_every": 63, "train_window": 504}
_ALLOCATIONS = {
    "clip": "LSTM signal (clip ≥ 0)",
    "inverse_vol": "LSTM signal × inverse vol",
    "mean_variance": "LSTM forecasts → mean-variance",
    "hrp": "LSTM forecasts → HRP",
}
_ABLATION = {
    "stacked_lstm": "LSTM signal (clip ≥ 0)",
    "stacked_gru": "GRU signal (clip ≥ 0)",
    "transformer": "Transformer signal (clip ≥ 0)",
}


def default_config() -> dict[str, Any]:
    strategies: list[dict[str, Any]] = [
        {"kind": "equal_weight"},
        {"kind": "inverse_volatility", "estimation": "rolling", "window": 63},
        {"kind": "hrp", "estimation": "rolling", "window": 252},
    ]
    for allocation, name in _ALLOCATIONS.items():
        strategies.append(
            {
                "kind": "forecast_signal",
                "name": name,
                "allocation": allocation,
                "forecaster": {"model": "stacked_lstm", "params": {}},
                # The clip rule on the LSTM is also the ablation's reference row.
                "tags": {"ablation": "forecaster"} if allocation == "clip" else {},
                **_WALK,
            }
        )
    # The source's optional features (1–5 period log returns, EWMA volatility, RSI,
    # Bollinger position, SPY's 20/60-period trend, fractional difference) against the same
    # LSTM and rule on log returns only.
    strategies.append(
        {
            "kind": "forecast_signal",
            "name": "LSTM + features (clip ≥ 0)",
            "allocation": "clip",
            "forecaster": {"model": "stacked_lstm", "params": {"features": list(S2_FEATURES)}},
            "tags": {"ablation": "features"},
            **_WALK,
        }
    )
    for model in ("stacked_gru", "transformer"):
        strategies.append(
            {
                "kind": "forecast_signal",
                "name": _ABLATION[model],
                "allocation": "clip",
                "forecaster": {"model": model, "params": {}},
                "tags": {"ablation": "forecaster"},
                **_WALK,
            }
        )
    return {
        "name": NAME,
        "analyses": NAME,
        "title": TITLE,
        "data": {
            "assets": ["SPY", "TLT", "GLD"],
            "start": "2018-01-01",
            "end": "2024-12-31",
            "frequency": "D",
            "calendar": "common",
        },
        # 504 NYSE days after 2018-01-02: the first full training window ends in Dec 2019.
        "split": {"train_fraction": None, "test_start": "2020-01-02"},
        "strategies": strategies,
        "rolling_window": 63,
        "stress_windows": {
            "covid-crash": ["2020-02-15", "2020-04-30"],
            "2022": ["2022-01-01", "2022-12-31"],
        },
        "notes": [
            "Forecasts are next-day log returns from models refit every 63 trading days on the "
            "previous 504; scalers are fitted on each training window only.",
        ],
    }


def quick(settings: dict[str, Any]) -> dict[str, Any]:
    """One seed, 5 epochs per fit, refits every 126 days."""
    settings = copy.deepcopy(settings)
    for entry in settings["strategies"]:
        if entry.get("kind") == "forecast_signal":
            entry["forecaster"]["params"] = {**entry["forecaster"]["params"], "epochs": 5}
            entry["retrain_every"] = 126
    return {**settings, "n_seeds": 1}


def analyse(result: ExperimentResult, context: Any = None) -> dict[str, pd.DataFrame]:
    """The forecaster ablation: the same allocation rule on LSTM, GRU and Transformer."""
    runs = result.select(ablation="forecaster")
    if not runs:
        return {}
    columns = ["cagr", "ann_volatility", "sharpe", "sharpe_ci_low", "sharpe_ci_high",
               "sharpe_p_vs_benchmark", "max_drawdown", "avg_turnover"]  # fmt: skip
    table = result.metric_table([r.name for r in runs], columns)
    table.index = [FORECASTERS[str(r.tags["model"])].label for r in runs]
    table.index.name = "forecaster"
    base = result.table.loc[result.benchmark, "sharpe"]
    table["Sharpe − benchmark"] = table["sharpe"] - base
    table.attrs["caption"] = (
        f"Allocation clip(forecast, 0) with each forecaster; Sharpe difference against "
        f"{result.benchmark} ({base:.2f}); std over seeds."
    )
    return {"Ablation: LSTM vs GRU vs Transformer": table, **_feature_ablation(result)}


def _feature_ablation(result: ExperimentResult) -> dict[str, pd.DataFrame]:
    """LSTM + the source's features against the LSTM on log returns, by the paired test."""
    with_features = result.select(ablation="features")
    returns_only = result.select(ablation="forecaster", model="stacked_lstm")
    if not with_features or not returns_only:
        return {}
    a, b = with_features[0], returns_only[0]
    test = stats.sharpe_difference_test(
        a.net_return_matrix(), b.net_return_matrix(), result.periods_per_year, seed=0
    )
    columns = ["sharpe", "sharpe_ci_low", "sharpe_ci_high", "cagr", "max_drawdown"]
    table = result.metric_table([a.name, b.name], columns)
    table.index = pd.Index(["LSTM + features", "LSTM on returns only"], name="forecaster")
    verdict = (
        "the features change the Sharpe ratio at the 5% level"
        if test.p_value < 0.05
        else "the two are not distinguishable at the 5% level"
    )
    table.attrs["caption"] = (
        f"The same LSTM and clip rule, reading {', '.join(S2_FEATURES)} instead of log returns "
        f"only; paired test of equal Sharpe ratios on the same dates over dates and seeds "
        f"(dynafolio.stats.sharpe_difference_test): difference {test.difference:+.2f} "
        f"[{test.ci_low:+.2f}, {test.ci_high:+.2f}], {verdict} (p = {test.p_value:.3f})."
    )
    return {"Ablation: LSTM + features vs LSTM on returns only": table}
