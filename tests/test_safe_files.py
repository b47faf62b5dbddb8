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
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import make_prices
from dynafolio.cli import app
from dynafolio.errors import DataError
from dynafolio.rl.agent_file import AGENT_VERSION, TrainedAgent
from dynafolio.rl.settings import PPOSettings
from dynafolio.rl.training import train_agent

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
    header["net_arch"] = header["ppo"]["net_arch"] = [8]
    path = _write_zip(
        tmp_path / "mismatch.zip",
        {**genuine, "dynafolio_agent.json": json.dumps(header).encode()},
    )
    with pytest.raises(DataError, match="do not match the policy"):
        TrainedAgent.load(path)


def run_with_agent_path(tmp_path: Path, path: Path):
    """``dynafolio run`` on small weekly prices with a PPO entry that loads ``path``; returns
    the CLI result and the ``--out`` folder."""
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
    return result, out


@pytest.mark.parametrize("kind", ["bare-sb3-zip", "pickle-as-tensors", "version-1-file"])
def test_a_crafted_agent_path_in_a_config_is_refused_before_any_training(
    tmp_path, agent_file, kind
):
    marker = tmp_path / "ran"
    path = _crafted(tmp_path, kind, agent_file, marker)
    result, out = run_with_agent_path(tmp_path, path)
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


# ---------------------------------------------- the shared safe-file helpers (safe_files)
def _refused(call, *args) -> str:
    with pytest.raises(DataError) as caught:
        call(*args)
    return str(caught.value)


def test_json_depth_is_measured_before_parsing_and_strings_are_skipped():
    from dynafolio.safe_files import Limits, load_json

    limits = Limits(max_depth=4)
    start = time.perf_counter()
    deep = "[" * 200_000 + "]" * 200_000
    assert "nested more than 4 deep (at character 4)" in _refused(load_json, deep, "f", limits)
    assert time.perf_counter() - start < 1.0
    # Brackets and escaped quotes inside strings are text, not structure.
    text = json.dumps({"a": ["[" * 10_000 + '\\"[{', {"b": '"]]]'}]})
    assert load_json(text, "f", limits)["a"][1] == {"b": '"]]]'}


def test_json_that_would_be_slow_or_large_to_parse_is_refused_quickly():
    from dynafolio.safe_files import Limits, load_json

    start = time.perf_counter()
    unterminated = '["' + '\\"' * 1_000_000
    assert "not valid JSON" in _refused(load_json, unterminated, "f", Limits(max_bytes=4 << 20))
    wide = "[" + "0," * 200_000 + "0]"
    assert "more than 100,000 entries" in _refused(load_json, wide, "f", Limits(max_bytes=1 << 20))
    padded = b"[" + b" " * 20 + b"]"
    assert "more than the 10 accepted" in _refused(load_json, padded, "f", Limits(max_bytes=10))
    keys = json.dumps({f"k{i}": 0 for i in range(50)})
    assert "(top level) has 50 keys" in _refused(load_json, keys, "f", Limits(max_keys=10))
    assert time.perf_counter() - start < 3.0


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"a": [1, NaN]}', "a.1 is nan"),
        ('{"a": {"b": Infinity}}', "a.b is inf"),
        ('{"a": -Infinity}', "a is -inf"),
        ('{"a": [1e999]}', "a.0 is inf"),
        ('{"a": 123456789012345678901234567890}', "a is an integer beyond"),
    ],
)
def test_json_numbers_must_be_finite_and_the_field_is_named(text, field):
    from dynafolio.safe_files import Limits, load_json

    message = _refused(load_json, text, "file.json", Limits(), "fix it")
    assert message.startswith(f"file.json: {field}") and message.endswith("; fix it")


BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True)
)
MERGE_BOMB = "a0: &a0 {x: 1, y: 2}\n" + "".join(
    f"a{i}: &a{i} {{<<: [*a{i - 1}, *a{i - 1}], k{i}: {i}}}\n" for i in range(1, 40)
)


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        (BILLION_LAUGHS, "more than 100,000 entries (aliases counted each time"),
        (MERGE_BOMB, "more than 100,000 entries"),
        ("a: " + "[" * 200_000 + "]" * 200_000, "nested more than 32 deep"),
        ("".join("  " * i + f"k{i}:\n" for i in range(40)) + "  " * 40 + "v\n", "more than 32"),
        ("a: &a [1, *a]\n", "nested more than 32 deep"),
        ("a: {b: [1, .nan]}\n", "a.b.1 is nan, not a finite number"),
        ("a: -.inf\n", "a is -inf"),
    ],
    ids=["billion-laughs", "merge-key-bomb", "deep-flow", "deep-block", "recursive", "nan", "inf"],
)
def test_hostile_yaml_is_refused_before_it_is_built(text, expect):
    from dynafolio.safe_files import Limits, load_yaml

    start = time.perf_counter()
    assert expect in _refused(load_yaml, text, "config file c.yaml", Limits())
    assert time.perf_counter() - start < 3.0


