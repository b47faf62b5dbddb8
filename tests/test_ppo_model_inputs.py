"""Model inputs in the PPO state (``features``, e.g. the Fama–French factors): where they sit in
the observation, that the strategy builds at a decision exactly what the environment trained
on, that they read no later prices (with a leaky control the test catches), that a saved
agent records them, and that the known-answer check carries the same block."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import SMALL_AGENT, TINY_AGENT, TINY_PPO, make_prices
from dynafolio.backtest import ProportionalCost, run_backtest
from dynafolio.data.datasets import french_factors_per_period
from dynafolio.errors import DataError
from dynafolio.model_inputs import FeatureSet
from dynafolio.rl.agent_file import TrainedAgent
from dynafolio.rl.env import PortfolioEnv
from dynafolio.rl.learnability import LearnabilityCheck, check_learnability
from dynafolio.rl.learnability import _model_inputs as check_inputs
from dynafolio.rl.rewards import RewardSettings
from dynafolio.rl.settings import EnvSettings
from dynafolio.rl.task import INPUT_CLIP
from dynafolio.rl.training import train_agent
from dynafolio.strategies.rl import PPOAllocatorStrategy

FEATURES = ("rsi", "volatility")


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _returns(prices: pd.DataFrame) -> np.ndarray:
    return prices.pct_change(fill_method=None).to_numpy()


def test_each_assets_inputs_follow_its_score_and_nothing_at_or_after_end_is_read():
    rng = np.random.default_rng(0)
    returns = rng.normal(0, 0.02, (60, 4))
    scores = rng.normal(size=(60, 4))
    inputs = rng.normal(size=(60, 4, 3))
    inputs[7, 2, 1] = np.nan  # a warm-up gap reads as 0
    inputs[8, 0, 0] = 50.0  # clipped like a score
    env = PortfolioEnv(returns, lookback=5, k=2, scores=scores, inputs=inputs, end=40, seed=0)
    assert env.observation_space.shape == ((5 + 1 + 1 + 3) * 4,)
    rows = np.array([6, 7, 8, 38])
    observation = env.task.observe(rows, np.zeros((4, 4)))
    tail = observation[:, (5 + 1) * 4 :].reshape(4, 4, 4)  # (row, asset, [score, 3 inputs])
    expected_inputs = np.clip(np.nan_to_num(inputs[rows]), -INPUT_CLIP, INPUT_CLIP)
    np.testing.assert_array_equal(tail[..., 0], scores[rows].astype(np.float32))
    np.testing.assert_array_equal(tail[..., 1:], expected_inputs.astype(np.float32))
    assert tail[1, 2, 2] == 0.0 and tail[2, 0, 1] == INPUT_CLIP

    changed = inputs.copy()
    changed[40:] = 1e6
    again = PortfolioEnv(returns, lookback=5, k=2, scores=scores, inputs=changed, end=40, seed=0)
    np.testing.assert_array_equal(again.task.observe(rows, np.zeros((4, 4))), observation)

    with pytest.raises(DataError, match=r"inputs have shape \(60, 4\); expected \(60, 4, n_col"):
        PortfolioEnv(returns, lookback=5, k=2, inputs=inputs[..., 0])
    inputs[3, 1, 2] = np.inf
    with pytest.raises(DataError, match="infinite value at row 3, asset column 1, input column 2"):
        PortfolioEnv(returns, lookback=5, k=2, inputs=inputs)


@pytest.fixture(scope="module")
def agent_with_inputs(tmp_path_factory) -> tuple[TrainedAgent, str, pd.DataFrame]:
    prices = make_prices(n_periods=140, n_assets=5, seed=2, late=20)
    inputs = FeatureSet(FEATURES).build(prices)
    trained = train_agent(
        _returns(prices)[:100], k=2, lookback=8, settings=TINY_AGENT, seed=0,
        inputs=inputs[:100], features=FEATURES,
    )  # fmt: skip
    path = tmp_path_factory.mktemp("agent") / "agent.zip"
    trained.save(path)
    return trained, str(path), prices


def test_the_strategy_observes_what_the_environment_trained_on(agent_with_inputs):
    """A saved agent with inputs, run by the strategy through the engine, trades and earns
    exactly what it does in the environment fed the same inputs: the observation a decision
    builds from the history is laid out as the environment's."""
    trained, path, prices = agent_with_inputs
    assert TrainedAgent.load(path).env_settings.features == FEATURES
    start = 100
    strategy = PPOAllocatorStrategy(
        k=2, lookback=8, agent_path=path, transaction_cost=0.001, features=FEATURES
    )
    result = run_backtest(strategy, prices, prices.index[start], cost_model=ProportionalCost(0.001))
    env = PortfolioEnv(
        _returns(prices), lookback=8, k=2, transaction_cost=0.001,
        inputs=FeatureSet(FEATURES).build(prices), start=start - 1, random_start=False,
    )  # fmt: skip
    rollout = env.rollout(lambda obs: trained.act(obs[None])[0])
    np.testing.assert_allclose(result.weights.to_numpy(), rollout.weights, atol=1e-12)
    np.testing.assert_allclose(result.net_returns.to_numpy(), rollout.net, atol=1e-12)
    # The inputs matter: the same agent fed zeros for them trades differently.
    blind = env.rollout(lambda obs: trained.act(_without_inputs(obs)[None])[0])
    assert not np.allclose(blind.weights, rollout.weights)


