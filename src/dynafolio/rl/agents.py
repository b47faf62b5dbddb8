"""PPO agents for the Top-K environment: training with validation early stopping, acting,
saving and loading (Stable-Baselines3 PPO + VecNormalize statistics)."""

from __future__ import annotations

import copy
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecNormalize

from dynafolio.errors import DataError
from dynafolio.progress import progress_bar
from dynafolio.rl.env import PortfolioEnv
from dynafolio.rl.vec_env import BatchedPortfolioVecEnv

AGENT_FORMAT = "dynafolio-ppo-agent"
AGENT_VERSION = 1


@dataclass(frozen=True)
class PPOSettings:
    """PPO hyper-parameters (S1's defaults) and the training budget.

    Attributes
    ----------
    learning_rate, n_steps, batch_size, clip_range, ent_coef, vf_coef, max_grad_norm, gamma,
    gae_lambda, n_epochs : SB3 ``PPO`` arguments (``n_steps`` per environment).
    net_arch : tuple of int
        Hidden layers of the actor and of the critic.
    total_timesteps : int
        Most environment steps to train for (over all parallel environments).
    n_envs : int
        Parallel environments of the batched VecEnv (random episode starts).
    episode_length : int
        Steps per training episode (52 = one year of weeks).
    eval_every : int
        Timesteps between validation evaluations (rounded up to whole rollouts).
    patience : int
        Evaluations without a better validation log-growth before training stops.
    val_fraction : float
        Share of the training rows, at their end, held out for early stopping.
    """

    learning_rate: float = 1e-4
    n_steps: int = 512
    batch_size: int = 128
    clip_range: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    gamma: float = 0.99
    gae_lambda: float = 0.95
    n_epochs: int = 10
    net_arch: tuple[int, ...] = (64, 64)
    total_timesteps: int = 40_960
    n_envs: int = 8
    episode_length: int = 52
    eval_every: int = 8_192
    patience: int = 3
    val_fraction: float = 0.2


@dataclass
class TrainedAgent:
    """A PPO policy with the observation statistics it was trained with.

    ``act`` normalises observations exactly as VecNormalize did in training (frozen
    statistics) and returns the deterministic action (the policy's mean logits).
    """

    model: PPO
    obs_mean: np.ndarray
    obs_var: np.ndarray
    clip_obs: float
    env_settings: dict
    history: list[dict] = field(default_factory=list)

    def act(self, observations: np.ndarray) -> np.ndarray:
        """Deterministic logits for observations of shape ``(batch, obs_size)``."""
        normalised = np.clip(
            (observations - self.obs_mean) / np.sqrt(self.obs_var + 1e-8),
            -self.clip_obs,
            self.clip_obs,
        ).astype(np.float32)
        actions, _ = self.model.predict(normalised, deterministic=True)
        return np.asarray(actions, dtype=float)

    def save(self, path: str | Path) -> Path:
        """Write one ``.zip`` holding the SB3 model and a JSON header with the statistics."""
        path = Path(path)
        policy = io.BytesIO()
        self.model.save(policy)
        header = {
            "format": AGENT_FORMAT,
            "version": AGENT_VERSION,
            "obs_mean": self.obs_mean.tolist(),
            "obs_var": self.obs_var.tolist(),
            "clip_obs": self.clip_obs,
            "env_settings": self.env_settings,
            "history": self.history,
        }
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("dynafolio_agent.json", json.dumps(header))
            archive.writestr("policy.zip", policy.getvalue())
        return path

    @classmethod
    def load(cls, path: str | Path) -> TrainedAgent:
        """Read an agent written by :meth:`save`; anything else is refused with a clear error."""
        path = Path(path)
        what = f"{path} is not a dynafolio agent file"
        if not path.is_file():
            raise DataError(f"agent file {path} does not exist")
        try:
            with zipfile.ZipFile(path) as archive:
                header = json.loads(archive.read("dynafolio_agent.json"))
                if header.get("format") != AGENT_FORMAT:
                    raise DataError(f"{what} (format {header.get('format')!r})")
                if header.get("version") != AGENT_VERSION:
                    raise DataError(
                        f"{path} was written by agent format version {header.get('version')}; "
                        f"this dynafolio reads version {AGENT_VERSION}"
                    )
                policy = archive.read("policy.zip")
        except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DataError(f"{what} ({error}); save agents with TrainedAgent.save") from None
        model = PPO.load(io.BytesIO(policy), device="cpu")
        return cls(
            model=model,
            obs_mean=np.asarray(header["obs_mean"]),
            obs_var=np.asarray(header["obs_var"]),
            clip_obs=float(header["clip_obs"]),
            env_settings=header["env_settings"],
            history=header.get("history", []),
        )


