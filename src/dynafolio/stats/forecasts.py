"""Forecasts judged as forecasts: information coefficients, out-of-sample R², the
Diebold–Mariano test, hit rate and the top-minus-bottom spread, with block-bootstrap intervals.

Every function takes a *panel*: a forecast frame and the realised frame it predicts, both
``(n_dates, n_assets)`` and aligned on dates and assets — row ``t`` of ``forecasts`` is the
forecast made at the close of ``t`` for the next period, row ``t`` of ``realised`` what that
period then delivered (the next log return ``ln(P_{t+1}/P_t)``). NaN cells (an asset without a
price, a forecast not made) are left out cell by cell, never filled.

Names follow Qlib's where Qlib has the measure (``IC``, ``ICIR``, ``Rank IC``, ``Rank ICIR``),
so numbers can be laid beside its tables. What Qlib does not report, and why it is here: the
out-of-sample R² of Campbell & Thompson (2008) against the expanding historical mean — the
question "is this forecast better than the average so far?" — and the Diebold–Mariano (1995)
test of equal squared-error accuracy with the small-sample correction of Harvey, Leybourne &
Newbold (1997); no well-kept library offers either for a panel, so both are written here
(the long-run variance comes from statsmodels).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats as sps
from statsmodels.stats.sandwich_covariance import S_hac_simple

from dynafolio.stats.sharpe import block_length, bootstrap_indices, newey_west_lags

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
    "squared_error_by_date",
    "top_bottom_spread",
]


def _nanmean(values, axis: int | None = None):
    """``numpy.nanmean`` without the warning of an all-NaN slice (whose mean is NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=axis)


