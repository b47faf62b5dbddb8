"""A return series summarised: every headline metric at once, per window, and its rolling
alpha and beta against a benchmark (see :mod:`dynafolio.metrics`)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from dynafolio.metrics.catalog import SUMMARY_KEYS
from dynafolio.metrics.measures import (
    ReturnsLike,
    RiskFreeLike,
    annualized_mean_return,
    annualized_volatility,
    average_turnover,
    cagr,
    check_periods,
    max_drawdown,
    per_period_rf,
    sharpe_ratio,
    sortino_ratio,
    to_1d,
    total_return,
)


def rolling_alpha_beta(
    r: pd.Series, benchmark: pd.Series, window: int, periods_per_year: int
) -> pd.DataFrame:
    """Rolling OLS of ``r`` on ``benchmark`` over a trailing window of ``window`` periods.

    ``beta = cov(r, b) / var(b)`` (ddof=1) and ``alpha = periods * (mean(r) - beta * mean(b))``,
    the regression intercept annualised arithmetically.

    Parameters
    ----------
    r, benchmark : pd.Series, shape (n,)
        Per-period simple returns on identical indexes (otherwise ValueError).
    window : int
        Periods per window, >= 2; a window longer than the series gives all NaN.
    periods_per_year : int
        Periods per year.

    Returns
    -------
    pd.DataFrame, shape (n, 2)
        Columns ``alpha`` (annualised) and ``beta`` on ``r``'s index; NaN in the first
        ``window - 1`` rows and wherever the benchmark is constant over the window.
    """
    periods = check_periods(periods_per_year)
    if not isinstance(r, pd.Series) or not isinstance(benchmark, pd.Series):
        raise ValueError("r and benchmark must both be pd.Series so they can be aligned by index.")
    if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 2:
        raise ValueError(f"window must be an int >= 2 (periods); got {window!r}.")
    rv, bv = to_1d(r, "r")[0], to_1d(benchmark, "benchmark")[0]
    if not r.index.equals(benchmark.index):
        raise ValueError(
            f"r and benchmark must have identical indexes (lengths {len(r)} vs {len(benchmark)});"
            " align them first, e.g. r, benchmark = r.align(benchmark, join='inner')."
        )
    rs, bs = pd.Series(rv, index=r.index), pd.Series(bv, index=r.index)
    roll_r, roll_b = rs.rolling(int(window)), bs.rolling(int(window))
    var_b = roll_b.var(ddof=1)
    # A constant benchmark has no variance: beta is undefined, not infinite.
    beta = roll_r.cov(bs, ddof=1) / var_b.where(var_b > 0)
    alpha = periods * (roll_r.mean() - beta * roll_b.mean())
    return pd.DataFrame({"alpha": alpha, "beta": beta}, index=r.index)


def summary(
    r: ReturnsLike,
    periods_per_year: int,
    risk_free: RiskFreeLike = 0.0,
    turnover: ReturnsLike | None = None,
) -> dict[str, float]:
    """All headline metrics of one return series, keyed as :data:`SUMMARY_KEYS`.

    Parameters
    ----------
    r : array-like, shape (n,), n >= 2
        Per-period simple returns.
    periods_per_year : int
        Periods per year.
    risk_free : float or array-like, shape (n,)
        Annual risk-free rate(s) for Sharpe and Sortino; see :func:`excess_returns`.
    turnover : array-like, shape (m,), optional
        Per-period turnover for ``avg_turnover`` (NaN when omitted).

    Returns
    -------
    dict[str, float]
        ``ann_return`` (mean×periods), ``cagr``, ``ann_volatility``, ``sharpe``, ``sortino``
        (annualised); ``max_drawdown``, ``total_return`` (whole series); ``calmar``;
        ``avg_turnover`` (per period); ``n_periods``.
    """
    n = to_1d(r, "r", min_periods=2)[0].size
    growth, mdd = cagr(r, periods_per_year), max_drawdown(r)
    return {
        "ann_return": annualized_mean_return(r, periods_per_year),
        "cagr": growth,
        "ann_volatility": annualized_volatility(r, periods_per_year),
        "sharpe": sharpe_ratio(r, periods_per_year, risk_free),
        "sortino": sortino_ratio(r, periods_per_year, risk_free),
        "max_drawdown": mdd,
        "calmar": float("nan") if mdd == 0.0 else growth / abs(mdd),
        "total_return": total_return(r),
        "avg_turnover": float("nan") if turnover is None else average_turnover(turnover),
        "n_periods": float(n),
    }


def window_summary(
    r: pd.Series,
    windows: Mapping[str, tuple[str, str]],
    periods_per_year: int,
    risk_free: RiskFreeLike = 0.0,
) -> pd.DataFrame:
    """:func:`summary` over named, inclusive date windows (e.g. stress periods).

    Parameters
    ----------
    r : pd.Series, shape (n,)
        Per-period simple returns on a sorted DatetimeIndex.
    windows : mapping of str to (start, end)
        Inclusive bounds, e.g. ``{"covid": ("2020-02-15", "2020-04-30")}``; string bounds
        use pandas partial-date slicing, so the whole end day is included.
    periods_per_year : int
        Periods per year of ``r``'s frequency.
    risk_free : float or array-like, shape (n,)
        Annual risk-free rate(s) aligned to the full ``r``; sliced along with it.

    Returns
    -------
    pd.DataFrame, shape (len(windows), 2 + len(SUMMARY_KEYS))
        Index ``window``; ``start``/``end`` (first/last dates actually covered) and the summary
        keys. A window with fewer than 2 periods of data counts as not covered: NaT dates, NaN
        metrics and ``n_periods`` 0.
    """
    if not isinstance(r, pd.Series) or not isinstance(r.index, pd.DatetimeIndex):
        raise ValueError("window_summary needs r as a pd.Series on a DatetimeIndex.")
    if not r.index.is_monotonic_increasing:
        raise ValueError("r's DatetimeIndex must be sorted ascending; call r.sort_index() first.")
    periods = check_periods(periods_per_year)
    # Validate risk_free against the whole of r once, then slice it by date with each window.
    per_period_rf(risk_free, to_1d(r, "r")[0].size, r.index, periods)
    if np.ndim(risk_free) > 0:
        risk_free = pd.Series(to_1d(risk_free, "risk_free")[0], index=r.index)
    rows = []
    for name, (start, end) in windows.items():
        if pd.Timestamp(start) > pd.Timestamp(end):
            raise ValueError(f"window {name!r} starts after it ends: {start} > {end}.")
        piece = r.loc[start:end]
        if len(piece) < 2:
            row = {"start": pd.NaT, "end": pd.NaT, **dict.fromkeys(SUMMARY_KEYS, np.nan)}
            row["n_periods"] = 0.0
        else:
            rf_piece = risk_free.loc[start:end] if isinstance(risk_free, pd.Series) else risk_free
            row = {"start": piece.index[0], "end": piece.index[-1]}
            row.update(summary(piece, periods, rf_piece))
        rows.append(row)
    columns = ["start", "end", *SUMMARY_KEYS]
    return pd.DataFrame(rows, columns=columns, index=pd.Index(list(windows), name="window"))
