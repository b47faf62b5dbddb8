"""The ``device`` setting: resolution, clear refusals, the current device, and CPU results that
do not depend on it (plus a GPU check that runs where torch sees a GPU)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from conftest import make_prices
from dynafolio import devices
from dynafolio.backtest import run_backtest
from dynafolio.cli import app
from dynafolio.errors import ConfigError
from dynafolio.experiments.config import merge, validate_config
from dynafolio.experiments.tasks import run_task
from dynafolio.forecast.lstm import UnivariateLSTMForecaster
from dynafolio.forecast.panel import StackedLSTMForecaster
from dynafolio.history import MarketHistory
from dynafolio.rl.settings import PPOSettings
from dynafolio.rl.training import train_agent
from dynafolio.strategies.e2e import DrawdownLSTMAllocator
from dynafolio.studies import STUDIES

GPU = torch.cuda.is_available()
no_gpu_only = pytest.mark.skipif(GPU, reason="checks the refusal on a machine without a GPU")

TINY_PPO = PPOSettings(
    n_steps=32,
    batch_size=32,
    n_epochs=2,
    total_timesteps=128,
    n_envs=2,
    episode_length=10,
    eval_every=64,
    patience=2,
    net_arch=(8,),
)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _history(seed: int = 1) -> MarketHistory:
    prices = make_prices(n_periods=120, n_assets=4, seed=seed, late=20)
    return MarketHistory(prices, prices.pct_change(fill_method=None))


def _ppo_returns() -> np.ndarray:
    prices = make_prices(n_periods=100, n_assets=4, seed=3, late=0)
    return prices.pct_change(fill_method=None).to_numpy()


FORECASTERS = {
    # train_stacked (the batched per-asset LSTMs), train_network (the loop and S2).
    "univariate": lambda: UnivariateLSTMForecaster(
        lookback=8, hidden=8, epochs=3, shared=False, dropout=0.2
    ),
    "univariate_loop": lambda: UnivariateLSTMForecaster(
        lookback=8, hidden=8, epochs=3, batched=False, shared=False, dropout=0.2
    ),
    "stacked_lstm": lambda: StackedLSTMForecaster(lookback=8, units=(8, 4), epochs=3),
}


def _fit(name: str, device: str | None) -> tuple[pd.Series, UnivariateLSTMForecaster]:
    history = _history()
    forecaster = FORECASTERS[name]()
    if device is None:
        forecaster.fit(history)
    else:
        with devices.using(device):
            forecaster.fit(history)
    return forecaster.predict(history), forecaster


# --- resolving and the current device -------------------------------------------------------


def test_cpu_is_always_the_cpu_and_auto_follows_torch():
    assert devices.resolve("cpu") == torch.device("cpu")
    assert devices.resolve("auto").type == ("cuda" if GPU else "cpu")


@no_gpu_only
def test_cuda_without_a_gpu_is_a_config_error_that_says_how_to_fix_it():
    with pytest.raises(ConfigError) as info:
        devices.resolve("cuda")
    message = str(info.value)
    assert "device: cuda" in message and "torch sees none" in message
    assert "device: auto" in message and "device: cpu" in message
    assert "CUDA build of torch" in message


def test_an_unknown_device_is_refused():
    with pytest.raises(ConfigError, match="choose auto, cpu or cuda"):
        devices.resolve("gpu")


def test_using_sets_the_current_device_and_restores_it():
    assert devices.current() == torch.device("cpu")
    with devices.using("auto") as outer:
        assert devices.current() == outer
        with devices.using("cpu"):
            assert devices.current() == torch.device("cpu")
        assert devices.current() == outer
    assert devices.current() == torch.device("cpu")


@no_gpu_only
def test_using_cuda_without_a_gpu_fails_on_entry_and_changes_nothing():
    with pytest.raises(ConfigError, match="torch sees none"):
        with devices.using("cuda"):
            pytest.fail("the block must not run")
    assert devices.current() == torch.device("cpu")


# --- the config and the command line --------------------------------------------------------


def test_the_config_device_defaults_to_auto_and_is_checked():
    config = validate_config(STUDIES["s1"].default_config())
    assert config.device == "auto"
    # A config naming a GPU stays valid anywhere (a run directory's manifest is read back on
    # other machines); only running it needs the GPU.
    assert validate_config(merge(STUDIES["s1"].default_config(), {"device": "cuda"})).device == (
        "cuda"
    )
    with pytest.raises(ConfigError, match="device"):
        validate_config(merge(STUDIES["s1"].default_config(), {"device": "tpu"}))


@no_gpu_only
def test_a_task_of_a_cuda_config_fails_before_any_work():
    # Neither the plan nor the task is touched: the refusal comes first, in every executor.
    context = SimpleNamespace(config=SimpleNamespace(device="cuda"))
    with pytest.raises(ConfigError, match="torch sees none"):
        run_task(context, None, [])
    assert devices.current() == torch.device("cpu")


@no_gpu_only
def test_the_cli_refuses_a_cuda_config_or_option_before_anything_runs(tmp_path):
    data = tmp_path / "prices.csv"
    make_prices(n_periods=200, n_assets=4, late=0).to_csv(data, index_label="date")
    config = tmp_path / "c.yaml"
    config.write_text("device: cuda\nstrategies:\n  - kind: equal_weight\n")
    out = tmp_path / "runs"
    runner = CliRunner()
    from_config = runner.invoke(
        app, ["run", "--data", str(data), "--config", str(config), "--out", str(out)]
    )
    from_option = runner.invoke(
        app, ["run", "--data", str(data), "--device", "cuda", "--out", str(out)]
    )
    unknown = runner.invoke(app, ["run", "--data", str(data), "--device", "gpu", "--out", str(out)])
    for result in (from_config, from_option):
        assert result.exit_code == 2, result.output
        assert "torch sees none" in " ".join(result.output.split())
    assert unknown.exit_code == 2 and "choose auto, cpu or cuda" in unknown.output
    assert not out.exists() or not any(out.iterdir())
    # --device overrides the config, and the manifest records what ran.
    overridden = runner.invoke(
        app,
        ["run", "--data", str(data), "--config", str(config), "--device", "cpu", "--out", str(out)],
    )
    assert overridden.exit_code == 0, overridden.output
    (run_dir,) = out.iterdir()
    assert json.loads((run_dir / "manifest.json").read_text())["config"]["device"] == "cpu"


# --- on the CPU the device changes nothing ---------------------------------------------------


@pytest.mark.parametrize("name", list(FORECASTERS))
def test_cpu_forecasts_are_byte_identical_with_or_without_a_device(name):
    plain, plain_model = _fit(name, None)
    on_cpu, cpu_model = _fit(name, "cpu")
    assert plain.to_numpy().tobytes() == on_cpu.to_numpy().tobytes()
    for a, b in zip(
        plain_model.network_.state_dict().values(),
        cpu_model.network_.state_dict().values(),
        strict=True,
    ):
        assert a.numpy().tobytes() == b.numpy().tobytes()
    if not GPU:  # auto is the CPU here
        assert _fit(name, "auto")[0].to_numpy().tobytes() == plain.to_numpy().tobytes()


def test_cpu_allocator_weights_are_byte_identical_with_or_without_a_device():
    prices = make_prices(n_periods=200, n_assets=3, seed=2, late=60, freq="D")

    def weights() -> bytes:
        strategy = DrawdownLSTMAllocator(lookback=10, hidden=8, epochs=2, val_fraction=0.2)
        return run_backtest(strategy, prices, prices.index[150]).weights.to_numpy().tobytes()

    plain = weights()
    with devices.using("cpu"):
        assert weights() == plain


def test_cpu_ppo_is_byte_identical_with_or_without_a_device():
    returns = _ppo_returns()

    def train() -> tuple[bytes, list]:
        agent = train_agent(returns, k=2, lookback=6, settings=TINY_PPO, seed=0)
        state = b"".join(t.numpy().tobytes() for t in agent.policy.state_dict().values())
        return state, agent.history

    plain = train()
    with devices.using("cpu"):
        assert train() == plain


# --- on a GPU --------------------------------------------------------------------------------


@pytest.mark.skipif(not GPU, reason="needs a GPU that torch sees")
@pytest.mark.parametrize("name", list(FORECASTERS))
def test_gpu_training_gives_finite_forecasts_and_cpu_models(name):
    forecast, model = _fit(name, "cuda")
    assert np.isfinite(forecast.dropna()).all() and forecast.notna().any()
    assert all(p.device.type == "cpu" for p in model.network_.parameters())
    again, _ = _fit(name, "cuda")  # reproducible on the same GPU
    assert again.to_numpy().tobytes() == forecast.to_numpy().tobytes()


@pytest.mark.skipif(not GPU, reason="needs a GPU that torch sees")
def test_gpu_allocator_and_ppo_end_on_the_cpu():
    prices = make_prices(n_periods=200, n_assets=3, seed=2, late=60, freq="D")
    strategy = DrawdownLSTMAllocator(lookback=10, hidden=8, epochs=2, val_fraction=0.2)
    with devices.using("cuda"):
        weights = run_backtest(strategy, prices, prices.index[150]).weights
        returns = _ppo_returns()
        agent = train_agent(returns, k=2, lookback=6, settings=TINY_PPO, seed=0)
    assert np.isfinite(weights.to_numpy()).all()
    assert all(p.device.type == "cpu" for p in strategy.model_.parameters())
    assert all(p.device.type == "cpu" for p in agent.policy.parameters())
    optimiser_state = agent.policy.optimizer.state.values()
    assert all(t.device.type == "cpu" for s in optimiser_state for t in s.values())
    assert np.isfinite(agent.act(np.zeros((2, agent.obs_mean.size)))).all()
