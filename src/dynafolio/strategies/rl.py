"""PPO allocators (S1): PPO-only and the hybrid whose state includes LSTM forecasts.

Both train a Stable-Baselines3 PPO agent on the training period with the Top-K environment
(:mod:`dynafolio.rl.env`) and act deterministically at test time. The observation at a
decision date is rebuilt from the history up to that date exactly as the environment builds
it: the last ``lookback`` returns, the previous target drifted through the returns since
(with the engine's :func:`~dynafolio.backtest.engine.rebalance_step`), for the hybrid the
standardised forecasts, and any model inputs the state reads (``features``).
"""

from __future__ import annotations

from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

import numpy as np
import pandas as pd
from pydantic import Field, PrivateAttr, model_validator

from dynafolio.backtest.costs import ProportionalCost
from dynafolio.backtest.engine import rebalance_step
from dynafolio.errors import DataError
from dynafolio.forecast.base import Forecaster
from dynafolio.history import MarketHistory
from dynafolio.model_inputs import FeatureName, FeatureSet
from dynafolio.rl.agent_file import TrainedAgent
from dynafolio.rl.env import PortfolioEnv
from dynafolio.rl.learnability import LearnabilityCheck
from dynafolio.rl.projection import top_k_weights
from dynafolio.rl.rewards import RewardSettings
from dynafolio.rl.settings import MAX_NAME, PPOSettings, input_columns, recorded_market
from dynafolio.rl.task import RETURN_CLIP, SCORE_CLIP, clean_inputs
from dynafolio.rl.training import train_agent
from dynafolio.settings import parameters, params_model
from dynafolio.splits import RefitSchedule
from dynafolio.strategies.base import Strategy, StreamSpec, TopK, TopKTau, cross_sectional_zscore
from dynafolio.strategies.forecast import ForecastStream
from dynafolio.strategies.registry import BuildContext, register_strategy, spec_fields
from dynafolio.strategies.signal import ForecasterUnion

_NO_COST = ProportionalCost(0.0)
#: The largest observation the MLP policy takes: about 260 assets at a lookback of 30. Its
#: first layer has inputs × width weights per network (actor and critic), so beyond this the
#: policy's size, memory and update time grow with N while the per-asset policy's do not.
MLP_MAX_INPUTS = 8_192


