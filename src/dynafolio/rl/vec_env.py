"""A Stable-Baselines3 VecEnv that steps many portfolio episodes with one numpy call.

``DummyVecEnv([PortfolioEnv] * n)`` loops over the envs in Python every step; here the
observations, the Top-K projection and the engine's accounting run once for the whole batch.
The rules are :class:`~dynafolio.rl.task.PortfolioTask`'s, the same object
:class:`~dynafolio.rl.env.PortfolioEnv` uses, so env ``i`` behaves exactly like a
``PortfolioEnv`` seeded with ``seed + i`` (tested step for step).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn

from dynafolio.rl.task import PortfolioTask


class BatchedPortfolioVecEnv(VecEnv):
    """``n_envs`` independent :class:`~dynafolio.rl.env.PortfolioEnv` episodes in one batch.

    Parameters
    ----------
    returns : ndarray, shape (n_periods, n_assets)
        As for :class:`~dynafolio.rl.env.PortfolioEnv`; so are the keyword arguments.
    n_envs : int
        Number of parallel episodes.
    seed : int, optional
        Env ``i`` draws its start rows from ``np.random.default_rng(seed + i)`` (the generator
        Gymnasium gives a ``PortfolioEnv`` reset with ``seed + i``). ``seed()`` reseeds at
        the next ``reset()``, as in SB3.

    Notes
    -----
    Finished episodes restart at once at a new start row (SB3 auto-reset): their last
    observation is in ``infos[i]["terminal_observation"]`` and ``infos[i]["TimeLimit.truncated"]``
    is True when the episode was cut by the period end or ``episode_length`` rather than
    terminated by ruin. ``set_options([{"start_row": t}, ...])`` forces start rows at the next
    ``reset()``. Attributes are shared by all envs of the batch.
    """

    def __init__(
        self,
        returns: np.ndarray,
        n_envs: int = 8,
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
        reward: Any = None,
        inputs: np.ndarray | None = None,
    ) -> None:
        if not isinstance(n_envs, int | np.integer) or n_envs < 1:
            raise ValueError(f"n_envs must be an integer >= 1, got {n_envs!r}")
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
            n_envs=int(n_envs),
            inputs=inputs,
        )
        self.random_start = bool(random_start)
        self.render_mode = None  # read by VecEnv.__init__ through get_attr
        super().__init__(int(n_envs), self.task.observation_space(), self.task.action_space())
        self._rngs = [self._make_rng(seed, i) for i in range(self.num_envs)]
        self._rows = np.full(self.num_envs, self.task.first_row)
        self._steps = np.zeros(self.num_envs, dtype=int)
        self._drifted = np.zeros((self.num_envs, self.task.n_assets))
        self._actions: np.ndarray | None = None

    @staticmethod
    def _make_rng(seed: int | None, i: int) -> np.random.Generator:
        return np.random.default_rng(None if seed is None else seed + i)

    @property
    def rows(self) -> np.ndarray:
        """Current decision row of each env, shape (n_envs,)."""
        return self._rows.copy()

    def reset(self) -> np.ndarray:
        for i in range(self.num_envs):
            if self._seeds[i] is not None:
                self._rngs[i] = np.random.default_rng(self._seeds[i])
            self._rows[i] = self.task.draw_start(self._rngs[i], self.random_start, self._options[i])
        self._steps[:] = 0
        self._drifted[:] = 0.0  # every episode starts in cash and pays the buy-in
        self.task.reward.reset(np.arange(self.num_envs))
        self.reset_infos = [{"date_row": int(row)} for row in self._rows]
        self._reset_seeds()
        self._reset_options()
        return self.task.observe(self._rows, self._drifted)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=float).reshape(self.num_envs, -1)

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() called without step_async(actions)")
        rows = self._rows
        out = self.task.trade(rows, self._actions, self._drifted, np.arange(self.num_envs))
        self._actions = None
        infos = [self.task.step_info(rows, out, i) for i in range(self.num_envs)]
        next_rows = rows + 1
        self._steps += 1
        self._drifted = out.sim.weights_end.copy()
        terminated = out.ruined
        truncated = self.task.at_end(next_rows, self._steps)
        dones = terminated | truncated
        obs = self.task.observe(next_rows, self._drifted)
        finished = np.flatnonzero(dones)
        for i in finished:
            infos[i]["terminal_observation"] = obs[i].copy()
            infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            next_rows[i] = self.task.draw_start(self._rngs[i], self.random_start, None)
            self.reset_infos[i] = {"date_row": int(next_rows[i])}
        if finished.size:
            self.task.reward.reset(finished)
            self._steps[finished] = 0
            self._drifted[finished] = 0.0
            obs[finished] = self.task.observe(next_rows[finished], self._drifted[finished])
        self._rows = next_rows
        return obs, out.reward, dones, infos

    def close(self) -> None:
        """Nothing to release: the batch holds only numpy arrays."""

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        # One task serves the whole batch, so a per-env value cannot be honoured.
        if len(list(self._get_indices(indices))) != self.num_envs:
            raise ValueError(
                f"attributes are shared by all {self.num_envs} envs of the batch; set "
                f"{attr_name!r} with indices=None"
            )
        setattr(self, attr_name, value)

    def env_method(
        self,
        method_name: str,
        *method_args: Any,
        indices: VecEnvIndices = None,
        **method_kwargs: Any,
    ) -> list[Any]:
        method = getattr(self, method_name)
        return [method(*method_args, **method_kwargs) for _ in self._get_indices(indices)]

    def env_is_wrapped(
        self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None
    ) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Seed env ``i`` with ``seed + i`` at the next ``reset()`` (SB3 semantics)."""
        return super().seed(seed)
