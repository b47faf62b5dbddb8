"""The command line as a user meets it: runs, run directories, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import make_prices
from dynafolio.cli import app

runner = CliRunner()


def _write_csv(tmp_path, prices: pd.DataFrame, name: str = "prices.csv"):
    path = tmp_path / name
    prices.to_csv(path, index_label="date")
    return path


@pytest.fixture
def good_csv(tmp_path):
    return _write_csv(tmp_path, make_prices(n_periods=400, n_assets=6, late=0))


def test_run_on_a_user_csv_writes_a_complete_run_directory(tmp_path, good_csv):
    out = tmp_path / "runs"
    result = runner.invoke(app, ["run", "--data", str(good_csv), "--out", str(out), "--quick"])
    assert result.exit_code == 0, result.output
    (run_dir,) = out.iterdir()
    for name in ("report.html", "metrics.csv", "metrics.json", "manifest.json"):
        assert (run_dir / name).is_file(), name
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["data"]["source"] == str(good_csv)
    assert len(manifest["data"]["sha256"]) == 64
    metrics = pd.read_csv(run_dir / "metrics.csv", index_col="strategy")
    assert "Equal weight" in metrics.index and np.isfinite(metrics["sharpe"]).all()
    # Every strategy has its Sharpe interval and its paired p-value against the benchmark.
    assert (metrics["sharpe_ci_low"] < metrics["sharpe"]).all()
    assert (metrics["sharpe"] < metrics["sharpe_ci_high"]).all()
    others = metrics.drop(index="Equal weight")["sharpe_p_vs_benchmark"]
    assert others.between(0, 1).all() and np.isnan(
        metrics.loc["Equal weight", "sharpe_p_vs_benchmark"]
    )
    inference = json.loads((run_dir / "metrics.json").read_text())["inference"]
    assert 0 <= inference["spa_p_value"] <= 1 and 0 <= inference["best_deflated_sharpe_ratio"] <= 1
    assert "95% CI" in result.output and "p vs bench" in result.output
    assert "Equal weight" in result.output and "Sharpe" in result.output
    assert "composite skipped" in result.output  # a user file has no asset classes
    # ... and the report and metrics.json say so too, with the --quick note.
    notes = json.loads((run_dir / "metrics.json").read_text())["notes"]
    assert any("composite skipped" in n for n in notes) and any("--quick" in n for n in notes)
    assert "composite skipped" in (run_dir / "report.html").read_text(encoding="utf-8")


def _corrupt(tmp_path, edit):
    prices = make_prices(n_periods=160, n_assets=5, late=0)
    frame = prices.reset_index()
    frame["date"] = frame["date"].dt.strftime("%Y-%m-%d")
    frame = frame.astype(object)
    edit(frame)
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda f: f.__setitem__("date", f["date"].where(f.index != 10, f.loc[9, "date"])),
            ["line 12", "more than once"],
        ),
        (lambda f: f.loc.__setitem__((20, "A2"), -3.0), ["line 22", "A2", "-3"]),
        (lambda f: f.loc.__setitem__((30, "A1"), "n/a price"), ["line 32", "A1", "n/a price"]),
    ],
    ids=["duplicated-date", "negative-price", "text-cell"],
)
def test_bad_csv_exits_non_zero_names_the_row_and_writes_nothing(tmp_path, edit, expected):
    path = _corrupt(tmp_path, edit)
    out = tmp_path / "runs"
    result = runner.invoke(app, ["run", "--data", str(path), "--out", str(out)])
    assert result.exit_code != 0
    message = result.output.lower()
    assert "bad.csv" in message
    for text in expected:
        assert text.lower() in message, (text, result.output)
    assert "Traceback" not in result.output
    assert not out.exists() or not any(out.iterdir())


def test_unknown_experiment_is_listed(tmp_path):
    result = runner.invoke(app, ["run", "nope", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown experiment 'nope'" in result.output and "s1" in result.output


def test_bad_config_key_is_named(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("backtest:\n  transaction_cst: 0.01\n")
    result = runner.invoke(app, ["run", "--config", str(config), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "backtest.transaction_cst" in result.output
    assert not (tmp_path / "r").exists()


def test_failed_report_keeps_the_backtests_and_exits_3(tmp_path, good_csv, monkeypatch):
    import dynafolio.report as report

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report, "write_report", explode)
    out = tmp_path / "runs"
    config = tmp_path / "ew.yaml"
    config.write_text("strategies:\n  - kind: equal_weight\n")
    result = runner.invoke(
        app, ["run", "--data", str(good_csv), "--config", str(config), "--out", str(out)]
    )
    assert result.exit_code == 3, result.output
    (run_dir,) = out.iterdir()  # complete (renamed into place), without a report
    assert (run_dir / "manifest.json").is_file() and not (run_dir / "report.html").exists()
    assert (run_dir / "ledgers" / "equal-weight.csv").is_file()
    (failure,) = json.loads((run_dir / "manifest.json").read_text())["analysis_failures"]
    assert failure["step"] == "report" and failure["message"] == "disk full"
    assert "'report' failed (RuntimeError: disk full)" in " ".join(result.output.split())


def test_data_list_and_show():
    listed = runner.invoke(app, ["data", "list"])
    assert listed.exit_code == 0 and "multiasset" in listed.output and "sp500" in listed.output
    shown = runner.invoke(app, ["data", "show", "multiasset"])
    assert shown.exit_code == 0
    assert "SOL" in shown.output and "2020-04-10" in shown.output
    missing = runner.invoke(app, ["data", "show", "nope"])
    assert missing.exit_code == 2 and "multiasset" in missing.output


def test_quick_keeps_the_seeds_a_config_asks_for(tmp_path, good_csv):
    config = tmp_path / "c.yaml"
    config.write_text(
        "n_seeds: 2\nstrategies:\n  - kind: equal_weight\n  - kind: forecast_topk\n    k: 2\n"
        "    forecaster: {model: univariate_lstm, params: {lookback: 6, hidden: 4}}\n"
    )
    out = tmp_path / "runs"
    result = runner.invoke(
        app, ["run", "--data", str(good_csv), "--config", str(config), "--out", str(out), "--quick"]
    )
    assert result.exit_code == 0, result.output
    assert "n_seeds = 2 as given" in " ".join(result.output.split())
    (run_dir,) = out.iterdir()
    per_seed = pd.read_csv(run_dir / "metrics_per_seed.csv")
    assert sorted(per_seed.loc[per_seed["strategy"] == "LSTM Top-2", "seed"]) == [0, 1]


def test_tensorboard_without_the_package_is_refused_before_anything_runs(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name)
    )
    result = CliRunner().invoke(app, ["run", "s4", "--tensorboard", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "pip install 'dynafolio[tensorboard]'" in result.output
    assert list(tmp_path.iterdir()) == []
