"""PPO training speed: the batched numpy VecEnv against a per-step pandas environment.

What is compared
----------------
Stable-Baselines3 ``PPO("MlpPolicy", VecNormalize(env), ...)`` with the S1 hyper-parameters of
:class:`dynafolio.rl.settings.PPOSettings` (lr 1e-4, ``n_steps`` 512, batch 128, clip 0.2,
entropy 0.01, value 0.5, max grad norm 0.5, gamma 0.99, GAE 0.95, 10 epochs, actor and critic
``[64, 64]``, ``device="cpu"``) is trained for the same number of timesteps on two
environments that implement the same MDP:

* ``batched``: :class:`dynafolio.rl.vec_env.BatchedPortfolioVecEnv` — the observations, the
  Top-K projection and the engine's accounting of all ``--n-envs`` episodes in one numpy step;
* ``pandas``: :class:`PandasPortfolioEnv` below, a straightforward FinRL-style
  ``gymnasium.Env`` holding a DataFrame of returns: each ``step`` slices the DataFrame for the
  observation window, keeps the weights in a Series, projects the logits with a plain per-row
  Top-K (stable descending sort + softmax) and computes cost, gross return and drift with Series
  arithmetic; ``--n-envs`` copies in an SB3 ``DummyVecEnv``.

Data and task: the embedded ``multiasset`` dataset (34 assets), weekly, the first 70 % of the
rows (the S1 training period), simple returns; K = 5, tau = 0, lookback 30, transaction cost
0.001, no sparsity penalty, episodes of 52 steps from a random start row, starting in cash;
reward ``log(1 + net)``. Observation ``[30 return rows flattened time-major (NaN -> 0, clipped
to ±1); drifted weights]`` (1,054 floats), action 34 logits in ±10.

Before timing, the pandas environment is checked against :class:`dynafolio.rl.env.PortfolioEnv`
(forced start rows, fixed random actions with ties at the ±10 bounds) and the two VecEnvs
against each other (same seed, random starts and auto-resets): observations, rewards and
``dones`` must agree to 1e-9, or the script exits with status 1. (``DummyVecEnv`` stores
rewards as float32, so the VecEnv rewards are compared after rounding the batched env's float64
rewards to float32; PPO's rollout buffer stores float32 either way.)

Timing: after a warm-up ``learn`` of one rollout with each, ``--repeats`` (default 3) fresh
models of each are trained for ``--timesteps`` (default 16,384, i.e. 4 rollouts of
512 x 8 steps), alternating which goes first. Reported: median steps/s
(timesteps / wall time of ``model.learn``), split into rollout collection (env steps plus
policy inference, timed by a callback) and the PPO update, with the ratio ``batched / pandas``;
and the speed of pure env stepping (random actions, no policy) for the same number of steps.

Run it from the repository root (2 to 3 minutes on 2 CPU cores)::

    T=glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=4294967296
    GLIBC_TUNABLES=$T:glibc.malloc.top_pad=268435456 \\
        .venv/bin/python benchmarks/ppo_speed.py [--timesteps 16384] [--n-envs 8] [--repeats 3]

(the Makefile exports the same ``GLIBC_TUNABLES``: it stops torch's allocations from
page-faulting on every step). ``--threads`` (default 1) sets ``torch.set_num_threads``: these
small networks train faster on one thread. Timings are only comparable on an idle machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import stable_baselines3
import torch
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecNormalize

from dynafolio.data import load_dataset
from dynafolio.features import prepare_prices
from dynafolio.rl.env import PortfolioEnv
from dynafolio.rl.settings import PPOSettings
from dynafolio.rl.task import ACTION_BOUND, RETURN_CLIP, RUIN_REWARD
from dynafolio.rl.vec_env import BatchedPortfolioVecEnv

TOLERANCE = 1e-9
TASK = dict(lookback=30, k=5, tau=0.0, transaction_cost=0.001, lambda_sparse=0.0)
EPISODE_LENGTH = 52


class PandasPortfolioEnv(gym.Env):
    """The S1 Top-K portfolio MDP written the usual way: a DataFrame, a Series, a step at a time.

    Row ``t`` of ``returns`` is the simple return realised at date ``t`` (NaN = no price). A
    decision at row ``t`` sees rows ``t - lookback + 1 .. t``, trades to Top-K weights among
    the assets with a return at ``t`` and earns row ``t + 1``. Episodes start in cash at a
    uniform random decision row (or ``options["start_row"]``) and last ``episode_length``
    steps.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        returns: pd.DataFrame,
        *,
        lookback: int,
        k: int,
        tau: float,
        transaction_cost: float,
        lambda_sparse: float,
        episode_length: int,
    ) -> None:
        self.returns = returns
        self.features = returns.fillna(0.0).clip(-RETURN_CLIP, RETURN_CLIP)
        self.assets = returns.columns
        self.lookback, self.k, self.tau = lookback, k, tau
        self.transaction_cost, self.lambda_sparse = transaction_cost, lambda_sparse
        self.episode_length = episode_length
        self.first_row, self.last_row = lookback - 1, len(returns) - 2
        n = len(self.assets)
        self.observation_space = spaces.Box(
            low=np.concatenate([np.full(lookback * n, -RETURN_CLIP), np.zeros(n)]).astype(
                np.float32
            ),
            high=np.concatenate([np.full(lookback * n, RETURN_CLIP), np.ones(n)]).astype(
                np.float32
            ),
            dtype=np.float32,
        )
        self.action_space = spaces.Box(-ACTION_BOUND, ACTION_BOUND, shape=(n,), dtype=np.float32)
        self.t = self.first_row
        self.steps = 0
        self.weights = pd.Series(0.0, index=self.assets)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if options and options.get("start_row") is not None:
            self.t = int(options["start_row"])
        else:
            n_starts = self.last_row - self.first_row + 1 - (self.episode_length - 1)
            self.t = self.first_row + int(self.np_random.integers(n_starts))
        self.steps = 0
        self.weights = pd.Series(0.0, index=self.assets)
        return self._observation(), {"date_row": self.t}

    def _observation(self) -> np.ndarray:
        window = self.features.iloc[self.t - self.lookback + 1 : self.t + 1]
        return np.concatenate(
            [window.to_numpy().ravel(), self.weights.to_numpy().clip(0.0, 1.0)]
        ).astype(np.float32)

    def _top_k(self, logits: pd.Series, tradable: pd.Series) -> pd.Series:
        """Softmax over the ``k`` largest tradable logits (first asset wins ties)."""
        top = logits[tradable].sort_values(ascending=False, kind="stable").iloc[: self.k]
        weights = np.exp(top - top.max())
        weights = weights / weights.sum()
        kept = weights[weights >= self.tau]
        weights = pd.Series(1.0, index=top.index[:1]) if kept.empty else kept
        return (weights / weights.sum()).reindex(self.assets, fill_value=0.0)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        logits = pd.Series(np.asarray(action, dtype=float), index=self.assets)
        target = self._top_k(logits, self.returns.iloc[self.t].notna())
        realised = self.returns.iloc[self.t + 1].fillna(0.0)
        cost = self.transaction_cost * (target - self.weights).abs().sum()
        holdings = target * (1.0 + realised)
        value = holdings.sum() + (1.0 - target.sum())
        gross = value - 1.0
        net = gross - cost - self.lambda_sparse * (target > 0).sum() / len(self.assets)
        terminated = bool(1.0 + net <= 0.0)
        reward = RUIN_REWARD if terminated else float(np.log1p(net))
        self.weights = holdings / value
        self.t += 1
        self.steps += 1
        truncated = self.steps >= self.episode_length or self.t > self.last_row
        info = {"gross": gross, "cost": cost, "net": net, "date_row": self.t - 1}
        return self._observation(), reward, terminated, truncated, info