def _aligned(forecasts: pd.DataFrame, realised: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Both panels on the forecast's dates and assets, NaN where either is missing."""
    truth = realised.reindex(index=forecasts.index, columns=forecasts.columns)
    f = forecasts.to_numpy(dtype=float, copy=True)
    r = truth.to_numpy(dtype=float, copy=True)
    missing = ~(np.isfinite(f) & np.isfinite(r))
    f[missing] = np.nan
    r[missing] = np.nan
    return f, r


def _row_correlation(x: np.ndarray, y: np.ndarray, min_assets: int) -> np.ndarray:
    """Pearson correlation of each row's finite pairs (NaN: too few, or no spread)."""
    n = np.isfinite(x).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        xd = x - np.nanmean(x, axis=1, keepdims=True)
        yd = y - np.nanmean(y, axis=1, keepdims=True)
        cov = np.nansum(xd * yd, axis=1)
        sx = np.sqrt(np.nansum(xd**2, axis=1))
        sy = np.sqrt(np.nansum(yd**2, axis=1))
        # A spread of rounding noise (all forecasts equal up to 1e-12) is no spread.
        scale_x = np.nanmax(np.abs(x), axis=1, initial=0.0) * np.sqrt(np.maximum(n, 1))
        scale_y = np.nanmax(np.abs(y), axis=1, initial=0.0) * np.sqrt(np.maximum(n, 1))
        flat = (sx <= 1e-12 * scale_x) | (sy <= 1e-12 * scale_y) | (sx == 0) | (sy == 0)
        out = cov / (sx * sy)
    out[(n < min_assets) | flat] = np.nan
    return np.clip(out, -1.0, 1.0)


def ic_series(
    forecasts: pd.DataFrame,
    realised: pd.DataFrame,
    method: Literal["pearson", "spearman"] = "pearson",
    min_assets: int = 3,
) -> pd.Series:
    """The information coefficient of each date: the cross-sectional correlation of the
    forecasts with what was realised (Pearson: Qlib's ``IC``; Spearman, on ranks: ``Rank
    IC``). NaN on a date with fewer than ``min_assets`` assets or forecasts without spread."""
    f, r = _aligned(forecasts, realised)
    if method == "spearman":
        f = pd.DataFrame(f).rank(axis=1).to_numpy(dtype=float)
        r = pd.DataFrame(r).rank(axis=1).to_numpy(dtype=float)
    elif method != "pearson":
        raise ValueError(f"method must be 'pearson' or 'spearman', got {method!r}")
    return pd.Series(_row_correlation(f, r, min_assets), index=forecasts.index, name=method)


@dataclass(frozen=True)
class ICSummary:
    """An IC series summarised (dates with an IC only).

    ``ir`` is Qlib's ICIR: mean over the standard deviation of the per-date IC, per period
    (not annualised); ``positive_share`` the share of dates with a positive IC.
    """

    mean: float
    std: float
    ir: float
    positive_share: float
    n_dates: int


def ic_summary(ic: pd.Series | np.ndarray) -> ICSummary:
    values = np.asarray(ic, dtype=float)
    values = values[np.isfinite(values)]
    if values.size < 2:
        mean = float(np.mean(values)) if values.size else np.nan
        positive = float(np.mean(values > 0)) if values.size else np.nan
        return ICSummary(mean, np.nan, np.nan, positive, int(values.size))
    sd = float(values.std(ddof=1))
    return ICSummary(
        float(values.mean()),
        sd,
        float(values.mean() / sd) if sd > 0 else np.nan,
        float(np.mean(values > 0)),
        int(values.size),
    )


def expanding_mean_forecast(log_returns: pd.DataFrame) -> pd.DataFrame:
    """The historical-mean forecast: at each date, every asset's mean log return over all its
    returns up to and including that date (``log_returns`` indexed by the date a return is
    realised at). Known at the close of the date, so it forecasts the next period."""
    return log_returns.expanding(min_periods=1).mean()


def oos_r2(forecasts: pd.DataFrame, realised: pd.DataFrame, benchmark: pd.DataFrame) -> float:
    """Out-of-sample R² of Campbell & Thompson (2008), pooled over every cell where the
    forecast, the benchmark and the outcome are known: ``1 − Σ(r − f)² / Σ(r − b)²``.

    Positive when the forecast's squared error is below the benchmark's. With
    ``benchmark`` the historical mean (:func:`expanding_mean_forecast`) it answers "better than
    the average so far?"; with zeros, "better than predicting no move?".
    """
    sse_model, sse_bench = squared_error_by_date(forecasts, realised, benchmark)
    total = np.nansum(sse_bench)
    return float(1.0 - np.nansum(sse_model) / total) if total > 0 else np.nan


def oos_r2_by_asset(
    forecasts: pd.DataFrame, realised: pd.DataFrame, benchmark: pd.DataFrame
) -> pd.Series:
    """:func:`oos_r2` of each asset over its own dates."""
    f, r, b = _common(forecasts, realised, benchmark)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.nansum((r - f) ** 2, axis=0) / np.nansum((r - b) ** 2, axis=0)
    return pd.Series(1.0 - ratio, index=forecasts.columns, name="oos_r2")


def _common(
    forecasts: pd.DataFrame, realised: pd.DataFrame, benchmark: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    f, r = _aligned(forecasts, realised)
    b = benchmark.reindex(index=forecasts.index, columns=forecasts.columns).to_numpy(dtype=float)
    missing = ~(np.isfinite(f) & np.isfinite(b))
    f[missing], r[missing] = np.nan, np.nan
    b = np.where(missing, np.nan, b)
    return f, r, b


def squared_error_by_date(
    forecasts: pd.DataFrame, realised: pd.DataFrame, benchmark: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """Per date, the summed squared errors of the forecast and of the benchmark over the same
    cells, shape ``(n_dates,)`` each (NaN on a date without a common cell)."""
    f, r, b = _common(forecasts, realised, benchmark)
    known = np.isfinite(f).any(axis=1)
    model = np.where(known, np.nansum((r - f) ** 2, axis=1), np.nan)
    bench = np.where(known, np.nansum((r - b) ** 2, axis=1), np.nan)
    return model, bench


@dataclass(frozen=True)
class DieboldMariano:
    """Diebold–Mariano test of equal expected loss; ``mean_difference`` = mean(loss_a −
    loss_b), negative when ``a`` is the more accurate. ``statistic`` carries the
    Harvey–Leybourne–Newbold correction and ``p_value`` (two-sided) is read from Student's t
    with ``n − 1`` degrees of freedom."""

    statistic: float
    p_value: float
    mean_difference: float
    n: int
    lags: int


def diebold_mariano(
    loss_a: Sequence[float] | np.ndarray,
    loss_b: Sequence[float] | np.ndarray,
    horizon: int = 1,
    lags: int | None = None,
) -> DieboldMariano:
    """Test that two forecasts have equal expected loss, from their per-date losses.

    The loss difference's long-run variance is the Newey–West (Bartlett) estimate with
    ``lags`` (default: the larger of ``horizon − 1`` and the Newey–West rule
    ``floor(4 (n/100)^(2/9))``), so autocorrelated losses do not overstate the evidence;
    the statistic is scaled by ``sqrt((n + 1 − 2h + h(h − 1)/n) / n)`` (Harvey, Leybourne &
    Newbold 1997). Dates where either loss is missing are left out.
    """
    a, b = np.asarray(loss_a, dtype=float), np.asarray(loss_b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"losses must have one shape, got {a.shape} and {b.shape}")
    d = (a - b)[np.isfinite(a) & np.isfinite(b)]
    n, h = d.size, int(horizon)
    if n < 3:
        return DieboldMariano(np.nan, np.nan, float(np.mean(d)) if n else np.nan, n, 0)
    lags = max(h - 1, newey_west_lags(n)) if lags is None else int(lags)
    centred = (d - d.mean())[:, None]
    # S_hac_simple returns n times the long-run variance; the mean's variance is that over n.
    long_run = float(S_hac_simple(centred, nlags=lags)[0, 0]) / n
    variance = long_run / n
    if not variance > 0:
        return DieboldMariano(np.nan, np.nan, float(d.mean()), n, lags)
    correction = np.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)
    statistic = float(d.mean() / np.sqrt(variance) * correction)
    p_value = float(2.0 * sps.t.sf(abs(statistic), df=n - 1))
    return DieboldMariano(statistic, p_value, float(d.mean()), n, lags)


def _hit_counts(forecasts: pd.DataFrame, realised: pd.DataFrame) -> tuple[int, int]:
    f, r = _aligned(forecasts, realised)
    called = np.isfinite(f) & (f != 0) & (r != 0)
    return int((np.sign(f[called]) == np.sign(r[called])).sum()), int(called.sum())


def hit_rate(forecasts: pd.DataFrame, realised: pd.DataFrame) -> float:
    """Share of cells whose forecast has the sign of what happened (cells where either is 0
    are left out: a zero forecast calls no direction)."""
    hits, called = _hit_counts(forecasts, realised)
    return hits / called if called else np.nan


def top_bottom_spread(forecasts: pd.DataFrame, realised: pd.DataFrame, k: int) -> pd.Series:
    """Per date, the mean realised value of the ``k`` assets forecast highest minus that of the
    ``k`` forecast lowest (``k`` shrinks to half the assets on a date with fewer than ``2k``;
    NaN below two assets or when the forecasts have no spread)."""
    f, r = _aligned(forecasts, realised)
    out = np.full(len(f), np.nan)
    for i, (frow, rrow) in enumerate(zip(f, r, strict=True)):
        known = np.isfinite(frow)
        if known.sum() < 2 or np.ptp(frow[known]) == 0:
            continue
        order = np.argsort(frow[known], kind="stable")
        m = min(k, int(known.sum()) // 2)
        values = rrow[known][order]
        out[i] = values[-m:].mean() - values[:m].mean()
    return pd.Series(out, index=forecasts.index, name="top_bottom_spread")


def forecast_skill(
    forecasts: Sequence[pd.DataFrame],
    realised: pd.DataFrame,
    historical_mean: pd.DataFrame,
    k: int = 5,
    level: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """Every measure of one forecaster, its ``forecasts`` one frame per seed on the same dates.

    Point estimates pool the seeds (the mean over seeds of each per-date IC; R² and hit rate
    over every seed's cells); the intervals of the mean IC and of the R² against the
    historical mean come from one stationary block bootstrap over dates that also redraws the
    seeds — the resampling of the Sharpe intervals (:func:`dynafolio.stats.sharpe_ci`). The
    Diebold–Mariano test compares the per-date squared error summed over the seeds with the
    historical mean's on the same cells, so that it tests what the R² measures.
    """
    if not forecasts:
        raise ValueError("forecast_skill needs at least one forecast frame")
    zeros = historical_mean * 0.0
    ic = np.column_stack([ic_series(f, realised).to_numpy() for f in forecasts])
    rank_ic = np.column_stack([ic_series(f, realised, "spearman").to_numpy() for f in forecasts])
    errors = [squared_error_by_date(f, realised, historical_mean) for f in forecasts]
    sse_model = np.column_stack([e[0] for e in errors])
    sse_mean = np.column_stack([e[1] for e in errors])
    sse_zero = np.column_stack([squared_error_by_date(f, realised, zeros)[1] for f in forecasts])
    summary = ic_summary(_nanmean(ic, axis=1))
    rank_summary = ic_summary(_nanmean(rank_ic, axis=1))
    known = np.isfinite(sse_model).any(axis=1)
    dm = diebold_mariano(
        np.where(known, np.nansum(sse_model, axis=1), np.nan),
        np.where(known, np.nansum(sse_mean, axis=1), np.nan),
    )
    n_cells = np.nansum(sse_mean)
    hits = np.array([_hit_counts(f, realised) for f in forecasts]).sum(axis=0)
    out = {
        "IC": summary.mean,
        "ICIR": summary.ir,
        "Rank IC": rank_summary.mean,
        "Rank ICIR": rank_summary.ir,
        "IC positive share": summary.positive_share,
        "oos_r2_vs_mean": float(1 - np.nansum(sse_model) / n_cells) if n_cells > 0 else np.nan,
        "oos_r2_vs_zero": float(1 - np.nansum(sse_model) / np.nansum(sse_zero))
        if np.nansum(sse_zero) > 0
        else np.nan,
        "dm_statistic": dm.statistic,
        "dm_p_value": dm.p_value,
        "hit_rate": float(hits[0] / hits[1]) if hits[1] else np.nan,
        "top_bottom_spread": float(
            _nanmean([top_bottom_spread(f, realised, k).mean() for f in forecasts])
        ),
        "n_dates": int(known.sum()),
        "n_seeds": len(forecasts),
    }
    out.update(_intervals(ic, sse_model, sse_mean, level, n_boot, seed))
    return out


def _intervals(
    ic: np.ndarray, sse_model: np.ndarray, sse_mean: np.ndarray, level: float, n_boot: int,
    seed: int,
) -> dict[str, float]:  # fmt: skip
    """Percentile intervals of the mean IC and the R² against the historical mean over
    ``(n_dates, n_seeds)`` arrays: dates by stationary blocks, seeds with replacement."""
    # Every date with a squared error; the IC and the R² each read their own finite cells of
    # the same drawn dates (an IC needs three assets with spread, an error one asset).
    usable = np.isfinite(sse_model).any(axis=1) | np.isfinite(ic).any(axis=1)
    ic, sse_model, sse_mean = ic[usable], sse_model[usable], sse_mean[usable]
    n_dates, n_seeds = ic.shape
    nan = {"IC_ci_low": np.nan, "IC_ci_high": np.nan, "oos_r2_ci_low": np.nan,
           "oos_r2_ci_high": np.nan}  # fmt: skip
    if n_dates < 10 or n_boot < 1:
        return nan
    rng = np.random.default_rng(seed)
    driver = _nanmean(ic, axis=1)
    if np.isfinite(driver).sum() < 10 or not np.nanstd(driver) > 0:
        driver = np.nansum(sse_model, axis=1)
    driver = np.where(np.isfinite(driver), driver, np.nanmean(driver))
    block = block_length(driver) if np.std(driver) > 0 else 1.0
    rows = bootstrap_indices(n_dates, n_boot, block, rng)
    seeds = (
        rng.integers(0, n_seeds, size=(n_boot, n_seeds))
        if n_seeds > 1
        else np.zeros((n_boot, 1), dtype=int)
    )
    ic_means = np.empty(n_boot)
    r2 = np.empty(n_boot)
    for b in range(n_boot):
        drawn = np.ix_(rows[b], seeds[b])
        ic_means[b] = _nanmean(ic[drawn])
        r2[b] = 1.0 - np.nansum(sse_model[drawn]) / np.nansum(sse_mean[drawn])
    alpha = (1.0 - level) / 2.0
    with warnings.catch_warnings():  # a forecaster without an IC has no IC interval
        warnings.simplefilter("ignore", RuntimeWarning)
        ic_low, ic_high = np.nanquantile(ic_means, [alpha, 1.0 - alpha])
        r2_low, r2_high = np.nanquantile(r2, [alpha, 1.0 - alpha])
    return {"IC_ci_low": float(ic_low), "IC_ci_high": float(ic_high),
            "oos_r2_ci_low": float(r2_low), "oos_r2_ci_high": float(r2_high)}  # fmt: skip