def _without_inputs(observation: np.ndarray) -> np.ndarray:
    zeroed = observation.copy().reshape(-1)
    tail = zeroed[(8 + 1) * 5 :].reshape(5, 2)
    tail[:] = 0.0
    return zeroed


def test_a_saved_agent_must_read_the_same_inputs(agent_with_inputs):
    _, path, prices = agent_with_inputs
    for features in [(), ("rsi",), ("volatility", "rsi")]:
        strategy = PPOAllocatorStrategy(k=2, lookback=8, agent_path=path, features=features)
        with pytest.raises(DataError, match="was trained with .*'features': \\('rsi', 'vol"):
            run_backtest(strategy, prices, prices.index[100])


def test_an_agent_reading_the_regime_records_its_market_asset(tmp_path):
    # The regime input is the trend of one asset (market_asset): an agent trained on one
    # market's trend is refused by a strategy that reads another's, as for other inputs.
    prices = make_prices(n_periods=140, n_assets=4, seed=3)
    features = ("regime",)
    inputs = FeatureSet(features, market="A1").build(prices)
    trained = train_agent(
        _returns(prices)[:100], k=2, lookback=8, settings=TINY_AGENT, seed=0,
        inputs=inputs[:100], features=features, market_asset="A1",
    )  # fmt: skip
    path = trained.save(tmp_path / "agent.zip")
    assert TrainedAgent.load(path).env_settings.market_asset == "A1"
    # A file saved before the market asset was recorded cannot be checked: refused, saying so.
    with pytest.raises(DataError, match="saved before agent files recorded the regime's market"):
        TrainedAgent.from_bytes(_without_market_asset(path), "old.zip")
    same = PPOAllocatorStrategy(k=2, lookback=8, agent_path=str(path), features=features,
                                market_asset="A1")  # fmt: skip
    assert len(run_backtest(same, prices, prices.index[100]).weights) == 40
    other = PPOAllocatorStrategy(k=2, lookback=8, agent_path=str(path), features=features,
                                 market_asset="A2")  # fmt: skip
    with pytest.raises(DataError, match=r"with market_asset 'A1' \(this strategy: 'A2'\)"):
        run_backtest(other, prices, prices.index[100])
    # Without the regime input the market asset is not part of the state, and not recorded.
    assert train_agent(
        _returns(prices)[:100], k=2, lookback=8, settings=TINY_AGENT, seed=0,
        inputs=FeatureSet(("rsi",)).build(prices)[:100], features=("rsi",), market_asset="A1",
    ).env_settings.market_asset is None  # fmt: skip


