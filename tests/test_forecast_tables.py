"""Every run with a forecaster judges its forecasts: forecasts.csv/json, the report section,
the findings line — through the same path a CLI run takes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from dynafolio.cli import app

PHI = 0.3
CONFIG = """
name: skill
n_seeds: 2
split: {train_fraction: 0.6}
strategies:
  - kind: equal_weight
  - {kind: forecast_topk, k: 3, retrain_every: 20, forecaster: {model: ar}}
  - {kind: forecast_topk, k: 3, retrain_every: 20, forecaster: {model: oracle}}
"""
MARKET = ["--dataset", "momentum", "--market", "n_assets=12", "--market", "n_periods=400",
          "--market", f"phi={PHI}"]  # fmt: skip


def _run(tmp_path, config: str = CONFIG) -> tuple:
    path = tmp_path / "skill.yaml"
    path.write_text(config)
    out = tmp_path / "runs"
    result = CliRunner().invoke(app, ["run", "--config", str(path), *MARKET, "--out", str(out)])
    assert result.exit_code == 0, result.output
    (run,) = out.iterdir()
    return run, result.output


@pytest.fixture(scope="module")
def skill_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("skill"))


def test_a_run_writes_its_forecasts_against_the_baselines(skill_run):
    run, output = skill_run
    table = pd.read_csv(run / "forecasts.csv")
    pooled = table[(table["seed"] == "all") & (table["fold"] == "all")].set_index("forecaster")
    assert list(pooled.index) == ["AR", "Oracle", "Zero", "Historical mean", "AR(1)",
                                  "Ridge (5 lags)"]  # fmt: skip
    assert pooled.loc[["AR", "Oracle"], "learned"].all()
    assert not pooled.loc[["Zero", "Historical mean", "AR(1)"], "learned"].any()
    # Known answers: the oracle is the true forecast (IC φ, R² against zero φ²); the AR fit
    # gets close; the historical mean has no cross-sectional skill on a driftless market.
    assert pooled.loc["Oracle", "IC"] == pytest.approx(PHI, abs=0.06)
    assert pooled.loc["Oracle", "oos_r2_vs_zero"] == pytest.approx(PHI**2, abs=0.04)
    assert pooled.loc["AR", "IC"] == pytest.approx(PHI, abs=0.08)
    assert abs(pooled.loc["Historical mean", "IC"]) < 0.1
    assert pooled.loc["AR", "IC_ci_low"] < pooled.loc["AR", "IC"] < pooled.loc["AR", "IC_ci_high"]
    assert pooled.loc["AR", "dm_p_value"] < 0.01 and pooled.loc["AR", "dm_statistic"] < 0
    # One row per seed of a learned forecaster beside the pooled one.
    assert set(table.loc[table["forecaster"] == "AR", "seed"]) == {"all", "0", "1"}
    saved = json.loads((run / "forecasts.json").read_text())
    assert saved["benchmark"] == "Historical mean" and len(saved["rows"]) == len(table)
    ic = pd.read_csv(run / "forecast_ic.csv", index_col="date")
    assert list(ic.columns) == list(pooled.index)
    assert "Forecasts (out of sample" in output
    assert "Forecaster AR beats the historical mean out of sample" in output
    report = (run / "report.html").read_text()
    assert "Forecast skill (out of sample, seeds pooled)" in report and "chart-ic" in report


def test_the_forecasts_evaluated_are_those_the_strategy_traded_on(skill_run):
    """At every decision the AR Top-3 holds the three assets the evaluated AR forecasts rank
    highest: the table measures what the strategy acted on."""
    run, _ = skill_run
    forecasts = pd.read_csv(run / "forecasts" / "ar-seed0.csv", index_col="date")
    weights = pd.read_csv(run / "weights" / "ar-top-3-seed0.csv", index_col="date")
    assert len(forecasts) > 50
    for date, forecast in forecasts.iterrows():
        held = set(weights.columns[weights.loc[date] > 1e-9])
        assert held == set(forecast.nlargest(3).index), date


def test_a_walk_forward_run_measures_each_fold(tmp_path):
    config = CONFIG.replace(
        "split: {train_fraction: 0.6}",
        "split: {walk_forward: {first_test: '2022-01-07', step: 26, mode: expanding}}",
    ).replace("n_seeds: 2", "n_seeds: 1")
    run, _ = _run(tmp_path, config)
    table = pd.read_csv(run / "forecasts.csv", dtype={"seed": str, "fold": str})
    folds = table[(table["forecaster"] == "AR") & (table["fold"] != "all")]
    assert len(folds) >= 3 and np.isfinite(folds["IC"]).all()
    assert "Forecast IC by walk-forward fold" in (run / "report.html").read_text()


def test_a_run_without_forecasts_writes_no_forecast_table(tmp_path):
    config = "name: plain\nstrategies:\n  - kind: equal_weight\n  - kind: inverse_volatility\n"
    run, output = _run(tmp_path, config)
    assert not (run / "forecasts.csv").exists()
    assert "Forecasts (out of sample" not in output


def test_a_learned_forecaster_named_like_a_baseline_is_told_apart(tmp_path):
    config = CONFIG.replace("forecaster: {model: oracle}", "forecaster: {model: hist_mean}")
    config = config.replace(
        "split: {train_fraction: 0.6}",
        "split: {walk_forward: {first_test: '2022-01-07', step: 26, mode: expanding}}",
    ).replace("n_seeds: 2", "n_seeds: 1")
    run, _ = _run(tmp_path, config)
    table = pd.read_csv(run / "forecasts.csv", dtype={"seed": str, "fold": str})
    pooled = table[(table["seed"] == "all") & (table["fold"] == "all")].set_index("forecaster")
    learned = "Historical mean (Historical mean Top-3)"
    assert pooled.loc[learned, "learned"] and not pooled.loc["Historical mean", "learned"]
    # The benchmark is the baseline: the learned copy on the same dates scores R² ≈ 0 against it.
    assert pooled.loc[learned, "oos_r2_vs_mean"] == pytest.approx(0.0, abs=1e-9)
    assert "Forecast IC by walk-forward fold" in (run / "report.html").read_text()
