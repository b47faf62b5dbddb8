"""Files the project loads never run code: crafted agent files and configs are refused.

Every crafted file carries a payload that, if unpickled or constructed, creates a marker file.
Each test checks that loading is refused with a clear error *and* that the marker is absent.
One control test shows the payload is live: Stable-Baselines3's own ``PPO.load`` runs it.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import make_prices
from dynafolio.cli import app
from dynafolio.errors import DataError
from dynafolio.rl.agents import AGENT_VERSION, PPOSettings, TrainedAgent, train_agent

TINY = PPOSettings(
    n_steps=32, batch_size=32, n_envs=2, total_timesteps=64, eval_every=64, episode_length=10
)


class _Payload:
    """Unpickling this object creates ``marker`` (``open(marker, "w")``)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _payload_bytes(marker: Path) -> bytes:
    return pickle.dumps(_Payload(marker))


@pytest.fixture(scope="module")
def agent_file(tmp_path_factory) -> Path:
    prices = make_prices(n_periods=80, n_assets=4, seed=0, late=0)
    returns = prices.pct_change(fill_method=None).to_numpy()
    trained = train_agent(returns, k=2, lookback=4, settings=TINY, seed=0)
    return trained.save(tmp_path_factory.mktemp("agent") / "agent.zip")


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _sb3_zip_with_payload(marker: Path) -> bytes:
    """A genuine SB3 model zip whose ``data`` holds a ``:serialized:`` entry with the payload."""
    from stable_baselines3 import PPO

    from dynafolio.rl.env import PortfolioEnv

    returns = make_prices(n_periods=40, n_assets=3, seed=1, late=0).pct_change().to_numpy()
    model = PPO("MlpPolicy", PortfolioEnv(returns, lookback=4, k=2), n_steps=16, batch_size=16)
    buffer = io.BytesIO()
    model.save(buffer)
    members = {}
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as archive:
        for name in archive.namelist():
            members[name] = archive.read(name)
    data = json.loads(members["data"])
    # SB3 restores ":serialized:" entries with cloudpickle when loading.
    data["learning_rate"] = {
        ":type:": "<class 'function'>",
        ":serialized:": base64.b64encode(_payload_bytes(marker)).decode(),
    }
    members["data"] = json.dumps(data).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, blob in members.items():
            archive.writestr(name, blob)
    return out.getvalue()


def test_the_sb3_payload_is_live_when_sb3_loads_it(tmp_path):
    """Control: the crafted SB3 zip really runs code under SB3's own loader."""
    from stable_baselines3 import PPO

    marker = tmp_path / "ran"
    path = tmp_path / "model.zip"
    path.write_bytes(_sb3_zip_with_payload(marker))
    try:
        PPO.load(path, device="cpu")
    except Exception:
        pass  # the payload returns a file object where a schedule belongs; it has already run
    assert marker.exists()


def _crafted(tmp_path: Path, kind: str, agent_file: Path, marker: Path) -> Path:
    path = tmp_path / f"{kind}.zip"
    genuine = _members(agent_file)
    header = json.loads(genuine["dynafolio_agent.json"])
    if kind == "raw-pickle":
        path.write_bytes(_payload_bytes(marker))
    elif kind == "pickle-as-tensors":
        _write_zip(path, {**genuine, "policy.safetensors": _payload_bytes(marker)})
    elif kind == "torch-pickle-member":
        import torch

        buffer = io.BytesIO()
        torch.save({"weights": _Payload(marker)}, buffer)
        _write_zip(path, {**genuine, "policy.pth": buffer.getvalue()})
    elif kind == "bare-sb3-zip":
        path.write_bytes(_sb3_zip_with_payload(marker))
    elif kind == "version-1-file":
        old = {**header, "version": 1}
        _write_zip(
            path,
            {
                "dynafolio_agent.json": json.dumps(old).encode(),
                "policy.zip": _sb3_zip_with_payload(marker),
            },
        )
    elif kind == "serialized-header-entry":
        evil = {
            **header,
            "env_settings": {
                **header["env_settings"],
                ":serialized:": base64.b64encode(_payload_bytes(marker)).decode(),
            },
        }
        _write_zip(path, {**genuine, "dynafolio_agent.json": json.dumps(evil).encode()})
    else:  # pragma: no cover
        raise AssertionError(kind)
    return path


KINDS = {
    "raw-pickle": "not a dynafolio agent file",
    "pickle-as-tensors": "not a safetensors file",
    "torch-pickle-member": "unexpected members ['policy.pth']",
    "bare-sb3-zip": "no dynafolio_agent.json header",
    "version-1-file": "version 1 dynafolio agent file",
    "serialized-header-entry": "header is invalid",
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_crafted_agent_files_are_refused_and_run_nothing(tmp_path, agent_file, kind):
    marker = tmp_path / "ran"
    path = _crafted(tmp_path, kind, agent_file, marker)
    with pytest.raises(DataError) as caught:
        TrainedAgent.load(path)
    assert KINDS[kind] in str(caught.value)
    assert str(path) in str(caught.value)
    assert not marker.exists()


def test_a_genuine_agent_loads_and_matches(agent_file):
    loaded = TrainedAgent.load(agent_file)
    header = json.loads(_members(agent_file)["dynafolio_agent.json"])
    assert header["version"] == AGENT_VERSION == 2
    assert set(_members(agent_file)) == {"dynafolio_agent.json", "policy.safetensors"}
    observations = np.random.default_rng(0).normal(size=(3, loaded.obs_mean.size))
    assert loaded.act(observations).shape == (3, 4)


def test_tensors_that_do_not_match_the_header_are_refused(tmp_path, agent_file):
    genuine = _members(agent_file)
    header = json.loads(genuine["dynafolio_agent.json"])
    header["net_arch"] = [8]
    path = _write_zip(
        tmp_path / "mismatch.zip",
        {**genuine, "dynafolio_agent.json": json.dumps(header).encode()},
    )
    with pytest.raises(DataError, match="do not match the policy"):
        TrainedAgent.load(path)


@pytest.mark.parametrize("kind", ["bare-sb3-zip", "pickle-as-tensors", "version-1-file"])
def test_a_crafted_agent_path_in_a_config_is_refused_before_any_training(
    tmp_path, agent_file, kind
):
    marker = tmp_path / "ran"
    path = _crafted(tmp_path, kind, agent_file, marker)
    data = tmp_path / "prices.csv"
    make_prices(n_periods=200, n_assets=4, late=0).to_csv(data, index_label="date")
    config = tmp_path / "c.yaml"
    config.write_text(
        "strategies:\n"
        "  - kind: equal_weight\n"
        "  - kind: ppo_topk\n"
        "    k: 2\n"
        "    lookback: 4\n"
        f"    agent_path: {path}\n"
    )
    out = tmp_path / "runs"
    result = CliRunner().invoke(
        app, ["run", "--config", str(config), "--data", str(data), "--out", str(out)]
    )
    assert result.exit_code == 2, result.output
    assert "strategies.1.agent_path" in result.output and KINDS[kind] in result.output
    assert "Traceback" not in result.output
    assert not marker.exists()
    assert not out.exists() or not any(out.iterdir())


def test_a_yaml_config_cannot_construct_python_objects(tmp_path):
    marker = tmp_path / "ran"
    config = tmp_path / "evil.yaml"
    config.write_text(f"name: !!python/object/apply:builtins.open ['{marker}', 'w']\n")
    result = CliRunner().invoke(app, ["run", "--config", str(config), "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "is not valid YAML" in result.output
    assert not marker.exists()
