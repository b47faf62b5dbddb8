"""Forecast skill measures against known answers (dynafolio.stats.forecasts)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from dynafolio import stats
from dynafolio.stats import forecasts as fs


def _panel(values: np.ndarray) -> pd.DataFrame:
    dates = pd.date_range("2000-01-07", periods=values.shape[0], freq="W-FRI")
    return pd.DataFrame(values, index=dates, columns=[f"A{i}" for i in range(values.shape[1])])


def _ar1(phi: float, n_dates: int, n_assets: int, seed: int, sigma: float = 0.02):
    """An AR(1) panel: the true forecast made at t (phi · r_t) and what came next (r_{t+1})."""
    rng = np.random.default_rng(seed)
    r = np.empty((n_dates + 1, n_assets))
    r[0] = rng.normal(0, sigma / np.sqrt(1 - phi**2), n_assets)
    for t in range(1, n_dates + 1):
        r[t] = phi * r[t - 1] + rng.normal(0, sigma, n_assets)
    return _panel(phi * r[:-1]), _panel(r[1:])


def _planted(rho: float, n_dates: int, n_assets: int, seed: int):
    """Forecasts whose cross-sectional correlation with the outcome is rho."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n_dates, n_assets))
    noise = rng.standard_normal((n_dates, n_assets))
    return _panel(rho * z + np.sqrt(1 - rho**2) * noise), _panel(z)


def test_the_true_ar1_forecast_has_ic_phi_and_oos_r2_phi_squared():
    phi = 0.3
    forecast, realised = _ar1(phi, n_dates=1500, n_assets=60, seed=1)
    ic = stats.ic_summary(stats.ic_series(forecast, realised))
    assert ic.mean == pytest.approx(phi, abs=0.01)
    zeros = realised * 0.0
    assert stats.oos_r2(forecast, realised, zeros) == pytest.approx(phi**2, abs=0.01)
    # The historical mean of a zero-mean AR(1) is near zero: nearly the same answer.
    assert stats.oos_r2(forecast, realised, realised * 0 + 1e-4) == pytest.approx(phi**2, abs=0.015)
    per_asset = stats.oos_r2_by_asset(forecast, realised, zeros)
    assert per_asset.mean() == pytest.approx(phi**2, abs=0.02)


def test_a_planted_correlation_is_recovered_and_noise_has_none():
    for rho in (0.0, 0.1, 0.5):
        forecast, realised = _planted(rho, n_dates=800, n_assets=80, seed=2)
        assert stats.ic_summary(stats.ic_series(forecast, realised)).mean == pytest.approx(
            rho, abs=0.01
        )
        rank = stats.ic_summary(stats.ic_series(forecast, realised, "spearman")).mean
        # Expected Spearman correlation of n draws of a bivariate normal (Moran 1948):
        # 6/(π(n+1)) · (asin ρ + (n − 2) asin(ρ/2)).
        n = forecast.shape[1]
        expected = 6 / (np.pi * (n + 1)) * (np.arcsin(rho) + (n - 2) * np.arcsin(rho / 2))
        assert rank == pytest.approx(expected, abs=0.01)


def test_ic_and_rank_ic_agree_with_scipy_date_by_date():
    forecast, realised = _planted(0.3, n_dates=20, n_assets=15, seed=3)
    forecast.iloc[3, :4] = np.nan  # gaps are left out cell by cell
    realised.iloc[5, 2] = np.nan
    ic = stats.ic_series(forecast, realised)
    rank = stats.ic_series(forecast, realised, "spearman")
    for t in range(len(forecast)):
        f, r = forecast.iloc[t].to_numpy(), realised.iloc[t].to_numpy()
        known = np.isfinite(f) & np.isfinite(r)
        assert ic.iloc[t] == pytest.approx(sps.pearsonr(f[known], r[known])[0], abs=1e-12)
        assert rank.iloc[t] == pytest.approx(sps.spearmanr(f[known], r[known])[0], abs=1e-12)


def test_a_date_without_spread_or_assets_has_no_ic():
    forecast, realised = _planted(0.3, n_dates=3, n_assets=5, seed=4)
    forecast.iloc[0] = 0.01  # every forecast equal
    forecast.iloc[1, 2:] = np.nan  # two assets left
    ic = stats.ic_series(forecast, realised)
    assert np.isnan(ic.iloc[0]) and np.isnan(ic.iloc[1]) and np.isfinite(ic.iloc[2])


def test_diebold_mariano_holds_its_size_and_finds_a_planted_difference():
    rng = np.random.default_rng(5)
    rejections = 0
    n_sims = 400
    for _ in range(n_sims):
        truth = rng.standard_normal(250)
        a = truth + rng.standard_normal(250)
        b = truth + rng.standard_normal(250)
        test = stats.diebold_mariano((truth - a) ** 2, (truth - b) ** 2)
        rejections += test.p_value < 0.05
    assert 0.025 <= rejections / n_sims <= 0.08
    truth = rng.standard_normal(250)
    better = truth + 0.5 * rng.standard_normal(250)
    worse = truth + 1.0 * rng.standard_normal(250)
    test = stats.diebold_mariano((truth - better) ** 2, (truth - worse) ** 2)
    assert test.p_value < 0.001 and test.mean_difference < 0 and test.statistic < 0