@parameters
class PPOAllocatorStrategy(Strategy):
    """PPO-only Top-K allocator; with a ``forecaster`` it becomes the hybrid LSTM+PPO.

    Parameters
    ----------
    k, tau : int, float
        Top-K projection of the policy's logits.
    lookback : int
        Return rows in the observation.
    transaction_cost, lambda_sparse : float
        Reward terms during training (the backtest charges its own cost model).
    settings : PPOSettings, optional
        PPO hyper-parameters and training budget (S1 defaults).
    forecaster : Forecaster, optional
        Hybrid only: its forecasts join the observation. PPO-only and the hybrid train on
        the same rows: episodes start after ``score_initial_window`` periods in both.
        Training-period forecasts are made out-of-sample by an inner walk-forward (refit
        every ``score_refit_every`` periods on the history so far, starting after
        ``score_initial_window`` periods), so the agent never learns to trust a leaked
        signal; test-period forecasts are refit on the same schedule.
    agent_path : str, optional
        Load a trained agent instead of training one (its settings must match).
    agent_bytes : bytes, optional
        The contents of the agent file, read where the run is planned: the agent is then
        loaded from them, never from ``agent_path``, which only names it in messages. A run
        on a Ray cluster fits the strategy on a worker that may not see the planning
        machine's files (:meth:`PPOSpec.arguments` fills it).
    reward : RewardSettings, optional
        What each training step pays (:mod:`dynafolio.rl.rewards`; default ``log_return``).
    features : tuple of str, optional
        Model inputs (:mod:`dynafolio.model_inputs`) the state reads beside each asset's
        returns, e.g. ``("ff_factors",)`` (the Fama–French factors, the same for every asset;
        on data inside 1960–2018). Each decision's are computed from the prices up to it,
        as the environment's are in training; they enter as they are (the returns do too),
        NaN as 0 and clipped to ±:data:`~dynafolio.rl.task.INPUT_CLIP`. None by default.
    market_asset : str
        The asset whose trend is the ``regime`` input; a saved agent that reads ``regime``
        records it, and one trained on another market asset is refused.
    seed : int
    """

    learned: ClassVar[bool] = True
    #: Its decisions read its own holdings: in a walk-forward, a block's agent starts from
    #: the holdings the previous block left (:meth:`hold_from`), not from cash.
    carries_holdings: ClassVar[bool] = True

    k: TopK = 5
    tau: TopKTau = 0.0
    lookback: Annotated[int, Field(ge=1)] = 30
    transaction_cost: float = 0.001
    lambda_sparse: Annotated[float, Field(ge=0.0)] = 0.0
    settings: PPOSettings = field(default_factory=PPOSettings)
    forecaster: Forecaster | None = None
    score_refit_every: Annotated[int, Field(ge=1)] = 26
    score_initial_window: Annotated[int, Field(ge=10)] = 104
    agent_path: str | None = None
    # Not a setting: the file's contents, excluded from the config (PPOSpec) and the repr.
    agent_bytes: bytes | None = field(default=None, repr=False)
    features: tuple[FeatureName, ...] = ()
    market_asset: Annotated[str, Field(min_length=1, max_length=MAX_NAME)] = "SPY"
    seed: int = 0
    reward: Annotated[
        RewardSettings,
        Field(description="log_return (default), differential_sharpe (eta) or downside (lam)"),
    ] = field(default_factory=RewardSettings)

    @property
    def name(self) -> str:
        return f"{'Hybrid' if self.forecaster is not None else 'PPO-only'} Top-{self.k}"

    def universe_problem(self, n_assets: int, train_periods: int | None = None) -> str | None:
        if self.settings.policy != "mlp":
            return None
        inputs = PortfolioEnv.observation_size(n_assets, self.lookback, self.extra_columns)
        if inputs <= MLP_MAX_INPUTS:
            return None
        return (
            f"the MLP policy reads the whole observation, {inputs:,} inputs for {n_assets} "
            f"assets (lookback {self.lookback}): its first layer grows with the universe, and "
            f"it fails the known-answer checks already at 20 assets. Use `ppo.policy: "
            f"per_asset` (the default), whose size does not depend on the number of assets, "
            f"or at most {MLP_MAX_INPUTS:,} inputs (fewer assets or a shorter lookback)"
        )

    def fit(self, history: MarketHistory) -> Self:
        super().fit(history)
        returns = history.returns.to_numpy(dtype=float)
        # PPO-only and the hybrid train on the same rows — episodes start after the hybrid's
        # forecaster warm-up in both — so that the ablation changes one thing only: the
        # forecasts in the state.
        scores, start = None, self.score_initial_window
        if self.forecaster is not None:
            scores = self._training_scores(history)
        if self.loads_agent:
            self.agent_ = self.load_agent()
            self.check_agent(self.agent_, list(history.assets))
        else:
            self.agent_ = train_agent(
                returns,
                k=self.k,
                tau=self.tau,
                lookback=self.lookback,
                transaction_cost=self.transaction_cost,
                lambda_sparse=self.lambda_sparse,
                scores=scores,
                start=start,
                settings=self.settings,
                seed=self.seed,
                label=self.name,
                carried_returns=history.carried_returns.to_numpy(dtype=float),
                dates=history.returns.index,
                reward=self.reward,
                inputs=self._inputs(history) if self.features else None,
                features=self.features,
                market_asset=self.market_asset,
            )
        # The holdings the portfolio starts from: cash, or a previous block's (hold_from).
        self.previous_, self.previous_date_ = getattr(self, "carried_", (None, None))
        if self.forecaster is not None:
            replay = getattr(self, "replay_", {}).get("test")
            self.test_scores_ = ForecastStream(self.forecaster, self.score_schedule, replay)
        return self

    @property
    def loads_agent(self) -> bool:
        """Whether :meth:`fit` loads a saved agent (``agent_path`` or ``agent_bytes``)
        instead of training one."""
        return self.agent_path is not None or self.agent_bytes is not None

    def load_agent(self) -> TrainedAgent:
        """The saved agent: from ``agent_bytes`` where given (the file is never opened
        then), else from ``agent_path``. Errors name ``agent_path`` either way.

        Raises
        ------
        DataError
            If the file or the bytes are not a valid agent file.
        """
        if self.agent_bytes is not None:
            return TrainedAgent.from_bytes(self.agent_bytes, self.agent_path or "agent_bytes")
        if self.agent_path is None:
            raise ValueError(f"{self.name} has no saved agent: give agent_path or agent_bytes")
        return TrainedAgent.load(self.agent_path)

    def weights(self, history: MarketHistory) -> pd.Series:
        if not hasattr(self, "agent_"):
            raise RuntimeError(f"{self.name} is not fitted; call fit() first")
        returns = history.returns
        if len(returns) < self.lookback + 1:
            raise DataError(
                f"{self.name} on {history.date.date()}: needs {self.lookback} periods of returns"
            )
        window = np.clip(
            np.nan_to_num(returns.iloc[-self.lookback :].to_numpy(float)), -RETURN_CLIP, RETURN_CLIP
        )
        parts = [window.reshape(-1), np.clip(self._drifted(history), 0.0, 1.0)]
        # Each asset's extra columns, asset-major, as the environment lays them out.
        extras = []
        if self.forecaster is not None:
            extras.append(self._scores_now(history)[:, None])
        if self.features:
            extras.append(clean_inputs(self._inputs(history)[-1]))
        if extras:
            parts.append(np.concatenate(extras, axis=1).reshape(-1))
        logits = self.agent_.act(np.concatenate(parts)[None].astype(np.float32))[0]
        tradable = returns.iloc[-1].notna().to_numpy()
        target = pd.Series(top_k_weights(logits, self.k, self.tau, tradable), index=history.assets)
        self.previous_, self.previous_date_ = target, history.date
        return target

    def hold_from(self, weights: pd.Series, date: pd.Timestamp) -> None:
        """Start from ``weights`` held after the decision at ``date`` (before :meth:`fit`): a
        walk-forward block continues the portfolio the previous block left. The first
        observation then holds them drifted through the returns since ``date``, exactly the
        holdings the joined record trades from."""
        self.carried_ = (weights.astype(float), pd.Timestamp(date))

    def holding(self, weights: pd.Series, date: pd.Timestamp) -> None:
        """Decide next from ``weights`` held now (the state's drifted holdings)."""
        self.previous_, self.previous_date_ = weights.astype(float), pd.Timestamp(date)

    def _drifted(self, history: MarketHistory) -> np.ndarray:
        """The previous target drifted through the returns realised since it was set."""
        if self.previous_ is None:
            return np.zeros(len(history.assets))  # the portfolio starts in cash
        weights = self.previous_.to_numpy()[None]
        # Carried returns, as the engine drifts holdings (a gap earns 0, its resume the move).
        carried = history.carried_returns
        since = carried.loc[carried.index > self.previous_date_]
        for row in since.to_numpy(dtype=float):
            weights = rebalance_step(weights, weights, row[None], _NO_COST).weights_end
        return weights[0]

    @property
    def extra_columns(self) -> int:
        """State columns per asset after its returns and weight: the forecast, the inputs."""
        return int(self.forecaster is not None) + input_columns(self.features)

    def _inputs(self, history: MarketHistory) -> np.ndarray:
        """The state's model inputs at every row of ``history``, ``(n_rows, n_assets, n)``."""
        features = FeatureSet(tuple(self.features), market=self.market_asset)
        return features.build(history.prices)

    @property
    def score_schedule(self) -> RefitSchedule:
        """Refits of the hybrid's forecaster, in training and at test time alike."""
        return RefitSchedule(self.score_refit_every)

    def streams(self, decision_rows: list[int], first_row: int = 0) -> dict[str, StreamSpec]:
        """The hybrid's forecast streams: ``"train"`` over the training rows after the initial
        window, ``"test"`` over the decisions (PPO-only has none)."""
        if self.forecaster is None:
            return {}
        train_rows = tuple(range(first_row + self.score_initial_window, decision_rows[0] + 1))
        schedule = self.score_schedule
        return {
            "train": StreamSpec(self.forecaster, schedule, train_rows, first_row),
            "test": StreamSpec(self.forecaster, schedule, tuple(decision_rows), first_row),
        }

    def _scores_now(self, history: MarketHistory) -> np.ndarray:
        forecast = self.test_scores_.forecast(history)
        return _standardise(forecast.reindex(history.assets))

    def _training_scores(self, history: MarketHistory) -> np.ndarray:
        """Out-of-sample forecasts for every training row after the initial window."""
        n = len(history.prices)
        if n <= self.score_initial_window + self.lookback:
            raise DataError(
                f"{self.name}: {n} training periods are too few for an initial forecaster "
                f"window of {self.score_initial_window}; lower score_initial_window"
            )
        replay = getattr(self, "replay_", {}).get("train")
        stream = ForecastStream(self.forecaster, self.score_schedule, replay)
        scores = np.full((n, len(history.assets)), np.nan)
        for row in range(self.score_initial_window, n):
            forecast = stream.forecast(_until(history, row))
            scores[row] = _standardise(forecast.reindex(history.assets))
        return scores

    def forecasts_made(self) -> dict[str, pd.DataFrame]:
        if self.forecaster is None or not hasattr(self, "test_scores_"):
            return {}
        return {"test": self.test_scores_.frame()}

    def learnability_check(
        self,
        n_assets: int,
        n_periods: int,
        train_periods: int,
        periods_per_year: int,
        seed: int,
        first_date: str | None = None,
    ) -> LearnabilityCheck | None:
        """This allocator's configuration on a known-answer market of its run's shape, dated
        from the run's ``first_date`` (:mod:`dynafolio.rl.learnability`); None for a loaded
        agent (nothing trains)."""
        if self.loads_agent:
            return None
        return LearnabilityCheck(
            n_assets=n_assets,
            n_periods=n_periods,
            train_periods=train_periods,
            start=self.score_initial_window,
            k=self.k,
            tau=self.tau,
            lookback=self.lookback,
            transaction_cost=self.transaction_cost,
            lambda_sparse=self.lambda_sparse,
            with_scores=self.forecaster is not None,
            settings=self.settings or PPOSettings(),
            reward=self.reward or RewardSettings(),
            periods_per_year=periods_per_year,
            seed=seed,
            features=tuple(self.features),
            first_date=first_date,
        )

    def check_agent(self, agent: TrainedAgent, assets: list) -> None:
        """Refuse a saved agent that was trained for other settings or another asset count.

        Raises
        ------
        DataError
            Naming the agent file, what it was trained with and what this strategy needs.
        """
        expected = {
            "lookback": self.lookback,
            "k": self.k,
            "with_scores": self.forecaster is not None,
            "features": tuple(self.features),
            "market_asset": recorded_market(tuple(self.features), self.market_asset),
        }
        saved = {key: getattr(agent.env_settings, key) for key in expected}
        size = agent.obs_mean.size
        needed = PortfolioEnv.observation_size(len(assets), self.lookback, self.extra_columns)
        if saved != expected or size != needed:
            differ = [f"{key} {saved[key]!r} (this strategy: {expected[key]!r})"
                      for key in expected if saved[key] != expected[key]]  # fmt: skip
            if size != needed:
                differ.append(f"{size} inputs (this strategy: {needed} for {len(assets)} assets)")
            raise DataError(
                f"agent {self.agent_path or 'agent_bytes'} was trained with "
                f"{'; '.join(differ)}. It was trained with {saved} and {size} inputs; this "
                f"strategy needs {expected} and {needed} inputs ({len(assets)} assets). Set "
                "the strategy's settings to the agent's, use an agent trained with the same "
                "settings and assets, or remove agent_path"
            )


