"""Gymnasium environment of the S1 allocator: Top-K weights paid by the backtest engine.

Timing (the same as the backtest engine's). Row ``t`` of ``returns`` is the simple return
realised at date ``t``. A decision at the close of row ``t`` sees returns rows
``t − lookback + 1 .. t``, the portfolio's drifted weights and ``scores[t]``; it trades to new
weights and earns row ``t + 1``. Cost, gross return and drift come from
:func:`~dynafolio.backtest.engine.rebalance_step`, so the reward is what the backtest reports.

The array arithmetic lives in :class:`~dynafolio.rl.task.PortfolioTask`, shared with the batched
:class:`~dynafolio.rl.vec_env.BatchedPortfolioVecEnv` so both envs follow one set of rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from dynafolio.rl.rewards import RewardSettings
from dynafolio.rl.task import PortfolioTask


@dataclass(frozen=True)
class Rollout:
    """One deterministic pass of a policy through a :class:`PortfolioEnv` episode.

    ``rows`` (n_steps,) are the decision rows; ``weights`` (n_steps, n_assets) the targets
    chosen there; ``gross``, ``cost``, ``net``, ``rewards`` (n_steps,) per period.
    """

    rows: np.ndarray
    weights: np.ndarray
    gross: np.ndarray
    cost: np.ndarray
    net: np.ndarray
    rewards: np.ndarray


class PortfolioEnv(gym.Env):
    """Top-K long-only allocation as a Gymnasium environment (S1's PPO-only and hybrid state).

    Parameters
    ----------
    returns : ndarray, shape (n_periods, n_assets)
        Simple returns; row ``t`` is realised at date ``t``. NaN = no price (not listed or
        missing): the asset is not tradable at a decision row where its return is NaN.
    lookback : int
        Number of return rows in the observation (30 weeks in S1).
    k, tau : int, float
        Top-K projection of the action logits (:func:`~dynafolio.rl.projection.top_k_weights`).
    transaction_cost : float
        Proportional cost on ``‖w_target − w_drifted‖₁`` (the engine's ``ProportionalCost``).
    lambda_sparse : float
        Penalty per held asset: ``net −= lambda_sparse · #{w > 0} / n_assets``.
    scores : ndarray, shape (n_periods, n_assets), optional
        Forecast scores known at the close of each date (hybrid state); NaN → 0.
    inputs : ndarray, shape (n_periods, n_assets, n_columns), optional
        Model inputs known at the close of each date (:mod:`dynafolio.model_inputs`, e.g. the
        Fama–French factors), after the scores in each asset's part of the state; NaN → 0,
        clipped to ±:data:`~dynafolio.rl.task.INPUT_CLIP`.
    start, end : int, optional
        Decision rows are ``max(start, lookback−1) .. end−2``; ``end`` (exclusive, default
        ``n_periods``) bounds every row read, so pass the training period's end.
    episode_length : int, optional
        Steps per episode (default: from the start row to the end of the period).
    random_start : bool
        Start each episode at a uniform random decision row (via ``self.np_random``) rather
        than the first. ``reset(options={"start_row": t})`` forces a start row.
    seed : int, optional
        Seeds the first ``reset`` that is not given a seed.
    reward : RewardSettings or dict, optional
        What a step pays (:mod:`dynafolio.rl.rewards`): ``log_return`` (default, S1's
        ``log(1 + net)``), ``differential_sharpe`` or ``downside``.
    carried_returns : ndarray, shape (n_periods, n_assets), optional
        What a held position earns, as the backtest books it
        (:func:`~dynafolio.history.carried_returns`: 0 while a price is missing, the move
        since the last price when it resumes). Default: ``returns`` with NaN earning 0, the
        same when the data has no interior gaps.

    Notes
    -----
    Each episode starts in cash, so its first step pays the buy-in, as the backtest does.
    The reward is ``log(1 + net)`` by default (see ``reward``); if ``1 + net <= 0`` it is
    :data:`RUIN_REWARD` and the episode terminates. ``info`` holds ``gross``, ``cost``,
    ``net``, ``weights``, ``turnover`` and ``date_row`` (the decision row).
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        returns: np.ndarray,
        *,
        lookback: int = 30,
        k: int = 5,
        tau: float = 0.0,
        transaction_cost: float = 0.001,
        lambda_sparse: float = 0.0,
        scores: np.ndarray | None = None,
        start: int | None = None,
        end: int | None = None,
        episode_length: int | None = None,
        random_start: bool = True,
        seed: int | None = None,
        carried_returns: np.ndarray | None = None,
        reward: RewardSettings | dict | None = None,
        inputs: np.ndarray | None = None,
    ) -> None:
        self.task = PortfolioTask(
            returns,
            lookback=lookback,
            k=k,
            tau=tau,
            transaction_cost=transaction_cost,
            lambda_sparse=lambda_sparse,
            scores=scores,
            start=start,
            end=end,
            episode_length=episode_length,
            carried_returns=carried_returns,
            reward=reward,
            inputs=inputs,
        )
        self.random_start = bool(random_start)
        self.initial_seed = seed
        self.render_mode = None
        self.observation_space = self.task.observation_space()
        self.action_space = self.task.action_space()
        self._pending_seed = seed
        self._row: int | None = None
        self._steps = 0
        self._drifted = np.zeros(self.task.n_assets)

    @staticmethod
    def observation_size(n_assets: int, lookback: int, extra_columns: int) -> int:
        """Length of the observation vector: ``lookback·N + N`` and ``N`` per extra column
        (a score, each model input column: :attr:`EnvSettings.extra_columns`)."""
        return (lookback + 1 + int(extra_columns)) * n_assets

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is None and self._pending_seed is not None:
            seed = self._pending_seed
        self._pending_seed = None
        super().reset(seed=seed)
        self._row = self.task.draw_start(self.np_random, self.random_start, options)
        self._steps = 0
        self._drifted = np.zeros(self.task.n_assets)
        self.task.reward.reset(np.array([0]))
        return self._observe(), {"date_row": self._row}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._row is None:
            raise RuntimeError("the episode is over or has not started: call reset() first")
        rows = np.array([self._row])
        out = self.task.trade(
            rows, np.asarray(action, dtype=float).reshape(1, -1), self._drifted[None], np.array([0])
        )
        info = self.task.step_info(rows, out, 0)
        self._drifted = out.sim.weights_end[0]
        self._row += 1
        self._steps += 1
        terminated = bool(out.ruined[0])
        truncated = bool(self.task.at_end(np.array([self._row]), np.array([self._steps]))[0])
        obs = self._observe()
        if terminated or truncated:
            self._row = None
        return obs, float(out.reward[0]), terminated, truncated, info

    def _observe(self) -> np.ndarray:
        return self.task.observe(np.array([self._row]), self._drifted[None])[0]

    def rollout(
        self, policy: Callable[[np.ndarray], np.ndarray], start_row: int | None = None
    ) -> Rollout:
        """Run ``policy(obs) -> logits`` for one episode and collect weights and returns.

        Starts at ``start_row`` (default: the first decision row, whatever ``random_start``
        says), so a trained agent can be evaluated on a fixed period.
        """
        obs, _ = self.reset(
            options={"start_row": self.task.first_row if start_row is None else start_row}
        )
        infos, rewards = [], []
        done = False
        while not done:
            obs, reward, terminated, truncated, info = self.step(policy(obs))
            infos.append(info)
            rewards.append(reward)
            done = terminated or truncated
        return Rollout(
            rows=np.array([i["date_row"] for i in infos]),
            weights=np.array([i["weights"] for i in infos]),
            gross=np.array([i["gross"] for i in infos]),
            cost=np.array([i["cost"] for i in infos]),
            net=np.array([i["net"] for i in infos]),
            rewards=np.array(rewards),
        )
