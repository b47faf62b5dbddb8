"""The random-policy control: seeded, held, through the same Top-K projection."""

from __future__ import annotations

import numpy as np
import pandas as pd

from conftest import make_prices
from dynafolio.backtest import run_backtest
from dynafolio.experiments.config import validate_config
from dynafolio.strategies.random_topk import RandomTopKStrategy


def _run(seed: int, hold: int = 1, k: int = 2):
    prices = make_prices(n_periods=90, n_assets=6, late=70)
    return run_backtest(RandomTopKStrategy(k=k, hold=hold, seed=seed), prices, prices.index[60])


def test_same_seed_same_weights_other_seed_differs():
    pd.testing.assert_frame_equal(_run(3).weights, _run(3).weights)
    assert not _run(3).weights.equals(_run(4).weights)


def test_holds_k_tradable_assets_and_redraws_every_hold_decisions():
    result = _run(0, hold=5, k=2)
    held = result.weights[result.rebalanced]
    assert ((held > 0).sum(axis=1) == 2).all() and np.allclose(held.sum(axis=1), 1.0)
    # A5 has no return before row 71: never chosen before then.
    assert (held.loc[: held.index[10], "A5"] == 0).all()
    chosen = [frozenset(row.index[row > 0]) for _, row in held.iloc[:10].iterrows()]
    assert chosen[0] == chosen[4] and chosen[5] == chosen[9]  # one draw per 5 decisions


def test_a_config_control_runs_once_per_seed():
    config = validate_config(
        {"name": "r", "n_seeds": 3, "strategies": [{"kind": "random_topk", "k": 3}]}
    )
    assert config.strategies[0].seeded and not config.strategies[0].learned
