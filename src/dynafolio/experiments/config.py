"""Typed, frozen experiment configuration, validated once (pydantic).

A config file (YAML or TOML) is merged over an experiment's defaults and validated here;
errors name the offending key. The validated object is written into the run manifest and
never mutated afterwards.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dynafolio.errors import ConfigError


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Frozen):
    """Where prices come from and how they are prepared."""

    dataset: str = Field(
        "multiasset", description="embedded dataset name (ignored when path is set)"
    )
    path: Path | None = Field(
        None, description="CSV/Parquet price file (wide or long) instead of a dataset"
    )
    assets: tuple[str, ...] | None = Field(None, description="subset of assets; default all")
    start: dt.date | None = Field(None, description="first date kept")
    end: dt.date | None = Field(None, description="last date kept")
    frequency: str = Field("W", description="D, W (weekly, Friday close), M or Q")
    calendar: Literal["union", "common"] = Field(
        "union",
        description="union: every date any asset trades (weekends filled for stocks up to "
        "max_gap); common: only dates on which every selected asset has a price",
    )
    max_gap: int = Field(
        5,
        ge=0,
        description="longest run of missing prices forward-filled (rows of the source data)",
    )


class SplitConfig(_Frozen):
    """Chronological train/test split: a fraction or a first test date."""

    train_fraction: float | None = Field(0.7, gt=0.0, lt=1.0)
    test_start: dt.date | None = None


class BacktestConfig(_Frozen):
    """Engine settings shared by every strategy of the experiment."""

    transaction_cost: float = Field(
        0.001, ge=0.0, lt=1.0, description="cost per unit of one-way turnover"
    )
    rebalance_every: int = Field(
        1, ge=1, description="trade every k periods; weights drift in between"
    )
    long_only: bool = True
    max_gross_leverage: float = Field(1.0, gt=0.0)
    max_position: float = Field(1.0, gt=0.0, le=10.0)
    risk_free_rate: float = Field(
        0.0, ge=-0.05, le=0.5, description="annual rate for Sharpe/Sortino"
    )


class ConstraintsSpec(_Frozen):
    """Per-strategy portfolio limits; unset fields inherit the experiment's ``backtest``."""

    long_only: bool | None = None
    max_gross_leverage: float | None = Field(None, gt=0.0)
    max_position: float | None = Field(None, gt=0.0, le=10.0)


class _Spec(_Frozen):
    """Fields every strategy entry accepts."""

    name: str | None = Field(None, description="display name (default: derived from the settings)")
    universe: tuple[str, ...] | None = Field(
        None, description="assets this strategy may hold (default: every asset in the data)"
    )
    constraints: ConstraintsSpec | None = Field(
        None, description="portfolio limits of this strategy (default: the backtest's)"
    )


class EqualWeightSpec(_Spec):
    kind: Literal["equal_weight"]


class BuyAndHoldSpec(_Spec):
    kind: Literal["buy_and_hold"]
    asset: str = "SPY"


class CompositeSpec(_Spec):
    kind: Literal["asset_class_composite"]


class EstimatedSpec(_Spec):
    kind: Literal["inverse_volatility", "minimum_variance", "max_sharpe", "hrp", "herc"]
    estimation: Literal["static", "rolling", "expanding"] = "rolling"
    window: int | None = Field(104, ge=2, description="estimation window in periods (rolling)")
    min_coverage: float = Field(0.9, gt=0.0, le=1.0)
    min_periods: int = Field(26, ge=2)

    @model_validator(mode="after")
    def _rolling_needs_window(self) -> EstimatedSpec:
        if self.estimation == "rolling" and self.window is None:
            raise ValueError("a rolling estimate needs `window` (periods)")
        return self


ForecasterModel = Literal[
    "univariate_lstm",
    "univariate_lstm_loop",
    "stacked_lstm",
    "stacked_gru",
    "transformer",
    "price_lstm",
]


class ForecasterSpec(_Frozen):
    """A forecaster and its hyper-parameters (checked against its constructor when built)."""

    model: ForecasterModel = "univariate_lstm"
    params: dict[str, Any] = Field(default_factory=dict, description="constructor arguments")


class _LearnedSpec(_Spec):
    retrain_every: int | None = Field(
        None, ge=1, description="decisions between walk-forward refits (None: fit once)"
    )
    train_window: int | None = Field(
        None, ge=10, description="periods of history per fit (None: expanding)"
    )


class TopKSpec(_LearnedSpec):
    """S1 LSTM-only Top-K: forecasts through the Top-K softmax projection."""

    kind: Literal["forecast_topk"]
    k: int = Field(5, ge=1)
    tau: float = Field(0.0, ge=0.0, lt=1.0)
    forecaster: ForecasterSpec = ForecasterSpec(model="univariate_lstm")


