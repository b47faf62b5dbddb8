"""PPO agents for the Top-K environment: training with validation early stopping, acting,
saving and loading (Stable-Baselines3 PPO + VecNormalize statistics)."""

from __future__ import annotations

import copy
import json
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pandas as pd
import safetensors.torch
import torch
from gymnasium import spaces
from pydantic import Field, ValidationError
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.vec_env import VecMonitor, VecNormalize

from dynafolio.early_stopping import EarlyStopping, n_validation
from dynafolio.errors import DataError
from dynafolio.progress import progress_bar
from dynafolio.rl.env import ACTION_BOUND, PortfolioEnv
from dynafolio.rl.policies import POLICIES, n_parameters
from dynafolio.rl.rewards import RewardSettings
from dynafolio.rl.vec_env import BatchedPortfolioVecEnv
from dynafolio.safe_files import Limits, SafeZip, load_json, safetensors_layout, short_repr
from dynafolio.safe_files import validation_error as _validation_error
from dynafolio.settings import Settings

AGENT_FORMAT = "dynafolio-ppo-agent"
#: Version 2: JSON header + safetensors (version 1 held a pickled SB3 zip and is refused).
AGENT_VERSION = 2
_HEADER = "dynafolio_agent.json"
_TENSORS = "policy.safetensors"

# What an agent file may declare. Every cap is far above any agent dynafolio trains (a
# 34-asset MLP agent is ~0.5 MB), and low enough that a file is refused before it costs
# memory: the header is read within 8 MiB, and a network is built only after the tensors
# file is shown to hold exactly the parameters that the header implies.
MAX_ASSETS = 10_000
MAX_LOOKBACK = 5_000
MAX_OBSERVATION_SIZE = 100_000
MAX_LAYERS = 16
MAX_WIDTH = 4_096
#: 64 MB of float32.
MAX_PARAMETERS = 16_000_000
_HEADER_LIMITS = Limits(
    max_bytes=8 * 1024 * 1024,
    max_depth=8,
    max_items=2 * MAX_OBSERVATION_SIZE + 200_000,
    max_keys=256,
)
_SAFETENSORS_HEADER_BYTES = 64 * 1024
_MAX_FILE_BYTES = 128 * 1024 * 1024