def train_agent(
    returns: np.ndarray,
    *,
    k: int,
    tau: float = 0.0,
    lookback: int = 30,
    transaction_cost: float = 0.001,
    lambda_sparse: float = 0.0,
    scores: np.ndarray | None = None,
    start: int = 0,
    settings: PPOSettings | None = None,
    seed: int = 0,
    label: str = "PPO",
) -> TrainedAgent:
    """Train PPO on the rows of ``returns`` (the training period only), early-stopped on its tail.

    Parameters
    ----------
    returns : ndarray, shape (n_periods, n_assets)
        Simple returns of the training period (row t realised at date t; NaN = not listed).
    scores : ndarray, shape (n_periods, n_assets), optional
        Out-of-sample forecast scores per row (hybrid); NaN before forecasts exist.
    start : int
        First row episodes may start from (e.g. the first row with out-of-sample scores).

    The last ``val_fraction`` of the rows is held out: episodes are drawn before it, and every
    ``eval_every`` timesteps the deterministic policy is run through it; the policy with the
    best validation log-growth is kept.
    """
    settings = settings or PPOSettings()
    n_periods = len(returns)
    val_start = int(n_periods * (1.0 - settings.val_fraction))
    first_decision = max(start, lookback - 1)
    if val_start - first_decision < settings.episode_length + 2 or n_periods - val_start < 4:
        raise DataError(
            f"{label}: {n_periods} training periods leave too few for episodes of "
            f"{settings.episode_length} before a validation tail of {settings.val_fraction:.0%}; "
            "use more history, a shorter lookback or shorter episodes"
        )
    env_settings = dict(
        lookback=lookback,
        k=k,
        tau=tau,
        transaction_cost=transaction_cost,
        lambda_sparse=lambda_sparse,
    )
    vec = BatchedPortfolioVecEnv(
        returns[:val_start],
        n_envs=settings.n_envs,
        scores=None if scores is None else scores[:val_start],
        start=first_decision,
        episode_length=settings.episode_length,
        seed=seed,
        **env_settings,
    )
    normalised = VecNormalize(
        vec, norm_obs=True, norm_reward=True, clip_obs=10.0, gamma=settings.gamma
    )
    # The validation episode starts at the first held-out decision; its observation window
    # reaches back into the training rows, which is data available at that date.
    validation = PortfolioEnv(
        returns, scores=scores, start=val_start - 1, random_start=False, **env_settings
    )
    model = PPO(
        "MlpPolicy",
        normalised,
        learning_rate=settings.learning_rate,
        n_steps=settings.n_steps,
        batch_size=settings.batch_size,
        clip_range=settings.clip_range,
        ent_coef=settings.ent_coef,
        vf_coef=settings.vf_coef,
        max_grad_norm=settings.max_grad_norm,
        gamma=settings.gamma,
        gae_lambda=settings.gae_lambda,
        n_epochs=settings.n_epochs,
        policy_kwargs={"net_arch": list(settings.net_arch)},
        seed=seed,
        device="cpu",
        verbose=0,
    )
    agent = TrainedAgent(
        model,
        normalised.obs_rms.mean,
        normalised.obs_rms.var,
        normalised.clip_obs,
        {**env_settings, "with_scores": scores is not None},
    )
    rollout_size = settings.n_steps * settings.n_envs
    chunk = max(rollout_size, -(-settings.eval_every // rollout_size) * rollout_size)
    step = progress_bar(f"training {label} (seed {seed})", settings.total_timesteps)
    best, best_state, waited = -np.inf, None, 0
    while model.num_timesteps < settings.total_timesteps:
        before = model.num_timesteps
        model.learn(chunk, reset_num_timesteps=False, progress_bar=False)
        step(model.num_timesteps - before)
        agent.obs_mean = normalised.obs_rms.mean.copy()
        agent.obs_var = normalised.obs_rms.var.copy()
        growth = float(validation.rollout(lambda obs: agent.act(obs[None])[0]).rewards.sum())
        agent.history.append(
            {"timesteps": int(model.num_timesteps), "validation_log_growth": growth}
        )
        if growth > best:
            best, waited = growth, 0
            best_state = (
                copy.deepcopy(model.policy.state_dict()),
                agent.obs_mean.copy(),
                agent.obs_var.copy(),
            )
        else:
            waited += 1
            if waited >= settings.patience:
                break
    if best_state is not None:
        model.policy.load_state_dict(best_state[0])
        agent.obs_mean, agent.obs_var = best_state[1], best_state[2]
    return agent