def training_returns(train_share: float = 0.7) -> pd.DataFrame:
    """Weekly simple returns of ``multiasset`` over the S1 training period (first 70 % of rows)."""
    prices = prepare_prices(load_dataset("multiasset"), "W")
    return prices.iloc[: int(train_share * len(prices))].pct_change(fill_method=None)


def make_env(name: str, returns: pd.DataFrame, n_envs: int, seed: int) -> VecEnv:
    if name == "batched":
        return BatchedPortfolioVecEnv(
            returns.to_numpy(),
            n_envs,
            episode_length=EPISODE_LENGTH,
            seed=seed,
            **TASK,
        )

    def factory() -> PandasPortfolioEnv:
        return PandasPortfolioEnv(returns, episode_length=EPISODE_LENGTH, **TASK)

    return DummyVecEnv([factory] * n_envs)  # PPO(seed=...) seeds env i with seed + i


def make_model(env: VecEnv, seed: int) -> PPO:
    s = PPOSettings()
    return PPO(
        "MlpPolicy",
        VecNormalize(env, norm_obs=True, norm_reward=True, clip_obs=10.0, gamma=s.gamma),
        learning_rate=s.learning_rate,
        n_steps=s.n_steps,
        batch_size=s.batch_size,
        clip_range=s.clip_range,
        ent_coef=s.ent_coef,
        vf_coef=s.vf_coef,
        max_grad_norm=s.max_grad_norm,
        gamma=s.gamma,
        gae_lambda=s.gae_lambda,
        n_epochs=s.n_epochs,
        policy_kwargs={"net_arch": list(s.net_arch)},
        seed=seed,
        device="cpu",
        verbose=0,
    )