@dataclass(frozen=True)
class PPOSettings:
    """PPO hyper-parameters (S1's defaults) and the training budget.

    Attributes
    ----------
    learning_rate, n_steps, batch_size, clip_range, ent_coef, vf_coef, max_grad_norm, gamma,
    gae_lambda, n_epochs : SB3 ``PPO`` arguments (``n_steps`` per environment).
    net_arch : tuple of int
        Hidden layers of the actor and of the critic (of the shared per-asset network).
    policy : {"per_asset", "mlp"}
        One network shared by all assets (the default: :mod:`dynafolio.rl.policies`,
        permutation-equivariant; observations are not re-normalised per input, which would
        break that), or SB3's MLP over the whole observation — the S1 source's policy, which
        fails the known-answer checks (:mod:`dynafolio.rl.learnability`) at S1's budget.
    total_timesteps : int
        Most environment steps to train for (over all parallel environments).
    n_envs : int
        Parallel environments of the batched VecEnv (random episode starts).
    episode_length : int
        Steps per training episode (52 = one year of weeks).
    eval_every : int
        Timesteps between validation evaluations (rounded up to whole rollouts).
    patience : int or None
        Evaluations without a better validation log-growth before training stops; None
        trains the whole budget (the best validation checkpoint is still kept).
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
    # fail_fast: a saved agent's header reports one bad layer, not one error per entry.
    net_arch: Annotated[tuple[int, ...], Field(fail_fast=True)] = (64, 64)
    policy: Literal["mlp", "per_asset"] = "per_asset"
    total_timesteps: int = 40_960
    n_envs: int = 8
    episode_length: int = 52
    eval_every: int = 8_192
    patience: int | None = 3
    val_fraction: float = 0.2


_Finite = Annotated[float, Field(allow_inf_nan=False)]
#: A value of the training log. None stands for NaN (JSON has no NaN, so a NaN is saved as
#: null); it is read back as NaN.
_LogValue = int | float | None
_Date = Annotated[str, Field(max_length=32)]


class _EnvHeader(Settings):
    lookback: int = Field(ge=1, le=MAX_LOOKBACK)
    k: int = Field(ge=1, le=MAX_ASSETS)
    tau: float = Field(ge=0.0, lt=1.0)
    transaction_cost: float = Field(ge=0.0, allow_inf_nan=False)
    lambda_sparse: float = Field(ge=0.0, allow_inf_nan=False)
    with_scores: bool
    reward: RewardSettings = Field(default_factory=RewardSettings)


class _AgentHeader(Settings):
    """The JSON header of an agent file: everything needed to rebuild the policy, and no code.

    :meth:`TrainedAgent.load` validates it strictly: numbers must be JSON numbers, flags JSON
    booleans, and every size is capped. Long sequences are ``fail_fast``: they stop at their
    first bad entry, so 400,000 bad entries give one error, not 400,000 (about 1 KB each).
    :func:`_check_header` then checks that the fields agree with each other.
    """

    format: Literal["dynafolio-ppo-agent"]
    version: Literal[2]
    observation_size: int = Field(ge=1, le=MAX_OBSERVATION_SIZE)
    n_assets: int = Field(ge=1, le=MAX_ASSETS)
    action_bound: float = Field(gt=0.0, allow_inf_nan=False)
    net_arch: tuple[Annotated[int, Field(ge=1, le=MAX_WIDTH)], ...] = Field(
        max_length=MAX_LAYERS, fail_fast=True
    )
    activation: Literal["tanh"]
    ppo: PPOSettings
    env_settings: _EnvHeader
    obs_mean: tuple[_Finite, ...] = Field(max_length=MAX_OBSERVATION_SIZE, fail_fast=True)
    obs_var: tuple[Annotated[float, Field(ge=0.0, allow_inf_nan=False)], ...] = Field(
        max_length=MAX_OBSERVATION_SIZE, fail_fast=True
    )
    clip_obs: float = Field(gt=0.0, allow_inf_nan=False)
    num_timesteps: int = Field(ge=0)
    history: tuple[dict[str, _LogValue], ...] = Field((), fail_fast=True)
    diagnostics: tuple[dict[str, _LogValue], ...] = Field((), fail_fast=True)
    training_period: tuple[_Date, _Date] | None = None
    validation_period: tuple[_Date, _Date] | None = None
    random_baseline: dict[str, _LogValue] | None = None


def build_policy(
    observation_size: int,
    n_assets: int,
    net_arch: tuple[int, ...],
    policy: str = "mlp",
    lookback: int = 1,
    with_scores: bool = False,
    ortho_init: bool = True,
) -> ActorCriticPolicy:
    """The SB3 actor-critic a PPO agent of the Top-K environment uses.

    ``policy="mlp"``: SB3's MLP (Tanh); ``"per_asset"``: one network shared by all assets
    (:class:`~dynafolio.rl.policies.PerAssetPolicy`). Observations are already normalised
    (the caller applies the VecNormalize statistics); actions are ``n_assets`` logits in
    ±:data:`~dynafolio.rl.env.ACTION_BOUND`. ``ortho_init=False`` skips SB3's orthogonal
    initialisation (a QR decomposition per layer) for weights that are about to be loaded.
    """
    observation_space = spaces.Box(-np.inf, np.inf, shape=(observation_size,), dtype=np.float32)
    action_space = spaces.Box(-ACTION_BOUND, ACTION_BOUND, shape=(n_assets,), dtype=np.float32)
    network = POLICIES[policy](
        observation_space,
        action_space,
        lr_schedule=lambda _: 0.0,
        ortho_init=ortho_init,
        **_policy_kwargs(policy, net_arch, n_assets, lookback, with_scores),
    )
    network.set_training_mode(False)
    return network


def _policy_kwargs(
    policy: str, net_arch: tuple[int, ...], n_assets: int, lookback: int, with_scores: bool
) -> dict:
    kwargs: dict = {"net_arch": list(net_arch), "activation_fn": torch.nn.Tanh}
    if policy == "per_asset":
        kwargs.update(n_assets=n_assets, lookback=lookback, with_scores=with_scores)
    return kwargs


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
        One row per validation evaluation: timesteps, validation log-growth, the spread of
        the policy's logits across assets (mean over the validation steps).
    diagnostics : list of dict
        SB3's training log, one row per policy update: episode return (``rollout/
        ep_rew_mean``), entropy, approximate KL, explained variance, losses.
    training_period, validation_period : (str, str)
        First and last dates of the decisions the agent trained on and was validated on.
    random_baseline : dict
        Validation log-growth of random logits through the same projection, and the p-value
        of the agent's best validation log-growth against the best of as many random
        policies as there were evaluations (the selection is allowed for).
    """

    policy: ActorCriticPolicy
    obs_mean: np.ndarray
    obs_var: np.ndarray
    clip_obs: float
    env_settings: dict
    settings: PPOSettings = field(default_factory=PPOSettings)
    num_timesteps: int = 0
    history: list[dict] = field(default_factory=list)
    diagnostics: list[dict] = field(default_factory=list)
    training_period: tuple[str, str] | None = None
    validation_period: tuple[str, str] | None = None
    random_baseline: dict | None = None

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
            ppo=self.settings,
            env_settings=_EnvHeader(**self.env_settings),
            obs_mean=tuple(float(x) for x in self.obs_mean),
            obs_var=tuple(float(x) for x in self.obs_var),
            clip_obs=float(self.clip_obs),
            num_timesteps=int(self.num_timesteps),
            history=tuple(self.history),
            diagnostics=tuple(self.diagnostics),
            training_period=self.training_period,
            validation_period=self.validation_period,
            random_baseline=self.random_baseline,
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
        Reading is bounded (:mod:`dynafolio.safe_files`). The header is validated completely
        before anything is built: known policy, capped sizes, finite statistics with
        non-negative variances, fields that agree. The tensors' dtypes and shapes are then
        read from the safetensors header and must hold exactly the parameters the header
        implies (:func:`~dynafolio.rl.policies.n_parameters`). Only after that is the
        policy built, and its tensors must match it exactly and be finite.

        Raises
        ------
        DataError
            For every reason the file cannot be loaded. The message names the file and the
            field, and no other exception type escapes.
        """
        path = Path(path)
        fix = "load agents written by TrainedAgent.save (a run's agents/ folder)"
        if not path.is_file():
            state = "does not exist"
            if path.is_dir():
                state += " (it is a directory)"
            elif path.exists():
                state = "is not a regular file"
            raise DataError(f"agent file {path} {state}; {fix}")
        try:
            return cls._load(path, fix)
        except DataError:
            raise
        except Exception as error:  # a last guard: each failure above has its own message
            raise DataError(
                f"{path} could not be loaded as a dynafolio agent ({type(error).__name__}: "
                f"{short_repr(str(error), 200)}); {fix}"
            ) from None

    @classmethod
    def _load(cls, path: Path, fix: str) -> TrainedAgent:
        what = f"{path} is not a dynafolio agent file"
        with SafeZip(path, what, max_file_bytes=_MAX_FILE_BYTES, max_members=8, fix=fix) as zf:
            if _HEADER not in zf.members:
                raise DataError(f"{what}: it has no {_HEADER} header; {fix}")
            header, size = _check_header(zf.read(_HEADER, _HEADER_LIMITS.max_bytes), path, fix)
            unexpected = sorted(set(zf.members) - {_HEADER, _TENSORS})
            if unexpected or _TENSORS not in zf.members:
                problem = (
                    f"unexpected members {unexpected}" if unexpected else f"no {_TENSORS} member"
                )
                raise DataError(f"{what}: {problem}; {fix}")
            # float32 values plus the safetensors header: this policy's tensors fit in it.
            blob = zf.read(_TENSORS, 8 + _SAFETENSORS_HEADER_BYTES + 4 * size)
        policy = _load_policy(blob, header, size, what, fix)
        return cls(
            policy=policy,
            obs_mean=np.asarray(header.obs_mean, dtype=float),
            obs_var=np.asarray(header.obs_var, dtype=float),
            clip_obs=header.clip_obs,
            env_settings=header.env_settings.model_dump(),
            settings=header.ppo,
            num_timesteps=header.num_timesteps,
            history=[_log_row(row) for row in header.history],
            diagnostics=[_log_row(row) for row in header.diagnostics],
            training_period=header.training_period,
            validation_period=header.validation_period,
            random_baseline=None
            if header.random_baseline is None
            else _log_row(header.random_baseline),
        )


def _log_row(row: dict) -> dict:
    return {key: float("nan") if value is None else value for key, value in row.items()}


def _check_header(text: bytearray, path: Path, fix: str) -> tuple[_AgentHeader, int]:
    """The validated header and the number of parameters of the policy it describes.

    Nothing is built here. The JSON is read within :data:`_HEADER_LIMITS`, then validated
    strictly, then checked for fields that must agree with each other.
    """
    what = f"{path} is not a dynafolio agent file"
    raw = load_json(text, f"{what}: its header {_HEADER}", _HEADER_LIMITS, fix)
    if not isinstance(raw, dict) or raw.get("format") != AGENT_FORMAT:
        shown = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise DataError(f"{what} (format {short_repr(shown)}); {fix}")
    version = raw.get("version")
    if version == 1 and type(version) is int:
        raise DataError(
            f"{path} is a version 1 dynafolio agent file, which stored a pickled SB3 model; "
            "it is refused because unpickling a file can run arbitrary code. Retrain the agent "
            f"(dynafolio run saves version {AGENT_VERSION} agents, tensors only, under agents/)"
        )
    if version != AGENT_VERSION or type(version) is not int:
        raise DataError(
            f"{path} was written by agent format version {short_repr(version)}; this "
            f"dynafolio reads version {AGENT_VERSION}; retrain the agent or upgrade dynafolio"
        )
    ppo = raw.get("ppo")
    if isinstance(ppo, dict):
        # Version 2 files written before the per-asset policy existed hold MLP agents.
        ppo.setdefault("policy", "mlp")
        if not isinstance(ppo["policy"], str) or ppo["policy"] not in POLICIES:
            raise DataError(
                f"{what}: its header is invalid: ppo.policy: {short_repr(ppo['policy'])} is not "
                f"a dynafolio policy (the policies are {', '.join(POLICIES)}); {fix}"
            )
    try:
        # Strict JSON validation: "20" is not an integer and true is not a number.
        header = _AgentHeader.model_validate_json(json.dumps(raw), strict=True)
    except ValidationError as error:
        raise _validation_error(error, f"{what}: its header is invalid", fix) from None
    env = header.env_settings
    observation_size = PortfolioEnv.observation_size(header.n_assets, env.lookback, env.with_scores)
    size = n_parameters(
        header.ppo.policy,
        header.observation_size,
        header.n_assets,
        header.net_arch,
        env.lookback,
        env.with_scores,
    )
    problem = None
    if tuple(header.ppo.net_arch) != header.net_arch:
        problem = (
            f"ppo.net_arch {list(header.ppo.net_arch)} differs from net_arch "
            f"{list(header.net_arch)}"
        )
    elif header.observation_size != observation_size:
        problem = (
            f"observation_size is {header.observation_size}, but {header.n_assets} assets with "
            f"env_settings.lookback {env.lookback} and with_scores {env.with_scores} give "
            f"{observation_size} inputs"
        )
    elif len(header.obs_mean) != header.observation_size or len(header.obs_var) != len(
        header.obs_mean
    ):
        problem = (
            f"the header's statistics obs_mean and obs_var have {len(header.obs_mean)} and "
            f"{len(header.obs_var)} entries for {header.observation_size} inputs"
        )
    elif env.k > header.n_assets:
        problem = f"env_settings.k is {env.k}, more than its {header.n_assets} assets"
    elif size > MAX_PARAMETERS:
        problem = (
            f"net_arch {list(header.net_arch)} makes a {header.ppo.policy} policy of {size:,} "
            f"parameters, more than the {MAX_PARAMETERS:,} an agent file may hold"
        )
    if problem:
        raise DataError(f"{what}: {problem}; {fix}")
    return header, size


def _load_policy(
    blob: bytearray, header: _AgentHeader, size: int, what: str, fix: str
) -> ActorCriticPolicy:
    """Build the header's policy and copy ``blob``'s tensors (safetensors) into it. The
    tensors' dtypes, shapes and parameter count are checked from the safetensors header
    first, so no network is built for tensors that cannot be its parameters."""
    layout = safetensors_layout(blob, f"{what}: {_TENSORS}", _SAFETENSORS_HEADER_BYTES, fix)
    dtypes = {name: info.dtype for name, info in layout.items() if info.dtype != "F32"}
    if dtypes:
        raise DataError(
            f"{what}: {_TENSORS} holds tensors of dtype {short_repr(dtypes, 200)}; agent "
            f"files hold float32 (F32) tensors only; {fix}"
        )
    held = sum(info.numel for info in layout.values())
    shapes = {name: info.shape for name, info in layout.items()}
    if held != size:
        raise DataError(
            f"{what}: its tensors hold {held:,} numbers, which do not match the policy the "
            f"header describes ({header.ppo.policy}, net_arch {list(header.net_arch)}: "
            f"{size:,} parameters); {fix}"
        )
    env = header.env_settings
    policy = build_policy(
        header.observation_size,
        header.n_assets,
        header.net_arch,
        header.ppo.policy,
        env.lookback,
        env.with_scores,
        ortho_init=False,
    )
    state = policy.state_dict()  # detached tensors sharing the parameters' memory
    wanted = {name: tuple(t.shape) for name, t in state.items()}
    if shapes != wanted:
        raise DataError(
            f"{what}: its tensors {short_repr(shapes, 300)} do not match the policy the header "
            f"describes {short_repr(wanted, 300)}; {fix}"
        )
    # The layout is verified, so each tensor is read in place from the blob and copied
    # straight into its parameter: the blob and the network are the only copies in memory.
    broken = []
    for name, info in layout.items():
        values = np.frombuffer(blob, dtype="<f4", count=info.numel, offset=info.offset)
        if not np.isfinite(values).all():
            broken.append(name)
        else:
            state[name].numpy().reshape(-1)[:] = values
    if broken:
        raise DataError(f"{what}: tensors {sorted(broken)} hold NaN or infinite values; {fix}")
    return policy


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
    dates: Sequence | None = None,
    reward: RewardSettings | None = None,
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
    dates : sequence, optional
        The date of each row, to record the training and validation periods on the agent.

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
            f"{settings.episode_length} (starting after row {first_decision}) before a validation "
            f"tail of {settings.val_fraction:.0%}; use more history, a shorter lookback, shorter "
            "episodes or a smaller score_initial_window"
        )
    reward = reward or RewardSettings()
    env_settings = dict(
        lookback=lookback,
        k=k,
        tau=tau,
        transaction_cost=transaction_cost,
        lambda_sparse=lambda_sparse,
        reward=reward.model_dump(),
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
    # VecMonitor records each training episode's return (raw log growth) for the diagnostics.
    normalised = VecNormalize(
        VecMonitor(vec),
        norm_obs=settings.policy == "mlp",
        norm_reward=True,
        clip_obs=10.0,
        gamma=settings.gamma,
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
        POLICIES[settings.policy],
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
        policy_kwargs=_policy_kwargs(
            settings.policy,
            settings.net_arch,
            returns.shape[1],
            lookback,
            scores is not None,
        ),
        seed=seed,
        device="cpu",
        verbose=0,
    )
    # SB3's default logger creates an empty /tmp/SB3-<time> folder per model even when it
    # writes nothing; a logger without outputs keeps training from leaving files behind.
    recorder = _Recorder()
    model.set_logger(Logger(folder=None, output_formats=[recorder]))
    agent = TrainedAgent(
        model.policy,
        *observation_stats(normalised),
        normalised.clip_obs,
        {**env_settings, "with_scores": scores is not None},
        settings=settings,
    )
    step = progress_bar(f"training {label} (seed {seed})", settings.total_timesteps)

    def validation_growth() -> dict[str, float]:
        agent.obs_mean, agent.obs_var = observation_stats(normalised)
        logits: list[np.ndarray] = []

        def policy(obs: np.ndarray) -> np.ndarray:
            logits.append(agent.act(obs[None])[0])
            return logits[-1]

        growth = _log_growth(validation.rollout(policy))
        return {
            "validation_log_growth": growth,
            "logit_spread": float(np.std(logits, axis=1).mean()),
        }

    stop = ValidationEarlyStopping(
        validation_growth, settings.eval_every, settings.patience, progress=step
    )
    model.learn(settings.total_timesteps, callback=stop, progress_bar=False)
    agent.num_timesteps = int(model.num_timesteps)
    agent.history = stop.history
    agent.diagnostics = recorder.rows
    if stop.best_state is not None:
        model.policy.load_state_dict(stop.best_state)
        agent.obs_mean, agent.obs_var = stop.best_obs_stats
    agent.random_baseline = random_baseline(validation, stop.history, seed)
    if dates is not None:
        day = lambda row: str(pd.Timestamp(dates[row]).date())  # noqa: E731
        agent.training_period = (day(first_decision), day(val_start - 2))
        agent.validation_period = (day(val_start - 1), day(n_periods - 2))
    return agent


def observation_stats(env: VecNormalize) -> tuple[np.ndarray, np.ndarray]:
    """VecNormalize's running observation mean and variance (copies); zeros and ones when it
    does not normalise observations (the per-asset policy)."""
    if env.norm_obs:
        return env.obs_rms.mean.copy(), env.obs_rms.var.copy()
    size = env.observation_space.shape[0]
    return np.zeros(size), np.ones(size)


def _log_growth(rollout) -> float:
    """Log growth of the portfolio over a rollout, net of costs — whatever the reward paid."""
    return float(np.log1p(rollout.gross - rollout.cost).sum())


def random_baseline(
    validation: PortfolioEnv, history: list[dict], seed: int, n_draws: int = 200
) -> dict[str, float]:
    """What random logits earn on the validation period, and whether the agent beats them.

    ``n_draws`` random policies (fresh standard normal logits every step, through the same
    Top-K projection) are run through ``validation``. The agent's checkpoint is the best of
    its ``E`` evaluations, so it is compared with the best of ``E`` random policies: the
    p-value is the share of resampled best-of-``E`` random log-growths at or above the agent's.
    """
    rng = np.random.default_rng(10_000 + seed)
    n_assets = validation.task.n_assets
    draws = np.array(
        [
            _log_growth(validation.rollout(lambda obs: rng.standard_normal(n_assets)))
            for _ in range(n_draws)
        ]
    )
    best = max((row["validation_log_growth"] for row in history), default=float("nan"))
    n_evaluations = max(len(history), 1)
    best_of = rng.choice(draws, size=(2000, n_evaluations)).max(axis=1)
    p = float((1 + np.sum(best_of >= best)) / (1 + best_of.size))
    return {
        "agent_best_validation_log_growth": float(best),
        "random_mean": float(draws.mean()),
        "random_std": float(draws.std(ddof=1)),
        "evaluations": n_evaluations,
        "p_value": p,
    }


class _Recorder(KVWriter):
    """Collects SB3's log (one dict per dump) instead of writing files."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def write(self, key_values, key_excluded, step: int = 0) -> None:
        row = {"timesteps": int(step)}
        for key, value in key_values.items():
            if isinstance(value, int | float | np.integer | np.floating) and key != "time/fps":
                row[key] = float(value)
        self.rows.append(row)

    def close(self) -> None:
        return None


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
        evaluate: Callable[[], float | dict[str, float]],
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
        outcome = self.evaluate()
        row = outcome if isinstance(outcome, dict) else {"validation_log_growth": float(outcome)}
        self._last_eval = timesteps
        self.history.append({"timesteps": timesteps, **row})
        if self.stopper.update(row["validation_log_growth"], len(self.history) - 1):
            self.best_state = copy.deepcopy(self.model.policy.state_dict())
            self.best_obs_stats = observation_stats(self.model.get_env())

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
