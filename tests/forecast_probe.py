"""The look-ahead probe of forecasters, shared by the forecaster tests.

A forecaster only ever sees the :class:`~dynafolio.history.MarketHistory` it is handed, so
what keeps it causal is the walk-forward path that cuts the full price frame at each decision
date: :class:`~dynafolio.strategies.forecast.ForecastStream`, driven here through
:func:`~dynafolio.strategies.forecast.compute_stream` (it slices ``prices.iloc[: row + 1]``
exactly as the backtest engine does; replayed and live forecasts are tested equal in
``test_executors.py``). The probe hands that path the *whole* frame, perturbs the prices after
a decision date ``t`` inside it, and checks that every forecast made on or before ``t`` is
bit-identical while a later one changes (so the perturbation reaches the model at all).

Two leaky paths are caught by the same check, so the probe can fail: a model fitted once on
the whole panel and then asked at each decision (the classic backtest leak), and a cut one
row late (each decision sees the next period's prices).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from dynafolio.forecast.base import Forecaster
from dynafolio.history import MarketHistory
from dynafolio.splits import RefitSchedule
from dynafolio.strategies.forecast import clear_fitted_cache, compute_stream

Forecasts = dict[pd.Timestamp, pd.Series]


def decision_rows(t: int) -> list[int]:
    """Five decisions around row ``t``: with ``every=2`` the models are fitted at ``t − 2``,
    ``t`` (on rows up to ``t``, the last one the past forecasts may read) and ``t + 2``."""
    return [t - 2, t - 1, t, t + 1, t + 2]


def perturb_after(prices: pd.DataFrame, t: int, seed: int = 0) -> pd.DataFrame:
    """``prices`` with every price after row ``t`` rescaled: new levels and new returns."""
    out = prices.copy()
    shocks = np.random.default_rng(seed).normal(0.0, 0.3, out.iloc[t + 1 :].shape)
    out.iloc[t + 1 :] *= np.exp(shocks)
    return out


def stream_forecasts(
    template: Forecaster, every: int = 2
) -> Callable[[pd.DataFrame, list[int]], Forecasts]:
    """The causal path: walk-forward forecasts over the full frame, refit every ``every``."""

    def forecasts(prices: pd.DataFrame, rows: list[int]) -> Forecasts:
        return compute_stream(template, RefitSchedule(every), prices, rows)

    return forecasts


def full_panel_fit(template: Forecaster) -> Callable[[pd.DataFrame, list[int]], Forecasts]:
    """Leaky: one fit on the whole frame, future included, then a forecast per decision."""

    def forecasts(prices: pd.DataFrame, rows: list[int]) -> Forecasts:
        returns = prices.pct_change(fill_method=None)
        model = template.clone().fit(MarketHistory(prices, returns))
        return {
            prices.index[row]: model.predict(
                MarketHistory(prices.iloc[: row + 1], returns.iloc[: row + 1])
            )
            for row in rows
        }

    return forecasts


def one_row_late(
    template: Forecaster, every: int = 2
) -> Callable[[pd.DataFrame, list[int]], Forecasts]:
    """Leaky: the decision at row ``r`` is taken on the history cut at ``r + 1``."""

    def forecasts(prices: pd.DataFrame, rows: list[int]) -> Forecasts:
        late = compute_stream(template, RefitSchedule(every), prices, [r + 1 for r in rows])
        return {prices.index[r]: forecast for r, forecast in zip(rows, late.values(), strict=True)}

    return forecasts


def assert_no_look_ahead(
    forecasts_of: Callable[[pd.DataFrame, list[int]], Forecasts],
    prices: pd.DataFrame,
    t: int,
    rows: list[int] | None = None,
) -> Forecasts:
    """Perturb ``prices`` after row ``t``; no forecast dated on or before it may change.

    Each run fits its own models (the shared fit cache is cleared), so the check does not
    rest on the cache's key. Returns the unperturbed forecasts.
    """
    rows = decision_rows(t) if rows is None else rows
    cut = prices.index[t]
    clear_fitted_cache()
    before = forecasts_of(prices, rows)
    clear_fitted_cache()
    after = forecasts_of(perturb_after(prices, t), rows)
    assert list(before) == list(after) == [prices.index[r] for r in rows]
    past = [date for date in before if date <= cut]
    future = [date for date in before if date > cut]
    assert past and future
    for date in past:
        pd.testing.assert_series_equal(
            before[date], after[date], check_exact=True, obj=f"forecast at {date.date()}"
        )
    # Otherwise the probe would be blind: the perturbation must reach a later forecast.
    assert any(not before[date].equals(after[date]) for date in future)
    return before
