"""Hostile version-2 agent files (JSON header + safetensors) cannot hurt.

Each crafted file below starts from a real agent saved by ``train_agent``/``save``. Loading
it, through ``TrainedAgent.load`` or a config's ``agent_path``, must give a ``DataError``
that names the file and the field and nothing else: no other exception, no network built
for tensors that cannot fill it, and no allocation beyond a small bound (checked in a
subprocess). A property test mutates valid files at random: the result is always the
original agent or a ``DataError``.
"""

from __future__ import annotations

import io
import json
import math
import struct
import subprocess
import sys
import time
import typing
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dynafolio.errors import DataError
from dynafolio.rl import agent_file as agent_file_module
from dynafolio.rl.agent_file import TrainedAgent
from dynafolio.rl.policies import POLICIES, build_policy, n_parameters
from dynafolio.rl.rewards import RewardSettings
from dynafolio.rl.settings import EnvSettings, PPOSettings
from test_safe_files import (  # noqa: F401 (agent_file is a fixture)
    _members,
    _write_zip,
    agent_file,
    run_with_agent_path,
)

HEADER, TENSORS = "dynafolio_agent.json", "policy.safetensors"
Members = dict[str, bytes]


# ------------------------------------------------------------------------- crafting
def _header(members: Members) -> dict:
    return json.loads(members[HEADER])


def _edited(members: Members, *edits: tuple[str, object]) -> Members:
    """``members`` with header fields (dotted paths, list items by index) set to values."""
    header = _header(members)
    for dotted, value in edits:
        *parents, last = dotted.split(".")
        node = header
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[int(last) if isinstance(node, list) else last] = value
    return {**members, HEADER: json.dumps(header).encode()}


def _tensors(members: Members) -> dict[str, torch.Tensor]:
    return safetensors.torch.load(members[TENSORS])


def _retensored(members: Members, change: Callable[[dict], dict]) -> Members:
    return {**members, TENSORS: safetensors.torch.save(change(_tensors(members)))}


def _safetensors_header(blob: bytes) -> tuple[dict, bytes]:
    size = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8 : 8 + size]), blob[8 + size :]


def _with_safetensors_header(members: Members, change: Callable[[dict], None]) -> Members:
    header, data = _safetensors_header(members[TENSORS])
    change(header)
    text = json.dumps(header).encode()
    return {**members, TENSORS: len(text).to_bytes(8, "little") + text + data}


def _deep_header(members: Members) -> Members:
    depth = 200_000
    text = b'{"format": "dynafolio-ppo-agent", "version": 2, "history": '
    return {**members, HEADER: text + b"[" * depth + b"]" * depth + b"}"}


def _zip_bomb(members: Members, path: Path) -> None:
    """256 MiB of zeros (about 250 KB deflated) where the tensors belong."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(HEADER, members[HEADER])
        with archive.open(TENSORS, "w") as member:
            for _ in range(256):
                member.write(bytes(1 << 20))


def _lying_zip_bomb(members: Members, path: Path) -> None:
    """64 MiB of zeros whose zip entries claim 1,000 bytes (local and central headers)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(HEADER, members[HEADER])
        archive.writestr(TENSORS, bytes(64 << 20))
        local = archive.getinfo(TENSORS).header_offset
    data = bytearray(buffer.getvalue())
    struct.pack_into("<L", data, local + 22, 1_000)
    directory = struct.unpack("<4s4H2LH", data[-22:])[6]
    while data[directory : directory + 4] == b"PK\x01\x02":
        name_len, extra_len, comment_len = struct.unpack(
            "<3H", data[directory + 28 : directory + 34]
        )
        if data[directory + 46 : directory + 46 + name_len] == TENSORS.encode():
            struct.pack_into("<L", data, directory + 24, 1_000)
        directory += 46 + name_len + extra_len + comment_len
    path.write_bytes(bytes(data))


def _write(path: Path, members: Members, compression: int = zipfile.ZIP_DEFLATED) -> None:
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, blob in members.items():
            archive.writestr(name, blob)


