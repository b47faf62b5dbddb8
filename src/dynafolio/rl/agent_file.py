"""The agent file: one ``.zip`` of a JSON header and the policy's tensors as safetensors.

:meth:`TrainedAgent.save` writes it; :meth:`TrainedAgent.load` reads it without trusting it
(:meth:`TrainedAgent.from_bytes` reads its contents the same way where the file is not at
hand, e.g. on a Ray worker of another node): the header is validated completely before
anything is built (known policy, capped sizes, finite statistics, fields that agree), the
tensors must hold exactly the parameters the header implies, and nothing in the file is
unpickled or executed. Every failure is a
:class:`~dynafolio.errors.DataError` naming the file and the field.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import safetensors.torch
from pydantic import Field, ValidationError
from stable_baselines3.common.policies import ActorCriticPolicy

from dynafolio.errors import DataError
from dynafolio.rl.env import PortfolioEnv
from dynafolio.rl.policies import POLICIES, build_policy, n_parameters
from dynafolio.rl.settings import MAX_ASSETS, EnvSettings, PPOSettings
from dynafolio.rl.task import ACTION_BOUND
from dynafolio.safe_files import Limits, SafeZip, load_json, safetensors_layout, short_repr
from dynafolio.safe_files import validation_error as _validation_error
from dynafolio.settings import Settings

__all__ = ["AGENT_FORMAT", "AGENT_VERSION", "MAX_PARAMETERS", "TrainedAgent"]

AGENT_FORMAT = "dynafolio-ppo-agent"
#: Version 2: JSON header + safetensors (version 1 held a pickled SB3 zip and is refused).
AGENT_VERSION = 2
_HEADER = "dynafolio_agent.json"
_TENSORS = "policy.safetensors"

# What an agent file may declare. Every cap is far above any agent dynafolio trains (a
# 34-asset MLP agent is ~0.5 MB), and low enough that a file is refused before it costs
# memory: the header is read within 8 MiB, and a network is built only after the tensors
# file is shown to hold exactly the parameters that the header implies.
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
#: What every refusal suggests instead.
_FIX = "load agents written by TrainedAgent.save (a run's agents/ folder)"


_Finite = Annotated[float, Field(allow_inf_nan=False)]
#: A value of the training log. None stands for NaN (JSON has no NaN, so a NaN is saved as
#: null); it is read back as NaN.
_LogValue = int | float | None
_Date = Annotated[str, Field(max_length=32)]


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
    env_settings: EnvSettings
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
    env_settings : EnvSettings
        The environment it was trained in.
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
    env_settings: EnvSettings
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
            env_settings=self.env_settings,
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
        _check_is_file(path)
        return cls._guarded(path, str(path))

    @classmethod
    def from_bytes(cls, data: bytes | bytearray, name: str) -> TrainedAgent:
        """The agent whose file contents are ``data``, checked exactly as :meth:`load` checks
        a file; ``name`` (the file it was read from) names it in every error.

        This is how an agent travels to a process that cannot open the file, such as a Ray
        worker on another node: the driver reads it (:meth:`read_bytes`) and ships the bytes.

        Raises
        ------
        DataError
            For every reason the bytes are not an agent, naming ``name`` and the field.
        """
        return cls._guarded(data, name)

    @staticmethod
    def read_bytes(path: str | Path) -> bytes:
        """The contents of the agent file at ``path``, for :meth:`from_bytes`, which checks
        them. Reading stops one byte past the largest agent file accepted, so a huge file
        costs no more memory than that before it is refused.

        Raises
        ------
        DataError
            If ``path`` is not a regular file, is too large or cannot be read.
        """
        path = Path(path)
        _check_is_file(path)
        try:
            with path.open("rb") as handle:
                # One byte past the cap, so a file that grew since it was measured is refused.
                data = handle.read(_MAX_FILE_BYTES + 1)
        except OSError as error:
            raise DataError(
                f"agent file {path} cannot be read ({error.strerror or error}); {_FIX}"
            ) from None
        if len(data) > _MAX_FILE_BYTES:
            raise DataError(
                f"{path} is not a dynafolio agent file: it is more than the "
                f"{_MAX_FILE_BYTES:,} bytes accepted; {_FIX}"
            )
        return data

    @classmethod
    def _guarded(cls, source: Path | bytes | bytearray, name: str) -> TrainedAgent:
        """:meth:`_load`, with any unforeseen exception turned into a :class:`DataError`."""
        try:
            return cls._load(source, name, _FIX)
        except DataError:
            raise
        except Exception as error:  # a last guard: each failure above has its own message
            raise DataError(
                f"{name} could not be loaded as a dynafolio agent ({type(error).__name__}: "
                f"{short_repr(str(error), 200)}); {_FIX}"
            ) from None

    @classmethod
    def _load(cls, source: Path | bytes | bytearray, name: str, fix: str) -> TrainedAgent:
        what = f"{name} is not a dynafolio agent file"
        with SafeZip(source, what, max_file_bytes=_MAX_FILE_BYTES, max_members=8, fix=fix) as zf:
            if _HEADER not in zf.members:
                raise DataError(f"{what}: it has no {_HEADER} header; {fix}")
            header, size = _check_header(zf.read(_HEADER, _HEADER_LIMITS.max_bytes), name, fix)
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
            env_settings=header.env_settings,
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


def _check_is_file(path: Path) -> None:
    """Refuse ``path`` unless it is an existing regular file, saying what it is instead."""
    if not path.is_file():
        state = "does not exist"
        if path.is_dir():
            state += " (it is a directory)"
        elif path.exists():
            state = "is not a regular file"
        raise DataError(f"agent file {path} {state}; {_FIX}")


def _log_row(row: dict) -> dict:
    return {key: float("nan") if value is None else value for key, value in row.items()}


def _check_header(text: bytearray, path: Path | str, fix: str) -> tuple[_AgentHeader, int]:
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
    env = raw.get("env_settings")
    if isinstance(env, dict) and "market_asset" not in env:
        features = env.get("features")
        if isinstance(features, list) and "regime" in features:
            raise DataError(
                f"{path} is an agent whose state reads the regime input, saved before agent "
                "files recorded the regime's market asset, so it cannot be checked against "
                "the strategy's market_asset; retrain the agent (dynafolio run saves it under "
                "agents/)"
            )
    try:
        # Strict JSON validation: "20" is not an integer and true is not a number.
        header = _AgentHeader.model_validate_json(json.dumps(raw), strict=True)
    except ValidationError as error:
        raise _validation_error(error, f"{what}: its header is invalid", fix) from None
    env = header.env_settings
    observation_size = PortfolioEnv.observation_size(
        header.n_assets, env.lookback, env.extra_columns
    )
    size = n_parameters(
        header.ppo.policy,
        header.observation_size,
        header.n_assets,
        header.net_arch,
        env.lookback,
        env.extra_columns,
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
            f"env_settings.lookback {env.lookback}, with_scores {env.with_scores} and features "
            f"{list(env.features)} give {observation_size} inputs"
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
        env.extra_columns,
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