def _without_market_asset(path) -> bytes:
    """The agent file at ``path`` as saved before headers recorded ``market_asset``."""
    import io
    import json
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(buffer, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            if name.endswith(".json"):
                header = json.loads(data)
                del header["env_settings"]["market_asset"]
                data = json.dumps(header).encode()
            target.writestr(name, data)
    return buffer.getvalue()


def test_env_settings_record_a_market_asset_exactly_with_the_regime_input():
    base = {"lookback": 8, "k": 2, "tau": 0.0, "transaction_cost": 0.0, "lambda_sparse": 0.0,
            "with_scores": False}  # fmt: skip
    assert EnvSettings(**base, features=("regime",), market_asset="SPY").market_asset == "SPY"
    with pytest.raises(ValueError, match="give it exactly when features include 'regime'"):
        EnvSettings(**base, features=("regime",))
    with pytest.raises(ValueError, match="give it exactly when features include 'regime'"):
        EnvSettings(**base, features=("rsi",), market_asset="SPY")


class _LeakyInputs(PPOAllocatorStrategy):
    """A plausible bug, for the control: the inputs computed once on the whole price panel
    and looked up by date, so a decision reads the features of later rows."""

    panel: pd.DataFrame | None = None

    def _inputs(self, history):
        built = FeatureSet(FEATURES).build(type(self).panel)
        shifted = np.concatenate([built[1:], built[-1:]])  # row t holds row t + 1's
        return shifted[: len(history.prices)]


@pytest.mark.parametrize("leaky", [False, True], ids=["causal", "leaky-control"])
def test_state_inputs_read_no_later_prices(leaky):
    """Weights up to t are unchanged when the raw prices after t change (and the seed repeats
    them); the leaky control, fed the perturbed panel, is caught."""
    prices = make_prices(n_periods=130, n_assets=5, seed=3, late=20)
    changed = prices.copy()
    t = prices.index[110]
    after = changed.index > t
    changed.loc[after] *= np.linspace(0.5, 2.0, after.sum())[:, None]

    def run(data: pd.DataFrame) -> pd.DataFrame:
        cls = _LeakyInputs if leaky else PPOAllocatorStrategy
        cls.panel = data
        strategy = cls(
            k=2, lookback=8, settings=TINY_AGENT, features=FEATURES, score_initial_window=40, seed=1
        )
        return run_backtest(strategy, data, data.index[100]).weights

    first, perturbed = run(prices), run(changed)
    same = first.loc[:t].equals(perturbed.loc[:t])
    assert same != leaky
    if not leaky:
        pd.testing.assert_frame_equal(first, run(prices))


def test_the_known_answer_check_reads_the_real_factors_of_the_runs_dates_and_still_learns():
    check = LearnabilityCheck(
        n_assets=8, n_periods=200, train_periods=140, start=10, k=2, tau=0.0, lookback=4,
        transaction_cost=0.001, lambda_sparse=0.0, with_scores=True,
        settings=SMALL_AGENT,
        reward=RewardSettings(), features=("ff_factors",), first_date="1987-01-02",
    )  # fmt: skip
    dates = check.market.settings
    assert (str(dates.start), dates.frequency) == ("1987-01-02", "W")
    inputs = check_inputs(check)
    assert inputs.shape == (200, 8, 5)
    index = pd.date_range("1987-01-02", periods=200, freq="W-FRI")
    factors = french_factors_per_period(index).to_numpy()
    for asset in range(8):  # the same factors for every asset: no edge in them
        np.testing.assert_array_equal(inputs[:, asset], factors)
    learned = check_learnability(check)
    assert learned.passed, learned
    assert learned.sharpe - learned.random_sharpe > 3.0


def test_a_configured_run_on_french_data_trains_with_the_factors_in_the_state():
    from dynafolio.experiments.config import validate_config
    from dynafolio.studies import run_experiment

    base = {
        "name": "ff-ppo",
        "data": {"dataset": "ff_industries", "assets": ["Food", "Beer", "Smoke", "Toys"],
                 "start": "1979-01-01", "end": "1984-12-31"},
        "split": {"train_fraction": 0.7},
        "n_seeds": 1,
    }  # fmt: skip
    config = validate_config({
        **base,
        "strategies": [{"kind": "equal_weight"},
                       {"kind": "ppo_topk", "k": 2, "lookback": 8, "score_initial_window": 20,
                        "features": ["ff_factors"], "ppo": TINY_PPO}],
    })  # fmt: skip
    result = run_experiment(config)
    weights = result.strategies[1].runs[0].weights
    assert weights.notna().all().all() and np.allclose(weights.sum(axis=1), 1.0)
    assert result.agents  # one per seed
    for agent in result.agents.values():
        assert agent.env_settings.features == ("ff_factors",)
        assert agent.obs_mean.size == (8 + 1 + 5) * 4
    (check,) = result.learnability.values()  # its known-answer check ran with the same block
    assert check.timesteps > 0
    with pytest.raises(ValueError, match="ff_facts"):
        validate_config({**base, "strategies": [{"kind": "ppo_topk", "features": ["ff_facts"]}]})
    with pytest.raises(ValueError, match=r"features \['rsi', 'rsi'\]: a feature is listed twice"):
        validate_config({**base, "strategies": [{"kind": "ppo_topk", "features": ["rsi", "rsi"]}]})


def test_a_hostile_header_listing_features_is_refused_at_its_first_bad_entry(agent_with_inputs):
    """A header's features are capped and stop at their first bad entry (one error, not one
    per entry), and a feature listed twice names the field."""
    import io
    import json
    import zipfile

    _, path, _ = agent_with_inputs
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    (header_name,) = [name for name in files if name.endswith(".json")]
    header = json.loads(files[header_name])

    def edited(features) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, data in files.items():
                if name == header_name:
                    changed = {**header, "env_settings": {**header["env_settings"]}}
                    changed["env_settings"]["features"] = features
                    data = json.dumps(changed).encode()
                archive.writestr(name, data)
        return buffer.getvalue()

    import tracemalloc

    wide = edited([0] * 50_000)
    tracemalloc.start()
    with pytest.raises(DataError, match="env_settings.features"):
        TrainedAgent.from_bytes(wide, "wide.zip")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 40e6, f"{peak / 1e6:.0f} MB to refuse it"  # one error per entry: 62 MB
    with pytest.raises(DataError, match="env_settings.features.*listed twice"):
        TrainedAgent.from_bytes(edited(["rsi", "rsi"]), "twice.zip")


def test_the_known_answer_market_is_dated_at_the_runs_frequency():
    base = dict(
        n_assets=4, n_periods=40, train_periods=30, start=5, k=2, tau=0.0, lookback=4,
        transaction_cost=0.0, lambda_sparse=0.0, with_scores=False, settings=TINY_AGENT,
        reward=RewardSettings(), features=("ff_factors",), first_date="1990-03-30",
    )  # fmt: skip
    for periods, pandas_frequency in [(4, "QE"), (12, "ME"), (52, "W-FRI"), (252, "B")]:
        check = LearnabilityCheck(**{**base, "periods_per_year": periods})
        index = pd.date_range("1990-03-30", periods=40, freq=pandas_frequency)
        expected = french_factors_per_period(index).to_numpy()
        np.testing.assert_array_equal(check_inputs(check)[:, 0], expected)
    with pytest.raises(ValueError, match="needs first_date"):
        LearnabilityCheck(**{**base, "first_date": None})
    with pytest.raises(ValueError, match="this run has 26"):
        LearnabilityCheck(**{**base, "periods_per_year": 26})
