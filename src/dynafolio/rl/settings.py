"""Settings of a PPO agent, declared once: the PPO hyper-parameters and budget
(:class:`PPOSettings`) and the Top-K environment it trains in (:class:`EnvSettings`). The
trainer, the strategies and the agent file's header all use these objects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from dynafolio.model_inputs import FEATURE_NAMES, FeatureName, FeatureSet
from dynafolio.rl.rewards import RewardSettings
from dynafolio.settings import Settings

__all__ = [
    "MAX_ASSETS",
    "MAX_LOOKBACK",
    "EnvSettings",
    "PPOSettings",
    "input_columns",
    "recorded_market",
]

#: Caps on what a saved agent may declare about its environment (far above any agent
#: dynafolio trains; see :mod:`dynafolio.rl.agent_file`).
MAX_ASSETS = 10_000
MAX_LOOKBACK = 5_000
#: Longest asset name a saved agent may record (its ``market_asset``).
MAX_NAME = 200


def input_columns(features: tuple[str, ...]) -> int:
    """Columns per asset of the state's model inputs ``features`` (0 for none); raises
    :class:`~dynafolio.errors.ConfigError` (a ``ValueError``) for an unknown name or one
    listed twice, as :class:`~dynafolio.model_inputs.FeatureSet` does."""
    return FeatureSet(tuple(features)).n_columns if features else 0


def recorded_market(features: tuple[str, ...], market_asset: str | None) -> str | None:
    """The market asset a state with ``features`` records (:attr:`EnvSettings.market_asset`):
    the asset whose trend the ``regime`` input reads, None without that input."""
    return market_asset if "regime" in features else None


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

    def sb3_kwargs(self) -> dict:
        """The arguments of SB3's ``PPO`` these settings hold."""
        names = ("learning_rate", "n_steps", "batch_size", "clip_range", "ent_coef", "vf_coef",
                 "max_grad_norm", "gamma", "gae_lambda", "n_epochs")  # fmt: skip
        return {name: getattr(self, name) for name in names}


class EnvSettings(Settings):
    """The Top-K environment's settings, declared once: the environments
    (:class:`~dynafolio.rl.env.PortfolioEnv`, the batched VecEnv), the trainer and the agent
    file's header all read this one object. ``with_scores``: the observation holds a score per
    asset (the hybrid's forecasts); ``features``: it holds these model inputs
    (:mod:`dynafolio.model_inputs`) per asset, after the scores; ``market_asset``: the asset
    whose trend the ``regime`` input reads (recorded with ``regime`` only, else None)."""

    lookback: int = Field(ge=1, le=MAX_LOOKBACK)
    k: int = Field(ge=1, le=MAX_ASSETS)
    tau: float = Field(ge=0.0, lt=1.0)
    transaction_cost: float = Field(ge=0.0, allow_inf_nan=False)
    lambda_sparse: float = Field(ge=0.0, allow_inf_nan=False)
    with_scores: bool
    # fail_fast and capped: a saved agent's header reports one bad entry, not one per entry.
    features: tuple[FeatureName, ...] = Field((), max_length=len(FEATURE_NAMES), fail_fast=True)
    market_asset: str | None = Field(None, min_length=1, max_length=MAX_NAME)
    reward: RewardSettings = Field(default_factory=RewardSettings)

    @field_validator("features")
    @classmethod
    def _each_once(cls, features: tuple[str, ...]) -> tuple[str, ...]:
        input_columns(features)  # refuses a feature listed twice
        return features

    @model_validator(mode="after")
    def _market_with_regime(self) -> EnvSettings:
        if ("regime" in self.features) != (self.market_asset is not None):
            raise ValueError(
                "market_asset names the asset whose trend the regime input reads: give it "
                f"exactly when features include 'regime' (features {list(self.features)}, "
                f"market_asset {self.market_asset!r})"
            )
        return self

    @property
    def extra_columns(self) -> int:
        """Inputs per asset after its returns window and weight: its score, its features."""
        return int(self.with_scores) + input_columns(self.features)

    def env_kwargs(self) -> dict:
        """The keyword arguments of the environments' constructors (the scores and the
        features are data, passed beside them)."""
        return self.model_dump(exclude={"with_scores", "features", "market_asset"})
