"""Rewards of the RL environment: closed forms, per-environment state, wiring into the envs."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_prices
from dynafolio.rl.env import PortfolioEnv
from dynafolio.rl.rewards import RewardSettings, make_reward
from dynafolio.rl.vec_env import BatchedPortfolioVecEnv


def test_log_return_and_downside_closed_forms():
    net = np.array([0.02, -0.03, 0.0])
    envs = np.arange(3)
    log = make_reward(None, 3)
    np.testing.assert_allclose(log(net, envs), np.log1p(net))
    down = make_reward(RewardSettings(kind="downside", lam=10.0), 3)
    np.testing.assert_allclose(down(net, envs), [0.02, -0.03 - 10 * 0.03**2, 0.0])


def test_differential_sharpe_hand_example_and_state_per_env():
    reward = make_reward(RewardSettings(kind="differential_sharpe", eta=0.5), 2)
    first = reward(np.array([0.01, 0.01]), np.arange(2))
    np.testing.assert_allclose(first, 0.0)  # no moving variance yet
    # A = 0.005, B = 0.00005 after step 1; step 2 with r = 0.03:
    # ΔA = 0.025, ΔB = 0.00085, B − A² = 0.000025 → (B·ΔA − ½·A·ΔB) / 0.000025^1.5 = −7.
    second = reward(np.array([0.03]), np.array([1]))
    assert second[0] == pytest.approx(-7.0)
    reward.reset(np.array([1]))
    assert reward.first[1] == 0.0 and reward.first[0] == pytest.approx(0.005)


@pytest.mark.parametrize("kind", ["log_return", "differential_sharpe", "downside"])
def test_both_envs_pay_the_same_reward(kind):
    returns = make_prices(n_periods=60, n_assets=4, late=0).pct_change().to_numpy()
    settings = RewardSettings(kind=kind)
    single = PortfolioEnv(returns, lookback=4, k=2, reward=settings, random_start=False)
    batch = BatchedPortfolioVecEnv(returns, n_envs=1, lookback=4, k=2, reward=settings,
                                   random_start=False)  # fmt: skip
    rng = np.random.default_rng(0)
    single.reset()
    batch.reset()
    for _ in range(20):
        action = rng.normal(size=4)
        _, r1, *_ = single.step(action)
        batch.step_async(action[None])
        _, r2, *_ = batch.step_wait()
        assert r1 == pytest.approx(float(r2[0]))
    if kind == "downside":
        rollout = single.rollout(lambda obs: np.ones(4))
        np.testing.assert_allclose(
            rollout.rewards, rollout.net - 10.0 * np.minimum(rollout.net, 0.0) ** 2
        )
