"""PPO agents for the Top-K environment: training with validation early stopping, acting,
saving and loading (Stable-Baselines3 PPO + VecNormalize statistics)."""

from __future__ import annotations

import copy
import dataclasses
import json
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import safetensors.torch
import torch
from gymnasium import spaces
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.vec_env import VecMonitor, VecNormalize

from dynafolio.early_stopping import EarlyStopping, n_validation
from dynafolio.errors import DataError
from dynafolio.progress import progress_bar
from dynafolio.rl.env import ACTION_BOUND, PortfolioEnv
from dynafolio.rl.policies import POLICIES
from dynafolio.rl.rewards import RewardSettings
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
    net_arch: tuple[int, ...] = (64, 64)
    policy: Literal["mlp", "per_asset"] = "per_asset"
    total_timesteps: int = 40_960
    n_envs: int = 8
    episode_length: int = 52
    eval_every: int = 8_192
    patience: int | None = 3
    val_fraction: float = 0.2


class _EnvHeader(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    lookback: int = Field(ge=1)
    k: int = Field(ge=1)
    tau: float = Field(ge=0.0, lt=1.0)
    transaction_cost: float = Field(ge=0.0)
    lambda_sparse: float = Field(ge=0.0)
    with_scores: bool
    reward: RewardSettings = Field(default_factory=RewardSettings)


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
    ppo: dict[str, int | float | str | tuple[int, ...] | None]
    env_settings: _EnvHeader
    obs_mean: tuple[float, ...]
    obs_var: tuple[float, ...]
    clip_obs: float = Field(gt=0.0)
    num_timesteps: int = Field(ge=0)
    history: tuple[dict[str, int | float], ...] = ()
    diagnostics: tuple[dict[str, int | float], ...] = ()
    training_period: tuple[str, str] | None = None
    validation_period: tuple[str, str] | None = None
    random_baseline: dict[str, int | float] | None = None


def build_policy(
    observation_size: int,
    n_assets: int,
    net_arch: tuple[int, ...],
    policy: str = "mlp",
    lookback: int = 1,
    with_scores: bool = False,
) -> ActorCriticPolicy:
    """The SB3 actor-critic a PPO agent of the Top-K environment uses.

    ``policy="mlp"``: SB3's MLP (Tanh); ``"per_asset"``: one network shared by all assets
    (:class:`~dynafolio.rl.policies.PerAssetPolicy`). Observations are already normalised
    (the caller applies the VecNormalize statistics); actions are ``n_assets`` logits in
    ±:data:`~dynafolio.rl.env.ACTION_BOUND`.
    """
    observation_space = spaces.Box(-np.inf, np.inf, shape=(observation_size,), dtype=np.float32)
    action_space = spaces.Box(-ACTION_BOUND, ACTION_BOUND, shape=(n_assets,), dtype=np.float32)
    network = POLICIES[policy](
        observation_space,
        action_space,
        lr_schedule=lambda _: 0.0,
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
            ppo=dataclasses.asdict(self.settings),
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
        policy = build_policy(
            header.observation_size,
            header.n_assets,
            header.net_arch,
            str(header.ppo.get("policy", "mlp")),
            header.env_settings.lookback,
            header.env_settings.with_scores,
        )
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
            diagnostics=[dict(row) for row in header.diagnostics],
            training_period=header.training_period,
            validation_period=header.validation_period,
            random_baseline=None
            if header.random_baseline is None
            else dict(header.random_baseline),
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