# --------------------------------------------------------------------------- agreement
def random_logits(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform logits on ±12 clipped to the ±10 Box (as SB3 clips), so ties at the bounds occur."""
    return np.clip(rng.uniform(-12.0, 12.0, size=shape), -ACTION_BOUND, ACTION_BOUND).astype(
        np.float32
    )


def check_single(returns: pd.DataFrame, rng: np.random.Generator) -> tuple[float, float, int]:
    """Pandas env vs ``PortfolioEnv`` at forced start rows; max |Δobs|, max |Δreward|, steps."""
    ours = PortfolioEnv(
        returns.to_numpy(), episode_length=EPISODE_LENGTH, random_start=False, **TASK
    )
    plain = PandasPortfolioEnv(returns, episode_length=EPISODE_LENGTH, **TASK)
    last_start = plain.last_row - EPISODE_LENGTH + 1
    starts = [plain.first_row, (plain.first_row + last_start) // 2, last_start]
    d_obs = d_reward = 0.0
    steps = 0
    for start in starts:
        obs_a, _ = ours.reset(options={"start_row": start})
        obs_b, _ = plain.reset(options={"start_row": start})
        d_obs = max(d_obs, float(np.abs(obs_a - obs_b).max()))
        done = False
        while not done:
            action = random_logits(rng, (len(returns.columns),))
            obs_a, r_a, term_a, trunc_a, _ = ours.step(action)
            obs_b, r_b, term_b, trunc_b, _ = plain.step(action)
            if (term_a, trunc_a) != (term_b, trunc_b):
                raise SystemExit(f"episode ends differ at start {start}, step {steps}")
            d_obs = max(d_obs, float(np.abs(obs_a - obs_b).max()))
            d_reward = max(d_reward, abs(r_a - r_b))
            steps += 1
            done = term_a or trunc_a
    return d_obs, d_reward, steps


def check_vec(
    returns: pd.DataFrame, n_envs: int, n_steps: int, seed: int, rng: np.random.Generator
) -> tuple[float, float, int]:
    """Both VecEnvs, same seed, random starts and auto-resets; max |Δobs|, |Δreward|, steps.

    Rewards are compared in float32, the dtype of ``DummyVecEnv``'s reward buffer.
    """
    envs = [make_env(name, returns, n_envs, seed) for name in ("batched", "pandas")]
    for env in envs:
        env.seed(seed)
    obs = [env.reset() for env in envs]
    d_obs, d_reward = float(np.abs(obs[0] - obs[1]).max()), 0.0
    for step in range(n_steps):
        actions = random_logits(rng, (n_envs, len(returns.columns)))
        (o_a, r_a, done_a, info_a), (o_b, r_b, done_b, info_b) = (e.step(actions) for e in envs)
        if not np.array_equal(done_a, done_b):
            raise SystemExit(f"dones differ at vec step {step}: {done_a} vs {done_b}")
        for i in np.flatnonzero(done_a):
            terminal = info_a[i]["terminal_observation"] - info_b[i]["terminal_observation"]
            d_obs = max(d_obs, float(np.abs(terminal).max()))
        d_obs = max(d_obs, float(np.abs(o_a - o_b).max()))
        # DummyVecEnv keeps rewards in a float32 buffer; the batched env returns float64.
        d_reward = max(d_reward, float(np.abs(r_a.astype(np.float32) - r_b).max()))
    return d_obs, d_reward, n_steps * n_envs


# --------------------------------------------------------------------------- timing
class RolloutTimer(BaseCallback):
    """Adds up the wall time of rollout collection (env steps + policy inference) in ``learn``."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds = 0.0
        self._started = 0.0

    def _on_rollout_start(self) -> None:
        self._started = time.perf_counter()

    def _on_rollout_end(self) -> None:
        self.seconds += time.perf_counter() - self._started

    def _on_step(self) -> bool:
        return True


def timed_learn(
    name: str, returns: pd.DataFrame, n_envs: int, timesteps: int, seed: int
) -> tuple[float, float]:
    """Wall seconds of ``model.learn(timesteps)`` on a fresh model, and of its rollouts."""
    model = make_model(make_env(name, returns, n_envs, seed), seed)
    timer = RolloutTimer()
    start = time.perf_counter()
    model.learn(timesteps, callback=timer)
    elapsed = time.perf_counter() - start
    if model.num_timesteps != timesteps:
        raise SystemExit(f"{name}: trained {model.num_timesteps} timesteps, not {timesteps}")
    return elapsed, timer.seconds


def timed_stepping(name: str, returns: pd.DataFrame, n_envs: int, timesteps: int) -> float:
    """Wall seconds of ``timesteps // n_envs`` vec steps with pre-drawn random logits."""
    env = make_env(name, returns, n_envs, seed=0)
    env.seed(0)
    actions = random_logits(
        np.random.default_rng(0), (timesteps // n_envs, n_envs, len(returns.columns))
    )
    env.reset()
    start = time.perf_counter()
    for action in actions:
        env.step(action)
    return time.perf_counter() - start


def median_rate(timesteps: int, seconds: list[float]) -> float:
    return timesteps / statistics.median(seconds)


def alternate(names: list[str], repeats: int, run: Callable[[str], Any]) -> dict[str, list[Any]]:
    """Run each variant ``repeats`` times, swapping which goes first every repetition."""
    results: dict[str, list[Any]] = {name: [] for name in names}
    for rep in range(repeats):
        for name in names if rep % 2 == 0 else list(reversed(names)):
            results[name].append(run(name))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--timesteps", type=int, default=16_384, help="per learn (default 16384)")
    parser.add_argument("--n-envs", type=int, default=8, help="parallel envs (default 8)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="PPO and env seed (default 0)")
    args = parser.parse_args()
    settings = PPOSettings()
    rollout_size = settings.n_steps * args.n_envs
    if args.timesteps % rollout_size:
        parser.error(f"--timesteps must be a multiple of n_steps x n_envs = {rollout_size}")
    torch.set_num_threads(args.threads)
    if "GLIBC_TUNABLES" not in os.environ:
        print("note: GLIBC_TUNABLES is not set; torch timings may suffer (see --help)")

    returns = training_returns()
    print(
        f"PPO on the S1 Top-K env: multiasset weekly, {returns.shape[1]} assets, "
        f"{len(returns)} training rows, K={TASK['k']}, lookback {TASK['lookback']}, "
        f"tc {TASK['transaction_cost']}, episodes of {EPISODE_LENGTH}"
    )
    print(
        f"  PPO S1: lr {settings.learning_rate}, n_steps {settings.n_steps}, batch "
        f"{settings.batch_size}, {settings.n_epochs} epochs, net {list(settings.net_arch)}; "
        f"{args.timesteps:,} timesteps x {args.n_envs} envs, {args.repeats} repeats, seed "
        f"{args.seed}"
    )
    print(
        f"  torch {torch.__version__} ({torch.get_num_threads()} threads), SB3 "
        f"{stable_baselines3.__version__}, gymnasium {gym.__version__}, pandas {pd.__version__}"
    )

    rng = np.random.default_rng(args.seed)
    single = check_single(returns, rng)
    vec = check_vec(returns, args.n_envs, 200, args.seed, rng)
    ok = True
    for label, (d_obs, d_reward, steps) in (
        ("pandas env vs PortfolioEnv", single),
        ("DummyVecEnv(pandas) vs BatchedPortfolioVecEnv", vec),
    ):
        agree = d_obs <= TOLERANCE and d_reward <= TOLERANCE
        ok &= agree
        print(
            f"agreement, {label}: {steps} steps, max |d obs| {d_obs:.1e}, max |d reward| "
            f"{d_reward:.1e} -> {'OK' if agree else 'DIFFER'}"
        )
    if not ok:
        sys.exit(1)

    names = ["batched", "pandas"]
    for name in names:  # warm-up: imports, first-call allocations, torch kernel selection
        timed_learn(name, returns, args.n_envs, rollout_size, args.seed)
        timed_stepping(name, returns, args.n_envs, rollout_size)
    learn = alternate(
        names,
        args.repeats,
        lambda name: timed_learn(name, returns, args.n_envs, args.timesteps, args.seed),
    )
    stepping = alternate(
        names,
        args.repeats,
        lambda name: timed_stepping(name, returns, args.n_envs, args.timesteps),
    )

    rates, env_rates = {}, {}
    for name in names:
        total = [seconds for seconds, _ in learn[name]]
        median = statistics.median(total)
        rollout = statistics.median(r for _, r in learn[name])
        update = statistics.median(seconds - r for seconds, r in learn[name])
        rates[name] = median_rate(args.timesteps, total)
        env_rates[name] = median_rate(args.timesteps, stepping[name])
        runs = ", ".join(f"{s:.2f}" for s in total)
        print(
            f"{name:>8}: {rates[name]:8,.0f} steps/s in PPO.learn (median {median:.2f} s: "
            f"rollouts {rollout:.2f} s + updates {update:.2f} s; runs {runs} s); "
            f"env alone {env_rates[name]:,.0f} steps/s"
        )
    print(
        f"   ratio: batched / pandas = {rates['batched'] / rates['pandas']:.1f}x in PPO.learn, "
        f"{env_rates['batched'] / env_rates['pandas']:.0f}x env stepping alone"
    )


if __name__ == "__main__":
    main()
