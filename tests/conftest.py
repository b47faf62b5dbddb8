"""Shared fixtures: small synthetic price panels with a late listing."""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np
import pandas as pd
import pytest

from dynafolio.rl.settings import PPOSettings

#: Smallest settings that train: the per-asset LSTM (S1) and PPO, for tests of the wiring.
TINY_LSTM = {"lookback": 6, "hidden": 4, "epochs": 2, "min_windows": 5}
TINY_PPO = {
    "n_steps": 32,
    "batch_size": 32,
    "n_envs": 2,
    "total_timesteps": 64,
    "eval_every": 64,
    "episode_length": 10,
    "net_arch": [8],
}


#: PPO settings that train in about a second, for tests of the agent's wiring.
TINY_AGENT = PPOSettings(
    n_steps=32,
    batch_size=32,
    n_epochs=2,
    total_timesteps=256,
    n_envs=4,
    episode_length=10,
    eval_every=128,
    patience=2,
    net_arch=(16,),
)
#: PPO settings under which a small per-asset agent learns a planted edge in seconds.
SMALL_AGENT = PPOSettings(
    total_timesteps=2048,
    n_steps=64,
    batch_size=64,
    n_envs=4,
    episode_length=20,
    eval_every=1024,
    net_arch=(16,),
)


def make_prices(
    n_periods: int = 120, n_assets: int = 6, seed: int = 0, late: int = 30, freq: str = "W-FRI"
) -> pd.DataFrame:
    """Geometric random-walk prices; the last asset is listed ``late`` periods in (NaN before)."""
    rng = np.random.default_rng(seed)
    drift = rng.normal(0.002, 0.002, n_assets)
    returns = rng.normal(drift, 0.03, size=(n_periods, n_assets))
    prices = 100.0 * np.exp(np.cumsum(returns, axis=0))
    frame = pd.DataFrame(
        prices,
        index=pd.date_range("2019-01-04", periods=n_periods, freq=freq, name="date"),
        columns=pd.Index([f"A{i}" for i in range(n_assets)], name="asset"),
    )
    if late:
        frame.iloc[:late, -1] = np.nan
    return frame


@pytest.fixture
def prices() -> pd.DataFrame:
    return make_prices()


@pytest.fixture(autouse=True)
def _fresh_fit_cache():
    """Each test starts without fits shared from an earlier test."""
    from dynafolio.strategies.forecast import clear_fitted_cache

    clear_fitted_cache()
    yield
