"""The momentum rule (also the README's example of a one-file contribution)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import make_prices
from dynafolio.backtest import run_backtest
from dynafolio.errors import ConfigError
from dynafolio.experiments.config import validate_config
from dynafolio.history import MarketHistory
from dynafolio.strategies.momentum import MomentumStrategy
from dynafolio.strategies.registry import BuildContext

ROOT = Path(__file__).resolve().parents[1]


def test_holds_the_assets_that_rose_most_skipping_the_last_periods():
    index = pd.date_range("2024-01-05", periods=6, freq="W-FRI")
    prices = pd.DataFrame(
        {
            "A": [100, 110, 120, 130, 60, 60],  # best over rows 1..4, crashes in the skip
            "B": [100, 100, 100, 101, 101, 200],  # jumps only in the skipped last period
            "C": [100, 105, 110, 115, 120, 125],
            "D": [100, 90, 80, 70, 60, 50],
        },
        index=index,
        dtype=float,
    )
    history = MarketHistory(prices, prices.pct_change(fill_method=None))
    # lookback 4 from row 1 (110 -> ...), skip 1: scores use rows 1 and 4.
    weights = MomentumStrategy(lookback=4, skip=1, top=2).weights(history)
    # A: 60/110 − 1 = −45%; B: 101/100 − 1 = +1%; C: 120/105 − 1 = +14%; D: 60/90 − 1 < 0.
    assert weights.to_dict() == pytest.approx({"A": 0.0, "B": 0.5, "C": 0.5, "D": 0.0})


def test_runs_from_a_config_and_never_buys_an_unpriced_asset():
    prices = make_prices(n_periods=100, n_assets=5, late=60)
    config = validate_config(
        {"name": "m", "strategies": [{"kind": "momentum", "lookback": 20, "skip": 2, "top": 2}]}
    )
    strategy = config.strategies[0].build(BuildContext())
    result = run_backtest(strategy, prices, prices.index[50])
    held = result.weights[result.rebalanced]
    assert np.allclose(held.sum(axis=1), 1.0) and ((held > 0).sum(axis=1) <= 2).all()
    assert (held.loc[: prices.index[59], "A4"] == 0).all()


def test_skip_must_be_shorter_than_lookback():
    with pytest.raises(ConfigError, match=r"strategies\.0: skip \(4\) must be shorter"):
        validate_config({"name": "m", "strategies": [{"kind": "momentum", "lookback": 4}]})


def test_the_readme_example_is_the_shipped_file():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n# src/dynafolio/strategies/momentum\.py\n(.*?)```", readme, re.S)
    assert block is not None, "README has no momentum example"
    shipped = (ROOT / "src/dynafolio/strategies/momentum.py").read_text()
    assert block.group(1) == shipped
