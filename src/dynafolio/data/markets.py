"""Known-answer markets: synthetic price panels whose best policy is known.

A learner is evidence about a method only after it has learnt something it was supposed to
learn. Each market here is generated deterministically from its settings (seed included) and
comes with its *best forecast* of the next period's log return, so the best Top-K rule — the
oracle — is known:

============  =================================================  ==========================
market        log returns ``r_t`` of every asset                  best forecast of ``r_{t+1}``
============  =================================================  ==========================
noise         ``drift + ε_t``                                     ``drift`` (nothing to learn)
momentum      ``drift + φ·(r_{t−1} − drift) + ε_t`` (AR(1))       ``drift + φ·(r_t − drift)``
foresight     as ``noise``                                        ``r_{t+1}`` itself (a leak)
static_edge   ``drift + edge·[asset is one of n_edge] + ε_t``     ``drift + edge·[...]``
============  =================================================  ==========================

``ε_t`` are independent normal innovations with standard deviation ``sigma`` per period, the
assets independent of each other. On ``momentum`` the best forecast's cross-sectional
information coefficient is φ and its out-of-sample R² is φ² (a stationary AR(1) has
``corr(r_t, r_{t+1}) = φ``). On ``foresight`` the forecast is the true next return: the
ceiling of any allocator that reads forecasts. It reads the future by design, which is why
the ``oracle`` forecaster (:mod:`dynafolio.forecast.oracle`) that serves it refuses any data
but a known-answer market.

Prices start at 100 on ``start`` and are sampled every ``frequency`` (weekly on Fridays by
default, so the experiments' weekly resampling keeps every row).
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from dynafolio.data.parsing import DATE_UNIT
from dynafolio.settings import Settings

__all__ = ["MARKET_KINDS", "KnownMarket", "MarketSettings", "best_forecast", "generate_market"]

MarketKind = Literal["noise", "momentum", "foresight", "static_edge"]
#: The known-answer markets, selectable like datasets (``data.dataset``).
MARKET_KINDS: tuple[str, ...] = ("noise", "momentum", "foresight", "static_edge")

_FREQUENCIES = {"W": "W-FRI", "D": "B", "M": "ME", "Q": "QE"}
#: Rows generated and dropped before the first price so an AR(1) starts from its stationary
#: distribution whatever φ.
_BURN_IN = 200


class MarketSettings(Settings):
    """Settings of a known-answer market (config ``data.market``; every field has a default)."""

    n_assets: int = Field(20, ge=2, le=2000, description="assets in the panel")
    n_periods: int = Field(365, ge=20, le=100_000, description="price rows (periods + 1 returns)")
    phi: float = Field(0.2, gt=-1.0, lt=1.0, description="momentum: AR(1) coefficient")
    sigma: float = Field(
        0.03, gt=0.0, le=0.5, description="standard deviation of the innovations, per period"
    )
    drift: float = Field(0.0, ge=-0.1, le=0.1, description="mean log return per period")
    edge: float = Field(
        0.01, ge=-0.1, le=0.1, description="static_edge: extra mean log return of the edge assets"
    )
    n_edge: int = Field(5, ge=1, description="static_edge: assets with the edge (drawn by seed)")
    seed: int = Field(0, ge=0, description="seed of the generator")
    start: dt.date = Field(dt.date(2018, 1, 5), description="date of the first price")
    frequency: Literal["W", "D", "M", "Q"] = Field(
        "W", description="W: Fridays, D: business days, M: month ends, Q: quarter ends"
    )


class KnownMarket(Settings):
    """A known-answer market: its kind and settings (hashable, so generation is cached)."""

    kind: MarketKind
    settings: MarketSettings = MarketSettings()

    @model_validator(mode="after")
    def _edge_inside(self) -> KnownMarket:
        s = self.settings
        if self.kind == "static_edge" and s.n_edge >= s.n_assets:
            raise ValueError(
                f"n_edge ({s.n_edge}) must be below n_assets ({s.n_assets}): an edge held by "
                "every asset is no edge"
            )
        return self

    @property
    def label(self) -> str:
        s = self.settings
        shape = f"N={s.n_assets}, T={s.n_periods}, σ={s.sigma:g}, seed {s.seed}"
        if self.kind == "momentum":
            return f"momentum (φ={s.phi:g}, {shape})"
        if self.kind == "static_edge":
            return f"static edge ({s.n_edge} assets +{s.edge:g}/period, {shape})"
        return f"{self.kind} ({shape})"

    @property
    def asset_names(self) -> list[str]:
        width = len(str(self.settings.n_assets))
        return [f"A{i + 1:0{width}d}" for i in range(self.settings.n_assets)]

    def edge_assets(self) -> list[str]:
        """The assets with the static edge (empty for the other kinds)."""
        if self.kind != "static_edge":
            return []
        return [self.asset_names[i] for i in _edge_columns(self.settings)]


def _edge_columns(settings: MarketSettings) -> np.ndarray:
    # A separate stream from the returns': the edge assets do not depend on n_periods.
    rng = np.random.default_rng([settings.seed, 1])
    return np.sort(rng.choice(settings.n_assets, size=settings.n_edge, replace=False))


@functools.lru_cache(maxsize=64)
def _log_returns(market: KnownMarket) -> np.ndarray:
    """``(n_periods, n_assets)`` log returns; row 0 (the first price) is NaN."""
    s = market.settings
    n_returns = s.n_periods - 1
    rng = np.random.default_rng([s.seed, 0])
    shocks = rng.standard_normal((_BURN_IN + n_returns, s.n_assets)) * s.sigma
    mean = np.full(s.n_assets, s.drift)
    if market.kind == "static_edge":
        mean[_edge_columns(s)] += s.edge
    if market.kind == "momentum":
        # A loop over time (vectorised across assets): an AR(1) recursion, cheap at these sizes.
        deviation = np.empty_like(shocks)
        deviation[0] = shocks[0] / np.sqrt(1.0 - s.phi**2)
        for t in range(1, len(shocks)):
            deviation[t] = s.phi * deviation[t - 1] + shocks[t]
    else:
        deviation = shocks
    returns = mean + deviation[_BURN_IN:]
    out = np.full((s.n_periods, s.n_assets), np.nan)
    out[1:] = returns
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=64)
def _dates(market: KnownMarket) -> pd.DatetimeIndex:
    s = market.settings
    freq = _FREQUENCIES[s.frequency]
    dates = pd.date_range(pd.Timestamp(s.start), periods=s.n_periods, freq=freq)
    # No ``freq``: like every loaded dataset's index, so frames compare and hash alike.
    return pd.DatetimeIndex(dates.to_numpy(), name="date").as_unit(DATE_UNIT)


def generate_market(market: KnownMarket) -> pd.DataFrame:
    """The market's prices, wide: ``(n_periods, n_assets)``, starting at 100.

    Same settings give the same prices bit for bit (a fresh copy each call).
    """
    log_returns = np.nan_to_num(_log_returns(market), nan=0.0)
    prices = 100.0 * np.exp(np.cumsum(log_returns, axis=0))
    return pd.DataFrame(
        prices, index=_dates(market), columns=pd.Index(market.asset_names, name="asset")
    )


def best_forecast(market: KnownMarket, date: pd.Timestamp) -> pd.Series:
    """The best forecast, made at the close of ``date``, of the next period's log return.

    ``noise``, ``momentum`` and ``static_edge`` use only data up to ``date`` and the market's
    known parameters; ``foresight`` returns the realised next log return (NaN after the last
    period), i.e. it reads the future on purpose.

    Raises
    ------
    KeyError
        If ``date`` is not a date of the market.
    """
    s = market.settings
    row = _dates(market).get_loc(pd.Timestamp(date))
    returns = _log_returns(market)
    mean = np.full(s.n_assets, s.drift)
    if market.kind == "static_edge":
        mean[_edge_columns(s)] += s.edge
    if market.kind == "momentum":
        last = returns[row] if row > 0 else mean
        values = mean + s.phi * (last - mean)
    elif market.kind == "foresight":
        values = returns[row + 1] if row + 1 < len(returns) else np.full(s.n_assets, np.nan)
    else:
        values = mean
    return pd.Series(values, index=pd.Index(market.asset_names, name="asset"), dtype=float)
