"""PPO agents and the PPO-only / hybrid strategies: training smoke, save/load, timing,
backtest = environment, no look-ahead, out-of-sample training forecasts."""

from __future__ import annotations

import zipfile

import numpy as np
import pandas as pd
import pytest

from conftest import TINY_AGENT, make_prices
from dynafolio.backtest import ProportionalCost, run_backtest
from dynafolio.errors import DataError
from dynafolio.forecast.base import Forecaster
from dynafolio.rl.agent_file import TrainedAgent
from dynafolio.rl.env import PortfolioEnv
from dynafolio.rl.settings import PPOSettings
from dynafolio.rl.training import train_agent
from dynafolio.strategies.rl import PPOAllocatorStrategy


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _prices(seed: int = 0) -> pd.DataFrame:
    return make_prices(n_periods=120, n_assets=5, seed=seed, late=20)


def _returns(prices: pd.DataFrame) -> np.ndarray:
    return prices.pct_change(fill_method=None).to_numpy()


@pytest.fixture(scope="module")
def agent(tmp_path_factory) -> tuple[TrainedAgent, str]:
    prices = make_prices(n_periods=120, n_assets=5, seed=0, late=20)
    trained = train_agent(_returns(prices)[:90], k=2, lookback=8, settings=TINY_AGENT, seed=0)
    path = tmp_path_factory.mktemp("agent") / "agent.zip"
    trained.save(path)
    return trained, str(path)


def test_training_smoke_records_validation_history(agent):
    trained, _ = agent
    assert trained.history and all(np.isfinite(h["validation_log_growth"]) for h in trained.history)
    assert trained.num_timesteps >= 128
    assert trained.history[-1]["timesteps"] == trained.num_timesteps


def test_save_then_load_gives_identical_actions(agent):
    trained, path = agent
    loaded = TrainedAgent.load(path)
    observations = np.random.default_rng(0).normal(size=(6, trained.obs_mean.size))
    np.testing.assert_array_equal(trained.act(observations), loaded.act(observations))


def test_loading_refuses_files_that_are_not_agents(tmp_path):
    text = tmp_path / "notes.zip"
    text.write_text("hello")
    with pytest.raises(DataError, match="not a dynafolio agent file"):
        TrainedAgent.load(text)
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("dynafolio_agent.json", '{"format": "something-else"}')
    with pytest.raises(DataError, match="format 'something-else'"):
        TrainedAgent.load(other)
    with pytest.raises(DataError, match="does not exist"):
        TrainedAgent.load(tmp_path / "missing.zip")


def test_backtest_pays_what_the_environment_pays(agent):
    """The strategy, run through the engine, earns exactly the env's net returns."""
    _, path = agent
    prices = _prices()
    start = 90
    strategy = PPOAllocatorStrategy(k=2, lookback=8, agent_path=path, transaction_cost=0.001)
    result = run_backtest(strategy, prices, prices.index[start], cost_model=ProportionalCost(0.001))
    env = PortfolioEnv(
        _returns(prices),
        lookback=8,
        k=2,
        transaction_cost=0.001,
        start=start - 1,
        random_start=False,
    )
    loaded = TrainedAgent.load(path)
    rollout = env.rollout(lambda obs: loaded.act(obs[None])[0])
    np.testing.assert_allclose(result.weights.to_numpy(), rollout.weights, atol=1e-12)
    np.testing.assert_allclose(result.net_returns.to_numpy(), rollout.net, atol=1e-12)


def test_loaded_agent_must_match_the_strategy(agent):
    _, path = agent
    prices = _prices()
    with pytest.raises(DataError, match="was trained with"):
        run_backtest(
            PPOAllocatorStrategy(k=3, lookback=8, agent_path=path), prices, prices.index[90]
        )


