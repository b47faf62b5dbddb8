"""Can this PPO configuration learn at all? A known-answer test of the same shape.

A PPO allocator that loses to chance on real data says nothing about its method unless it is
known to learn a planted edge. :func:`check_learnability` trains the configuration — the
same number of assets, K, lookback, training rows, budget, policy, reward and costs — on the
known-answer market that fits it (:mod:`dynafolio.data.markets`) and measures the share of
the oracle's Sharpe ratio it reaches on the market's test rows:

* a learner that reads forecasts (the hybrid) gets ``foresight``: its scores are the true
  next returns, standardised across assets as the hybrid standardises its forecasts, so
  the oracle is the Top-K rule on them — the ceiling of any allocator that reads scores;
* a learner that reads only returns (PPO-only) gets a strong ``momentum`` market (φ = 0.5),
  where the oracle is the Top-K rule on the last return.

A learner whose state reads model inputs (``features``, e.g. the Fama–French factors) reads
the same inputs on the known-answer market — dated like its run, so data-based inputs such as
the factors are the real ones of those dates, and price-based ones are computed on the
market's prices — a block of the same shape that carries no edge: the check then also asks
whether the learner still finds the edge beside inputs it must learn to ignore.

Both the agent and the oracle trade through the same Top-K projection and pay the same costs.
The configuration *passes* when it reaches :data:`PASS_SHARE` of the oracle's Sharpe ratio.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dynafolio.data.markets import KnownMarket, MarketSettings, best_forecast, generate_market
from dynafolio.model_inputs import FeatureSet
from dynafolio.rl.env import PortfolioEnv
from dynafolio.rl.rewards import RewardSettings
from dynafolio.rl.settings import PPOSettings
from dynafolio.rl.training import train_agent

__all__ = [
    "PASS_SHARE",
    "LearnabilityCheck",
    "LearnabilityResult",
    "check_learnability",
    "score_policy",
]

#: Share of the oracle's Sharpe ratio a configuration must reach to pass.
PASS_SHARE = 0.5
#: φ of the momentum market for learners that read only returns (a strong, easy edge).
MOMENTUM_PHI = 0.5
#: Random-logit policies averaged for the chance level.
_RANDOM_DRAWS = 100


@dataclass(frozen=True)
class LearnabilityCheck:
    """One PPO configuration and the shape of the market it is tested on.

    ``n_periods`` rows of which the first ``train_periods`` train (episodes start at row
    ``start``, as in the real run: after the hybrid's forecaster warm-up) and the rest test.
    ``first_date`` (ISO) and ``periods_per_year`` date the market like the run. The other
    fields are the agent's: see :func:`~dynafolio.rl.training.train_agent`; ``features`` are
    its state's model inputs (the regime input follows the market's first asset).
    """

    n_assets: int
    n_periods: int
    train_periods: int
    start: int
    k: int
    tau: float
    lookback: int
    transaction_cost: float
    lambda_sparse: float
    with_scores: bool
    settings: PPOSettings
    reward: RewardSettings
    periods_per_year: int = 52
    seed: int = 0
    features: tuple[str, ...] = ()
    first_date: str | None = None

    def __post_init__(self) -> None:
        if self.features and self.first_date is None:
            # Inputs such as the Fama–French factors exist only on real dates.
            raise ValueError(
                f"a check whose state reads features {list(self.features)} needs first_date, "
                "the run's first date, to date its market like the run"
            )
        if self.features and self.periods_per_year not in (4, 12, 52, 252, 365):
            raise ValueError(
                f"a check with features dates its market at 4, 12, 52 or 252 periods a year "
                f"(quarters, months, weeks, business days); this run has "
                f"{self.periods_per_year}: resample the data (data.frequency)"
            )

    @property
    def market(self) -> KnownMarket:
        dated = {}
        if self.first_date is not None:
            frequency = {52: "W", 12: "M", 4: "Q"}.get(self.periods_per_year, "D")
            dated = {"start": dt.date.fromisoformat(self.first_date), "frequency": frequency}
        settings = MarketSettings(
            n_assets=self.n_assets,
            n_periods=self.n_periods,
            phi=MOMENTUM_PHI,
            seed=self.seed,
            **dated,
        )
        return KnownMarket(kind="foresight" if self.with_scores else "momentum", settings=settings)

    @property
    def key(self) -> str:
        """Equal keys, equal checks: a run tests each distinct configuration once."""
        return repr(dataclasses.astuple(self))


@dataclass(frozen=True)
class LearnabilityResult:
    """What a configuration reached on its known-answer market's test rows (net Sharpe
    ratios, annualised): the agent, the oracle, random logits on average."""

    market: str
    sharpe: float
    oracle_sharpe: float
    random_sharpe: float
    timesteps: int

    @property
    def share(self) -> float:
        """The agent's Sharpe ratio as a share of the oracle's (NaN if the oracle's is ≤ 0)."""
        return self.sharpe / self.oracle_sharpe if self.oracle_sharpe > 0 else float("nan")

    @property
    def passed(self) -> bool:
        return bool(self.share >= PASS_SHARE)

    def as_dict(self) -> dict[str, float | str | bool | int | None]:
        """JSON-ready (NaN as None)."""
        fields = {k: None if v != v else v for k, v in dataclasses.asdict(self).items()}
        share = self.share
        return {
            **fields,
            "share_of_oracle": None if share != share else share,
            "passed": self.passed,
            "pass_share": PASS_SHARE,
        }


def _zscores(values: np.ndarray) -> np.ndarray:
    """Cross-sectional z-scores per row (0 where a row has no spread or no value)."""
    known = np.isfinite(values)
    count = np.maximum(known.sum(axis=1, keepdims=True), 1)
    filled = np.where(known, values, 0.0)
    mean = filled.sum(axis=1, keepdims=True) / count
    std = np.sqrt((np.where(known, values - mean, 0.0) ** 2).sum(axis=1, keepdims=True) / count)
    z = np.divide(values - mean, std, out=np.zeros_like(values), where=known & (std > 0))
    return z


def check_learnability(check: LearnabilityCheck) -> LearnabilityResult:
    """Train ``check``'s configuration on its known-answer market and score it on the test rows.

    Deterministic given ``check`` (its ``seed`` seeds the market and the agent).
    """
    returns, scores, _ = _market_inputs(check)
    inputs = _model_inputs(check)
    agent = train_agent(
        returns[: check.train_periods],
        k=check.k,
        tau=check.tau,
        lookback=check.lookback,
        transaction_cost=check.transaction_cost,
        lambda_sparse=check.lambda_sparse,
        scores=None if scores is None else scores[: check.train_periods],
        start=check.start,
        settings=check.settings,
        seed=check.seed,
        label=f"learnability check on {check.market.kind}",
        reward=check.reward,
        inputs=None if inputs is None else inputs[: check.train_periods],
        features=check.features,
        market_asset=_regime_market(check),
    )
    return score_policy(check, agent.act, agent.num_timesteps)


def _market_inputs(check: LearnabilityCheck) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Simple returns, the scores a learner reads (or None) and the best forecasts, each of
    shape ``(n_periods, n_assets)``."""
    market = check.market
    prices = generate_market(market)
    returns = prices.pct_change(fill_method=None).to_numpy()
    forecasts = np.array([best_forecast(market, date).to_numpy() for date in prices.index])
    scores = None
    if check.with_scores:
        scores = _zscores(forecasts)
        scores[: check.start] = np.nan  # no forecasts before the warm-up, as in the hybrid
    return returns, scores, forecasts


def _model_inputs(check: LearnabilityCheck) -> np.ndarray | None:
    """The check's model inputs on its market, ``(n_periods, n_assets, n_columns)``, or None."""
    if not check.features:
        return None
    prices = generate_market(check.market)
    return FeatureSet(check.features, market=_regime_market(check)).build(prices)


def _regime_market(check: LearnabilityCheck) -> str:
    """The asset whose trend the ``regime`` input reads on the check's market: its first."""
    return check.market.asset_names[0]


def score_policy(
    check: LearnabilityCheck, act: Callable[[np.ndarray], np.ndarray], timesteps: int = 0
) -> LearnabilityResult:
    """Run ``act`` (observations ``(batch, size)`` -> logits) through the market's test rows
    beside the oracle and random logits; the Sharpe ratios of the three."""
    returns, scores, forecasts = _market_inputs(check)
    test = PortfolioEnv(
        returns,
        lookback=check.lookback,
        k=check.k,
        tau=check.tau,
        transaction_cost=check.transaction_cost,
        scores=scores,
        inputs=_model_inputs(check),
        start=check.train_periods - 1,
        random_start=False,
    )
    oracle_logits = _zscores(forecasts)
    rows = iter(range(test.task.first_row, test.task.last_row + 1))
    oracle = test.rollout(lambda obs: oracle_logits[next(rows)])
    learned = test.rollout(lambda obs: act(obs[None])[0])
    rng = np.random.default_rng([check.seed, 7])
    chance = [
        _sharpe(test.rollout(lambda obs: rng.standard_normal(check.n_assets)).net, check)
        for _ in range(_RANDOM_DRAWS)
    ]
    return LearnabilityResult(
        market=check.market.label,
        sharpe=_sharpe(learned.net, check),
        oracle_sharpe=_sharpe(oracle.net, check),
        random_sharpe=float(np.mean(chance)),
        timesteps=timesteps,
    )


def _sharpe(net: np.ndarray, check: LearnabilityCheck) -> float:
    std = np.std(net, ddof=1)
    return float(np.mean(net) / std * np.sqrt(check.periods_per_year)) if std > 0 else float("nan")
