"""Turn validated strategy entries of a config into strategy objects."""

from __future__ import annotations

import inspect
from typing import Any

from dynafolio.errors import ConfigError
from dynafolio.experiments.config import (
    BuyAndHoldSpec,
    CompositeSpec,
    DrawdownAllocatorSpec,
    EqualWeightSpec,
    EstimatedSpec,
    ForecasterSpec,
    PPOSpec,
    PriceRuleSpec,
    SignalSpec,
    StrategySpec,
    TopKSpec,
)
from dynafolio.strategies import (
    AssetClassCompositeStrategy,
    BuyAndHoldStrategy,
    EqualWeightStrategy,
    HERCStrategy,
    HRPStrategy,
    InverseVolatilityStrategy,
    MaxSharpeStrategy,
    MinimumVarianceStrategy,
    Strategy,
)

_ESTIMATED = {
    "inverse_volatility": InverseVolatilityStrategy,
    "minimum_variance": MinimumVarianceStrategy,
    "max_sharpe": MaxSharpeStrategy,
    "hrp": HRPStrategy,
    "herc": HERCStrategy,
}

#: Short display names of the forecaster families (used in strategy names).
MODEL_LABELS = {
    "univariate_lstm": "LSTM",
    "univariate_lstm_loop": "LSTM",
    "stacked_lstm": "LSTM",
    "stacked_gru": "GRU",
    "transformer": "Transformer",
    "price_lstm": "LSTM",
}


def build_forecaster(spec: ForecasterSpec, seed: int, where: str):
    """Instantiate a forecaster; unknown hyper-parameters are reported by name."""
    # torch is imported only when a learned strategy is actually built.
    from dynafolio.forecast import lstm

    classes: dict[str, tuple[type, dict[str, Any]]] = {
        "univariate_lstm": (lstm.UnivariateLSTMForecaster, {}),
        "univariate_lstm_loop": (lstm.UnivariateLSTMForecaster, {"batched": False}),
        "stacked_lstm": (lstm.StackedLSTMForecaster, {"cell": "lstm"}),
        "stacked_gru": (lstm.StackedLSTMForecaster, {"cell": "gru"}),
        "transformer": (lstm.TransformerForecaster, {}),
        "price_lstm": (lstm.PriceLSTMForecaster, {}),
    }
    cls, fixed = classes[spec.model]
    kwargs = {**fixed, **spec.params, "seed": seed}
    return cls(**_checked(cls, kwargs, f"{where}.forecaster.params"))


def _checked(cls: type, kwargs: dict[str, Any], where: str) -> dict[str, Any]:
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ConfigError(
            f"{where}: {unknown} not accepted by {cls.__name__}; valid: {sorted(accepted)}"
        )
    return kwargs


def build_strategy(
    spec: StrategySpec,
    asset_classes: dict[str, str],
    risk_free_per_period: float,
    seed: int = 0,
    where: str = "strategies",
    transaction_cost: float = 0.001,
) -> Strategy:
    """Instantiate the strategy a config entry describes, seeded with ``seed`` if learned."""
    if isinstance(spec, EqualWeightSpec):
        return EqualWeightStrategy()
    if isinstance(spec, BuyAndHoldSpec):
        return BuyAndHoldStrategy(asset=spec.asset)
    if isinstance(spec, CompositeSpec):
        if not asset_classes:
            raise ConfigError(
                f"{where}: asset_class_composite needs asset classes, which only embedded "
                "datasets provide; remove it when using --data FILE"
            )
        return AssetClassCompositeStrategy(asset_classes)
    if isinstance(spec, EstimatedSpec):
        kwargs: dict[str, Any] = dict(
            estimation=spec.estimation,
            window=spec.window,
            min_coverage=spec.min_coverage,
            min_periods=spec.min_periods,
        )
        if spec.kind == "max_sharpe":
            return MaxSharpeStrategy(**kwargs, risk_free_rate=risk_free_per_period)
        return _ESTIMATED[spec.kind](**kwargs)
    if isinstance(spec, TopKSpec | SignalSpec | PriceRuleSpec):
        walk = {"retrain_every": spec.retrain_every, "train_window": spec.train_window}
        forecaster = build_forecaster(spec.forecaster, seed, where)
        family = MODEL_LABELS[spec.forecaster.model]
    if isinstance(spec, TopKSpec):
        from dynafolio.strategies.signal import TopKForecastStrategy

        return TopKForecastStrategy(forecaster, k=spec.k, tau=spec.tau, label=family, **walk)
    if isinstance(spec, SignalSpec):
        from dynafolio.strategies import signal

        allocation = {
            "clip": signal.SignalWeightStrategy,
            "inverse_vol": signal.SignalInverseVolStrategy,
            "mean_variance": signal.ForecastMeanVarianceStrategy,
            "hrp": signal.ForecastHRPStrategy,
        }[spec.allocation]
        return allocation(forecaster, label=family, **walk)
    if isinstance(spec, PriceRuleSpec):
        from dynafolio.strategies.rule import PriceRuleStrategy

        return PriceRuleStrategy(forecaster, max_position=spec.max_position, **walk)
    if isinstance(spec, DrawdownAllocatorSpec):
        from dynafolio.strategies.e2e import DrawdownLSTMAllocator

        kwargs = {**spec.params, "lam": spec.lam, "retrain_every": spec.retrain_every, "seed": seed}
        return DrawdownLSTMAllocator(**_checked(DrawdownLSTMAllocator, kwargs, f"{where}.params"))
    if isinstance(spec, PPOSpec):
        from dynafolio.rl.agents import PPOSettings
        from dynafolio.strategies.rl import PPOAllocatorStrategy

        ppo = _checked(PPOSettings, dict(spec.ppo), f"{where}.ppo")
        if "net_arch" in ppo:
            ppo["net_arch"] = tuple(ppo["net_arch"])
        forecaster = (
            None if spec.forecaster is None else build_forecaster(spec.forecaster, seed, where)
        )
        return PPOAllocatorStrategy(
            k=spec.k,
            tau=spec.tau,
            lookback=spec.lookback,
            transaction_cost=transaction_cost,
            lambda_sparse=spec.lambda_sparse,
            settings=PPOSettings(**ppo),
            forecaster=forecaster,
            score_refit_every=spec.score_refit_every,
            score_initial_window=spec.score_initial_window,
            agent_path=None if spec.agent_path is None else str(spec.agent_path),
            seed=seed,
        )
    raise ConfigError(f"{where}: unknown strategy {spec!r}")  # pragma: no cover


def is_learned(spec: StrategySpec) -> bool:
    """Whether the entry trains a model (and so runs once per seed)."""
    return isinstance(spec, TopKSpec | SignalSpec | PriceRuleSpec | DrawdownAllocatorSpec | PPOSpec)