class _Momentum(Forecaster):
    """Mean of the last 4 log returns; records where each fit's history ends."""

    fit_ends: list = []

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def fit(self, history):
        type(self).fit_ends.append(history.date)
        self.fitted_ = True
        return self

    def predict(self, history):
        log = np.log(history.prices / history.prices.shift(1))
        return log.iloc[-4:].mean()


@pytest.mark.parametrize("hybrid", [False, True], ids=["ppo-only", "hybrid"])
def test_weights_up_to_t_ignore_later_prices_and_repeat_with_the_seed(hybrid):
    prices = _prices(seed=3)
    changed = prices.copy()
    t = prices.index[100]
    changed.loc[changed.index > t] *= np.linspace(0.5, 2.0, (changed.index > t).sum())[:, None]

    def run(data):
        forecaster = _Momentum() if hybrid else None
        strategy = PPOAllocatorStrategy(
            k=2,
            lookback=8,
            settings=TINY_AGENT,
            forecaster=forecaster,
            score_initial_window=40,
            score_refit_every=10,
            seed=1,
        )
        return run_backtest(strategy, data, data.index[96]).weights

    first, again, perturbed = run(prices), run(prices), run(changed)
    pd.testing.assert_frame_equal(first, again)
    pd.testing.assert_frame_equal(first.loc[:t], perturbed.loc[:t])
    held = first.to_numpy()
    assert (held >= 0).all() and np.allclose(held.sum(axis=1), 1.0)
    assert ((held > 0).sum(axis=1) <= 2).all()


def test_hybrid_training_forecasts_are_out_of_sample():
    prices = _prices(seed=4)
    _Momentum.fit_ends = []
    strategy = PPOAllocatorStrategy(
        k=2, lookback=8, forecaster=_Momentum(), score_initial_window=40, score_refit_every=10
    )
    from dynafolio.history import MarketHistory

    history = MarketHistory(prices.iloc[:90], prices.pct_change(fill_method=None).iloc[:90])
    scores = strategy._training_scores(history)
    assert np.isnan(scores[:40]).all() and np.isfinite(scores[40:]).all()
    # One fit per block, each on the history up to the block's first row only.
    assert _Momentum.fit_ends == list(prices.index[40:90:10])


def test_run_directory_keeps_trained_agents_that_reload(tmp_path):
    from dynafolio.experiments.artifacts import write_run
    from dynafolio.experiments.config import validate_config
    from dynafolio.studies import run_experiment

    path = tmp_path / "p.csv"
    _prices(seed=5).to_csv(path, index_label="date")
    ppo = {k: v for k, v in vars(TINY_AGENT).items() if k != "net_arch"} | {"net_arch": [16]}
    config = validate_config(
        {
            "name": "t",
            "data": {"path": str(path)},
            "n_seeds": 1,
            "split": {"train_fraction": 0.8},
            "strategies": [
                {"kind": "equal_weight"},
                {"kind": "ppo_topk", "k": 2, "lookback": 8, "ppo": ppo, "score_initial_window": 20},
            ],
        }
    )
    result = run_experiment(config)
    run_dir = write_run(
        result, {}, tmp_path / "runs", lambda r, d, m: d / "report.html", tensorboard=True
    ).path
    (saved,) = (run_dir / "agents").iterdir()
    assert saved.name == "ppo-only-top-2-seed0.zip"
    # The learner's known-answer check is in the table and in metrics.json.
    import json

    check = json.loads((run_dir / "metrics.json").read_text())["learner_checks"]["PPO-only Top-2"]
    assert check["market"].startswith("momentum") and check["pass_share"] == 0.5
    assert result.table.loc["PPO-only Top-2", "learner_check"] == check["share_of_oracle"]
    # --tensorboard: SB3's log and the validation evaluations, readable by TensorBoard.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard" / "ppo-only-top-2-seed0")).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/entropy_loss", "train/approx_kl", "validation/validation_log_growth"} <= tags
    agent = result.agents[(result.strategies[1].name, 0, None)]
    logged = [e.value for e in events.Scalars("train/entropy_loss")]
    expected = [r["train/entropy_loss"] for r in agent.diagnostics if "train/entropy_loss" in r]
    assert logged == pytest.approx(expected) and len(expected) >= 1
    replay = validate_config(
        {
            **config.model_dump(mode="json"),
            "strategies": [
                {"kind": "equal_weight"},
                {"kind": "ppo_topk", "k": 2, "lookback": 8, "agent_path": str(saved)},
            ],
        }
    )
    again = run_experiment(replay)
    pd.testing.assert_frame_equal(
        result.strategies[1].first.weights, again.strategies[1].first.weights
    )


