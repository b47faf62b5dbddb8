"""S4: weekly LSTM price forecasts turned into a long-short buy-risers / sell-fallers rule.

The source's stocks that the embedded data holds, weekly, 24-week windows, the last 52
weeks as the test period; against QQQ and 1/N of the same stocks. Short selling is allowed,
no position above one third, and — as in the source — no trading costs by default.
"""

from __future__ import annotations

import copy
from typing import Any

import pandas as pd

from dynafolio import stats
from dynafolio.results.result import ExperimentResult
from dynafolio.results.tables import analysis_table

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


#: The rule on three forecasters: the source's (one univariate price model per stock,
#: MinMax-scaled on training prices), one multi-output model over all stocks, and the
#: per-stock model on windows scaled by their own last price (immune to price levels outside
#: the training range, e.g. NVDA in 2024).
_VARIANTS = (
    ("LSTM price rule", "source", {"model": "price_lstm_per_stock", "params": {}}),
    ("LSTM price rule (multi-output)", "multi-output", {"model": "price_lstm", "params": {}}),
    (
        "LSTM price rule (window-scaled)",
        "window-scaled",
        {"model": "price_lstm_per_stock", "params": {"scaling": "window"}},
    ),
)


def default_config() -> dict[str, Any]:
    return {
        "name": NAME,
        "analyses": NAME,
        "title": TITLE,
        "data": {
            "assets": [*PRESENT, "QQQ"],
            "start": "2018-01-01",
            "end": "2024-12-31",
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
            *[
                {
                    "kind": "price_rule",
                    "name": name,
                    "tags": {"variant": variant},
                    "universe": PRESENT,
                    "constraints": {
                        "long_only": False,
                        "max_gross_leverage": 1.0,
                        "max_position": 1 / 3,
                    },
                    "forecaster": forecaster,
                }
                for name, variant, forecaster in _VARIANTS
            ],
        ],
        "benchmark": {"kind": "equal_weight"},
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
        if entry.get("kind") == "price_rule":  # every forecaster variant
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
    risk_free = context.config.backtest.risk_free_rate if context is not None else 0.0
    return {"Tear sheet": table, **_variant_table(result, risk_free)}


def _variant_table(result: ExperimentResult, risk_free: float) -> dict[str, pd.DataFrame]:
    """Each forecaster variant against the source's, by the paired test."""
    source = result.select(variant="source")
    if not source:
        return {}
    rows = {}
    delta = f"Δ vs {source[0].name}"
    for runs in result.strategies:
        variant = runs.tags.get("variant")
        if variant is None or variant == "source":
            continue
        test = stats.sharpe_difference_test(
            runs.net_return_matrix(), source[0].net_return_matrix(), result.periods_per_year,
            risk_free=risk_free, seed=0,
        )  # fmt: skip
        rows[runs.name] = {
            "Sharpe": float(result.table.loc[runs.name, "sharpe"]),
            delta: test.difference,
            "Δ low": test.ci_low,
            "Δ high": test.ci_high,
            "p-value": test.p_value,
        }
    if not rows:
        return {}
    table = analysis_table(
        rows,
        index_name="strategy",
        formats={delta: "signed", "Δ low": "signed", "Δ high": "signed", "p-value": "p"},
        intervals={"95% CI of Δ": ("Δ low", "Δ high")},
        caption=(
            f"The same rule on other forecasters, against the source's per-stock model "
            f"({source[0].name}, Sharpe {result.table.loc[source[0].name, 'sharpe']:.2f}): "
            "paired test of equal Sharpe ratios over the same weeks and the seeds."
        ),
    )
    return {"Forecaster variants vs the source's per-stock model": table}