def _until(history: MarketHistory, row: int) -> MarketHistory:
    return MarketHistory(history.prices.iloc[: row + 1], history.returns.iloc[: row + 1])


def _standardise(forecast: pd.Series) -> np.ndarray:
    """Cross-sectional z-scores of the forecasts (0 where missing), clipped like the env."""
    values = forecast.to_numpy(dtype=float)
    z = np.zeros_like(values)
    known = np.isfinite(values)
    if known.any():
        z[known] = cross_sectional_zscore(values[known])
    return np.clip(z, -SCORE_CLIP, SCORE_CLIP)


# ------------------------------------------------------------------ config declarations
PPOParams = params_model(PPOSettings, "PPOParams", __name__)


@register_strategy
class PPOSpec(
    spec_fields(
        PPOAllocatorStrategy, exclude={"settings", "forecaster", "agent_path", "agent_bytes"}
    )
):
    """``ppo_topk`` (S1): a PPO Top-K allocator; with a ``forecaster`` the hybrid LSTM+PPO.

    With ``agent_path``, the file is read once, when the config is read, and its contents
    travel with the spec to every process that builds the strategy: a Ray worker on another
    node fits it without opening the path (which exists only on the machine that planned the
    run). The bytes are not a setting: no dump, name or config file shows them. They are
    checked where they are loaded (:meth:`TrainedAgent.from_bytes`), and the run's planning
    refuses an unreadable or invalid file first, naming ``agent_path``.
    """

    kind: Literal["ppo_topk"]
    ppo: PPOParams = Field(  # type: ignore[valid-type]
        default_factory=PPOParams, description="PPO hyper-parameters and training budget"
    )
    forecaster: ForecasterUnion | None = Field(None, description="hybrid: forecasts in the state")
    agent_path: Path | None = Field(None, description="load a saved agent instead of training")
    strategy_class: ClassVar = PPOAllocatorStrategy
    _agent_bytes: bytes | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _features_once(self) -> Self:
        input_columns(self.features)  # refuses a feature listed twice
        return self

    @model_validator(mode="after")
    def _read_agent(self) -> Self:
        if self.agent_path is not None:
            try:
                self._agent_bytes = TrainedAgent.read_bytes(self.agent_path)
            except DataError:
                # Not refused here: planning the run loads the file and refuses it with the
                # config key (strategies.N.agent_path), and a strategy built without the
                # bytes loads the path itself, with the same message.
                self._agent_bytes = None
        return self

    def arguments(self, context: BuildContext) -> dict[str, Any]:
        settings = self.ppo.model_dump()
        settings["net_arch"] = tuple(settings["net_arch"])
        return {
            **super().arguments(context),
            "settings": PPOSettings(**settings),
            "agent_path": None if self.agent_path is None else str(self.agent_path),
            "agent_bytes": self._agent_bytes,
        }
