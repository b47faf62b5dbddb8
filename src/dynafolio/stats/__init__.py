"""Statistics a referee would accept: Sharpe-ratio intervals, paired tests, multiple testing,
and forecast skill (:mod:`~dynafolio.stats.forecasts`: IC, out-of-sample R², Diebold–Mariano).

Every function takes *per-period simple returns* (1-D array-likes, shape ``(n_periods,)``,
0.01 = +1 %) and reports the **annualised** Sharpe ratio exactly as
:func:`dynafolio.metrics.sharpe_ratio` defines it: ``sqrt(P) · mean(excess) / std(excess,
ddof=1)`` with ``P`` periods per year. Risk-free rates are annual, as in :mod:`dynafolio.metrics`.

Bootstraps resample *blocks* of consecutive periods (returns are autocorrelated and volatility
clusters) with the stationary bootstrap of Politis & Romano (1994) from :mod:`arch.bootstrap`;
the expected block length is chosen by the rule of Politis & White (2004, with the correction
of Patton, Politis & White 2009), :func:`block_length`. Bootstraps are seeded: the same inputs
and seed give the same interval.

What is hand-written, and why: the HAC delta-method standard error of the Sharpe ratio (Lo
2002) and of a Sharpe difference (Ledoit & Wolf 2008), the Jobson–Korkie/Memmel test, the
probabilistic and deflated Sharpe ratios (Bailey & López de Prado 2012, 2014) — no well-kept
library implements them; the long-run covariance itself comes from statsmodels.
"""

from dynafolio.stats.comparisons import (
    MultipleComparison,
    beat_benchmark_test,
    sharpe_table,
)
from dynafolio.stats.forecasts import (
    DieboldMariano,
    ICSummary,
    diebold_mariano,
    expanding_mean_forecast,
    forecast_skill,
    hit_rate,
    ic_series,
    ic_summary,
    oos_r2,
    oos_r2_by_asset,
    top_bottom_spread,
)
from dynafolio.stats.sharpe import (
    EULER_GAMMA,
    SharpeDifference,
    block_length,
    bootstrap_indices,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    per_period_rate,
    probabilistic_sharpe_ratio,
    seed_time_difference,
    sharpe_ci,
    sharpe_difference_test,
    sharpe_se,
)

__all__ = [
    "DieboldMariano",
    "ICSummary",
    "diebold_mariano",
    "expanding_mean_forecast",
    "forecast_skill",
    "hit_rate",
    "ic_series",
    "ic_summary",
    "oos_r2",
    "oos_r2_by_asset",
    "top_bottom_spread",
    "EULER_GAMMA",
    "MultipleComparison",
    "SharpeDifference",
    "beat_benchmark_test",
    "block_length",
    "bootstrap_indices",
    "deflated_sharpe_ratio",
    "expected_max_sharpe",
    "per_period_rate",
    "probabilistic_sharpe_ratio",
    "sharpe_ci",
    "sharpe_difference_test",
    "sharpe_se",
    "seed_time_difference",
    "sharpe_table",
]
