"""PPO agents for the Top-K environment: training with validation early stopping, acting,
saving and loading (Stable-Baselines3 PPO + VecNormalize statistics)."""

from __future__ import annotations

import copy
import dataclasses
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import safetensors.torch
import torch
from gymnasium import spaces
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.vec_env import VecNormalize

from dynafolio.early_stopping import EarlyStopping, n_validation
from dynafolio.errors import DataError
from dynafolio.progress import progress_bar
from dynafolio.rl.env import ACTION_BOUND, PortfolioEnv
from dynafolio.rl.vec_env import BatchedPortfolioVecEnv

AGENT_FORMAT = "dynafolio-ppo-agent"
#: Version 2: JSON header + safetensors (version 1 held a pickled SB3 zip and is refused).
AGENT_VERSION = 2
_HEADER = "dynafolio_agent.json"
_TENSORS = "policy.safetensors"
#: No member of an agent file is anywhere near this (a 34-asset policy is ~0.5 MB).
_MAX_MEMBER_BYTES = 512 * 1024 * 1024


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


class _EnvHeader(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    lookback: int = Field(ge=1)
    k: int = Field(ge=1)
    tau: float = Field(ge=0.0, lt=1.0)
    transaction_cost: float = Field(ge=0.0)
    lambda_sparse: float = Field(ge=0.0)
    with_scores: bool


class _AgentHeader(BaseModel):
    """The JSON header of an agent file: everything needed to rebuild the policy, and no code."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["dynafolio-ppo-agent"]
    version: Literal[2]
    observation_size: int = Field(ge=1)
    n_assets: int = Field(ge=1)
    action_bound: float = Field(gt=0.0)
    net_arch: tuple[int, ...]
    activation: Literal["tanh"]
    ppo: dict[str, int | float | tuple[int, ...]]
    env_settings: _EnvHeader
    obs_mean: tuple[float, ...]
    obs_var: tuple[float, ...]
    clip_obs: float = Field(gt=0.0)
    num_timesteps: int = Field(ge=0)
    history: tuple[dict[str, int | float], ...] = ()


def build_policy(
    observation_size: int, n_assets: int, net_arch: tuple[int, ...]
) -> ActorCriticPolicy:
    """The SB3 actor-critic MLP a PPO agent of the Top-K environment uses (Tanh, as SB3's).

    Observations are already normalised (VecNormalize statistics applied by the caller);
    actions are ``n_assets`` logits in ±:data:`~dynafolio.rl.env.ACTION_BOUND`.
    """
    observation_space = spaces.Box(-np.inf, np.inf, shape=(observation_size,), dtype=np.float32)
    action_space = spaces.Box(-ACTION_BOUND, ACTION_BOUND, shape=(n_assets,), dtype=np.float32)
    policy = ActorCriticPolicy(
        observation_space,
        action_space,
        lr_schedule=lambda _: 0.0,
        net_arch=list(net_arch),
        activation_fn=torch.nn.Tanh,
    )
    policy.set_training_mode(False)
    return policy


@dataclass
class TrainedAgent:
    """A PPO policy with the observation statistics it was trained with.

    ``act`` normalises observations exactly as VecNormalize did in training (frozen
    statistics) and returns the deterministic action (the policy's mean logits, clipped to
    the action bounds).

    Attributes
    ----------
    policy : ActorCriticPolicy
        The SB3 actor-critic network (its ``predict`` is what ``PPO.predict`` calls).
    obs_mean, obs_var : ndarray, shape (observation_size,)
        VecNormalize's running observation statistics, frozen.
    clip_obs : float
    env_settings : dict
        lookback, k, tau, transaction_cost, lambda_sparse, with_scores.
    settings : PPOSettings
    num_timesteps : int
        Environment steps trained.
    history : list of dict
        One row per validation evaluation (timesteps, validation log-growth).
    """

    policy: ActorCriticPolicy
    obs_mean: np.ndarray
    obs_var: np.ndarray
    clip_obs: float
    env_settings: dict
    settings: PPOSettings = field(default_factory=PPOSettings)
    num_timesteps: int = 0
    history: list[dict] = field(default_factory=list)

    def act(self, observations: np.ndarray) -> np.ndarray:
        """Deterministic logits for observations of shape ``(batch, obs_size)``."""
        normalised = np.clip(
            (observations - self.obs_mean) / np.sqrt(self.obs_var + 1e-8),
            -self.clip_obs,
            self.clip_obs,
        ).astype(np.float32)
        actions, _ = self.policy.predict(normalised, deterministic=True)
        return np.asarray(actions, dtype=float)

    def save(self, path: str | Path) -> Path:
        """Write one ``.zip``: a JSON header and the policy's tensors as safetensors.

        Neither part is a pickle, so :meth:`load` never runs code from the file.
        """
        path = Path(path)
        header = _AgentHeader(
            format=AGENT_FORMAT,
            version=AGENT_VERSION,
            observation_size=int(self.obs_mean.size),
            n_assets=int(self.policy.action_space.shape[0]),
            action_bound=ACTION_BOUND,
            net_arch=tuple(self.settings.net_arch),
            activation="tanh",
            ppo=dataclasses.asdict(self.settings),
            env_settings=_EnvHeader(**self.env_settings),
            obs_mean=tuple(float(x) for x in self.obs_mean),
            obs_var=tuple(float(x) for x in self.obs_var),
            clip_obs=float(self.clip_obs),
            num_timesteps=int(self.num_timesteps),
            history=tuple(self.history),
        )
        tensors = {
            name: tensor.detach().cpu().contiguous().clone()
            for name, tensor in self.policy.state_dict().items()
        }
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(_HEADER, header.model_dump_json())
            archive.writestr(_TENSORS, safetensors.torch.save(tensors))
        return path

    @classmethod
    def load(cls, path: str | Path) -> TrainedAgent:
        """Read an agent written by :meth:`save`; anything else is refused with a clear error.

        Only JSON and safetensors are parsed: nothing in the file is unpickled or executed.
        The policy is rebuilt from the header and must match the stored tensors exactly.
        """
        path = Path(path)
        what = f"{path} is not a dynafolio agent file"
        fix = "load agents written by TrainedAgent.save (a run's agents/ folder)"
        if not path.is_file():
            raise DataError(
                f"agent file {path} does not exist"
                + (" (it is a directory)" if path.is_dir() else "")
                + f"; {fix}"
            )
        try:
            with zipfile.ZipFile(path) as archive:
                members = {info.filename: info for info in archive.infolist()}
                if _HEADER not in members:
                    raise DataError(f"{what}: it has no {_HEADER} header; {fix}")
                raw = json.loads(_read_member(archive, members[_HEADER], path))
                header = _check_header(raw, path, fix)
                unexpected = sorted(set(members) - {_HEADER, _TENSORS})
                if unexpected or _TENSORS not in members:
                    problem = (
                        f"unexpected members {unexpected}"
                        if unexpected
                        else f"no {_TENSORS} member"
                    )
                    raise DataError(f"{what}: {problem}; {fix}")
                blob = _read_member(archive, members[_TENSORS], path)
        except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError, OSError) as error:
            raise DataError(f"{what} ({error}); {fix}") from None
        try:
            tensors = safetensors.torch.load(blob)
        except Exception as error:  # safetensors raises its own untyped errors on bad data
            raise DataError(
                f"{what}: {_TENSORS} is not a safetensors file ({error}); {fix}"
            ) from None
        if len(header.obs_mean) != header.observation_size or len(header.obs_var) != len(
            header.obs_mean
        ):
            raise DataError(
                f"{what}: the header's statistics have {len(header.obs_mean)} and "
                f"{len(header.obs_var)} entries for {header.observation_size} inputs; {fix}"
            )
        policy = build_policy(header.observation_size, header.n_assets, header.net_arch)
        expected = policy.state_dict()
        shapes = {name: tuple(t.shape) for name, t in tensors.items()}
        wanted = {name: tuple(t.shape) for name, t in expected.items()}
        if shapes != wanted:
            raise DataError(
                f"{what}: its tensors {shapes} do not match the policy the header describes "
                f"{wanted}; {fix}"
            )
        policy.load_state_dict({n: t.to(expected[n].dtype) for n, t in tensors.items()})
        try:
            settings = PPOSettings(
                **{k: tuple(v) if k == "net_arch" else v for k, v in header.ppo.items()}
            )
        except TypeError as error:
            raise DataError(f"{what}: its PPO settings are not valid ({error}); {fix}") from None
        return cls(
            policy=policy,
            obs_mean=np.asarray(header.obs_mean, dtype=float),
            obs_var=np.asarray(header.obs_var, dtype=float),
            clip_obs=header.clip_obs,
            env_settings=header.env_settings.model_dump(),
            settings=settings,
            num_timesteps=header.num_timesteps,
            history=[dict(row) for row in header.history],
        )


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> bytes:
    if info.file_size > _MAX_MEMBER_BYTES:
        raise DataError(
            f"{path}: member {info.filename} is {info.file_size:,} bytes, more than an agent "
            f"file holds ({_MAX_MEMBER_BYTES:,}); it is not a dynafolio agent file"
        )
    return archive.read(info)


def _check_header(raw: object, path: Path, fix: str) -> _AgentHeader:
    what = f"{path} is not a dynafolio agent file"
    if not isinstance(raw, dict) or raw.get("format") != AGENT_FORMAT:
        shown = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise DataError(f"{what} (format {shown!r}); {fix}")
    version = raw.get("version")
    if version == 1:
        raise DataError(
            f"{path} is a version 1 dynafolio agent file, which stored a pickled SB3 model; "
            "it is refused because unpickling a file can run arbitrary code. Retrain the agent "
            f"(dynafolio run saves version {AGENT_VERSION} agents, tensors only, under agents/)"
        )
    if version != AGENT_VERSION:
        raise DataError(
            f"{path} was written by agent format version {version!r}; this dynafolio reads "
            f"version {AGENT_VERSION}; retrain the agent or upgrade dynafolio"
        )
    try:
        return _AgentHeader.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(header)'}: {e['msg']}"
            for e in error.errors()[:5]
        )
        raise DataError(f"{what}: its header is invalid ({problems}); {fix}") from None


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
    carried_returns: np.ndarray | None = None,
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
    carried_returns : ndarray, shape (n_periods, n_assets), optional
        What held positions earn (see :class:`~dynafolio.rl.env.PortfolioEnv`); default
        ``returns`` with NaN earning 0.

    The last ``val_fraction`` of the rows is held out: episodes are drawn before it, and every
    ``eval_every`` timesteps the deterministic policy is run through it; the policy with the
    best validation log-growth is kept.
    """
    settings = settings or PPOSettings()
    n_periods = len(returns)
    val_start = n_periods - n_validation(n_periods, settings.val_fraction)
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
        carried_returns=None if carried_returns is None else carried_returns[:val_start],
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
        returns,
        scores=scores,
        carried_returns=carried_returns,
        start=val_start - 1,
        random_start=False,
        **env_settings,
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
    # SB3's default logger creates an empty /tmp/SB3-<time> folder per model even when it
    # writes nothing; a logger without outputs keeps training from leaving files behind.
    model.set_logger(Logger(folder=None, output_formats=[]))
    agent = TrainedAgent(
        model.policy,
        normalised.obs_rms.mean,
        normalised.obs_rms.var,
        normalised.clip_obs,
        {**env_settings, "with_scores": scores is not None},
        settings=settings,
    )
    step = progress_bar(f"training {label} (seed {seed})", settings.total_timesteps)

    def validation_growth() -> float:
        agent.obs_mean = normalised.obs_rms.mean.copy()
        agent.obs_var = normalised.obs_rms.var.copy()
        return float(validation.rollout(lambda obs: agent.act(obs[None])[0]).rewards.sum())

    stop = ValidationEarlyStopping(
        validation_growth, settings.eval_every, settings.patience, progress=step
    )
    model.learn(settings.total_timesteps, callback=stop, progress_bar=False)
    agent.num_timesteps = int(model.num_timesteps)
    agent.history = stop.history
    if stop.best_state is not None:
        model.policy.load_state_dict(stop.best_state)
        agent.obs_mean, agent.obs_var = stop.best_obs_stats
    return agent


class ValidationEarlyStopping(BaseCallback):
    """Stop PPO when its validation log-growth stops improving; keep the best policy.

    An SB3 callback. After every policy update that completes ``every`` timesteps since the
    last evaluation (and once at the end of training), ``evaluate()`` runs the deterministic
    policy through the validation period; :class:`~dynafolio.early_stopping.EarlyStopping`
    stops training after ``patience`` evaluations without a higher log-growth. The best
    policy's weights and observation statistics are kept in :attr:`best_state` and
    :attr:`best_obs_stats`; :attr:`history` has one row per evaluation.
    """

    def __init__(
        self,
        evaluate: Callable[[], float],
        every: int,
        patience: int | None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(verbose=0)
        self.evaluate = evaluate
        self.every = every
        self.stopper = EarlyStopping(patience, mode="max")
        self.progress = progress or (lambda n: None)
        self.history: list[dict] = []
        self.best_state: dict | None = None
        self.best_obs_stats: tuple[np.ndarray, np.ndarray] | None = None
        self._last_eval = 0
        self._reported = 0

    def _evaluate(self) -> None:
        timesteps = int(self.model.num_timesteps)
        growth = self.evaluate()
        self._last_eval = timesteps
        self.history.append({"timesteps": timesteps, "validation_log_growth": growth})
        if self.stopper.update(growth, len(self.history) - 1):
            self.best_state = copy.deepcopy(self.model.policy.state_dict())
            agent_stats = self.model.get_env().obs_rms  # VecNormalize's statistics
            self.best_obs_stats = (agent_stats.mean.copy(), agent_stats.var.copy())

    def _on_rollout_start(self) -> None:
        # Called before each rollout, i.e. right after the previous policy update.
        if self.model.num_timesteps - self._last_eval >= self.every:
            self._evaluate()

    def _on_step(self) -> bool:
        return not self.stopper.should_stop

    def _on_rollout_end(self) -> None:
        self.progress(int(self.model.num_timesteps) - self._reported)
        self._reported = int(self.model.num_timesteps)

    def _on_training_end(self) -> None:
        if self.model.num_timesteps > self._last_eval and not self.stopper.should_stop:
            self._evaluate()
