"""Learners that provably learn: PPO on tiny known-answer markets, and the check every run makes.

These are the known-answer tests of the PPO allocator: a small per-asset PPO must find a
planted edge within seconds, and an untrained policy of the same shape must not, so the
check can fail.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import SMALL_AGENT
from dynafolio.rl.env import PortfolioEnv
from dynafolio.rl.learnability import LearnabilityCheck, check_learnability, score_policy
from dynafolio.rl.policies import build_policy
from dynafolio.rl.rewards import RewardSettings
from dynafolio.rl.settings import PPOSettings
from dynafolio.rl.training import random_baseline


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _check(with_scores: bool, policy: str = "per_asset", **settings) -> LearnabilityCheck:
    return LearnabilityCheck(
        n_assets=8,
        n_periods=200,
        train_periods=140,
        start=10,
        k=2,
        tau=0.0,
        lookback=4,
        transaction_cost=0.001,
        lambda_sparse=0.0,
        with_scores=with_scores,
        settings=PPOSettings(**{**SMALL_AGENT.__dict__, "policy": policy, **settings}),
        reward=RewardSettings(),
    )


def _untrained(check: LearnabilityCheck):
    """A freshly initialised policy of the check's shape, acting on raw observations."""
    size = PortfolioEnv.observation_size(check.n_assets, check.lookback, check.with_scores)
    policy = build_policy(
        size, check.n_assets, check.settings.net_arch, check.settings.policy, check.lookback,
        check.with_scores,
    )  # fmt: skip
    return lambda obs: policy.predict(obs.astype(np.float32), deterministic=True)[0]


@pytest.mark.parametrize("with_scores", [True, False], ids=["foresight", "momentum"])
def test_a_small_ppo_learns_the_planted_edge_and_an_untrained_policy_does_not(with_scores):
    check = _check(with_scores)
    learned = check_learnability(check)
    assert learned.passed, learned
    # Far above chance: random logits average about zero on these markets.
    assert learned.sharpe - learned.random_sharpe > 3.0
    untrained = score_policy(check, _untrained(check))
    assert not untrained.passed, untrained
    assert untrained.oracle_sharpe == learned.oracle_sharpe


def test_the_check_is_deterministic_and_keyed_by_configuration():
    check = _check(True, total_timesteps=256)
    assert check_learnability(check) == check_learnability(check)
    assert check.key != _check(True, total_timesteps=512).key
    assert check.market.kind == "foresight" and _check(False).market.kind == "momentum"
    assert _check(False).market.settings.phi == 0.5


def test_random_baseline_p_value_separates_a_good_agent_from_chance():
    """The agent's validation p-value against the best of as many random policies: small for
    a validation log growth far above chance, large for one at chance (this could not fail
    when the test only asserted 0 < p <= 1)."""
    from dynafolio.data.markets import KnownMarket, MarketSettings, generate_market

    prices = generate_market(KnownMarket(kind="noise", settings=MarketSettings(n_assets=6)))
    env = PortfolioEnv(
        prices.pct_change(fill_method=None).to_numpy(),
        lookback=4, k=2, start=300, random_start=False,
    )  # fmt: skip
    chance = random_baseline(env, [{"validation_log_growth": 0.0}], seed=0)
    mean, sd = chance["random_mean"], chance["random_std"]
    typical = random_baseline(env, [{"validation_log_growth": mean}] * 3, seed=0)
    strong = random_baseline(env, [{"validation_log_growth": mean + 6 * sd}] * 3, seed=0)
    assert typical["p_value"] > 0.5
    assert strong["p_value"] < 0.01
