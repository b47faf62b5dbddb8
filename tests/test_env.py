"""The RL environments: Gymnasium/SB3 contracts, engine-equal rewards, no look-ahead, batching."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from dynafolio.backtest.costs import ProportionalCost
from dynafolio.backtest.engine import simulate
from dynafolio.errors import DataError
from dynafolio.rl.env import PortfolioEnv
from dynafolio.rl.task import RUIN_REWARD
from dynafolio.rl.vec_env import BatchedPortfolioVecEnv

N_PERIODS, N_ASSETS, LATE = 90, 6, 25


def make_returns(seed: int = 0) -> np.ndarray:
    """Weekly-like returns; row 0 has no previous price; the last asset lists at row ``LATE``."""
    rng = np.random.default_rng(seed)
    returns = rng.normal(0.002, 0.03, size=(N_PERIODS, N_ASSETS))
    returns[0] = np.nan
    returns[:LATE, -1] = np.nan
    returns[50, 2] = np.nan  # a missing price mid-sample: not tradable that day
    return returns


def make_scores(seed: int = 1) -> np.ndarray:
    scores = np.random.default_rng(seed).normal(size=(N_PERIODS, N_ASSETS))
    scores[:5] = np.nan
    return scores


def run_actions(env: PortfolioEnv, actions: np.ndarray, start_row: int | None = None):
    """Observations (at each decision), rewards, infos of a fixed action sequence."""
    obs, _ = env.reset(options=None if start_row is None else {"start_row": start_row})
    observations, rewards, infos = [obs], [], []
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        observations.append(obs)
        rewards.append(reward)
        infos.append(info)
        if terminated or truncated:
            break
    return np.array(observations), np.array(rewards), infos


@pytest.mark.parametrize("with_scores", [False, True], ids=["ppo_only", "hybrid"])
def test_env_passes_gymnasium_and_sb3_checkers(with_scores):
    kwargs = dict(lookback=8, k=3, scores=make_scores() if with_scores else None, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(
            PortfolioEnv(make_returns(), episode_length=20, **kwargs), skip_render_check=True
        )
        sb3_check_env(PortfolioEnv(make_returns(), **kwargs))
    # The only warning left is the advice to use a [-1, 1] action Box: logits live in
    # [-10, 10] on purpose, so that PPO's clipping rarely creates Top-K ties.
    others = [str(w.message) for w in caught if "normalized" not in str(w.message)]
    assert others == []
    env = PortfolioEnv(make_returns(), **kwargs)
    size = PortfolioEnv.observation_size(N_ASSETS, 8, with_scores)
    assert env.observation_space.shape == (size,)


@pytest.mark.parametrize("tau", [0.0, 0.2])
def test_reward_is_the_engines_net_return(tau):
    returns, tc, k = make_returns(), 0.002, 3
    actions = np.random.default_rng(2).normal(scale=3.0, size=(200, N_ASSETS))
    base = PortfolioEnv(returns, lookback=8, k=k, tau=tau, transaction_cost=tc, random_start=False)
    _, rewards, infos = run_actions(base, actions)
    rows = np.array([i["date_row"] for i in infos])
    weights = np.array([i["weights"] for i in infos])
    assert rows[0] == 7 and rows[-1] == N_PERIODS - 2  # every decision row, earning up to the end

    sim = simulate(returns[rows + 1], weights, np.ones(len(rows), bool), ProportionalCost(tc))
    np.testing.assert_allclose(np.expm1(rewards), sim.net, rtol=0, atol=1e-12)
    np.testing.assert_allclose([i["cost"] for i in infos], sim.cost, rtol=0, atol=1e-12)
    assert infos[0]["turnover"] == pytest.approx(1.0)  # starts in cash: the buy-in is paid

    lam = 0.05
    sparse = PortfolioEnv(
        returns,
        lookback=8,
        k=k,
        tau=tau,
        transaction_cost=tc,
        lambda_sparse=lam,
        random_start=False,
    )
    _, sparse_rewards, _ = run_actions(sparse, actions)
    nnz = (weights > 0).sum(axis=1)
    if tau > 0:
        assert len(set(nnz)) > 1  # the threshold really varies the count
    np.testing.assert_allclose(
        sim.net - np.expm1(sparse_rewards), lam * nnz / N_ASSETS, rtol=0, atol=1e-12
    )


def test_rollout_collects_the_episode():
    env = PortfolioEnv(make_returns(), lookback=8, k=2, random_start=True, seed=3)
    result = env.rollout(lambda obs: np.arange(N_ASSETS, dtype=np.float32))
    assert result.rows[0] == 7 and len(result.rows) == N_PERIODS - 8
    np.testing.assert_allclose(result.rewards, np.log1p(result.net))


@pytest.mark.parametrize("with_scores", [False, True], ids=["ppo_only", "hybrid"])
def test_no_look_ahead_and_nothing_read_at_or_after_end(with_scores):
    returns, scores = make_returns(), make_scores() if with_scores else None
    end = 70
    actions = np.random.default_rng(4).normal(scale=3.0, size=(100, N_ASSETS))
    kwargs = dict(lookback=8, k=3, transaction_cost=0.001, random_start=False, end=end)

    def trajectory(r, s):
        return run_actions(PortfolioEnv(r, scores=s, **kwargs), actions)

    obs, rewards, infos = trajectory(returns, scores)
    rows = [i["date_row"] for i in infos]
    assert rows[-1] == end - 2  # the last decision earns row end − 1

    # Rows at or after `end` may hold anything, even values that would fail validation.
    junk = returns.copy()
    junk[end:] = np.inf
    junk_scores = None if scores is None else scores.copy()
    if junk_scores is not None:
        junk_scores[end:] = np.inf
    obs_j, rewards_j, _ = trajectory(junk, junk_scores)
    np.testing.assert_array_equal(obs_j, obs)
    np.testing.assert_array_equal(rewards_j, rewards)

    rng = np.random.default_rng(5)
    for step in (0, 10, 30):
        t = rows[step]
        for first_changed in (t + 1, t + 2):
            changed = returns.copy()
            changed[first_changed:] = rng.normal(0.0, 0.1, size=changed[first_changed:].shape)
            changed_scores = None if scores is None else scores.copy()
            if changed_scores is not None:
                changed_scores[t + 1 :] = rng.normal(size=changed_scores[t + 1 :].shape)
            obs_c, rewards_c, infos_c = trajectory(changed, changed_scores)
            # Observations (hence weights) at decisions up to t see rows <= t only.
            np.testing.assert_array_equal(obs_c[: step + 1], obs[: step + 1])
            np.testing.assert_array_equal(infos_c[step]["weights"], infos[step]["weights"])
            np.testing.assert_array_equal(rewards_c[:step], rewards[:step])
            # The reward of decision t depends on row t + 1 and nothing later.
            if first_changed == t + 2:
                assert rewards_c[step] == rewards[step]
            else:
                assert rewards_c[step] != rewards[step]


def test_assets_without_a_return_at_the_decision_row_get_no_weight():
    returns = make_returns()
    env = PortfolioEnv(returns, lookback=8, k=2, random_start=False)
    favour_missing = np.zeros(N_ASSETS)
    favour_missing[[-1, 2]] = 10.0  # the late listing and the asset missing at row 50
    _, _, infos = run_actions(env, np.tile(favour_missing, (200, 1)))
    for info in infos:
        row, weights = info["date_row"], info["weights"]
        missing = np.isnan(returns[row])
        assert (weights[missing] == 0).all()
        assert weights.sum() == pytest.approx(1.0)
        if not missing[-1] and not missing[2]:
            assert weights[-1] > 0 and weights[2] > 0
    listed_rows = [i["date_row"] for i in infos if i["weights"][-1] > 0]
    assert min(listed_rows) == LATE


def test_observations_are_float32_inside_the_box_even_on_extreme_data():
    returns, scores = make_returns(), make_scores() * 40.0
    returns[40, 0], returns[41, 1] = 5.0, -0.99  # a +500% day and a near wipe-out
    env = PortfolioEnv(returns, lookback=8, k=3, scores=scores, random_start=False)
    actions = np.random.default_rng(6).uniform(-10, 10, size=(200, N_ASSETS))
    observations, rewards, _ = run_actions(env, actions)
    assert observations.dtype == np.float32
    assert all(env.observation_space.contains(o) for o in observations)
    assert np.isfinite(rewards).all()


def test_ruin_terminates_with_the_ruin_reward():
    env = PortfolioEnv(make_returns(), lookback=8, k=3, lambda_sparse=100.0, random_start=False)
    env.reset()
    _, reward, terminated, truncated, _ = env.step(np.zeros(N_ASSETS, dtype=np.float32))
    assert terminated and not truncated and reward == RUIN_REWARD
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(N_ASSETS, dtype=np.float32))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(scores=np.zeros((5, N_ASSETS))), DataError, "scores have shape"),
        (dict(k=N_ASSETS + 1), DataError, "exceeds"),
        (dict(end=8), DataError, "no decision rows"),
        (dict(episode_length=500), ValueError, "episode_length"),
        (dict(tau=1.5), ValueError, "tau"),
        (dict(lookback=0), ValueError, "lookback"),
        (dict(transaction_cost=-1.0), ValueError, "transaction cost"),
    ],
)
def test_invalid_settings_raise_helpful_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        PortfolioEnv(make_returns(), **{"lookback": 8, **kwargs})


def test_invalid_returns_raise_data_errors():
    returns = make_returns()
    returns[30, 1] = -1.2
    with pytest.raises(DataError, match="row 30, column 1"):
        PortfolioEnv(returns, lookback=8)
    with pytest.raises(DataError, match="start the environment after it"):
        PortfolioEnv(np.full((20, 3), np.nan), lookback=2, k=2)
    env = PortfolioEnv(make_returns(), lookback=8)
    with pytest.raises(ValueError, match="start_row"):
        env.reset(options={"start_row": 2})


def test_vec_env_matches_independent_envs_step_for_step():
    returns, scores = make_returns(), make_scores()
    kwargs = dict(lookback=8, k=3, tau=0.05, scores=scores, episode_length=12, random_start=True)
    n_envs, seed = 3, 11
    vec = BatchedPortfolioVecEnv(returns, n_envs, seed=seed, **kwargs)
    envs = [PortfolioEnv(returns, seed=seed + i, **kwargs) for i in range(n_envs)]
    vec_obs = vec.reset()
    for i, env in enumerate(envs):
        obs, info = env.reset()
        np.testing.assert_array_equal(vec_obs[i], obs)
        assert vec.reset_infos[i] == info
    rng = np.random.default_rng(7)
    n_done = 0
    for _ in range(40):
        actions = rng.normal(scale=3.0, size=(n_envs, N_ASSETS)).astype(np.float32)
        vec_obs, vec_rewards, dones, vec_infos = vec.step(actions)
        for i, env in enumerate(envs):
            obs, reward, terminated, truncated, info = env.step(actions[i])
            assert vec_rewards[i] == reward
            assert dones[i] == (terminated or truncated)
            np.testing.assert_array_equal(vec_infos[i]["weights"], info["weights"])
            if terminated or truncated:
                n_done += 1
                np.testing.assert_array_equal(vec_infos[i]["terminal_observation"], obs)
                assert vec_infos[i]["TimeLimit.truncated"] == (truncated and not terminated)
                obs, _ = env.reset()  # same generator draw as the vec env's auto-reset
                assert not obs[-2 * N_ASSETS : -N_ASSETS].any()  # back in cash
            np.testing.assert_array_equal(vec_obs[i], obs)
    assert n_done >= n_envs  # every env auto-reset at least once (12-step episodes)


def test_vec_env_forced_starts_seeding_and_attributes():
    vec = BatchedPortfolioVecEnv(make_returns(), 2, lookback=8, k=2, seed=0)
    vec.set_options([{"start_row": 10}, {"start_row": 40}])
    vec.reset()
    np.testing.assert_array_equal(vec.rows, [10, 40])
    vec.seed(123)
    first = vec.reset()
    vec.seed(123)
    np.testing.assert_array_equal(vec.reset(), first)
    assert vec.get_attr("render_mode") == [None, None]
    assert vec.env_is_wrapped(object) == [False, False]
    with pytest.raises(ValueError, match="shared"):
        vec.set_attr("random_start", False, indices=[0])


def test_ppo_learns_on_the_normalised_vec_env():
    """A known-answer test, not a step count: SB3 PPO on this vec env (normalised, as the
    agents train) finds the planted edge of a tiny foresight market; the untrained policy
    of the same shape does not (tests/test_learnability.py has both PPO policies)."""
    from dynafolio.rl.learnability import LearnabilityCheck, check_learnability
    from dynafolio.rl.rewards import RewardSettings
    from dynafolio.rl.settings import PPOSettings

    settings = PPOSettings(
        total_timesteps=1024, n_steps=64, batch_size=64, n_envs=4, episode_length=20,
        eval_every=512, net_arch=(16,),
    )  # fmt: skip
    check = LearnabilityCheck(
        n_assets=8, n_periods=200, train_periods=140, start=10, k=2, tau=0.0, lookback=4,
        transaction_cost=0.001, lambda_sparse=0.0, with_scores=True, settings=settings,
        reward=RewardSettings(),
    )  # fmt: skip
    result = check_learnability(check)
    assert result.passed and result.sharpe > result.random_sharpe + 3.0, result
