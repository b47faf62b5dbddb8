"""Performance metrics of a portfolio's per-period simple returns.

Every metric is a pure function of ``r``, per-period *simple* returns of shape ``(n,)``
(ndarray, Series or sequence; 0.01 is +1 %), and, to annualise, ``periods_per_year`` (52 for
weekly data), which the caller derives from the data frequency. NaN raises ValueError instead
of being skipped, because silently dropping a period changes compounding and annualisation.
Risk-free rates are *annual* and become per-period rates by ``(1 + rf) ** (1 / periods) - 1``.
"""

from dynafolio.metrics.catalog import METRIC_INFO, METRIC_LABELS, METRICS, SUMMARY_KEYS, MetricInfo
from dynafolio.metrics.measures import (
    ReturnsLike,
    RiskFreeLike,
    annualized_mean_return,
    annualized_volatility,
    average_turnover,
    cagr,
    calmar_ratio,
    drawdown_series,
    equity_curve,
    excess_returns,
    max_drawdown,
    risk_free_on,
    sharpe_ratio,
    sortino_ratio,
    total_return,
)
from dynafolio.metrics.summary import rolling_alpha_beta, summary, window_summary

__all__ = [
    "METRICS",
    "METRIC_INFO",
    "METRIC_LABELS",
    "SUMMARY_KEYS",
    "MetricInfo",
    "ReturnsLike",
    "RiskFreeLike",
    "annualized_mean_return",
    "annualized_volatility",
    "average_turnover",
    "cagr",
    "calmar_ratio",
    "drawdown_series",
    "equity_curve",
    "excess_returns",
    "max_drawdown",
    "risk_free_on",
    "rolling_alpha_beta",
    "sharpe_ratio",
    "sortino_ratio",
    "summary",
    "total_return",
    "window_summary",
]