def test_validation_early_stopping_is_an_sb3_callback_that_keeps_the_best_policy():
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from dynafolio.rl.env import PortfolioEnv
    from dynafolio.rl.training import ValidationEarlyStopping

    returns = _returns(_prices())[:90]
    env = VecNormalize(DummyVecEnv([lambda: PortfolioEnv(returns, lookback=4, k=2)]))
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=32, n_epochs=1, seed=0)
    scores = iter([1.0, 3.0, 2.0, 2.5, 2.9, 9.0])  # best at the 2nd evaluation
    seen = []

    def evaluate():
        seen.append({k: v.clone() for k, v in model.policy.state_dict().items()})
        return next(scores)

    stop = ValidationEarlyStopping(evaluate, every=32, patience=3)
    model.learn(32 * 20, callback=stop)
    # Evaluations 3, 4, 5 bring no improvement on 3.0: training stops before the 6th.
    assert [row["validation_log_growth"] for row in stop.history] == [1.0, 3.0, 2.0, 2.5, 2.9]
    assert model.num_timesteps < 32 * 20
    best = seen[1]
    assert all((stop.best_state[k] == best[k]).all() for k in best)
    assert not all((stop.best_state[k] == seen[-1][k]).all() for k in best)


def test_ppo_only_and_hybrid_train_and_validate_on_the_same_dates_with_diagnostics():
    from dynafolio.experiments.config import validate_config
    from dynafolio.experiments.plan import PreparedData
    from dynafolio.studies import run_experiment

    prices = make_prices(n_periods=150, n_assets=4, late=0)
    common = {"kind": "ppo_topk", "k": 2, "lookback": 4, "score_initial_window": 40}
    config = validate_config(
        {
            "name": "fair",
            "split": {"train_fraction": None, "test_start": str(prices.index[110].date())},
            "n_seeds": 1,
            "strategies": [
                {"kind": "equal_weight"},
                {**common, "name": "PPO-only", "ppo": TINY_AGENT.__dict__ | {"net_arch": [8]}},
                {
                    **common,
                    "name": "Hybrid",
                    "ppo": TINY_AGENT.__dict__ | {"net_arch": [8]},
                    "score_refit_every": 20,
                    "forecaster": {
                        "model": "univariate_lstm",
                        "params": {"lookback": 6, "hidden": 4, "epochs": 2, "min_windows": 5},
                    },
                },
            ],
        }
    )
    result = run_experiment(config, prepared=PreparedData(prices, "synthetic", "0" * 64, {}))
    ppo, hybrid = result.agents[("PPO-only", 0, None)], result.agents[("Hybrid", 0, None)]
    assert ppo.training_period == hybrid.training_period is not None
    assert ppo.validation_period == hybrid.validation_period is not None
    assert ppo.training_period[0] == str(prices.index[40].date())
    for agent in (ppo, hybrid):
        assert {"train/entropy_loss", "train/approx_kl", "train/explained_variance"} <= set(
            agent.diagnostics[-1]
        )
        assert all(row["logit_spread"] >= 0 for row in agent.history)
        assert 0 < agent.random_baseline["p_value"] <= 1