def test_diebold_mariano_small_sample_correction_and_missing_dates():
    a = np.array([1.0, 2.0, np.nan, 1.5, 0.5, 2.5, 1.0, 3.0])
    b = np.array([2.0, 2.5, 1.0, 2.0, 1.0, 2.0, 2.0, 3.5])
    test = stats.diebold_mariano(a, b, lags=0)
    d = (a - b)[np.isfinite(a)]
    n = d.size
    plain = d.mean() / np.sqrt(d.var() / n)
    assert test.n == n
    assert test.statistic == pytest.approx(plain * np.sqrt((n - 1) / n))
    assert test.p_value == pytest.approx(2 * sps.t.sf(abs(test.statistic), n - 1))


def test_hit_rate_and_top_bottom_spread():
    realised = _panel(np.array([[0.02, -0.01, 0.03, -0.02], [0.01, 0.02, -0.01, -0.03]]))
    forecast = _panel(np.array([[0.01, -0.01, -0.02, 0.0], [0.02, 0.01, -0.01, -0.02]]))
    # Day 1: A0 right, A1 right, A2 wrong, A3 no call; day 2: all four right.
    assert stats.hit_rate(forecast, realised) == pytest.approx(6 / 7)
    spread = stats.top_bottom_spread(forecast, realised, k=1)
    assert spread.tolist() == pytest.approx([0.02 - 0.03, 0.01 - (-0.03)])
    assert np.isnan(stats.hit_rate(forecast * 0, realised))


def test_forecast_skill_pools_seeds_and_brackets_the_truth():
    rho = 0.2
    seeds = [_planted(rho, n_dates=300, n_assets=40, seed=s) for s in (6, 7)]
    realised = seeds[0][1]
    frames = [seeds[0][0], (rho * realised + np.sqrt(1 - rho**2) * seeds[1][0]) / 1.0]
    skill = stats.forecast_skill(frames, realised, realised * 0.0, k=5, n_boot=300, seed=0)
    assert skill["n_seeds"] == 2 and skill["n_dates"] == 300
    assert skill["IC_ci_low"] < rho < skill["IC_ci_high"]
    assert skill["IC_ci_low"] < skill["IC"] < skill["IC_ci_high"]
    assert skill["oos_r2_ci_low"] < skill["oos_r2_vs_mean"] < skill["oos_r2_ci_high"]
    for key in ("ICIR", "Rank IC", "Rank ICIR", "IC positive share", "hit_rate", "dm_p_value"):
        assert np.isfinite(skill[key]), key


@pytest.mark.slow
def test_ic_intervals_cover_the_true_ic_at_their_level():
    rho, covered, n_sims = 0.1, 0, 300
    for sim in range(n_sims):
        forecast, realised = _planted(rho, n_dates=150, n_assets=30, seed=100 + sim)
        skill = fs.forecast_skill([forecast], realised, realised * 0.0, n_boot=400, seed=sim)
        covered += skill["IC_ci_low"] <= rho <= skill["IC_ci_high"]
    assert 0.92 <= covered / n_sims <= 0.98


def test_dm_tests_what_the_r2_measures_when_seeds_are_pooled():
    """Averaging noisy seeds cancels their noise; the test must judge the seeds as pooled."""
    rng = np.random.default_rng(8)
    realised = _panel(rng.standard_normal((300, 30)))
    truth = 0.2 * realised.to_numpy()
    seeds = [_panel(truth + rng.standard_normal((300, 30))) for _ in range(5)]
    skill = stats.forecast_skill(seeds, realised, realised * 0.0, n_boot=200)
    assert skill["oos_r2_vs_mean"] < 0 and skill["oos_r2_ci_high"] < 0
    assert skill["dm_statistic"] > 0  # less accurate, as the R² says


def test_the_r2_interval_covers_a_forecaster_of_few_assets():
    forecast, realised = _planted(0.3, n_dates=200, n_assets=5, seed=9)
    forecast.iloc[:, 2:] = np.nan  # two assets only: no IC, an R² all the same
    skill = stats.forecast_skill([forecast], realised, realised * 0.0, n_boot=200)
    assert np.isnan(skill["IC"]) and np.isnan(skill["IC_ci_low"])
    assert skill["oos_r2_ci_low"] < skill["oos_r2_vs_mean"] < skill["oos_r2_ci_high"]


def test_hit_rate_pools_the_seeds_cells():
    realised = _panel(np.array([[0.1, -0.1], [0.1, -0.1]]))
    one = _panel(np.array([[0.1, -0.1], [0.1, -0.1]]))  # 4 of 4 right
    two = _panel(np.array([[-0.1, np.nan], [np.nan, np.nan]]))  # 0 of 1
    skill = stats.forecast_skill([one, two], realised, realised * 0.0, n_boot=0)
    assert skill["hit_rate"] == pytest.approx(4 / 5)
