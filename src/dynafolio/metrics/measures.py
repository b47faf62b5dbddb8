"""One number from one return series: growth, risk and risk-adjusted return, drawdowns,
turnover (see :mod:`dynafolio.metrics` for the conventions)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

ReturnsLike = np.ndarray | pd.Series | Sequence[float]
RiskFreeLike = float | np.ndarray | pd.Series | Sequence[float]

# A std this small relative to max |value| is rounding noise of a constant series (mean([0.01]*5)
# is not exactly 0.01), not risk; relative so that Sharpe stays invariant to rescaling returns.
_DEGENERATE_STD_RTOL = 1e-12


def to_1d(x: object, name: str, min_periods: int = 1) -> tuple[np.ndarray, pd.Index | None]:
    """Validate a 1-D numeric input; return its float64 values, shape (n,), and index (or None)."""
    index = x.index if isinstance(x, pd.Series) else None
    try:
        if isinstance(x, pd.Series):
            # na_value maps pandas' nullable NA to NaN so that it is reported below.
            values = x.to_numpy(dtype="float64", na_value=np.nan)
        else:
            values = np.asarray(x, dtype="float64")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric; cannot convert it to float ({exc}).") from exc
    if values.ndim != 1:
        raise ValueError(f"{name} must be 1-D with shape (n,); got shape {values.shape}.")
    bad = ~np.isfinite(values)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        where = f"position {pos}" + (f" (index label {index[pos]!r})" if index is not None else "")
        kind = "NaN" if np.isnan(values[pos]) else "infinite"
        raise ValueError(
            f"{name} contains {int(bad.sum())} non-finite value(s); the first is {kind} at "
            f"{where}. Drop or fill missing periods before computing metrics."
        )
    if values.size < min_periods:
        raise ValueError(f"{name} needs at least {min_periods} period(s); got {values.size}.")
    return values, index


def check_periods(periods_per_year: object) -> int:
    p = periods_per_year
    if isinstance(p, bool) or not isinstance(p, int | np.integer) or p <= 0:
        raise ValueError(f"periods_per_year must be a positive int (52 for weekly); got {p!r}.")
    return int(p)


def _wrap(values: np.ndarray, index: pd.Index | None, name: str) -> np.ndarray | pd.Series:
    return values if index is None else pd.Series(values, index=index, name=name)


def per_period_rf(
    risk_free: RiskFreeLike, n: int, index: pd.Index | None, periods: int
) -> np.ndarray:
    """Annual risk-free rate(s) -> per-period rate(s): a 0-d array or shape (n,)."""
    if np.ndim(risk_free) == 0:
        rf = np.asarray(float(risk_free))
        if not np.isfinite(rf):
            raise ValueError(f"risk_free must be finite; got {risk_free!r}.")
    else:
        rf, rf_index = to_1d(risk_free, "risk_free")
        misaligned = rf_index is not None and index is not None and not rf_index.equals(index)
        if rf.size != n or misaligned:
            raise ValueError(
                f"risk_free must be a float or one annual rate per period of r, on r's index; got "
                f"{rf.size} rates for {n} periods. Align it, e.g. rf.reindex(r.index).ffill()."
            )
    if np.any(rf <= -1.0):
        raise ValueError("risk_free annual rates must be greater than -1 (i.e. -100 %).")
    # Geometric de-annualisation: compounding the per-period rate for a year gives back rf.
    return np.power(1.0 + rf, 1.0 / periods) - 1.0


def risk_free_on(risk_free: float | pd.Series, dates: pd.Index) -> float | np.ndarray:
    """The annual risk-free rate(s) for returns on ``dates``: a constant as it is, a series
    (one annual rate per date, e.g. from the Fama–French RF) as the array of its values on
    ``dates``."""
    if np.ndim(risk_free) == 0:
        return risk_free
    values = risk_free.reindex(dates)
    if values.isna().any():
        raise ValueError(f"the risk-free series has no rate for {int(values.isna().sum())} dates")
    return values.to_numpy(dtype=float)


def _excess(r: ReturnsLike, risk_free: RiskFreeLike, periods: int, min_periods: int) -> np.ndarray:
    values, index = to_1d(r, "r", min_periods=min_periods)
    return values - per_period_rf(risk_free, values.size, index, periods)


def _wealth(values: np.ndarray) -> np.ndarray:
    # Every wealth-based metric uses this one cumprod, so total_return(r) equals
    # equity_curve(r)[-1] - 1 exactly rather than only up to rounding.
    return np.cumprod(1.0 + values)


def annualized_mean_return(r: ReturnsLike, periods_per_year: int) -> float:
    """Arithmetic annualised mean return (float, 0.10 is 10 % a year), ``periods * mean(r)``.

    This is the arithmetic convention the S1 paper uses (not compounded; see :func:`cagr`).

    Parameters
    ----------
    r : array-like, shape (n,)
        Per-period simple returns.
    periods_per_year : int
        Periods per year (52 for weekly data).
    """
    periods = check_periods(periods_per_year)
    values, _ = to_1d(r, "r")
    return float(periods * values.mean())


def cagr(r: ReturnsLike, periods_per_year: int) -> float:
    """Compound annual growth rate, ``prod(1 + r) ** (periods_per_year / n) - 1``.

    The horizon is ``n / periods_per_year`` years (counted in periods, not calendar days).
    Negative terminal wealth (a return below -1) has no real growth rate and gives NaN.

    Parameters
    ----------
    r : array-like, shape (n,)
        Per-period simple returns.
    periods_per_year : int
        Periods per year.

    Returns
    -------
    float
        Annualised compound growth rate.
    """
    periods = check_periods(periods_per_year)
    values, _ = to_1d(r, "r")
    final = _wealth(values)[-1]
    if final < 0.0:
        return float("nan")
    return float(final ** (periods / values.size) - 1.0)


def annualized_volatility(r: ReturnsLike, periods_per_year: int) -> float:
    """Annualised volatility (float), ``sqrt(periods_per_year) * std(r, ddof=1)``.

    Parameters
    ----------
    r : array-like, shape (n,), n >= 2
        Per-period simple returns.
    periods_per_year : int
        Periods per year.
    """
    periods = check_periods(periods_per_year)
    values, _ = to_1d(r, "r", min_periods=2)
    return float(np.sqrt(periods) * values.std(ddof=1))


def excess_returns(
    r: ReturnsLike, risk_free: RiskFreeLike, periods_per_year: int
) -> np.ndarray | pd.Series:
    """Per-period returns in excess of the risk-free rate, ``r - rf_per_period``.

    Parameters
    ----------
    r : array-like, shape (n,)
        Per-period simple returns.
    risk_free : float or array-like, shape (n,)
        *Annual* risk-free rate: a constant, or one annual rate per period of ``r`` (a Series
        with exactly ``r``'s index, or an array of length n; otherwise ValueError). Converted
        per period by ``(1 + rf) ** (1 / periods_per_year) - 1``, as quantstats does.
    periods_per_year : int
        Periods per year.

    Returns
    -------
    np.ndarray or pd.Series, shape (n,)
        Per-period excess returns; a Series on ``r``'s index when ``r`` is a Series.
    """
    periods = check_periods(periods_per_year)
    _, index = to_1d(r, "r")
    return _wrap(_excess(r, risk_free, periods, 1), index, "excess_return")


def sharpe_ratio(r: ReturnsLike, periods_per_year: int, risk_free: RiskFreeLike = 0.0) -> float:
    """Annualised Sharpe ratio, ``sqrt(periods) * mean(excess) / std(excess, ddof=1)``.

    Parameters
    ----------
    r : array-like, shape (n,), n >= 2
        Per-period simple returns.
    periods_per_year : int
        Periods per year.
    risk_free : float or array-like, shape (n,)
        Annual risk-free rate(s); see :func:`excess_returns`.

    Returns
    -------
    float
        Annualised Sharpe ratio; NaN when the excess returns have zero standard deviation.
    """
    periods = check_periods(periods_per_year)
    ex = _excess(r, risk_free, periods, min_periods=2)
    sd = ex.std(ddof=1)
    if sd <= _DEGENERATE_STD_RTOL * np.max(np.abs(ex)):
        return float("nan")
    return float(np.sqrt(periods) * ex.mean() / sd)


def sortino_ratio(r: ReturnsLike, periods_per_year: int, risk_free: RiskFreeLike = 0.0) -> float:
    """Annualised Sortino ratio, ``sqrt(periods) * mean(excess) / downside``.

    ``downside = sqrt(sum(min(excess, 0) ** 2) / n)``: target 0 and averaged over all n
    periods, not only the losing ones (quantstats' definition).

    Parameters
    ----------
    r : array-like, shape (n,), n >= 2
        Per-period simple returns.
    periods_per_year : int
        Periods per year.
    risk_free : float or array-like, shape (n,)
        Annual risk-free rate(s); see :func:`excess_returns`.

    Returns
    -------
    float
        Annualised Sortino ratio; NaN when no excess return is negative (downside is 0).
    """
    periods = check_periods(periods_per_year)
    ex = _excess(r, risk_free, periods, min_periods=2)
    downside = np.sqrt(np.sum(np.minimum(ex, 0.0) ** 2) / ex.size)
    if downside == 0.0:
        return float("nan")
    return float(np.sqrt(periods) * ex.mean() / downside)


def equity_curve(r: ReturnsLike, initial: float = 1.0) -> np.ndarray | pd.Series:
    """Portfolio value at the end of each period, ``initial * cumprod(1 + r)``.

    Parameters
    ----------
    r : array-like, shape (n,)
        Per-period simple returns.
    initial : float
        Positive value before the first period (not itself part of the output).

    Returns
    -------
    np.ndarray or pd.Series, shape (n,)
        Values in units of ``initial``; a Series on ``r``'s index when ``r`` is a Series.
    """
    if not (np.isfinite(initial) and initial > 0):
        raise ValueError(f"initial must be a positive finite value; got {initial!r}.")
    values, index = to_1d(r, "r")
    return _wrap(initial * _wealth(values), index, "equity")


def _drawdowns(values: np.ndarray) -> np.ndarray:
    wealth = _wealth(values)
    # The running peak starts at the initial value 1.0, so a loss in the very first period is
    # already a drawdown (older quantstats releases started the peak at the first period).
    peak = np.maximum.accumulate(np.maximum(wealth, 1.0))
    return wealth / peak - 1.0


def drawdown_series(r: ReturnsLike) -> np.ndarray | pd.Series:
    """Drawdown after each period, ``V_t / max(1, V_1, ..., V_t) - 1`` with ``V`` the equity.

    Parameters
    ----------
    r : array-like, shape (n,)
        Per-period simple returns.

    Returns
    -------
    np.ndarray or pd.Series, shape (n,)
        Fractions <= 0 (-0.2 is 20 % below the peak); a Series on ``r``'s index if it has one.
    """
    values, index = to_1d(r, "r")
    return _wrap(_drawdowns(values), index, "drawdown")


def max_drawdown(r: ReturnsLike) -> float:
    """Maximum drawdown, ``min(drawdown_series(r))``; in [-1, 0] when all returns are > -1.

    Parameters
    ----------
    r : array-like, shape (n,)
        Per-period simple returns.

    Returns
    -------
    float
        Deepest peak-to-trough loss as a negative fraction, or 0.0 if there is none.
    """
    values, _ = to_1d(r, "r")
    return float(_drawdowns(values).min())


def calmar_ratio(r: ReturnsLike, periods_per_year: int) -> float:
    """Calmar ratio, ``cagr(r) / |max_drawdown(r)|`` over the whole series.

    Parameters
    ----------
    r : array-like, shape (n,)
        Per-period simple returns.
    periods_per_year : int
        Periods per year.

    Returns
    -------
    float
        CAGR per unit of maximum drawdown; NaN when there is no drawdown.
    """
    mdd = max_drawdown(r)
    return float("nan") if mdd == 0.0 else cagr(r, periods_per_year) / abs(mdd)


def total_return(r: ReturnsLike) -> float:
    """Total compounded return (float, not annualised; 0.5 is +50 %), ``prod(1 + r) - 1``.

    Parameters
    ----------
    r : array-like, shape (n,)
        Per-period simple returns.
    """
    values, _ = to_1d(r, "r")
    return float(_wealth(values)[-1] - 1.0)


def average_turnover(turnover: ReturnsLike) -> float:
    """Average turnover per period (float, not annualised), ``mean(turnover)``.

    Parameters
    ----------
    turnover : array-like, shape (n,)
        Non-negative turnover of each period as the backtest reports it: the L1 norm of the
        weight change ``sum_i |w_i,t - w_i,t-1|`` (0.1 means 10 % of the portfolio traded).
    """
    values, index = to_1d(turnover, "turnover")
    if np.any(values < 0):
        pos = int(np.flatnonzero(values < 0)[0])
        where = f"position {pos}" + (f" (index label {index[pos]!r})" if index is not None else "")
        raise ValueError(f"turnover must be non-negative; got {values[pos]} at {where}.")
    return float(values.mean())
