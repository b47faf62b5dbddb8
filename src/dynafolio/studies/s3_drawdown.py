"""S3: end-to-end LSTM rebalancer trained with a drawdown-sensitive loss.

BTC, ETH, SPY, GLD, NVDA on NYSE days, 2019–2024. Models and the max-Sharpe baseline are
fitted on 2019–2021 only and evaluated on 2022–2024, so the 2022 bear market is
out-of-sample. The λ sweep shows the return/drawdown trade-off of the loss
``−mean(R_p) + λ·mean(max(0, −R_p)²)`` computed on real next-day returns.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd

from dynafolio.results.result import ExperimentResult
from dynafolio.results.tables import analysis_table

NAME = "s3"
TITLE = "S3 — end-to-end LSTM allocator with drawdown-sensitive loss (BTC, ETH, SPY, GLD, NVDA)"

LAMBDAS = (10, 20, 30, 40, 50)
MVO = "Max Sharpe MVO (static, train only)"


def _e2e_name(lam: float) -> str:
    return f"E2E drawdown LSTM (λ={lam:g})"


def default_config() -> dict[str, Any]:
    strategies: list[dict[str, Any]] = [
        {"kind": "equal_weight"},
        {
            "kind": "max_sharpe",
            "estimation": "static",
            "window": None,
            "name": MVO,
            "tags": {"role": "reference"},
        },
    ]
    strategies += [
        {
            "kind": "e2e_drawdown",
            "lam": lam,
            "name": _e2e_name(lam),
            "params": {},
            "tags": {"lam": lam},
        }
        for lam in LAMBDAS
    ]
    return {
        "name": NAME,
        "analyses": NAME,
        "title": TITLE,
        "data": {
            "assets": ["BTC", "ETH", "SPY", "GLD", "NVDA"],
            "start": "2019-01-01",
            "end": "2024-12-31",
            "frequency": "D",
            "calendar": "common",
        },
        "split": {"train_fraction": None, "test_start": "2022-01-01"},
        "strategies": strategies,
        "rolling_window": 63,
        "stress_windows": {"2022 bear market": ["2022-01-03", "2022-12-30"]},
        "notes": [
            "Calendar: NYSE trading days (crypto prices sampled at those dates), 252 per year.",
            "The E2E loss uses real next-day returns, not min-max-scaled ones (scaled returns in "
            "[0, 1] never trigger the drawdown penalty), and MVO is estimated on the training "
            "period only.",
        ],
    }


def quick(settings: dict[str, Any]) -> dict[str, Any]:
    """One seed, 5 epochs, λ ∈ {10, 50}."""
    settings = copy.deepcopy(settings)
    kept = []
    for entry in settings["strategies"]:
        if entry.get("kind") == "e2e_drawdown":
            if entry["lam"] not in (LAMBDAS[0], LAMBDAS[-1]):
                continue
            entry["params"] = {**entry.get("params", {}), "epochs": 5}
        kept.append(entry)
    return {**settings, "strategies": kept, "n_seeds": 1}


def analyse(result: ExperimentResult, context: Any = None) -> dict[str, pd.DataFrame]:
    tables: dict[str, pd.DataFrame] = {}
    sweep = [runs.name for runs in result.select(kind="e2e_drawdown")]
    if sweep:
        columns = ["total_return", "max_drawdown", "sharpe", "sharpe_ci_low", "sharpe_ci_high",
                   "sharpe_p_vs_benchmark", "sortino", "avg_turnover"]  # fmt: skip
        table = result.metric_table(sweep, columns)
        table.index.name = "strategy"
        table.attrs["caption"] = "Higher λ penalises losing days more: mean over seeds."
        tables["λ sweep"] = table
    reference = result.select(role="reference")
    if reference:
        tables["Alpha against MVO in three test windows"] = _alpha_vs(result, reference[0].name)
    tables["Final weights"] = _final_weights(result)
    return tables


def _alpha_vs(result: ExperimentResult, reference: str) -> pd.DataFrame:
    """Annualised alpha and beta (OLS on net returns) against ``reference``, per third."""
    by_name = {runs.name: runs.mean_net_returns() for runs in result.strategies}
    base = by_name[reference]
    windows = np.array_split(np.arange(len(base)), 3)
    rows = {}
    for name, returns in by_name.items():
        if name == reference:
            continue
        row = {}
        for w in windows:
            label = f"{base.index[w[0]].date()}..{base.index[w[-1]].date()}"
            y, x = returns.iloc[w].to_numpy(), base.iloc[w].to_numpy()
            beta = np.cov(y, x, ddof=1)[0, 1] / np.var(x, ddof=1)
            alpha = result.periods_per_year * (y.mean() - beta * x.mean())
            row[f"{label} alpha (ann.)"] = float(alpha)
            row[f"{label} beta"] = float(beta)
        rows[name] = row
    alphas = [column for row in rows.values() for column in row if column.endswith("alpha (ann.)")]
    return analysis_table(
        rows,
        index_name="strategy",
        formats=dict.fromkeys(alphas, "signed_percent"),
        caption=(
            f"Test period cut into three equal, non-overlapping windows; alpha = "
            f"{result.periods_per_year}·(mean(r) − β·mean(r_MVO)) of net daily returns."
        ),
    )


def _final_weights(result: ExperimentResult) -> pd.DataFrame:
    last = {runs.name: runs.mean_weights().iloc[-1] for runs in result.strategies}
    table = pd.DataFrame(last).T.fillna(0.0)
    return analysis_table(
        table.to_dict(orient="index"),
        index_name="strategy",
        formats=dict.fromkeys(table.columns, "weight"),
        caption=(
            f"Weights held after the last rebalance ({result.test_dates[-2].date()}), mean over "
            "seeds."
        ),
    )