class SignalSpec(_LearnedSpec):
    """S2 allocation from forecasts."""

    kind: Literal["forecast_signal"]
    allocation: Literal["clip", "inverse_vol", "mean_variance", "hrp"] = "clip"
    forecaster: ForecasterSpec = ForecasterSpec(model="stacked_lstm")


class PriceRuleSpec(_LearnedSpec):
    """S4 buy-risers / sell-fallers rule on price forecasts."""

    kind: Literal["price_rule"]
    max_position: float = Field(1 / 3, gt=0.0, le=1.0)
    forecaster: ForecasterSpec = ForecasterSpec(model="price_lstm")


class DrawdownAllocatorSpec(_Spec):
    """S3 end-to-end LSTM allocator trained with the drawdown-sensitive loss."""

    kind: Literal["e2e_drawdown"]
    lam: float = Field(10.0, ge=0.0)
    retrain_every: int | None = Field(None, ge=1)
    params: dict[str, Any] = Field(default_factory=dict, description="constructor arguments")


class PPOSpec(_Spec):
    """S1 PPO Top-K allocator; with a ``forecaster`` it is the hybrid LSTM+PPO."""

    kind: Literal["ppo_topk"]
    k: int = Field(5, ge=1)
    tau: float = Field(0.0, ge=0.0, lt=1.0)
    lookback: int = Field(30, ge=1)
    lambda_sparse: float = Field(0.0, ge=0.0)
    ppo: dict[str, Any] = Field(default_factory=dict, description="PPOSettings overrides")
    forecaster: ForecasterSpec | None = Field(None, description="hybrid: forecasts in the state")
    score_refit_every: int = Field(26, ge=1)
    score_initial_window: int = Field(104, ge=10)
    agent_path: Path | None = Field(None, description="load a saved agent instead of training")


StrategySpec = Annotated[
    EqualWeightSpec
    | BuyAndHoldSpec
    | CompositeSpec
    | EstimatedSpec
    | TopKSpec
    | SignalSpec
    | PriceRuleSpec
    | DrawdownAllocatorSpec
    | PPOSpec,
    Field(discriminator="kind"),
]


class ExperimentConfig(_Frozen):
    """One experiment: data, split, engine settings, strategies, seeds, stress windows."""

    name: str
    title: str = ""
    data: DataConfig = DataConfig()
    split: SplitConfig = SplitConfig()
    backtest: BacktestConfig = BacktestConfig()
    strategies: tuple[StrategySpec, ...]
    seed: int = Field(
        0, ge=0, description="first seed; learned strategies run seeds seed..seed+n_seeds-1"
    )
    n_seeds: int = Field(
        3, ge=1, description="seeds per learned strategy (deterministic rules run once)"
    )
    benchmark: str = Field("Equal weight", description="strategy name the others are compared with")
    index_asset: str = Field("SPY", description="asset used for rolling alpha/beta")
    rolling_window: int = Field(26, ge=4, description="periods of the rolling alpha/beta window")
    stress_windows: dict[str, tuple[dt.date, dt.date]] = Field(default_factory=dict)
    notes: tuple[str, ...] = Field((), description="caveats printed with the results")
    plot_groups: dict[str, tuple[str, ...]] = Field(
        default_factory=dict, description="panel title -> strategy names charted together"
    )

    @model_validator(mode="after")
    def _check(self) -> ExperimentConfig:
        if not self.strategies:
            raise ValueError("`strategies` is empty: list at least one strategy")
        for name, (start, end) in self.stress_windows.items():
            if end < start:
                raise ValueError(f"stress window {name!r} ends before it starts")
        return self

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(range(self.seed, self.seed + self.n_seeds))


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``) or TOML (``.toml``) file into a plain dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        elif path.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            raise ConfigError(f"config file {path}: use a .yaml, .yml or .toml file")
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(
            f"config file {path} is not valid {path.suffix[1:].upper()}: {error}"
        ) from error
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping of keys, not {type(data).__name__}"
        )
    return data


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; lists and scalars in ``override`` replace those in ``base``."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def validate_config(data: dict[str, Any], source: str = "config") -> ExperimentConfig:
    """Validate a dict into an :class:`ExperimentConfig`; errors name each bad key."""
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as error:
        lines = []
        for problem in error.errors():
            key = ".".join(str(part) for part in problem["loc"]) or "(top level)"
            given = problem.get("input")
            shown = "" if isinstance(given, dict) else f" (got {given!r})"
            lines.append(f"  {key}: {problem['msg']}{shown}")
        raise ConfigError(f"invalid {source}:\n" + "\n".join(lines)) from None