def _duplicated(members: Members, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name it writes
        with zipfile.ZipFile(path, "w") as archive:
            for name, blob in [*members.items(), (HEADER, members[HEADER])]:
                archive.writestr(name, blob)


@dataclass(frozen=True)
class Kind:
    """A crafted file: how to make it from the genuine members, the words its error must
    contain, and whether a network may be built before it is refused."""

    make: Callable[[Members, Path], None]
    expect: str
    builds: bool = False


def _members_kind(change: Callable[[Members], Members], expect: str, builds: bool = False) -> Kind:
    return Kind(lambda m, path: _write(path, change(m)), expect, builds)


def _both_arch(arch: list[int]) -> Callable[[Members], Members]:
    return lambda m: _edited(m, ("net_arch", arch), ("ppo.net_arch", arch))


def _text_edit(old: str, new: str) -> Callable[[Members], Members]:
    def change(m: Members) -> Members:
        text = m[HEADER].decode()
        assert old in text
        return {**m, HEADER: text.replace(old, new, 1).encode()}

    return change


def _scaled_first(factor: float) -> Callable[[dict], dict]:
    def change(tensors: dict) -> dict:
        name = sorted(tensors)[0]
        return {**tensors, name: tensors[name] * factor}

    return change


KINDS: dict[str, Kind] = {
    # The table.
    "unknown-policy": _members_kind(
        lambda m: _edited(m, ("ppo.policy", "evil")),
        "ppo.policy: 'evil' is not a dynafolio policy (the policies are mlp, per_asset)",
    ),
    "two-billion-units": _members_kind(
        _both_arch([2_000_000_000]), "net_arch.0: Input should be less than or equal to 4096"
    ),
    "gigabyte-network": _members_kind(
        _both_arch([4096] * 16), "more than the 16,000,000 an agent file may hold"
    ),
    "network-larger-than-its-tensors": _members_kind(
        _both_arch([2048, 2048]), "do not match the policy the header describes"
    ),
    "negative-obs-var": _members_kind(
        lambda m: _edited(m, ("obs_var.3", -1.0)),
        "obs_var.3: Input should be greater than or equal to 0",
    ),
    "nan-obs-mean": _members_kind(
        lambda m: _edited(m, ("obs_mean.0", math.nan)), "obs_mean.0 is nan, not a finite number"
    ),
    "deep-json-header": _members_kind(_deep_header, "nested more than 8 deep"),
    # Others on the same format.
    "infinite-obs-var": _members_kind(
        lambda m: _edited(m, ("obs_var.1", math.inf)), "obs_var.1 is inf, not a finite number"
    ),
    "overflowing-literal": _members_kind(
        _text_edit('"clip_obs":10.0', '"clip_obs":1e999'), "clip_obs is inf"
    ),
    "nan-reward-setting": _members_kind(
        lambda m: _edited(m, ("env_settings.reward.lam", math.nan)),
        "env_settings.reward.lam is nan",
    ),
    "huge-lookback": _members_kind(
        lambda m: _edited(m, ("env_settings.lookback", 10**9)),
        "env_settings.lookback: Input should be less than or equal to 5000",
    ),
    "huge-n-assets": _members_kind(
        lambda m: _edited(m, ("n_assets", 10**6), ("observation_size", 5 * 10**6)),
        "n_assets: Input should be less than or equal to 10000",
    ),
    "integer-beyond-64-bits": _members_kind(
        lambda m: _edited(m, ("num_timesteps", 10**30)), "num_timesteps is an integer beyond"
    ),
    "integer-of-5000-digits": _members_kind(
        _text_edit('"num_timesteps":64', '"num_timesteps":' + "9" * 5000), "not valid JSON"
    ),
    "zero-size-layer": _members_kind(
        _both_arch([0]), "net_arch.0: Input should be greater than or equal to 1"
    ),
    "number-as-string": _members_kind(
        lambda m: _edited(m, ("observation_size", "20")),
        "observation_size: Input should be a valid integer (got '20')",
    ),
    "number-as-bool": _members_kind(
        lambda m: _edited(m, ("n_assets", True)),
        "n_assets: Input should be a valid integer (got True)",
    ),
    "bool-as-number": _members_kind(
        lambda m: _edited(m, ("env_settings.with_scores", 0)),
        "env_settings.with_scores: Input should be a valid boolean",
    ),
    "version-as-bool": _members_kind(
        lambda m: _edited(m, ("version", True)), "agent format version True"
    ),
    "observation-size-mismatch": _members_kind(
        lambda m: _edited(m, ("observation_size", 24)),
        "observation_size is 24, but 4 assets with env_settings.lookback 4",
    ),
    "statistics-too-short": _members_kind(
        lambda m: _edited(m, ("obs_mean", [0.0] * 3)), "have 3 and 20 entries for 20 inputs"
    ),
    "k-above-n-assets": _members_kind(
        lambda m: _edited(m, ("env_settings.k", 9)), "env_settings.k is 9, more than its 4"
    ),
    "ppo-net-arch-differs": _members_kind(
        lambda m: _edited(m, ("ppo.net_arch", [8])), "ppo.net_arch [8] differs from net_arch"
    ),
    "wide-header": _members_kind(
        lambda m: _edited(m, ("history", [0] * 500_000)), "more than 400,000 entries"
    ),
    "header-not-utf8": _members_kind(lambda m: {**m, HEADER: b"\xff\xfe{}"}, "is not UTF-8 text"),
    "header-is-a-list": _members_kind(lambda m: {**m, HEADER: b"[]"}, "(format 'list')"),
    "float64-tensors": _members_kind(
        lambda m: _retensored(m, lambda t: {n: v.double() for n, v in t.items()}),
        "holds tensors of dtype",
    ),
    "integer-tensors": _members_kind(
        lambda m: _retensored(m, lambda t: {n: v.long() for n, v in t.items()}),
        "float32 (F32) tensors only",
    ),
    "nan-weights": _members_kind(
        lambda m: _retensored(m, _scaled_first(math.nan)), "hold NaN or infinite values", True
    ),
    "transposed-weight": _members_kind(
        lambda m: _retensored(
            m, lambda t: {n: v.T.contiguous() if v.ndim == 2 else v for n, v in t.items()}
        ),
        "do not match the policy the header describes",
        True,
    ),
    "lying-tensor-shape": _members_kind(
        lambda m: _with_safetensors_header(m, lambda h: h["log_std"].update(shape=[3])),
        "is not a safetensors file: tensor 'log_std' of shape [3] (F32) spans 4 bytes",
    ),
    "lying-safetensors-length": _members_kind(
        lambda m: {**m, TENSORS: (10**12).to_bytes(8, "little") + m[TENSORS][8:]},
        "its header claims 1,000,000,000,000 bytes",
    ),
    "missing-tensor": _members_kind(
        lambda m: _retensored(m, lambda t: dict(sorted(t.items())[1:])),
        "do not match the policy the header describes",
    ),
    "extra-member": _members_kind(
        lambda m: {**m, "notes.txt": b"hello"}, "unexpected members ['notes.txt']"
    ),
    "many-members": _members_kind(
        lambda m: {**m, **{f"m{i}": b"" for i in range(20)}}, "it has 22 members, more than"
    ),
    "truncated-zip": Kind(
        lambda m, path: (_write(path, m), path.write_bytes(path.read_bytes()[:-400])),
        "is not a dynafolio agent file (",
    ),
    "duplicate-member": Kind(_duplicated, "members ['dynafolio_agent.json'] appear twice"),
    "lzma-member": Kind(
        lambda m, path: _write(path, m, zipfile.ZIP_LZMA), "uses zip compression method 14"
    ),
    "zip-bomb": Kind(_zip_bomb, "member policy.safetensors is 268,435,456 bytes, more than"),
    "lying-zip-bomb": Kind(_lying_zip_bomb, "(Bad CRC-32 for file 'policy.safetensors')"),
    "a-bad-entry-400000-times": _members_kind(
        lambda m: _edited(m, ("history", [0.123456789] * 399_000)),
        "history.0: Input should be an object (got 0.123456789); load",
    ),
    "many-unknown-keys": _members_kind(
        lambda m: {
            **m,
            HEADER: json.dumps({**_header(m), **{f"k{i}": 0 for i in range(300)}}).encode(),
        },
        "(top level) has 318 keys, more than the 256 accepted",
    ),
    "header-bomb": _members_kind(
        lambda m: {**m, HEADER: m[HEADER] + b" " * (9 << 20)}, "more than the 8,388,608 it can"
    ),
}
#: The issue's table, run through the CLI too.
CLI_KINDS = [
    "unknown-policy", "two-billion-units", "negative-obs-var", "nan-obs-mean", "deep-json-header",
    "float64-tensors", "zip-bomb", "truncated-zip",
]  # fmt: skip


@pytest.fixture(scope="module")
def crafted(tmp_path_factory, agent_file) -> dict[str, Path]:  # noqa: F811
    folder = tmp_path_factory.mktemp("crafted")
    genuine = _members(agent_file)
    paths = {}
    for name, kind in KINDS.items():
        paths[name] = folder / f"{name}.zip"
        kind.make(genuine, paths[name])
    return paths


# ---------------------------------------------------------------------------- tests
@pytest.mark.parametrize("name", sorted(KINDS))
def test_a_hostile_agent_file_is_refused_naming_the_file_and_the_field(crafted, name, monkeypatch):
    if not KINDS[name].builds:

        def no_network(*args, **kwargs):
            raise AssertionError("a network was built for a file that cannot be loaded")

        monkeypatch.setattr(agent_file_module, "build_policy", no_network)
    start = time.perf_counter()
    with pytest.raises(DataError) as caught:
        TrainedAgent.load(crafted[name])
    message = str(caught.value)
    assert KINDS[name].expect in message, message
    assert str(crafted[name]) in message and "\n" not in message
    assert len(message) < 1500
    assert time.perf_counter() - start < 5.0


def test_the_bytes_of_an_agent_file_load_and_are_refused_as_the_file_is(
    crafted,
    agent_file,  # noqa: F811
):
    """``from_bytes`` (how an agent reaches a Ray worker of another node) gives the agent
    ``load`` gives, and refuses every crafted file with the same message, naming the file."""
    data = TrainedAgent.read_bytes(agent_file)
    assert data == agent_file.read_bytes()
    observations = np.random.default_rng(0).normal(
        size=(4, TrainedAgent.load(agent_file).obs_mean.size)
    )
    np.testing.assert_array_equal(
        TrainedAgent.from_bytes(data, str(agent_file)).act(observations),
        TrainedAgent.load(agent_file).act(observations),
    )
    for name, path in crafted.items():
        with pytest.raises(DataError) as from_file:
            TrainedAgent.load(path)
        with pytest.raises(DataError) as from_bytes:
            TrainedAgent.from_bytes(TrainedAgent.read_bytes(path), str(path))
        assert str(from_bytes.value) == str(from_file.value), name
    with pytest.raises(DataError, match="does not exist"):
        TrainedAgent.read_bytes(agent_file.parent / "missing.zip")
    with pytest.raises(DataError, match=r"it is a directory"):
        TrainedAgent.read_bytes(agent_file.parent)


def test_an_agent_file_too_large_is_refused_before_it_is_read(tmp_path, monkeypatch):
    big = tmp_path / "big.zip"
    big.write_bytes(bytes(2_000))
    monkeypatch.setattr(agent_file_module, "_MAX_FILE_BYTES", 1_000)
    with pytest.raises(DataError, match="more than the 1,000 bytes accepted"):
        TrainedAgent.read_bytes(big)
    with pytest.raises(DataError, match="it is 2,000 bytes, more than the 1,000 accepted"):
        TrainedAgent.from_bytes(big.read_bytes(), str(big))


@pytest.mark.parametrize("name", CLI_KINDS)
def test_a_hostile_agent_path_in_a_config_exits_2_with_one_paragraph(tmp_path, crafted, name):
    result, out = run_with_agent_path(tmp_path, crafted[name])
    assert result.exit_code == 2, result.output
    shown = " ".join(result.output.split())  # the console may wrap long lines
    assert shown.startswith("error: strategies.1.agent_path: "), result.output
    assert KINDS[name].expect in shown and str(crafted[name]) in shown
    assert "Traceback" not in result.output and "\n\n" not in result.output.strip()
    assert not out.exists() or not any(out.iterdir())


def test_loading_every_crafted_file_stays_within_200_mb(crafted, agent_file):  # noqa: F811
    """Peak resident memory (``ru_maxrss``) of a fresh process, measured after the imports
    and one genuine load, grows by less than 200 MB over loading every crafted file."""
    script = (
        "import json, resource, sys\n"
        "from dynafolio.errors import DataError\n"
        "from dynafolio.rl.agent_file import TrainedAgent\n"
        "peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "TrainedAgent.load(sys.argv[1])\n"
        "base, outcomes = peak(), {}\n"
        "for path in sys.argv[2:]:\n"
        "    try:\n"
        "        TrainedAgent.load(path)\n"
        "        outcome = 'loaded'\n"
        "    except DataError:\n"
        "        outcome = 'DataError'\n"
        "    except BaseException as error:\n"
        "        outcome = type(error).__name__\n"
        "    outcomes[path] = [outcome, peak() - base]\n"
        "print(json.dumps({'base_kb': base, 'outcomes': outcomes}))\n"
    )
    paths = [str(crafted[name]) for name in sorted(KINDS)]
    result = subprocess.run(
        [sys.executable, "-c", script, str(agent_file), *paths],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    outcomes = report["outcomes"]
    assert {path: outcome for path, (outcome, _) in outcomes.items()} == dict.fromkeys(
        paths, "DataError"
    )
    grown_kb = max(grown for _, grown in outcomes.values())
    assert grown_kb < 200 * 1024, outcomes  # ru_maxrss is in KiB on Linux


def test_the_parameter_count_formula_matches_built_policies():
    shapes = [
        (1, 1, False, ()),
        (4, 4, False, (64, 64)),
        (7, 2, True, (3,)),
        (3, 9, True, (5, 8, 2)),
    ]
    for policy in POLICIES:
        for n_assets, lookback, with_scores, net_arch in shapes:
            size = (lookback + 1 + with_scores) * n_assets
            network = build_policy(size, n_assets, net_arch, policy, lookback, with_scores)
            built = sum(p.numel() for p in network.state_dict().values())
            assert built == sum(p.numel() for p in network.parameters())
            assert n_parameters(policy, size, n_assets, net_arch, lookback, with_scores) == built


def test_policy_names_in_the_settings_are_the_registry():
    hints = typing.get_type_hints(PPOSettings)
    assert set(typing.get_args(hints["policy"])) == set(POLICIES)


def test_a_nan_in_the_training_log_survives_a_round_trip(tmp_path, agent_file):  # noqa: F811
    """JSON has no NaN: the saved log holds null, read back as NaN (it used to be refused)."""
    agent = TrainedAgent.load(agent_file)
    agent.diagnostics.append({"timesteps": 1, "train/explained_variance": math.nan})
    loaded = TrainedAgent.load(agent.save(tmp_path / "nan.zip"))
    assert math.isnan(loaded.diagnostics[-1]["train/explained_variance"])
    assert loaded.diagnostics[:-1] == agent.diagnostics[:-1]


# ------------------------------------------------------------------ property test
@pytest.fixture(scope="module")
def mlp_agent_file(tmp_path_factory) -> Path:
    """An MLP agent (untrained weights, non-trivial statistics) saved as a real one is."""
    rng = np.random.default_rng(0)
    agent = TrainedAgent(
        build_policy(20, 4, (16,), "mlp", lookback=4),
        obs_mean=rng.normal(size=20),
        obs_var=rng.uniform(0.5, 2.0, size=20),
        clip_obs=10.0,
        env_settings=EnvSettings(
            lookback=4,
            k=2,
            tau=0.0,
            transaction_cost=0.001,
            lambda_sparse=0.0,
            with_scores=False,
            reward=RewardSettings(),
        ),  # fmt: skip
        settings=PPOSettings(policy="mlp", net_arch=(16,)),
        diagnostics=[{"timesteps": 64, "train/entropy_loss": -1.5}],
    )
    return agent.save(tmp_path_factory.mktemp("mlp") / "mlp.zip")


_VALUES = [None, True, False, "20", "", "evil", [], {}, [0, 0], {"a": 1}, math.nan, math.inf,
           -math.inf, 1e308, -1e308, -1, 0, 1, 3, 0.5, -0.5, 2**70, -(2**70)]  # fmt: skip
_ACTING = {"obs_mean", "obs_var", "clip_obs"}


def _paths(tree: object, prefix: tuple = ()) -> list[tuple]:
    """Every path in a JSON tree (long lists: their first three items)."""
    found = [prefix] if prefix else []
    if isinstance(tree, dict):
        for key, value in tree.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(tree, list):
        for index, value in enumerate(tree[:3]):
            found += _paths(value, (*prefix, index))
    return found


def _mutate_field(header: dict, path: tuple, value: object, delete: bool) -> None:
    node = header
    for part in path[:-1]:
        node = node[part]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value


@st.composite
def _mutations(draw, members: Members, how: str) -> tuple[str, Members | bytes, bool]:
    """A mutated file (members, or raw bytes) and whether it must act like the original:
    ``flip`` flips bytes of the zip file, ``field`` deletes a header field or sets it to
    another type or an extreme number, ``tensor`` changes a tensor's values, dtype or shape."""
    if how == "flip":
        buffer = io.BytesIO()
        _write_members(buffer, members)
        data = bytearray(buffer.getvalue())
        for _ in range(draw(st.integers(1, 3))):
            data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
        return how, bytes(data), True
    if how == "field":
        header = _header(members)
        path = draw(st.sampled_from(_paths(header)))
        delete = draw(st.booleans())
        _mutate_field(header, path, draw(st.sampled_from(_VALUES)), delete)
        text = json.dumps(header).encode()
        return how, {**members, HEADER: text}, path[0] not in _ACTING
    tensors = _tensors(members)
    name = draw(st.sampled_from(sorted(tensors)))
    change = draw(st.sampled_from(["nan", "inf", "double", "scale", "flatten", "drop", "add"]))
    tensor = tensors[name]
    if change in ("nan", "inf"):
        tensor = tensor.clone()
        tensor.view(-1)[draw(st.integers(0, tensor.numel() - 1))] = float(change)
    replaced = {
        "nan": tensor, "inf": tensor, "double": tensor.double(), "scale": tensor * 2.0,
        "flatten": tensor.reshape(-1), "add": tensor,
    }  # fmt: skip
    if change == "drop":
        del tensors[name]
    else:
        tensors[name] = replaced[change]
    if change == "add":
        tensors["extra"] = torch.zeros(3)
    return how, {**members, TENSORS: safetensors.torch.save(tensors)}, False


def _write_members(target, members: Members) -> None:
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, blob in members.items():
            archive.writestr(name, blob)


@pytest.mark.parametrize("how", ["field", "tensor", "flip"])
@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_random_mutations_give_the_original_agent_or_a_data_error(
    how,
    data,
    agent_file,  # noqa: F811
    mlp_agent_file,
    tmp_path_factory,
):
    source = data.draw(st.sampled_from([agent_file, mlp_agent_file]))
    members = _members(source)
    how, mutated, same = data.draw(_mutations(members, how))
    path = tmp_path_factory.getbasetemp() / "mutated.zip"
    if isinstance(mutated, bytes):
        path.write_bytes(mutated)
    else:
        _write_members(path, mutated)
    original = TrainedAgent.load(source)
    observations = np.random.default_rng(0).normal(size=(5, original.obs_mean.size))
    start = time.perf_counter()
    try:
        loaded = TrainedAgent.load(path)
    except DataError as error:
        assert str(path) in str(error) and "\n" not in str(error)
        event(f"{how}: refused")
        return
    finally:
        assert time.perf_counter() - start < 5.0
    event(f"{how}: loaded")
    acted = loaded.act(observations)
    assert np.isfinite(acted).all()
    if same:
        np.testing.assert_array_equal(acted, original.act(observations))
        assert loaded.env_settings.lookback == original.env_settings.lookback


def test_version_2_files_from_before_the_policy_setting_load_as_mlp(tmp_path, mlp_agent_file):
    members = _members(mlp_agent_file)
    header = _header(members)
    del header["ppo"]["policy"]
    path = _write_zip(tmp_path / "old.zip", {**members, HEADER: json.dumps(header).encode()})
    loaded, original = TrainedAgent.load(path), TrainedAgent.load(mlp_agent_file)
    assert loaded.settings.policy == "mlp"
    observations = np.random.default_rng(1).normal(size=(3, 20))
    np.testing.assert_array_equal(loaded.act(observations), original.act(observations))
