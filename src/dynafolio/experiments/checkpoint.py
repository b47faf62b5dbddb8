"""Resumable runs: each finished task's result kept on disk as plain data, so a run that is
interrupted (Ctrl-C, a crash, a lost machine) and started again redoes only what was missing.

A :class:`TaskStore` is a folder with one file per finished task, named by the task's id and
a fingerprint of everything the task's result depends on (the config, the data's sha256,
the dynafolio version): a changed config or data file gives new names, so a stale result is
never reused. A file is written atomically (a temporary name, then renamed), so an
interruption leaves either the whole result or none.

The files hold what tasks return — forecasts, backtests, trained agents, known-answer
checks — encoded by :func:`encode` as a JSON tree and arrays in safetensors. Decoding builds
only the types named in :data:`_TYPES`; nothing in a file is unpickled or executed, and a
file that does not decode is refused with the reason (or, in a store, set aside and redone).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dynafolio.backtest.result import BacktestResult
from dynafolio.errors import DataError
from dynafolio.experiments.tasks import BacktestOutcome, StreamPiece
from dynafolio.results.forecasts import ForecastRecord
from dynafolio.rl.learnability import LearnabilityResult
from dynafolio.safe_files import Limits, SafeZip, load_json, safetensors_layout
from dynafolio.splits import RefitSchedule

__all__ = ["TaskStore", "decode", "encode"]

_FORMAT = "dynafolio-task-result"
_VERSION = 1
_TREE = "result.json"
_ARRAYS = "arrays.safetensors"
#: The only classes a file may name; each is rebuilt from its fields.
_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        StreamPiece, BacktestOutcome, BacktestResult, ForecastRecord, RefitSchedule,
        LearnabilityResult,
    )
}  # fmt: skip
_NUMPY = {"F64": np.float64, "F32": np.float32, "I64": np.int64, "U8": np.uint8, "BOOL": np.bool_}
_KINDS = {np.dtype(v).str: k for k, v in _NUMPY.items()}
_MAX_BYTES = 1 << 31


class _Writer:
    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def array(self, values: np.ndarray) -> str:
        values = np.ascontiguousarray(values)
        if values.dtype.str not in _KINDS:
            raise TypeError(f"cannot store an array of dtype {values.dtype}")
        name = f"a{len(self.arrays)}"
        self.arrays[name] = values
        return name

    def tree(self, value: Any) -> Any:
        if value is None or isinstance(value, bool | int | str):
            return value
        if isinstance(value, float | np.floating):
            value = float(value)
            return value if math.isfinite(value) else {"$": "float", "v": repr(value)}
        if isinstance(value, np.integer | np.bool_):
            return value.item()
        if isinstance(value, bytes):
            return {"$": "bytes", "a": self.array(np.frombuffer(value, dtype=np.uint8))}
        if isinstance(value, list | tuple):
            return {"$": type(value).__name__, "v": [self.tree(v) for v in value]}
        if isinstance(value, dict):
            return {"$": "dict", "v": [[self.tree(k), self.tree(v)] for k, v in value.items()]}
        if isinstance(value, pd.Timestamp):
            return {"$": "time", "v": value.isoformat()}
        if isinstance(value, pd.Index):
            return self.index(value)
        if isinstance(value, pd.Series):
            return {"$": "series", "index": self.index(value.index), "v": self.column(value),
                    "name": self.tree(value.name)}  # fmt: skip
        if isinstance(value, pd.DataFrame):
            return {
                "$": "frame",
                "index": self.index(value.index),
                "columns": self.index(value.columns),
                "v": [self.column(value.iloc[:, j]) for j in range(value.shape[1])],
            }
        if isinstance(value, np.ndarray):
            return {"$": "array", "a": self.array(value)}
        if type(value).__name__ == "TrainedAgent":
            return {"$": "agent", "a": self.array(np.frombuffer(_agent_bytes(value), np.uint8))}
        if dataclasses.is_dataclass(value) and _TYPES.get(type(value).__name__) is type(value):
            fields = {f.name: self.tree(getattr(value, f.name)) for f in dataclasses.fields(value)}
            return {"$": "object", "type": type(value).__name__, "v": fields}
        raise TypeError(f"cannot store a {type(value).__name__}")

    def column(self, values: pd.Series) -> Any:
        if values.dtype.kind not in "fiub":  # text or objects: as a list, with its dtype
            return {"$": "labels", "v": [self.tree(v) for v in values.tolist()],
                    "dtype": str(values.dtype), "name": None}  # fmt: skip
        return {"$": "array", "a": self.array(values.to_numpy())}

    def index(self, index: pd.Index) -> Any:
        if isinstance(index, pd.DatetimeIndex):
            return {
                "$": "dates",
                "a": self.array(index.asi8),
                "unit": index.unit,
                "freq": index.freqstr,
                "name": self.tree(index.name),
            }
        if index.dtype.kind not in "fiub":
            return {"$": "labels", "v": [self.tree(v) for v in index], "dtype": str(index.dtype),
                    "name": self.tree(index.name)}  # fmt: skip
        return {"$": "numbers", "a": self.array(index.to_numpy()), "name": self.tree(index.name)}


def _agent_bytes(agent) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "agent.zip"
        agent.save(path)
        return path.read_bytes()


def encode(value: Any) -> bytes:
    """``value`` (a task's result) as one zip: a JSON tree and its arrays (safetensors)."""
    import safetensors.numpy

    writer = _Writer()
    tree = {"format": _FORMAT, "version": _VERSION, "value": writer.tree(value)}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(_member(_TREE), json.dumps(tree))
        archive.writestr(_member(_ARRAYS), safetensors.numpy.save(writer.arrays))
    return buffer.getvalue()


class _Reader:
    def __init__(self, arrays: dict[str, np.ndarray], where: str) -> None:
        self.arrays, self.where = arrays, where

    def fail(self, what: str) -> DataError:
        return DataError(f"{self.where}: {what}")

    def array(self, name: Any) -> np.ndarray:
        if not isinstance(name, str) or name not in self.arrays:
            raise self.fail(f"it refers to a missing array {str(name)[:40]!r}")
        return self.arrays[name]

    def tree(self, node: Any) -> Any:
        if node is None or isinstance(node, bool | int | float | str):
            return node
        if not isinstance(node, dict) or not isinstance(node.get("$"), str):
            raise self.fail(f"an entry of type {type(node).__name__} is not a value")
        kind = node["$"]
        if kind == "float":
            if node.get("v") not in ("nan", "inf", "-inf"):
                raise self.fail("a non-finite number is not nan, inf or -inf")
            return float(node["v"])
        if kind == "bytes":
            return self.array(node.get("a")).tobytes()
        if kind in ("list", "tuple"):
            items = [self.tree(v) for v in self._list(node.get("v"))]
            return items if kind == "list" else tuple(items)
        if kind == "dict":
            pairs = self._list(node.get("v"))
            if not all(isinstance(p, list) and len(p) == 2 for p in pairs):
                raise self.fail("a mapping's entries are not pairs")
            return {self._key(self.tree(k)): self.tree(v) for k, v in pairs}
        if kind == "time":
            return pd.Timestamp(str(node.get("v")))
        if kind in ("dates", "labels", "numbers"):
            return self.index(node)
        if kind == "series":
            return pd.Series(
                self.column(node.get("v")), index=self.index(node.get("index")),
                name=self.tree(node.get("name")),
            )  # fmt: skip
        if kind == "frame":
            columns = self.index(node.get("columns"))
            values = [self.column(v) for v in self._list(node.get("v"))]
            if len(values) != len(columns):
                raise self.fail("a table has more or fewer columns than names")
            frame = pd.concat(
                [pd.Series(v, index=self.index(node.get("index"))) for v in values],
                axis=1, ignore_index=True,
            ) if values else pd.DataFrame(index=self.index(node.get("index")))  # fmt: skip
            frame.columns = columns
            return frame
        if kind == "array":
            return self.array(node.get("a")).copy()
        if kind == "agent":
            return _load_agent(self.array(node.get("a")).tobytes(), self.where)
        if kind == "object":
            cls = _TYPES.get(node.get("type"))
            fields = node.get("v")
            if cls is None or not isinstance(fields, dict):
                raise self.fail(f"it names an unknown type {str(node.get('type'))[:40]!r}")
            names = {f.name for f in dataclasses.fields(cls)}
            if set(fields) - names:
                raise self.fail(f"{cls.__name__} has no fields {sorted(set(fields) - names)[:5]}")
            return cls(**{k: self.tree(v) for k, v in fields.items()})
        raise self.fail(f"unknown entry kind {kind[:40]!r}")

    def column(self, node: Any) -> Any:
        value = self.tree(node)
        if not isinstance(value, np.ndarray | pd.Index):
            raise self.fail("a column is neither an array nor a list")
        return value if isinstance(value, np.ndarray) else value.array

    def index(self, node: Any) -> pd.Index:
        if not isinstance(node, dict):
            raise self.fail("an index is not described")
        name = self.tree(node.get("name"))
        kind = node.get("$")
        if kind == "dates":
            unit = node.get("unit")
            if unit not in ("s", "ms", "us", "ns"):
                raise self.fail(f"a date index has the unit {str(unit)[:10]!r}")
            values = self.array(node.get("a")).astype(f"datetime64[{unit}]")
            freq = node.get("freq")
            return pd.DatetimeIndex(values, name=name, freq=freq if isinstance(freq, str) else None)
        if kind == "labels":
            dtype = node.get("dtype", "object")
            if dtype not in ("object", "str", "string"):
                raise self.fail(f"a list of labels has the dtype {str(dtype)[:20]!r}")
            return pd.Index(
                [self.tree(v) for v in self._list(node.get("v"))], dtype=dtype, name=name
            )
        if kind == "numbers":
            return pd.Index(self.array(node.get("a")), name=name)
        raise self.fail("an index is not described")

    def _list(self, value: Any) -> list:
        if not isinstance(value, list):
            raise self.fail("a list is expected")
        return value

    def _key(self, key: Any) -> Any:
        if isinstance(key, list | dict):
            raise self.fail("a mapping's key is not a plain value")
        return key


def _load_agent(data: bytes, where: str):
    from dynafolio.rl.agent_file import TrainedAgent

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "agent.zip"
        path.write_bytes(data)
        try:
            return TrainedAgent.load(path)
        except DataError as error:
            raise DataError(f"{where}: its agent: {error}") from None


def decode(path: Path) -> Any:
    """The value :func:`encode` wrote to ``path``; a :class:`DataError` if it does not decode."""
    what = f"{path} is not a dynafolio task result"
    with SafeZip(path, what, max_file_bytes=_MAX_BYTES, max_members=4) as archive:
        if set(archive.members) != {_TREE, _ARRAYS}:
            raise DataError(f"{what}: it holds {sorted(archive.members)[:4]}")
        text = archive.read(_TREE, 1 << 28)
        blob = archive.read(_ARRAYS, _MAX_BYTES)
    tree = load_json(text, what, Limits(max_bytes=1 << 28, max_depth=64, max_items=1 << 24))
    if not isinstance(tree, dict) or tree.get("format") != _FORMAT:
        raise DataError(f"{what}")
    if tree.get("version") != _VERSION:
        raise DataError(f"{what} of this version of dynafolio (version {tree.get('version')!r})")
    arrays = {}
    for name, info in safetensors_layout(blob, f"{what}: {_ARRAYS}", 1 << 24).items():
        if info.dtype not in _NUMPY:
            raise DataError(f"{what}: array {name[:40]!r} has dtype {info.dtype}")
        dtype = np.dtype(_NUMPY[info.dtype]).newbyteorder("<")
        values = np.frombuffer(blob, dtype=dtype, count=info.numel, offset=info.offset)
        arrays[name] = values.reshape(info.shape).astype(dtype.newbyteorder("="))
    return _Reader(arrays, str(path)).tree(tree.get("value"))


class TaskStore:
    """Finished task results of one run, kept in ``folder`` (see the module docstring).

    ``fingerprint`` identifies what the results depend on; files of other fingerprints in
    the same folder are left alone (another config's resumable run).
    """

    def __init__(self, folder: Path, fingerprint: str) -> None:
        self.folder = Path(folder)
        self.fingerprint = hashlib.sha256(fingerprint.encode()).hexdigest()[:16]
        self.folder.mkdir(parents=True, exist_ok=True)

    def _path(self, task_id: str) -> Path:
        # Task ids are built by the run ("backtest-3-0-1", "stream-<hash>"); hashed here so
        # no id ever becomes a path component as such.
        digest = hashlib.sha256(f"{self.fingerprint}/{task_id}".encode()).hexdigest()[:32]
        return self.folder / f"{self.fingerprint}-{digest}.zip"

    def load(self, task_ids: list[str]) -> dict[str, Any]:
        """The stored results of ``task_ids`` that exist and decode; a file that does not
        decode (written by another version, damaged) is renamed ``*.bad`` and redone."""
        found = {}
        for task_id in task_ids:
            path = self._path(task_id)
            if not path.is_file():
                continue
            try:
                found[task_id] = decode(path)
            except (DataError, ValueError, TypeError):
                path.replace(path.with_suffix(".bad"))
        return found

    def save(self, task_id: str, result: Any) -> None:
        """Store one finished task's result atomically."""
        path = self._path(task_id)
        data = encode(result)
        handle, temporary = tempfile.mkstemp(dir=self.folder, suffix=".part")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def _member(name: str) -> zipfile.ZipInfo:
    """A zip member dated 1980-01-01, so the same content gives the same bytes."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    return info
