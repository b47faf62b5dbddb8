"""Resumable runs: an interrupted run started again with the same folder redoes only the
tasks that had not finished, and gives exactly the result of an uninterrupted run."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import TINY_LSTM, TINY_PPO
from dynafolio.errors import DataError
from dynafolio.experiments import tasks as task_module
from dynafolio.experiments.checkpoint import TaskStore, decode, encode
from dynafolio.experiments.config import validate_config
from dynafolio.parallel import ExecutorSettings
from dynafolio.studies import run_experiment

CONFIG = {
    "name": "resume",
    "n_seeds": 2,
    "data": {"dataset": "momentum", "market": {"n_assets": 6, "n_periods": 160}},
    "split": {"walk_forward": {"first_test": "2020-06-05", "step": 20}},
    "strategies": [
        {"kind": "equal_weight"},
        {"kind": "forecast_topk", "k": 2, "retrain_every": 8,
         "forecaster": {"model": "univariate_lstm", "params": TINY_LSTM}},
        {"kind": "ppo_topk", "k": 2, "lookback": 4, "score_initial_window": 40, "ppo": TINY_PPO},
    ],
}  # fmt: skip
SERIAL = ExecutorSettings(kind="serial")


def _same(a, b) -> None:
    pd.testing.assert_frame_equal(a.metrics, b.metrics)
    for x, y in zip(a.strategies, b.strategies, strict=True):
        for run_x, run_y in zip(x.runs, y.runs, strict=True):
            pd.testing.assert_frame_equal(run_x.weights, run_y.weights)
            pd.testing.assert_frame_equal(run_x.ledger, run_y.ledger)
    assert a.forecaster_files == b.forecaster_files


def test_an_interrupted_run_redoes_only_the_unfinished_tasks(tmp_path, monkeypatch):
    config = validate_config(CONFIG)
    whole = run_experiment(config, executor=SERIAL)

    real = task_module.run_task
    calls: list[str] = []

    def interrupted(context, task, deps):
        if len(calls) == 7:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the run
        calls.append(task.id)
        return real(context, task, deps)

    monkeypatch.setattr(task_module, "run_task", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(config, executor=SERIAL, resume=tmp_path / "tasks")
    first = list(calls)
    assert len(first) == 7

    calls.clear()
    monkeypatch.setattr(
        task_module, "run_task", lambda c, t, d: calls.append(t.id) or real(c, t, d)
    )
    resumed = run_experiment(config, executor=SERIAL, resume=tmp_path / "tasks")
    assert calls and not set(calls) & set(first)  # nothing finished is done again
    _same(resumed, whole)

    calls.clear()
    again = run_experiment(config, executor=SERIAL, resume=tmp_path / "tasks")
    assert calls == []  # all stored
    _same(again, whole)

    # Another config (one more seed) shares nothing stored under a different fingerprint.
    other = validate_config({**CONFIG, "n_seeds": 3})
    run_experiment(other, executor=SERIAL, resume=tmp_path / "tasks")
    assert len(calls) > 0


def test_a_damaged_stored_result_is_set_aside_and_redone(tmp_path):
    store = TaskStore(tmp_path, "fingerprint")
    store.save("backtest-0-0-0", {"a": pd.Series([1.0, 2.0], index=["x", "y"])})
    (path,) = tmp_path.glob("*.zip")
    path.write_bytes(path.read_bytes()[:40])
    assert store.load(["backtest-0-0-0"]) == {}
    assert list(tmp_path.glob("*.bad"))


def test_a_stored_result_builds_only_known_types(tmp_path):
    import json
    import zipfile

    path = tmp_path / "r.zip"
    path.write_bytes(encode({"x": 1.0}))
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    tree = json.loads(members["result.json"])
    tree["value"] = {"$": "object", "type": "Popen", "v": {"args": "ls"}}
    members["result.json"] = json.dumps(tree).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(DataError, match="unknown type 'Popen'"):
        decode(path)
