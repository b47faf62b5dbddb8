"""Performance metrics of a portfolio's per-period simple returns.

Every metric is a pure function of ``r``, per-period *simple* returns of shape ``(n,)``
(ndarray, Series or sequence; 0.01 is +1 %), and, to annualise, ``periods_per_year`` (52 for
weekly data), which the caller derives from the data frequency. NaN raises ValueError instead
of being skipped, because silently dropping a period changes compounding and annualisation.
Risk-free rates are *annual* and become per-period rates by ``(1 + rf) ** (1 / periods) - 1``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

ReturnsLike = np.ndarray | pd.Series | Sequence[float]
RiskFreeLike = float | np.ndarray | pd.Series | Sequence[float]


@dataclass(frozen=True)
class MetricInfo:
    """How one metric of :func:`summary` is named, measured and read.

    ``unit`` is ``"fraction"`` (shown as a percentage: 0.123 → 12.3%) or ``"ratio"``;
    ``better`` is ``"higher"``, ``"lower"`` or ``None`` (no best value, e.g. a count).
    """

    key: str
    label: str
    short: str
    unit: Literal["fraction", "ratio", "count", "p"]
    decimals: int
    better: Literal["higher", "lower"] | None
    help: str
    #: "summary": a key of :func:`summary`; "inference": from :mod:`dynafolio.stats`;
    #: "learnability": the learner's known-answer check (:mod:`dynafolio.rl.learnability`).
    source: Literal["summary", "inference", "learnability"] = "summary"


#: The one table of metrics, in report order: the CLI, the CSV/JSON writers and the report
#: all read labels, units, formats and directions from here.
METRICS: tuple[MetricInfo, ...] = (
    MetricInfo(
        "ann_return", "Ann. return (mean×periods)", "Ann.ret (μ×P)", "fraction", 1, "higher",
        "Arithmetic mean per-period net return × periods per year",
    ),
    MetricInfo(
        "cagr", "CAGR", "CAGR", "fraction", 1, "higher",
        "Compound annual growth rate of net equity",
    ),
    MetricInfo(
        "ann_volatility", "Ann. vol.", "Ann.vol", "fraction", 1, "lower",
        "Standard deviation of per-period net returns, annualised",
    ),
    MetricInfo(
        "sharpe", "Sharpe", "Sharpe", "ratio", 2, "higher",
        "Annualised Sharpe ratio of net returns (excess of the risk-free rate)",
    ),
    MetricInfo(
        "sortino", "Sortino", "Sortino", "ratio", 2, "higher",
        "Annualised Sortino ratio of net returns",
    ),
    # Stored as a negative fraction: the best (shallowest) drawdown is the largest value.
    MetricInfo(
        "max_drawdown", "Max DD", "MaxDD", "fraction", 1, "higher",
        "Deepest peak-to-trough fall of net equity",
    ),
    MetricInfo(
        "calmar", "Calmar", "Calmar", "ratio", 2, "higher", "CAGR / |max drawdown|"
    ),
    MetricInfo(
        "total_return", "Total return", "Total", "fraction", 1, "higher",
        "Net equity at the end of the test period − 1",
    ),
    # Often well below 1% a period: two decimals, or most rules would read 0.0%.
    MetricInfo(
        "avg_turnover", "Avg turnover", "Turnover", "fraction", 2, "lower",
        "Mean one-way turnover per period (buys plus sells)",
    ),
    MetricInfo("n_periods", "Periods", "Periods", "count", 0, None, "Test periods scored"),
    MetricInfo(
        "sharpe_ci_low", "Sharpe CI low", "CI low", "ratio", 2, None,
        "Lower end of the Sharpe ratio's confidence interval (block bootstrap over dates and "
        "seeds)", "inference",
    ),
    MetricInfo(
        "sharpe_ci_high", "Sharpe CI high", "CI high", "ratio", 2, None,
        "Upper end of the Sharpe ratio's confidence interval", "inference",
    ),
    MetricInfo(
        "sharpe_p_vs_benchmark", "p vs benchmark", "p vs bench", "p", 3, None,
        "Two-sided p-value of a paired test of equal Sharpe ratios with the benchmark, on the "
        "same dates (not adjusted for the number of strategies)", "inference",
    ),
    MetricInfo(
        "learner_check", "Learner check (share of oracle)", "Learns?", "fraction", 0, None,
        "Sharpe ratio the strategy's learner reaches on a known-answer market of the same "
        "shape, as a share of the oracle's (foresight scores for learners that read forecasts, "
        "AR(1) momentum with phi 0.5 for the others); below 50% the row is not evidence about "
        "the method", "learnability",
    ),
)  # fmt: skip
METRIC_INFO: dict[str, MetricInfo] = {m.key: m for m in METRICS}
# The keys of summary(), in report order, and their labels.
METRIC_LABELS: dict[str, str] = {m.key: m.label for m in METRICS if m.source == "summary"}
SUMMARY_KEYS: tuple[str, ...] = tuple(METRIC_LABELS)

# A std this small relative to max |value| is rounding noise of a constant series (mean([0.01]*5)
# is not exactly 0.01), not risk; relative so that Sharpe stays invariant to rescaling returns.
_DEGENERATE_STD_RTOL = 1e-12


def _to_1d(x: object, name: str, min_periods: int = 1) -> tuple[np.ndarray, pd.Index | None]:
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


def _check_periods(periods_per_year: object) -> int:
    p = periods_per_year
    if isinstance(p, bool) or not isinstance(p, int | np.integer) or p <= 0:
        raise ValueError(f"periods_per_year must be a positive int (52 for weekly); got {p!r}.")
    return int(p)


def _wrap(values: np.ndarray, index: pd.Index | None, name: str) -> np.ndarray | pd.Series:
    return values if index is None else pd.Series(values, index=index, name=name)


def _per_period_rf(
    risk_free: RiskFreeLike, n: int, index: pd.Index | None, periods: int
) -> np.ndarray:
    """Annual risk-free rate(s) -> per-period rate(s): a 0-d array or shape (n,)."""
    if np.ndim(risk_free) == 0:
        rf = np.asarray(float(risk_free))
        if not np.isfinite(rf):
            raise ValueError(f"risk_free must be finite; got {risk_free!r}.")
    else:
        rf, rf_index = _to_1d(risk_free, "risk_free")
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


def _excess(r: ReturnsLike, risk_free: RiskFreeLike, periods: int, min_periods: int) -> np.ndarray:
    values, index = _to_1d(r, "r", min_periods=min_periods)
    return values - _per_period_rf(risk_free, values.size, index, periods)


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
    periods = _check_periods(periods_per_year)
    values, _ = _to_1d(r, "r")
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
    periods = _check_periods(periods_per_year)
    values, _ = _to_1d(r, "r")
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
    periods = _check_periods(periods_per_year)
    values, _ = _to_1d(r, "r", min_periods=2)
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
    periods = _check_periods(periods_per_year)
    _, index = _to_1d(r, "r")
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
    periods = _check_periods(periods_per_year)
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
    periods = _check_periods(periods_per_year)
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
    values, index = _to_1d(r, "r")
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
    values, index = _to_1d(r, "r")
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
    values, _ = _to_1d(r, "r")
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
    values, _ = _to_1d(r, "r")
    return float(_wealth(values)[-1] - 1.0)


def average_turnover(turnover: ReturnsLike) -> float:
    """Average turnover per period (float, not annualised), ``mean(turnover)``.

    Parameters
    ----------
    turnover : array-like, shape (n,)
        Non-negative turnover of each period as the backtest reports it: the L1 norm of the
        weight change ``sum_i |w_i,t - w_i,t-1|`` (0.1 means 10 % of the portfolio traded).
    """
    values, index = _to_1d(turnover, "turnover")
    if np.any(values < 0):
        pos = int(np.flatnonzero(values < 0)[0])
        where = f"position {pos}" + (f" (index label {index[pos]!r})" if index is not None else "")
        raise ValueError(f"turnover must be non-negative; got {values[pos]} at {where}.")
    return float(values.mean())


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
    periods = _check_periods(periods_per_year)
    if not isinstance(r, pd.Series) or not isinstance(benchmark, pd.Series):
        raise ValueError("r and benchmark must both be pd.Series so they can be aligned by index.")
    if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 2:
        raise ValueError(f"window must be an int >= 2 (periods); got {window!r}.")
    rv, bv = _to_1d(r, "r")[0], _to_1d(benchmark, "benchmark")[0]
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
    n = _to_1d(r, "r", min_periods=2)[0].size
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
    periods = _check_periods(periods_per_year)
    # Validate risk_free against the whole of r once, then slice it by date with each window.
    _per_period_rf(risk_free, _to_1d(r, "r")[0].size, r.index, periods)
    if np.ndim(risk_free) > 0:
        risk_free = pd.Series(_to_1d(risk_free, "risk_free")[0], index=r.index)
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
