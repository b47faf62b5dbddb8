"""The Sharpe ratio's sampling error: HAC standard errors, block-bootstrap intervals, the paired
difference test, and the probabilistic and deflated Sharpe ratios (see :mod:`dynafolio.stats`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
from arch.bootstrap import StationaryBootstrap, optimal_block_length
from scipy import stats as sps
from statsmodels.stats.sandwich_covariance import S_hac_simple

#: Euler–Mascheroni constant (expected maximum of normal draws, Bailey & López de Prado 2014).
EULER_GAMMA = 0.5772156649015329


def as_returns(x, name: str = "returns") -> np.ndarray:
    values = np.asarray(x, dtype=float).reshape(-1)
    if values.size < 3:
        raise ValueError(f"{name}: need at least 3 periods, got {values.size}")
    if not np.isfinite(values).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return values


def per_period_rate(risk_free, periods_per_year: int):
    """Annual risk-free rate(s) as a rate per period: a float, or for an array (one annual
    rate per period, on the returns' dates, e.g. a Fama–French series) an array."""
    if np.ndim(risk_free) == 0:
        return (1.0 + risk_free) ** (1.0 / periods_per_year) - 1.0
    return (1.0 + np.asarray(risk_free, dtype=float)) ** (1.0 / periods_per_year) - 1.0


def _excess(x, periods_per_year: int, risk_free: float) -> np.ndarray:
    return as_returns(x) - per_period_rate(risk_free, periods_per_year)


def sharpe_of(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Per-period Sharpe ratio along ``axis`` (NaN for a constant series)."""
    sd = x.std(axis=axis, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sd > 0, x.mean(axis=axis) / sd, np.nan)


def newey_west_lags(n: int) -> int:
    """Newey–West (1994) bandwidth rule ``floor(4 (n/100)^(2/9))``."""
    return int(np.floor(4.0 * (n / 100.0) ** (2.0 / 9.0)))


def block_length(*series) -> float:
    """Expected block length for the stationary bootstrap of these series.

    Politis & White (2004) optimal length (as corrected by Patton, Politis & White 2009,
    :func:`arch.bootstrap.optimal_block_length`) of each series, averaged, and kept in
    ``[1, n/4]``. Paired resampling of several series uses one length for all of them.
    """
    lengths = []
    for values in series:
        values = as_returns(values)
        if np.std(values) == 0:
            continue
        lengths.append(float(optimal_block_length(values)["stationary"].iloc[0]))
    n = len(as_returns(series[0]))
    length = float(np.mean(lengths)) if lengths else 1.0
    return float(np.clip(length, 1.0, max(1.0, n / 4.0)))


def bootstrap_indices(
    n_periods: int, n_boot: int, block: float, seed: int | np.random.Generator = 0
) -> np.ndarray:
    """Stationary-bootstrap row indices, shape ``(n_boot, n_periods)``.

    Each replicate is a sequence of blocks with geometrically distributed lengths of mean
    ``block`` (wrapping around the end), drawn by :class:`arch.bootstrap.StationaryBootstrap`.
    Applying one replicate's indices to every strategy keeps comparisons paired on dates.
    """
    sampler = StationaryBootstrap(block, np.arange(n_periods), seed=seed)
    return np.stack([data[0][0] for data in sampler.bootstrap(n_boot)]).astype(int)


def sharpe_se(
    returns, periods_per_year: int, risk_free: float = 0.0, lags: int | None = None
) -> float:
    """Standard error of the annualised Sharpe ratio, robust to non-normal, autocorrelated
    returns (Lo 2002).

    The Sharpe ratio is a function of the first two moments; their joint long-run covariance
    is estimated with the Newey–West (Bartlett) HAC estimator of statsmodels (``lags``
    default ``floor(4 (n/100)^(2/9))``) and carried to the ratio by the delta method. With
    i.i.d. normal returns this reduces to ``sqrt((1 + SR²/2) / n)`` per period.
    """
    x = _excess(returns, periods_per_year, risk_free)
    n = x.size
    mu, var = x.mean(), x.var(ddof=1)
    if var <= 0:
        return float("nan")
    moments = np.column_stack([x - mu, (x - mu) ** 2 - var])
    # S_hac_simple returns the HAC *sum* of outer products; divided by n: the long-run covariance.
    omega = S_hac_simple(moments, nlags=newey_west_lags(n) if lags is None else lags) / n
    sd = np.sqrt(var)
    gradient = np.array([1.0 / sd, -mu / (2.0 * sd**3)])
    se = np.sqrt(max(float(gradient @ omega @ gradient), 0.0) / n)
    return float(np.sqrt(periods_per_year) * se)


def sharpe_ci(
    returns,
    periods_per_year: int,
    level: float = 0.95,
    method: Literal["bootstrap", "analytic"] = "bootstrap",
    risk_free: float = 0.0,
    n_boot: int = 2000,
    block: float | None = None,
    seed: int = 0,
) -> tuple[float, float]:
    """Confidence interval ``(low, high)`` for the annualised Sharpe ratio.

    ``"bootstrap"``: percentile interval of the stationary block bootstrap (block length
    :func:`block_length` unless given), ``n_boot`` replicates. ``"analytic"``: ``SR ± z·SE``
    with the HAC standard error of :func:`sharpe_se` (Lo 2002; robust to skewness, fat tails
    and autocorrelation).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    x = _excess(returns, periods_per_year, risk_free)
    ann = np.sqrt(periods_per_year)
    estimate = float(ann * sharpe_of(x))
    if method == "analytic":
        z = sps.norm.ppf(0.5 + level / 2.0)
        se = sharpe_se(x, periods_per_year)
        return estimate - z * se, estimate + z * se
    if method != "bootstrap":
        raise ValueError(f"method must be 'bootstrap' or 'analytic', got {method!r}")
    index = bootstrap_indices(x.size, n_boot, block or block_length(x), seed)
    replicates = ann * sharpe_of(x[index])
    alpha = (1.0 - level) / 2.0
    low, high = np.nanquantile(replicates, [alpha, 1.0 - alpha])
    return float(low), float(high)


@dataclass(frozen=True)
class SharpeDifference:
    """Result of a paired test of ``SR(a) − SR(b)`` (annualised) on the same dates."""

    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    method: str


def _difference_se(a: np.ndarray, b: np.ndarray, lags: int) -> float:
    """HAC delta-method SE of the per-period Sharpe difference (Ledoit & Wolf 2008, eq. 5)."""
    n = a.size
    m = np.column_stack([a, b, a**2, b**2])
    mu = m.mean(axis=0)
    omega = S_hac_simple(m - mu, nlags=lags) / n
    ma, mb, ga, gb = mu
    va, vb = ga - ma**2, gb - mb**2
    if va <= 0 or vb <= 0:
        return float("nan")
    gradient = np.array([ga / va**1.5, -gb / vb**1.5, -ma / (2 * va**1.5), mb / (2 * vb**1.5)])
    return float(np.sqrt(max(gradient @ omega @ gradient, 0.0) / n))


def sharpe_difference_test(
    a,
    b,
    periods_per_year: int,
    level: float = 0.95,
    method: Literal["bootstrap", "analytic"] = "bootstrap",
    risk_free: float = 0.0,
    n_boot: int = 2000,
    block: float | None = None,
    seed: int = 0,
) -> SharpeDifference:
    """Paired test of ``H0: SR(a) = SR(b)`` for two return series on the same dates.

    ``a`` and ``b`` are 1-D (one series each); 2-D inputs ``(n_periods, n_seeds)`` of learned
    strategies compare their mean-over-seeds Sharpe ratios with :func:`seed_time_difference`.

    ``"bootstrap"`` (default): Ledoit & Wolf (2008) — the difference is studentised by its
    HAC delta-method standard error, and the distribution of the studentised statistic comes
    from a block bootstrap that resamples the *pairs* of returns (here the stationary
    bootstrap), recomputing the standard error in every replicate; the p-value is two-sided
    and the interval symmetric. ``"analytic"``: the Jobson & Korkie (1981) test with Memmel's
    (2003) correction, which assumes i.i.d. normal returns — a cross-check.
    """
    if any(np.ndim(v) == 2 and np.shape(v)[1] > 1 for v in (a, b)):
        return seed_time_difference(a, b, periods_per_year, level, risk_free, n_boot, seed)
    x = _excess(a, periods_per_year, risk_free)
    y = _excess(b, periods_per_year, risk_free)
    if x.size != y.size:
        raise ValueError(f"a and b must cover the same dates: {x.size} vs {y.size} periods")
    ann = np.sqrt(periods_per_year)
    n = x.size
    diff = float(sharpe_of(x) - sharpe_of(y))
    z_level = sps.norm.ppf(0.5 + level / 2.0)
    if method == "analytic":
        sa, sb = sharpe_of(x), sharpe_of(y)
        rho = float(np.corrcoef(x, y)[0, 1])
        var = (2.0 * (1.0 - rho) + 0.5 * (sa**2 + sb**2 - 2.0 * sa * sb * rho**2)) / n
        se = float(np.sqrt(max(var, 0.0)))
        p = float(2.0 * sps.norm.sf(abs(diff) / se)) if se > 0 else float("nan")
        return SharpeDifference(
            ann * diff, ann * (diff - z_level * se), ann * (diff + z_level * se), p,
            "Jobson-Korkie/Memmel",
        )  # fmt: skip
    if method != "bootstrap":
        raise ValueError(f"method must be 'bootstrap' or 'analytic', got {method!r}")
    lags = newey_west_lags(n)
    se = _difference_se(x, y, lags)
    index = bootstrap_indices(n, n_boot, block or block_length(x, y), seed)
    studentised = np.empty(n_boot)
    for i, rows in enumerate(index):
        xb, yb = x[rows], y[rows]
        se_b = _difference_se(xb, yb, lags)
        studentised[i] = abs(float(sharpe_of(xb) - sharpe_of(yb)) - diff) / se_b
    studentised = studentised[np.isfinite(studentised)]
    observed = abs(diff) / se
    p = float((1 + np.sum(studentised >= observed)) / (1 + studentised.size))
    q = float(np.quantile(studentised, level))
    return SharpeDifference(
        ann * diff, ann * (diff - q * se), ann * (diff + q * se), p, "Ledoit-Wolf bootstrap"
    )


def _moments(x: np.ndarray) -> tuple[float, float]:
    """Skewness and (non-excess) kurtosis, the γ3 and γ4 of Bailey & López de Prado."""
    return float(sps.skew(x, bias=False)), float(sps.kurtosis(x, fisher=False, bias=False))


def probabilistic_sharpe_ratio(
    sharpe: float,
    n_obs: int,
    periods_per_year: int,
    skew: float = 0.0,
    kurt: float = 3.0,
    benchmark: float = 0.0,
) -> float:
    """Probability that the true Sharpe ratio exceeds ``benchmark`` (Bailey & López de Prado
    2012): ``Φ((SR − SR*)·sqrt(n − 1) / sqrt(1 − γ3·SR + (γ4 − 1)/4·SR²))`` on per-period
    ratios.

    ``sharpe`` and ``benchmark`` are annualised (they are de-annualised by ``sqrt(P)``);
    ``kurt`` is the kurtosis (3 for normal returns), not the excess kurtosis.
    """
    root = np.sqrt(periods_per_year)
    sr, target = sharpe / root, benchmark / root
    denominator = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr**2
    if denominator <= 0 or n_obs < 2:
        return float("nan")
    return float(sps.norm.cdf((sr - target) * np.sqrt(n_obs - 1) / np.sqrt(denominator)))


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """Expected maximum of ``n_trials`` Sharpe ratio estimates with true Sharpe 0 and variance
    ``sharpe_variance`` (Bailey & López de Prado 2014, eq. 2): ``sqrt(V)·((1 − γ)Φ⁻¹(1 − 1/N)
    + γΦ⁻¹(1 − 1/(N·e)))``, γ the Euler–Mascheroni constant. Units of ``sqrt(V)``."""
    if n_trials < 2:
        return 0.0
    z = (1.0 - EULER_GAMMA) * sps.norm.ppf(1.0 - 1.0 / n_trials) + EULER_GAMMA * sps.norm.ppf(
        1.0 - 1.0 / (n_trials * np.e)
    )
    return float(np.sqrt(sharpe_variance) * z)


def deflated_sharpe_ratio(
    sharpe: float,
    n_obs: int,
    periods_per_year: int,
    n_trials: int,
    sharpe_variance: float,
    skew: float = 0.0,
    kurt: float = 3.0,
) -> float:
    """Deflated Sharpe ratio (Bailey & López de Prado 2014): the probabilistic Sharpe ratio of
    the best of ``n_trials`` strategies against the Sharpe ratio that luck alone would give the
    best of them, :func:`expected_max_sharpe`.

    ``sharpe`` is the selected strategy's annualised ratio; ``sharpe_variance`` the variance of
    the ``n_trials`` annualised Sharpe estimates. Above 0.95: the selection survives the
    multiple testing at 5 %.
    """
    benchmark = expected_max_sharpe(n_trials, sharpe_variance)
    return probabilistic_sharpe_ratio(sharpe, n_obs, periods_per_year, skew, kurt, benchmark)


def seed_time_replicates(
    data: Mapping[str, np.ndarray], periods_per_year: int, n_boot: int, seed: int
) -> tuple[dict[str, float], dict[str, np.ndarray], float]:
    """Estimates (mean over seeds of the annualised Sharpe) and bootstrap replicates of each
    ``(n_periods, n_seeds)`` excess-return array: one set of time blocks per replicate shared
    by every series (paired), and per series a resample of its seeds with replacement."""
    root = np.sqrt(periods_per_year)
    n = len(next(iter(data.values())))
    block = block_length(*[values.mean(axis=1) for values in data.values()])
    rng = np.random.default_rng(seed)
    index = bootstrap_indices(n, n_boot, block, rng)
    estimates, replicates = {}, {}
    for name, values in data.items():
        n_seeds = values.shape[1]
        estimates[name] = float(np.mean(root * sharpe_of(values, axis=0)))
        drawn = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
        # per_seed[b, s]: Sharpe of seed s on replicate b's dates.
        per_seed = root * sharpe_of(values[index], axis=1)
        replicates[name] = np.nanmean(np.take_along_axis(per_seed, drawn, axis=1), axis=1)
    return estimates, replicates, block


def centred_p(diff: float, replicate_diffs: np.ndarray) -> float:
    """Two-sided bootstrap p-value of ``H0: difference = 0`` from centred replicates."""
    centred = replicate_diffs - diff
    centred = centred[np.isfinite(centred)]
    # The tolerance keeps a series identical to its reference at p = 1 despite rounding
    # differences between reductions over differently shaped arrays.
    extreme = np.abs(centred) >= abs(diff) - 1e-12
    return float((1 + np.sum(extreme)) / (1 + centred.size))


def as_runs(values, periods_per_year: int, risk_free: float) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    array = array.reshape(len(array), -1)
    if not np.isfinite(array).all():
        raise ValueError("returns contain NaN or infinite values")
    rate = per_period_rate(risk_free, periods_per_year)
    return array - (rate if np.ndim(rate) == 0 else np.reshape(rate, (-1, 1)))


def seed_time_difference(
    a,
    b,
    periods_per_year: int,
    level: float = 0.95,
    risk_free: float = 0.0,
    n_boot: int = 2000,
    seed: int = 0,
) -> SharpeDifference:
    """Paired test of two learned strategies' mean-over-seeds Sharpe ratios.

    ``a`` and ``b`` have shape ``(n_periods, n_seeds)`` on the same dates. The uncertainty
    combines time and seeds (see :func:`sharpe_table`): percentile interval of the replicate
    differences, two-sided p-value from the centred replicates.
    """
    data = {
        "a": as_runs(a, periods_per_year, risk_free),
        "b": as_runs(b, periods_per_year, risk_free),
    }
    if len(data["a"]) != len(data["b"]):
        raise ValueError("a and b must cover the same dates")
    estimates, replicates, _ = seed_time_replicates(data, periods_per_year, n_boot, seed)
    diff = estimates["a"] - estimates["b"]
    replicate_diffs = replicates["a"] - replicates["b"]
    alpha = (1.0 - level) / 2.0
    low, high = np.nanquantile(replicate_diffs, [alpha, 1.0 - alpha])
    return SharpeDifference(
        diff, float(low), float(high), centred_p(diff, replicate_diffs),
        "seed-and-time bootstrap",
    )  # fmt: skip
