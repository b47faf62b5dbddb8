"""Typed, frozen experiment configuration, validated once (pydantic).

A config file (YAML or TOML) is merged over an experiment's defaults and validated here;
errors name the offending key. The validated object is written into the run manifest and
never mutated afterwards.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from dynafolio.data.markets import MARKET_KINDS, KnownMarket, MarketSettings
from dynafolio.devices import Device
from dynafolio.errors import ConfigError, DataError
from dynafolio.safe_files import Limits, load_toml, load_yaml, read_bytes
from dynafolio.settings import Settings
from dynafolio.splits import Split, chronological_split, walk_forward_folds
from dynafolio.strategies.kinds import STRATEGY_SPECS, StrategySpecUnion
from dynafolio.strategies.registry import DisplayName


class DataConfig(Settings):
    """Where prices come from and how they are prepared."""

    dataset: str = Field(
        "multiasset",
        description="embedded dataset or known-answer market (noise, momentum, foresight, "
        "static_edge) name; ignored when path is set",
    )
    market: MarketSettings = Field(
        default_factory=MarketSettings,
        description="settings of a known-answer market dataset (n_assets, n_periods, phi, "
        "sigma, drift, edge, n_edge, seed, start, frequency)",
    )
    path: Path | None = Field(
        None, description="CSV/Parquet price file (wide or long) instead of a dataset"
    )
    assets: tuple[str, ...] | None = Field(
        None, description="subset of assets (at least one); default all"
    )
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
    date_format: str | None = Field(
        None,
        description="strptime format of the file's dates, e.g. '%d/%m/%Y'; needed only when "
        "the dates are ambiguous (01/02/2020: 1 February or 2 January?)",
    )

    @field_validator("assets")
    @classmethod
    def _some_assets(cls, assets: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if assets is not None and len(assets) == 0:
            raise ValueError("the list is empty: name at least one asset, or leave the key out")
        if assets is not None and len(set(assets)) != len(assets):
            twice = sorted({a for a in assets if assets.count(a) > 1})
            raise ValueError(f"{twice} appear more than once; list each asset once")
        return assets

    @model_validator(mode="after")
    def _market_settings_for_a_market(self) -> DataConfig:
        # Default settings are no choice (a dumped config carries them for any dataset).
        if self.market != MarketSettings() and self.known_market is None:
            raise ValueError(
                f"market settings apply to the known-answer markets ({', '.join(MARKET_KINDS)}); "
                f"the data is {'the file ' + str(self.path) if self.path else repr(self.dataset)}"
                ": set dataset to one of them or remove market"
            )
        return self

    @property
    def known_market(self) -> KnownMarket | None:
        """The known-answer market the data is generated from (None for real data)."""
        if self.path is not None or self.dataset not in MARKET_KINDS:
            return None
        return KnownMarket(kind=self.dataset, settings=self.market)


class WalkForwardConfig(Settings):
    """Rolling-origin evaluation: test blocks of ``step`` periods from ``first_test`` on, every
    model refit before each block on the data before it; the blocks are scored as one record."""

    first_test: dt.date = Field(description="first date whose return the first block evaluates")
    step: int = Field(
        26, ge=1, description="periods per test block; every model is refit before each block"
    )
    mode: Literal["expanding", "rolling"] = Field(
        "expanding", description="expanding: fit on all data so far; rolling: the last train_window"
    )
    train_window: int | None = Field(
        None, ge=2, description="rolling: periods of data each fold fits on"
    )

    @model_validator(mode="after")
    def _window_for_rolling(self) -> WalkForwardConfig:
        if self.mode == "rolling" and self.train_window is None:
            raise ValueError("mode 'rolling' needs train_window (periods per fit)")
        if self.mode == "expanding" and self.train_window is not None:
            raise ValueError("train_window applies to mode 'rolling' only; remove it or set mode")
        return self


class SplitConfig(Settings):
    """Where the test period is: a chronological split (a fraction or a first test date) or a
    walk-forward of test blocks (``walk_forward``, which then replaces both)."""

    train_fraction: float | None = Field(0.7, gt=0.0, lt=1.0)
    test_start: dt.date | None = None
    walk_forward: WalkForwardConfig | None = None

    @model_validator(mode="after")
    def _one_test_start(self) -> SplitConfig:
        if self.walk_forward is not None and self.test_start is not None:
            raise ValueError(
                "give either test_start or walk_forward.first_test, not both (the walk-forward's "
                "first block starts the test period)"
            )
        return self

    def folds(self, index: pd.DatetimeIndex) -> tuple[Split, ...]:
        """The (train, test) folds over ``index``: one for a chronological split, one per test
        block for a walk-forward. Test blocks are consecutive and cover the test period."""
        wf = self.walk_forward
        if wf is None:
            return (chronological_split(index, self.train_fraction, self.test_start),)
        first = int(index.searchsorted(pd.Timestamp(wf.first_test), side="left"))
        if first < 2 or first > len(index) - 2:
            raise DataError(
                f"split.walk_forward.first_test={wf.first_test} leaves {first} training and "
                f"{len(index) - first} test dates out of {len(index)} "
                f"({index[0].date()}..{index[-1].date()}); both need at least 2"
            )
        if wf.train_window is not None and wf.train_window > first:
            raise DataError(
                f"split.walk_forward.train_window={wf.train_window} is longer than the "
                f"{first} periods before first_test={wf.first_test}; shorten it or start the "
                "walk-forward later"
            )
        window = wf.train_window or first
        folds = list(walk_forward_folds(index, window, wf.step, mode=wf.mode, start=first))
        # A last block shorter than half a step (the data ends just after a refit) joins the
        # block before it: a refit for a few periods would only add noise to the fold tables.
        if len(folds) > 1 and len(folds[-1].test_dates) < max(2, wf.step // 2):
            last = folds.pop()
            folds[-1] = Split(folds[-1].train, slice(folds[-1].test.start, last.test.stop), index)
        return tuple(folds)


class BacktestConfig(Settings):
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
    risk_free: Literal["rate", "ff_factors"] = Field(
        "rate",
        description="rate: risk_free_rate, constant; ff_factors: the daily Fama–French "
        "risk-free rate compounded over each period (data inside 1960–2018, e.g. ff_industries)",
    )


#: One entry of ``strategies``: any registered kind (see :mod:`dynafolio.strategies.kinds`).
StrategySpec = StrategySpecUnion


class ExperimentConfig(Settings):
    """One experiment: data, split, engine settings, strategies, seeds, stress windows."""

    name: DisplayName = Field(description="experiment name; the run directory is named after it")
    analyses: str | None = Field(
        None, description="experiment whose analysis tables to add (s1, s2 ...; None: none)"
    )
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
    device: Device = Field(
        "auto",
        description="where torch models and PPO train: auto (a GPU when torch sees one, else "
        "the CPU), cpu or cuda (refused when torch sees no GPU); CPU results do not depend on "
        "it, GPU results are reproducible on the same GPU but differ from CPU ones",
    )
    benchmark: DisplayName | dict[str, str | int | float] = Field(
        default_factory=lambda: {"kind": "equal_weight"},
        description="the strategy the others are compared with: tags that select exactly one "
        "entry ({kind: random_topk, k: 5}), or its name",
    )
    index_asset: str = Field("SPY", description="asset used for rolling alpha/beta")
    rolling_window: int = Field(26, ge=4, description="periods of the rolling alpha/beta window")
    stress_windows: dict[DisplayName, tuple[dt.date, dt.date]] = Field(default_factory=dict)
    notes: tuple[str, ...] = Field((), description="caveats printed with the results")
    plot_groups: dict[DisplayName, tuple[str, ...]] = Field(
        default_factory=dict, description="panel title -> strategy names charted together"
    )

    @model_validator(mode="after")
    def _check(self) -> ExperimentConfig:
        if not self.strategies:
            raise ValueError("`strategies` is empty: list at least one strategy")
        walk, every = self.split.walk_forward, self.backtest.rebalance_every
        if walk is not None and walk.step % every:
            # Each block opens with a trade; a block that is not a whole number of rebalance
            # periods would trade off the schedule a continuous run keeps.
            raise ValueError(
                f"split.walk_forward.step ({walk.step}) must be a multiple of "
                f"backtest.rebalance_every ({every})"
            )
        for name, (start, end) in self.stress_windows.items():
            if end < start:
                raise ValueError(f"stress window {name!r} ends before it starts")
        return self

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(range(self.seed, self.seed + self.n_seeds))


#: Caps on a config file (:mod:`dynafolio.safe_files`); real configs are a few KB, nested
#: about six deep.
CONFIG_LIMITS = Limits(max_bytes=1 << 20, max_depth=32, max_items=100_000)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``) or TOML (``.toml``) file into a plain dict.

    YAML is read with ``safe_load``: tags such as ``!!python/object`` are refused, so a config
    can never construct Python objects or run code. Size, nesting depth and entry count
    (YAML aliases expanded) are capped by :data:`CONFIG_LIMITS` before the file is parsed
    into a tree, and NaN or infinite numbers are refused.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a directory; pass a .yaml or .toml file")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; check the path")
    if path.suffix not in (".yaml", ".yml", ".toml"):
        raise ConfigError(
            f"config file {path}: use a .yaml, .yml or .toml file (got {path.suffix or 'none'})"
        )
    where = f"config file {path}"
    fix = "a config is a small plain-text YAML or TOML file"
    try:
        raw = read_bytes(path, where, CONFIG_LIMITS.max_bytes, fix)
    except DataError as error:
        raise ConfigError(str(error)) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        kind = "a gzip file" if raw[:2] == b"\x1f\x8b" else "not UTF-8 text"
        raise ConfigError(
            f"config file {path} is {kind} (byte {error.start} cannot be read as text); a "
            "config must be a plain-text YAML or TOML file"
        ) from None
    if "\x00" in text:
        raise ConfigError(
            f"config file {path} contains NUL bytes, so it is not a text file; a config must "
            "be a plain-text YAML or TOML file"
        )
    try:
        if path.suffix in (".yaml", ".yml"):
            data = load_yaml(text, where, CONFIG_LIMITS, fix) or {}
        else:
            data = load_toml(text, where, CONFIG_LIMITS, fix)
    except DataError as error:  # not valid YAML/TOML, too large or deep, non-finite numbers
        raise ConfigError(str(error)) from error.__cause__
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
            loc = list(problem["loc"])
            # strategies.3.ppo_topk.k -> strategies.3.k: the union tag is not a config key.
            if len(loc) > 2 and loc[0] == "strategies" and loc[2] in STRATEGY_SPECS:
                del loc[2]
            # forecaster.stacked_gru.params.x -> forecaster.params.x likewise.
            loc = [p for i, p in enumerate(loc) if not (i and loc[i - 1] == "forecaster")]
            key = ".".join(str(part) for part in loc) or "(top level)"
            given = problem.get("input")
            shown = "" if isinstance(given, dict) else f" (got {given!r})"
            message = problem["msg"].removeprefix("Value error, ")
            if problem["type"] == "extra_forbidden":
                message = (
                    "not a known setting here; check the spelling (`dynafolio strategies` "
                    "lists every kind's settings)"
                )
            lines.append(f"  {key}: {message}{shown}")
        raise ConfigError(f"invalid {source}:\n" + "\n".join(lines)) from None
