"""A failing analysis step never loses the finished backtests: the run directory is written,
the failure is recorded and the CLI exits with code 3."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from dynafolio.cli import ANALYSIS_FAILED, app
from dynafolio.experiments import runner as experiment_runner
from dynafolio.results.steps import AnalysisSteps

cli = CliRunner()


def _prices(seed: int = 0, n_periods: int = 200) -> pd.DataFrame:
    """Weekly prices: A0 rises fast, A1 slowly, the other four fall (log drifts per week)."""
    drifts = np.array([0.01, 0.004, -0.004, -0.004, -0.004, -0.004])
    returns = np.random.default_rng(seed).normal(drifts, 0.03, size=(n_periods, len(drifts)))
    return pd.DataFrame(
        100.0 * np.exp(np.cumsum(returns, axis=0)),
        index=pd.date_range("2019-01-04", periods=n_periods, freq="W-FRI", name="date"),
        columns=[f"A{i}" for i in range(len(drifts))],
    )


def _run(tmp_path, config: str) -> tuple[object, object]:
    """``dynafolio run`` on :func:`_prices` with ``config`` (YAML) in one process."""
    data = tmp_path / "prices.csv"
    _prices().to_csv(data, index_label="date")
    path = tmp_path / "config.yaml"
    path.write_text(config)
    out = tmp_path / "runs"
    args = ["run", "--data", str(data), "--config", str(path), "--out", str(out)]
    return cli.invoke(app, [*args, "--executor", "serial"]), out


# Rules only (nothing trains); the random control runs twice (two seeds).
RULES = """
n_seeds: 2
split: {train_fraction: 0.7}
stress_windows: {}
plot_groups: {}
index_asset: A0
benchmark: Random
strategies:
  - {kind: random_topk, k: 2, name: Random}
  - {kind: buy_and_hold, asset: A0}
  - {kind: buy_and_hold, asset: A1}
  - {kind: momentum, lookback: 12, skip: 0, top: 2}
"""


@pytest.mark.parametrize(
    ("function", "step"),
    [
        ("infer", "inference (Sharpe intervals, p-values, SPA and StepM)"),
        ("_rolling_alpha_beta", "rolling alpha and beta"),
    ],
)
def test_a_failing_analysis_step_keeps_the_backtests_and_exits_3(
    tmp_path, monkeypatch, function, step
):
    def explode(*args, **kwargs):
        raise ValueError("planted failure")

    monkeypatch.setattr(experiment_runner, function, explode)
    result, out = _run(tmp_path, RULES.replace("benchmark: Random", "benchmark: A1 buy & hold"))
    assert result.exit_code == ANALYSIS_FAILED == 3, result.output
    (run_dir,) = out.iterdir()  # renamed into place: complete
    assert (run_dir / "manifest.json").is_file()
    # The finished backtests, every strategy and seed.
    assert {p.name for p in (run_dir / "weights").iterdir()} == {
        "random-seed0.csv", "random-seed1.csv", "a0-buy-hold.csv", "a1-buy-hold.csv",
        "momentum-12-0-top-2.csv",
    }  # fmt: skip
    assert len(list((run_dir / "ledgers").iterdir())) == 5
    per_seed = pd.read_csv(run_dir / "metrics_per_seed.csv")
    assert len(per_seed) == 5 and np.isfinite(per_seed["sharpe"]).all()
    assert len(pd.read_csv(run_dir / "net_returns.csv", index_col="date").columns) == 4
    # The failure: which step, the exception's type and message, everywhere it is read.
    expected = f"'{step}' failed (ValueError: planted failure)"
    assert expected in " ".join(result.output.split())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    (failure,) = metrics["analysis_failures"]
    assert (failure["step"], failure["error"], failure["message"]) == (
        step, "ValueError", "planted failure",
    )  # fmt: skip
    assert "planted failure" in failure["traceback"]
    assert expected in metrics["notes"][0]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["analysis_failures"][0]["step"] == step
    report = (run_dir / "report.html").read_text()
    assert "The analysis is incomplete" in report and expected in report.replace("&#39;", "'")
    table = pd.read_csv(run_dir / "metrics.csv", index_col="strategy")
    if function == "infer":
        # The main table falls back to the per-seed aggregate, without intervals.
        assert "sharpe_ci_low" not in table.columns and metrics["inference"] is None
        assert table.loc["Random", "n_seeds"] == 2 and np.isfinite(table["sharpe"]).all()
        assert metrics["findings"] == []
    else:
        assert "sharpe_ci_low" in table.columns and metrics["findings"]
        assert not (run_dir / "rolling_alpha_beta.csv").exists()


def test_a_random_control_benchmark_beaten_by_every_strategy(tmp_path):
    # Every strategy beats the random control, found superior over two StepM steps: arch's
    # StepM then re-ran SPA on an empty set and the run died after its backtests.
    result, out = _run(tmp_path, RULES)
    assert result.exit_code == 0, result.output
    (run_dir,) = out.iterdir()
    inference = json.loads((run_dir / "metrics.json").read_text())["inference"]
    assert inference["stepm_survivors"] == [
        "A0 buy & hold", "A1 buy & hold", "Momentum 12-0 top 2",
    ]  # fmt: skip
    assert inference["spa_p_value"] < 0.05


def test_steps_record_a_failure_and_return_the_fallback():
    steps = AnalysisSteps()
    assert steps.run("sum", sum, [1, 2], fallback=-1) == 3
    assert steps.run("divide", lambda a, b: a / b, 1, 0, fallback=None) is None
    (failure,) = steps.failures
    assert (failure.step, failure.error) == ("divide", "ZeroDivisionError")
    assert "ZeroDivisionError" in failure.traceback and "'divide' failed" in failure.note


def test_steps_let_an_interrupt_through():
    def interrupted():
        raise KeyboardInterrupt

    steps = AnalysisSteps()
    with pytest.raises(KeyboardInterrupt):
        steps.run("interrupted", interrupted, fallback=None)
    assert steps.failures == []
