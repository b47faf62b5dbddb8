"""What the RL allocator is paid each step: one small extension point shared by both envs.

A reward turns a batch of per-period net portfolio returns (after costs and the sparsity
penalty, computed by the engine's accounting) into rewards, keeping whatever running state it
needs per environment of the batch. Three are built in:

* ``log_return`` — ``log(1 + net)``, S1's reward (the default): summed over an episode it is
  the log growth of the portfolio.
* ``differential_sharpe`` — the differential Sharpe ratio of Moody & Saffell (2001): the
  first-order effect of this period's return on an exponential moving estimate of the Sharpe
  ratio (adaptation rate ``eta``), a risk-aware reward that can be optimised step by step.
* ``downside`` — ``net − lam · min(net, 0)²``, the downside-penalised return of the S3 loss.

A new reward is a class with ``reset(envs)`` and ``__call__(net, envs)`` registered in
:data:`REWARDS`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from dynafolio.settings import Settings

__all__ = [
    "REWARDS",
    "DifferentialSharpe",
    "DownsidePenalised",
    "LogReturn",
    "RewardSettings",
    "make_reward",
]


class RewardSettings(Settings):
    """The reward of the PPO allocators (config ``reward: {kind: ..., eta: ..., lam: ...}``)."""

    kind: Literal["log_return", "differential_sharpe", "downside"] = "log_return"
    eta: float = Field(0.05, gt=0.0, lt=1.0, description="differential Sharpe: adaptation rate")
    lam: float = Field(10.0, ge=0.0, description="downside: penalty on squared losses")


class LogReturn:
    """``log(1 + net)`` — summed over an episode, the portfolio's log growth."""

    def __init__(self, n_envs: int, settings: RewardSettings) -> None:
        self.n_envs = n_envs

    def reset(self, envs: np.ndarray) -> None:
        return None

    def __call__(self, net: np.ndarray, envs: np.ndarray) -> np.ndarray:
        return np.log1p(net)


class DifferentialSharpe:
    """Moody & Saffell (2001): ``D_t = (B ΔA − ½ A ΔB) / (B − A²)^{3/2}`` with ``A``, ``B`` the
    exponential moving first and second moments of the net return (rate ``eta``), updated
    after each step; 0 while the moving variance is not yet positive. Per environment."""

    def __init__(self, n_envs: int, settings: RewardSettings) -> None:
        self.eta = settings.eta
        self.first = np.zeros(n_envs)
        self.second = np.zeros(n_envs)

    def reset(self, envs: np.ndarray) -> None:
        self.first[envs] = 0.0
        self.second[envs] = 0.0

    def __call__(self, net: np.ndarray, envs: np.ndarray) -> np.ndarray:
        a, b = self.first[envs], self.second[envs]
        delta_a, delta_b = net - a, net**2 - b
        variance = b - a**2
        with np.errstate(divide="ignore", invalid="ignore"):
            reward = np.where(
                variance > 1e-12, (b * delta_a - 0.5 * a * delta_b) / variance**1.5, 0.0
            )
        self.first[envs] = a + self.eta * delta_a
        self.second[envs] = b + self.eta * delta_b
        # Bounded like the log return's scale so one step cannot dominate an update.
        return np.clip(reward, -10.0, 10.0)


class DownsidePenalised:
    """``net − lam · min(net, 0)²``: the per-period form of the S3 drawdown-sensitive loss."""

    def __init__(self, n_envs: int, settings: RewardSettings) -> None:
        self.lam = settings.lam

    def reset(self, envs: np.ndarray) -> None:
        return None

    def __call__(self, net: np.ndarray, envs: np.ndarray) -> np.ndarray:
        return net - self.lam * np.minimum(net, 0.0) ** 2


#: reward kind -> class.
REWARDS = {
    "log_return": LogReturn,
    "differential_sharpe": DifferentialSharpe,
    "downside": DownsidePenalised,
}


def make_reward(settings: RewardSettings | dict | None, n_envs: int):
    """A reward object for ``n_envs`` environments."""
    if settings is None:
        settings = RewardSettings()
    elif isinstance(settings, dict):
        settings = RewardSettings(**settings)
    return REWARDS[settings.kind](n_envs, settings)
