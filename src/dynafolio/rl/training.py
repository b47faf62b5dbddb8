"""Training a PPO agent for the Top-K environment: Stable-Baselines3 PPO on the batched
environment with VecNormalize, early-stopped on a validation tail, and compared with random
policies through the same projection. The trained agent is a
:class:`~dynafolio.rl.agent_file.TrainedAgent`."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.vec_env import VecMonitor, VecNormalize

from dynafolio import devices
from dynafolio.early_stopping import EarlyStopping, n_validation
from dynafolio.errors import DataError
from dynafolio.progress import progress_bar
from dynafolio.rl.agent_file import TrainedAgent
from dynafolio.rl.env import PortfolioEnv
from dynafolio.rl.policies import POLICIES, policy_kwargs
from dynafolio.rl.rewards import RewardSettings
from dynafolio.rl.settings import EnvSettings, PPOSettings, input_columns, recorded_market
from dynafolio.rl.vec_env import BatchedPortfolioVecEnv

__all__ = ["ValidationEarlyStopping", "observation_stats", "random_baseline", "train_agent"]


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
    inputs: np.ndarray | None = None,
    features: Sequence[str] = (),
    market_asset: str | None = None,
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
    inputs : ndarray, shape (n_periods, n_assets, n_columns), optional
        The model inputs ``features`` (:meth:`dynafolio.model_inputs.FeatureSet.build`) of
        every row, read by the state beside each asset's returns; ``features`` names them
        for the agent's header (a loaded agent is checked against them).
    market_asset : str, optional
        The asset whose trend the ``regime`` input reads; recorded in the header (and
        needed) when ``features`` include ``regime``, ignored otherwise.

    The last ``val_fraction`` of the rows is held out: episodes are drawn before it, and every
    ``eval_every`` timesteps the deterministic policy is run through it; the policy with the
    best validation log-growth is kept.

    PPO trains on :func:`dynafolio.devices.current`'s device; the agent's policy is left on
    the CPU.
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
    env_settings = EnvSettings(
        lookback=lookback,
        k=k,
        tau=tau,
        transaction_cost=transaction_cost,
        lambda_sparse=lambda_sparse,
        with_scores=scores is not None,
        features=tuple(features),
        market_asset=recorded_market(tuple(features), market_asset),
        reward=reward or RewardSettings(),
    )
    given, wanted = 0 if inputs is None else np.shape(inputs)[-1], input_columns(features)
    if given != wanted:
        raise ValueError(
            f"{label}: features {list(features)} have {wanted} columns per asset, but inputs "
            f"have {given}; build the inputs with FeatureSet(features)"
        )
    vec = BatchedPortfolioVecEnv(
        returns[:val_start],
        n_envs=settings.n_envs,
        scores=None if scores is None else scores[:val_start],
        inputs=None if inputs is None else inputs[:val_start],
        carried_returns=None if carried_returns is None else carried_returns[:val_start],
        start=first_decision,
        episode_length=settings.episode_length,
        seed=seed,
        **env_settings.env_kwargs(),
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
        inputs=inputs,
        carried_returns=carried_returns,
        start=val_start - 1,
        random_start=False,
        **env_settings.env_kwargs(),
    )
    model = PPO(
        POLICIES[settings.policy],
        normalised,
        **settings.sb3_kwargs(),
        policy_kwargs=policy_kwargs(
            settings.policy,
            settings.net_arch,
            returns.shape[1],
            lookback,
            env_settings.extra_columns,
        ),
        seed=seed,
        device=devices.current(),
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
        env_settings,
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
    _policy_to_cpu(agent.policy)
    agent.random_baseline = random_baseline(validation, stop.history, seed)
    if dates is not None:
        day = lambda row: str(pd.Timestamp(dates[row]).date())  # noqa: E731
        agent.training_period = (day(first_decision), day(val_start - 2))
        agent.validation_period = (day(val_start - 1), day(n_periods - 2))
    return agent


def _policy_to_cpu(policy) -> None:
    """Move an SB3 policy, and its optimiser's state, to the CPU (in place).

    The agent travels back from worker processes by pickling, optimiser included: left on a
    GPU it would start CUDA in whichever process unpickles it. On the CPU nothing moves.
    """
    policy.to("cpu")
    for state in policy.optimizer.state.values():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                state[key] = value.cpu()


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