def test_the_per_asset_policy_is_permutation_equivariant_and_reloads(tmp_path):
    import torch

    returns = _returns(_prices())[:90]
    settings = PPOSettings(**{**TINY_AGENT.__dict__, "policy": "per_asset", "net_arch": (8,)})
    agent = train_agent(returns, k=2, lookback=8, settings=settings, seed=0)
    n_params = sum(p.numel() for p in agent.policy.parameters())
    obs = np.random.default_rng(1).normal(size=(3, agent.obs_mean.size)) * 0.05
    perm = np.array([3, 0, 4, 1, 2])
    lookback, n = 8, 5
    window = obs[:, : lookback * n].reshape(3, lookback, n)[:, :, perm].reshape(3, -1)
    permuted = np.concatenate([window, obs[:, lookback * n :][:, perm]], axis=1)
    with torch.no_grad():
        logits = agent.policy.mlp_extractor.forward_actor(torch.as_tensor(obs, dtype=torch.float32))
        moved = agent.policy.mlp_extractor.forward_actor(
            torch.as_tensor(permuted, dtype=torch.float32)
        )
    np.testing.assert_allclose(moved.numpy(), logits.numpy()[:, perm], atol=1e-6)
    # The same network for 10 assets has exactly as many parameters.
    wide = np.tile(returns, (1, 2))
    assert (
        sum(
            p.numel()
            for p in train_agent(wide, k=2, lookback=8, settings=settings).policy.parameters()
        )
        == n_params
    )
    path = agent.save(tmp_path / "per_asset.zip")
    np.testing.assert_array_equal(TrainedAgent.load(path).act(obs), agent.act(obs))


def test_a_configured_agent_travels_as_bytes_and_fits_without_its_file(agent, tmp_path):
    """A config's ``agent_path`` is read once, when the config is read: the strategy built
    from the spec, in another process (a Ray worker on a node without the driver's files),
    loads those bytes and never opens the path, so it fits the same after the file is gone.
    The bytes are no setting: the config's dump and the strategy's repr leave them out."""
    import pickle
    import re
    import shutil
    from pathlib import Path

    from dynafolio.experiments.config import validate_config
    from dynafolio.strategies.registry import BuildContext

    _, original = agent
    path = tmp_path / "agent.zip"
    shutil.copy(original, path)
    entry = {"kind": "ppo_topk", "k": 2, "lookback": 8, "agent_path": str(path)}
    config = validate_config({"name": "t", "strategies": [entry]})
    assert "agent_bytes" not in str(config.model_dump(mode="json"))
    spec = pickle.loads(pickle.dumps(config.strategies[0]))  # as a worker receives it
    path.unlink()
    strategy = spec.build(BuildContext(transaction_cost=0.001))
    assert strategy.agent_path == str(path) and strategy.agent_bytes == Path(original).read_bytes()
    assert "agent_bytes" not in repr(strategy)
    assert strategy.learnability_check(5, 120, 90, 52, 0) is None  # nothing trains
    prices = _prices()
    cost = ProportionalCost(0.001)
    shipped = run_backtest(strategy, prices, prices.index[90], cost_model=cost)
    from_file = run_backtest(
        PPOAllocatorStrategy(k=2, lookback=8, agent_path=original, transaction_cost=0.001),
        prices,
        prices.index[90],
        cost_model=cost,
    )
    pd.testing.assert_frame_equal(shipped.weights, from_file.weights)
    pd.testing.assert_series_equal(shipped.net_returns, from_file.net_returns)
    # Errors about the bytes still name the file they came from.
    wrong = spec.model_copy(update={"k": 3}).build(BuildContext())
    with pytest.raises(DataError, match=re.escape(f"agent {path} was trained with")):
        run_backtest(wrong, prices, prices.index[90])
    with pytest.raises(DataError, match=re.escape(f"{path} is not a dynafolio agent file")):
        TrainedAgent.from_bytes(b"PK\x05\x06" + bytes(18), str(path))
