"""Large universes: what cannot scale is refused with the alternative named; BLAS in workers."""

from __future__ import annotations

import pytest

from dynafolio.errors import ConfigError
from dynafolio.experiments.config import validate_config
from dynafolio.experiments.plan import load_prices, plan_strategies
from dynafolio.studies import compose_config

MARKET = {"n_assets": 120, "n_periods": 300}


def _config(strategies, market=MARKET):
    return validate_config(
        {
            "name": "large",
            "data": {"dataset": "noise", "market": market},
            "split": {"train_fraction": 0.7},
            "strategies": strategies,
        },
        "test",
    )


@pytest.mark.parametrize("kind", ["minimum_variance", "max_sharpe"])
def test_mean_variance_on_a_window_shorter_than_the_universe_is_refused(kind) -> None:
    # 120 assets from 104 periods: a singular sample covariance.
    config = _config([{"kind": kind, "estimation": "rolling", "window": 104}])
    with pytest.raises(ConfigError) as caught:
        plan_strategies(config, load_prices(config))
    message = str(caught.value)
    assert "strategies.0" in message and "120 assets" in message and "104 periods" in message
    assert "at least 121" in message and "hrp" in message


def test_mean_variance_with_a_window_longer_than_the_universe_runs_and_others_any_window() -> None:
    config = _config(
        [
            {"kind": "equal_weight"},
            {"kind": "minimum_variance", "estimation": "rolling", "window": 121},
            {"kind": "hrp", "estimation": "rolling", "window": 104},
            {"kind": "inverse_volatility", "estimation": "rolling", "window": 104},
        ]
    )
    assert len(plan_strategies(config, load_prices(config))) == 4


@pytest.mark.parametrize("estimation", ["static", "expanding"])
def test_mean_variance_on_a_training_period_shorter_than_the_universe_is_refused(estimation):
    # 300 weeks x 0.7: 210 training prices, 209 returns, for 250 assets; a window of 150
    # would be refused as well, and one longer than the training period reads only that.
    market = {"n_assets": 250, "n_periods": 300}
    for window in (None, 260):
        entry = {"kind": "minimum_variance", "estimation": estimation, "window": window}
        config = _config([{"kind": "equal_weight"}, entry], market)
        with pytest.raises(ConfigError) as caught:
            plan_strategies(config, load_prices(config))
        message = str(caught.value)
        assert "strategies.1" in message and "250 assets" in message
        assert "209 returns of its training period" in message and "at least 251" in message
    entry = {"kind": "max_sharpe", "estimation": estimation, "window": None}
    longer = _config([{"kind": "equal_weight"}, entry], {**market, "n_assets": 200})
    assert len(plan_strategies(longer, load_prices(longer))) == 2


def test_an_experiments_default_optimisers_are_skipped_with_a_note_on_a_large_universe() -> None:
    composed = compose_config("s1", dataset="noise", market=MARKET, quick=True)
    kinds = [(s.kind, s.estimation) for s in composed.context.config.strategies
             if s.kind in ("minimum_variance", "max_sharpe")]  # fmt: skip
    assert ("minimum_variance", "rolling") not in kinds and ("max_sharpe", "rolling") not in kinds
    skipped = [n for n in composed.notes if "skipped" in n and "singular" in n]
    assert len(skipped) == 2 and all("at least 121" in n for n in skipped)
    # The buy-and-hold entry names 20 of the 120 assets it could hold, not all of them.
    (spy,) = [n for n in composed.notes if "'SPY' is not in the data" in n]
    assert "and 100 more" in spy and "A0021" not in spy and len(spy) < 400


def test_the_mlp_policy_is_refused_when_its_input_grows_past_the_cap_and_per_asset_is_not() -> None:
    # 300 assets x (30 returns + a weight) = 9,300 inputs > 8,192.
    large = {"n_assets": 300, "n_periods": 300}
    mlp = {"kind": "ppo_topk", "k": 5, "ppo": {"policy": "mlp"}}
    config = _config([{"kind": "equal_weight"}, mlp], large)
    with pytest.raises(ConfigError) as caught:
        plan_strategies(config, load_prices(config))
    message = str(caught.value)
    assert "strategies.1" in message and "9,300 inputs" in message and "per_asset" in message
    small = _config([{"kind": "equal_weight"}, mlp])  # 120 assets: 3,720 inputs
    per_asset = _config([{"kind": "equal_weight"}, {"kind": "ppo_topk", "k": 5}], large)
    assert len(plan_strategies(small, load_prices(small))) == 2
    assert len(plan_strategies(per_asset, load_prices(per_asset))) == 2
