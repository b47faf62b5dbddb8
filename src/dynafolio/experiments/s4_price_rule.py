"""S4: weekly LSTM price forecasts turned into a long-short buy-risers / sell-fallers rule.

The source's stocks that the embedded data holds, weekly, 24-week windows, the last 52
weeks as the test period; against QQQ and 1/N of the same stocks. Short selling is allowed,
no position above one third, and — as in the source — no trading costs by default.
"""

from __future__ import annotations

import copy
from typing import Any

import pandas as pd

from dynafolio.experiments.result import ExperimentResult

NAME = "s4"
TITLE = "S4 — weekly LSTM price-forecast rule strategy (long-short, |w| ≤ 1/3)"

SOURCE_STOCKS = (
    "TSLA",
    "NVDA",
    "AAPL",
    "MSFT",
    "AMZN",
    "SHOP",
    "NFLX",
    "NKE",
    "PEP",
    "JPM",
    "UNH",
    "BA",
)
PRESENT = ("TSLA", "NVDA", "AAPL", "MSFT", "AMZN", "JPM")
MISSING = tuple(s for s in SOURCE_STOCKS if s not in PRESENT)


def default_config() -> dict[str, Any]:
    return {
        "name": NAME,
        "analyses": NAME,
        "title": TITLE,
        "data": {
            "dataset": "multiasset",
            "assets": [*PRESENT, "QQQ"],
            "start": "2018-01-01",
            "end": "2024-12-31",
            "frequency": "W",
        },
        "split": {"train_fraction": None, "test_start": "2024-01-05"},
        "backtest": {
            "transaction_cost": 0.0,
            "rebalance_every": 1,
            # Approximate 2024 average of the US 2-year Treasury yield, the source's choice.
            "risk_free_rate": 0.044,
        },
        "strategies": [
            {"kind": "equal_weight", "name": f"1/N ({len(PRESENT)} stocks)", "universe": PRESENT},
            {"kind": "buy_and_hold", "asset": "QQQ"},
            {
                "kind": "price_rule",
                "name": "LSTM price rule",
                "universe": PRESENT,
                "max_position": 1 / 3,
                "constraints": {
                    "long_only": False,
                    "max_gross_leverage": 1.0,
                    "max_position": 1 / 3,
                },
                "forecaster": {"model": "price_lstm", "params": {}},
            },
        ],
        "seed": 0,
        "n_seeds": 3,
        "benchmark": f"1/N ({len(PRESENT)} stocks)",
        "index_asset": "QQQ",
        "rolling_window": 13,
        "notes": [
            f"Source stocks missing from the embedded data: {', '.join(MISSING)}; the universe is "
            f"{', '.join(PRESENT)}.",
            "No trading costs (the source assumed none); set backtest.transaction_cost to "
            "charge them. Sharpe uses a constant 4.4% risk-free rate.",
        ],
    }


def quick(settings: dict[str, Any]) -> dict[str, Any]:
    """One seed, 10 epochs, a smaller network."""
    settings = copy.deepcopy(settings)
    for entry in settings["strategies"]:
        if entry.get("kind") == "price_rule":
            params = entry["forecaster"]["params"]
            entry["forecaster"]["params"] = {**params, "epochs": 10, "hidden": 64}
    return {**settings, "n_seeds": 1}


def analyse(result: ExperimentResult, context: Any = None) -> dict[str, pd.DataFrame]:
    """Tear sheet: return, volatility, Sharpe, max drawdown per strategy."""
    columns = ["total_return", "ann_volatility", "sharpe", "sharpe_ci_low", "sharpe_ci_high",
               "sharpe_p_vs_benchmark", "max_drawdown"]  # fmt: skip
    table = result.metric_table(list(result.table.index), columns)
    table.index.name = "strategy"
    table.attrs["caption"] = "52-week test; Sharpe in excess of 4.4% a year; mean over seeds."
    return {"Tear sheet": table}