def test_ordinary_yaml_anchors_and_merge_keys_still_load():
    from dynafolio.safe_files import Limits, load_yaml

    text = "base: &base {k: 2, lookback: 4}\nstrategies:\n  - {<<: *base, kind: ppo_topk}\n"
    tree = load_yaml(text, "c.yaml", Limits())
    assert tree["strategies"][0] == {"k": 2, "lookback": 4, "kind": "ppo_topk"}


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("a = " + "[" * 100_000 + "]" * 100_000, "nested too deeply to read"),
        ("a = " + "{b = " * 5_000 + "1" + "}" * 5_000, "nested too deeply to read"),
        ("[x]\na = [1.0, nan]\n", "x.a.1 is nan"),
        ("a = inf\n", "a is inf"),
        ("a = [1,\n", "is not valid TOML"),
    ],
)
def test_hostile_toml_is_refused(text, expect):
    from dynafolio.safe_files import Limits, load_toml

    assert expect in _refused(load_toml, text, "config file c.toml", Limits())


def test_config_files_get_the_same_caps(tmp_path):
    from dynafolio.errors import ConfigError
    from dynafolio.experiments.config import load_config_file

    cases = {
        "big.yaml": "n_seeds: 1\n" + "#" * (1 << 20),
        "bomb.yaml": BILLION_LAUGHS,
        "nan.yaml": "backtest: {transaction_cost: .nan}\n",
        "deep.toml": "a = " + "[" * 50_000 + "]" * 50_000,
    }
    expect = ["larger than 1,048,576 bytes", "aliases counted", "backtest.transaction_cost is nan",
              "nested too deeply"]  # fmt: skip
    for (name, text), words in zip(cases.items(), expect, strict=True):
        (tmp_path / name).write_text(text)
        with pytest.raises(ConfigError) as caught:
            load_config_file(tmp_path / name)
        assert words in str(caught.value) and f"config file {tmp_path / name}" in str(caught.value)


def test_a_yaml_bomb_config_exits_2_with_one_paragraph_and_no_run(tmp_path):
    config = tmp_path / "bomb.yaml"
    config.write_text(BILLION_LAUGHS)
    out = tmp_path / "runs"
    result = CliRunner().invoke(app, ["run", "--config", str(config), "--out", str(out)])
    assert result.exit_code == 2, result.output
    shown = " ".join(result.output.split())
    assert shown.startswith("error: config file") and "aliases counted" in shown
    assert "Traceback" not in result.output and "\n\n" not in result.output.strip()
    assert not out.exists() or not any(out.iterdir())


def test_a_zip_with_a_huge_central_directory_is_refused_before_zipfile_reads_it(tmp_path):
    from dynafolio.safe_files import SafeZip

    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(1_500):
            archive.writestr(f"{i:060d}", b"")
    with pytest.raises(DataError, match=r"its zip directory is 1\d\d,\d{3} bytes, more than"):
        SafeZip(path, f"{path} is not an archive", max_file_bytes=1 << 30, max_members=8)


def test_safetensors_layouts_are_read_without_building_tensors():
    import safetensors.torch
    import torch

    from dynafolio.safe_files import safetensors_layout

    blob = safetensors.torch.save({"w": torch.ones(2, 3), "b": torch.zeros(3, dtype=torch.float64)})
    layout = safetensors_layout(blob, "t")
    assert {n: (i.dtype, i.shape) for n, i in layout.items()} == {
        "w": ("F32", (2, 3)), "b": ("F64", (3,)),
    }  # fmt: skip
    size = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + size])

    def rewritten(change) -> bytes:
        edited = json.loads(json.dumps(header))
        change(edited)
        text = json.dumps(edited).encode()
        return len(text).to_bytes(8, "little") + text + blob[8 + size :]

    cases = [
        (lambda h: h["w"].update(data_offsets=[0, 24]), "gap or overlap"),
        (lambda h: h["w"].update(dtype="F99"), "unknown dtype 'F99'"),
        (lambda h: h["w"].update(shape=[2, -3]), "is not a list of at most 8 sizes"),
        (lambda h: h["w"].update(extra=1), "exactly dtype, shape and data_offsets"),
        (lambda h: h.update(__metadata__={"a": 1}), "__metadata__ is not a mapping of strings"),
    ]
    for change, words in cases:
        assert words in _refused(safetensors_layout, rewritten(change), "t")
    assert "it is 3 bytes long" in _refused(safetensors_layout, b"abc", "t")
    assert "span 48 bytes but it holds 52" in _refused(safetensors_layout, blob + bytes(4), "t")


def test_validation_errors_name_each_field_and_its_value():
    from pydantic import BaseModel, Field, ValidationError

    from dynafolio.safe_files import validation_error

    class Model(BaseModel):
        n: int = Field(ge=1)
        xs: list[float]

    with pytest.raises(ValidationError) as caught:
        Model.model_validate({"n": 0, "xs": [1.0, "x" * 500]})
    message = str(validation_error(caught.value, "file f", "fix it"))
    assert message.startswith("file f: n: Input should be greater than or equal to 1 (got 0); ")
    assert "xs.1: Input should be a valid number" in message and message.endswith("; fix it")
    assert len(message) < 300
