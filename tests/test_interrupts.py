"""Interrupted runs leave nothing behind: SIGTERM cleans up, SIGKILL leftovers are swept,
and training writes no temporary folders."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import make_prices
from dynafolio.cli import app
from dynafolio.paths import PARTIAL_MARKER, sweep_partial_runs

# A process that starts writing a run directory through the CLI's error/signal handling and
# then waits, so that a signal arrives while the partial directory exists.
WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from dynafolio.cli import user_errors as _user_errors
    from dynafolio.experiments.artifacts import atomic_run_dir

    with _user_errors():
        with atomic_run_dir(Path(sys.argv[1]), "s1") as run:
            (run.path / "metrics.csv").write_text("strategy,sharpe\\n")
            print("writing", flush=True)
            time.sleep(60)
    """
)


def _start_writer(out: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(out)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "writing"
    (partial,) = out.iterdir()
    assert partial.name.startswith(".s1-") and (partial / PARTIAL_MARKER).is_file()
    return process


def test_sigterm_while_writing_removes_the_partial_directory(tmp_path):
    out = tmp_path / "runs"
    process = _start_writer(out)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 128 + signal.SIGTERM
    assert list(out.iterdir()) == []


def test_sigkill_leftovers_are_removed_by_the_next_run(tmp_path):
    out = tmp_path / "runs"
    process = _start_writer(out)
    process.kill()
    process.wait(timeout=30)
    (left,) = out.iterdir()  # SIGKILL cannot be caught: the partial directory stays ...
    data = tmp_path / "prices.csv"
    make_prices(n_periods=120, n_assets=4, late=0).to_csv(data, index_label="date")
    config = tmp_path / "ew.yaml"
    config.write_text("strategies:\n  - kind: equal_weight\n")
    result = CliRunner().invoke(
        app, ["run", "--data", str(data), "--config", str(config), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "removed" in result.output and "interrupted run" in result.output
    assert not left.exists()  # ... until the next run in the same --out sweeps it
    (finished,) = out.iterdir()
    assert (finished / "manifest.json").is_file() and not (finished / PARTIAL_MARKER).exists()


def test_partial_directories_that_may_be_in_use_are_only_reported(tmp_path):
    live = tmp_path / ".s1-20260101-000000.partial-0123abcd"
    live.mkdir()
    (live / PARTIAL_MARKER).write_text(json.dumps({"pid": os.getpid(), "host": os.uname()[1]}))
    foreign = tmp_path / ".s2-20260101-000000.partial-4567cdef"
    foreign.mkdir()
    lines = sweep_partial_runs(tmp_path)
    assert live.exists() and foreign.exists()
    assert any("still running" in line for line in lines)
    assert any("without an owner record" in line for line in lines)


def test_ppo_training_leaves_no_temporary_folders(tmp_path, monkeypatch):
    import torch._dynamo  # noqa: F401 - its import makes torch's own cache folder in the temp dir

    from dynafolio.rl.settings import PPOSettings
    from dynafolio.rl.training import train_agent

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    returns = make_prices(n_periods=80, n_assets=4, late=0).pct_change().to_numpy()
    settings = PPOSettings(
        n_steps=32, batch_size=32, n_envs=2, total_timesteps=64, eval_every=64, episode_length=10
    )
    train_agent(returns, k=2, lookback=4, settings=settings, seed=0)
    assert tempfile.gettempdir() == str(scratch)
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize("signum", [signal.SIGINT])
def test_ctrl_c_while_writing_removes_the_partial_directory(tmp_path, signum):
    out = tmp_path / "runs"
    process = _start_writer(out)
    process.send_signal(signum)
    assert process.wait(timeout=30) != 0
    assert list(out.iterdir()) == []
