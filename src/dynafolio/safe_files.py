"""Reading files that dynafolio did not write in this process, without trusting them.

Every file a user can hand to dynafolio (a saved agent, a config, and the saved forecasters,
fitted strategies and tuning results that later loaders will read) goes through these
helpers before anything is built from it. They bound what reading can cost, and they refuse
anything that is not plain data with a :class:`~dynafolio.errors.DataError` that names the
file and the field:

* **sizes**: a file, a zip archive's central directory and each zip member are capped before
  they are read. A member is read with a bounded read, so a member that lies about its size
  cannot grow past the cap either. Only stored and deflated members are accepted.
* **structure**: a linear scan of the text measures JSON nesting depth and item count
  *before* ``json.loads``, which would otherwise recurse once per level. YAML's event stream
  is measured, aliases expanded, before the document is composed. A parsed tree is walked
  iteratively.
* **numbers**: NaN and ±inf are refused, and so are integers beyond 64 bits. This covers
  JSON's ``NaN``/``Infinity`` literals, literals that overflow such as ``1e999``, and YAML's
  ``.nan``/``.inf``.
* **schema**: :func:`validation_error` turns a pydantic error into one message that names
  each bad field.

Nothing here unpickles anything or imports anything that a file names.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from dynafolio.errors import DataError

__all__ = [
    "MAX_INT",
    "Limits",
    "SafeZip",
    "TensorInfo",
    "check_tree",
    "load_json",
    "load_toml",
    "load_yaml",
    "read_bytes",
    "safetensors_layout",
    "short_repr",
    "validation_error",
]

#: Largest integer magnitude accepted in a file (no setting or count comes near it).
MAX_INT = 2**63
#: A zip central directory holds one ~50-byte record per member plus its name. A 64 KiB cap
#: allows hundreds of members, so zipfile never parses a directory sized by the file itself.
_MAX_ZIP_DIRECTORY = 64 * 1024
_ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}


@dataclass(frozen=True)
class Limits:
    """Caps on one structured text (JSON, YAML or TOML) and on the tree parsed from it.

    Attributes
    ----------
    max_bytes : int
        Longest text accepted, in bytes.
    max_depth : int
        Deepest nesting of lists and mappings. A top-level mapping is depth 1.
    max_items : int
        Most entries: every value, and every key of a mapping, counts once. YAML aliases count
        as many times as they are used. Before parsing, JSON's count is estimated from its
        strings, brackets and commas, which comes within one per container of this count.
    max_keys : int
        Most keys in one mapping. A schema reports one error per unknown or invalid key, so
        this also bounds the size of a validation error.
    """

    max_bytes: int = 1 << 20
    max_depth: int = 32
    max_items: int = 100_000
    max_keys: int = 10_000


def _refuse(where: str, problem: str, fix: str) -> DataError:
    return DataError(f"{where}: {problem}" + (f"; {fix}" if fix else ""))


def short_repr(value: object, width: int = 60) -> str:
    """``repr(value)`` on one line, cut to about ``width`` characters (for error messages)."""
    text = repr(value)
    return text if len(text) <= width else f"{text[: width - 5]}...{text[-2:]}"


def _field(path: tuple) -> str:
    return ".".join(str(part) for part in path) or "(top level)"


def read_bytes(path: Path, where: str, max_bytes: int, fix: str = "") -> bytes:
    """The bytes of a regular file of at most ``max_bytes``, read with a bounded read."""
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as error:
        raise _refuse(where, f"it cannot be read ({error.strerror or error})", fix) from None
    if len(data) > max_bytes:
        raise _refuse(where, f"it is larger than {max_bytes:,} bytes, the most accepted", fix)
    return data


# ------------------------------------------------------------------------------- JSON
_JSON_STRUCTURE = re.compile(r'["\[\]{},]')


def _scan_json(text: str, where: str, limits: Limits, fix: str) -> None:
    """Refuse JSON nested deeper than ``max_depth`` or with more than ``max_items`` entries.

    Linear and without recursion. Strings are skipped by the json module's C string scanner,
    so a bracket inside a string is not counted. Only the structure that ``json.loads`` would
    reach is measured: text past a syntax error is left for ``json.loads`` to refuse.
    """
    depth = items = 0
    match = _JSON_STRUCTURE.search(text)
    while match is not None:
        char, end = match.group(), match.end()
        if char == '"':
            try:
                end = json.decoder.scanstring(text, end)[1]
            except ValueError:
                return  # an unterminated or invalid string: json.loads refuses it
            items += 1
        elif char in "[{":
            depth += 1
            items += 1
            if depth > limits.max_depth:
                raise _refuse(
                    where,
                    f"lists and mappings are nested more than {limits.max_depth} deep (at "
                    f"character {match.start():,})",
                    fix,
                )
        elif char in "]}":
            depth -= 1
        else:
            items += 1
        if items > limits.max_items:
            raise _refuse(where, f"it has more than {limits.max_items:,} entries", fix)
        match = _JSON_STRUCTURE.search(text, end)


def load_json(data: bytes | bytearray | str, where: str, limits: Limits, fix: str = "") -> Any:
    """Parse JSON text after checking its size, depth and entry count, then check its tree.

    Parameters
    ----------
    data : bytes, bytearray or str
        The text. Bytes must be UTF-8.
    where : str
        What the text is, e.g. ``"agent file a.zip: header"``. Every message starts with it.
    limits : Limits
    fix : str
        What to do instead, appended to every message.

    Raises
    ------
    DataError
        Too large, too deep, too many entries, not JSON, a non-finite number or an integer
        beyond :data:`MAX_INT`.
    """
    if len(data) > limits.max_bytes:
        raise _refuse(
            where, f"it is {len(data):,} bytes, more than the {limits.max_bytes:,} accepted", fix
        )
    if not isinstance(data, str):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise _refuse(where, f"it is not UTF-8 text (byte {error.start:,})", fix) from None
    _scan_json(data, where, limits, fix)
    try:
        tree = json.loads(data)
    except RecursionError:  # unreachable after the scan; kept so no other type escapes
        raise _refuse(where, "it is nested too deeply to read", fix) from None
    except ValueError as error:  # JSONDecodeError, or an integer of over 4,300 digits
        raise _refuse(where, f"it is not valid JSON ({error})", fix) from None
    check_tree(tree, where, limits, fix)
    return tree


def check_tree(tree: Any, where: str, limits: Limits, fix: str = "") -> None:
    """Walk a parsed tree (mappings, lists, scalars) iteratively and refuse it if it is too
    deep or too large, if a mapping has too many keys, or if it holds NaN, ±inf or an
    integer beyond :data:`MAX_INT`.

    Shared subtrees (YAML aliases) are walked once per use. A self-referencing tree is
    therefore refused as too deep, and an alias bomb is refused once ``max_items`` entries
    have been visited.
    """
    stack: list[tuple[Any, tuple, int]] = [(tree, (), 1)]
    items = 0
    while stack:
        node, path, depth = stack.pop()
        items += 1
        if isinstance(node, dict | list | tuple):
            items += len(node) if isinstance(node, dict) else 0
            if depth > limits.max_depth:
                raise _refuse(
                    where,
                    f"{_field(path)}: lists and mappings are nested more than "
                    f"{limits.max_depth} deep",
                    fix,
                )
            if items + len(node) > limits.max_items:
                raise _refuse(where, f"it has more than {limits.max_items:,} entries", fix)
            if isinstance(node, dict) and len(node) > limits.max_keys:
                raise _refuse(
                    where,
                    f"{_field(path)} has {len(node):,} keys, more than the {limits.max_keys:,} "
                    "accepted",
                    fix,
                )
            children = node.items() if isinstance(node, dict) else enumerate(node)
            stack.extend((value, (*path, key), depth + 1) for key, value in children)
        elif isinstance(node, float) and not math.isfinite(node):
            raise _refuse(where, f"{_field(path)} is {node}, not a finite number", fix)
        elif isinstance(node, int) and not isinstance(node, bool) and abs(node) > MAX_INT:
            raise _refuse(where, f"{_field(path)} is an integer beyond ±2**63", fix)


# ------------------------------------------------------------------------ YAML and TOML
def _scan_yaml(text: str, where: str, limits: Limits, fix: str) -> None:
    """Measure a YAML stream's depth and entry count, aliases expanded, from its events.

    PyYAML's parser is iterative. Its composer and constructor recurse once per level, and
    merge keys (``<<: *a``) copy what they merge, so both are bounded here first. An alias
    counts the size and height of its anchor's node.
    """
    open_nodes: list[list] = []  # per open collection: [anchor, size, height]
    anchors: dict[str, tuple[int, int]] = {}
    seen = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            open_nodes.append([event.anchor, 1, 1])
            size, height = 1, len(open_nodes)
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, size, height = open_nodes.pop()
            if anchor is not None:
                anchors[anchor] = (size, height)
            if open_nodes:
                open_nodes[-1][1] += size
                open_nodes[-1][2] = max(open_nodes[-1][2], height + 1)
            continue
        elif isinstance(event, yaml.ScalarEvent | yaml.AliasEvent):
            if isinstance(event, yaml.AliasEvent):
                size, height = anchors.get(event.anchor, (1, 0))
            else:
                size, height = 1, 0
                if event.anchor is not None:
                    anchors[event.anchor] = (1, 0)
            if open_nodes:
                open_nodes[-1][1] += size
                open_nodes[-1][2] = max(open_nodes[-1][2], height + 1)
            height += len(open_nodes)
        else:
            continue
        seen += size
        if height > limits.max_depth:
            raise _refuse(
                where, f"lists and mappings are nested more than {limits.max_depth} deep", fix
            )
        if seen > limits.max_items:
            raise _refuse(
                where,
                f"it has more than {limits.max_items:,} entries (aliases counted each time "
                "they are used)",
                fix,
            )


def load_yaml(text: str, where: str, limits: Limits, fix: str = "") -> Any:
    """``yaml.safe_load`` of a text of bounded size, depth and entry count, with finite
    numbers. Tags that construct Python objects are refused, as ``safe_load`` does."""
    return _load_text(text, where, limits, fix, "YAML", _yaml_tree)


def _yaml_tree(text: str, where: str, limits: Limits, fix: str) -> Any:
    _scan_yaml(text, where, limits, fix)
    return yaml.safe_load(text)


def load_toml(text: str, where: str, limits: Limits, fix: str = "") -> Any:
    """``tomllib.loads`` of a text of bounded size, depth and entry count, with finite
    numbers."""
    return _load_text(text, where, limits, fix, "TOML", lambda text, *_: tomllib.loads(text))


def _load_text(
    text: str, where: str, limits: Limits, fix: str, kind: str, parse: Callable[..., Any]
) -> Any:
    size = len(text.encode("utf-8"))
    if size > limits.max_bytes:
        raise _refuse(
            where, f"it is {size:,} bytes, more than the {limits.max_bytes:,} accepted", fix
        )
    try:
        tree = parse(text, where, limits, fix)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as error:
        raise DataError(f"{where} is not valid {kind}: {error}") from error
    except RecursionError:  # tomllib recurses once per level of inline arrays and tables
        raise _refuse(where, "lists and tables are nested too deeply to read", fix) from None
    check_tree(tree, where, limits, fix)
    return tree


# -------------------------------------------------------------------------------- zip
class SafeZip:
    """A zip archive opened for bounded reads.

    The file size and the central directory are checked before :mod:`zipfile` parses the
    directory. Every member must be stored or deflated, unencrypted and named once.
    :meth:`read` refuses a member larger than its cap before decompressing it. Any error of a
    broken archive, from zipfile, zlib or the OS, becomes a :class:`DataError`.

    Parameters
    ----------
    path : Path
    where : str
        What the file should be, e.g. ``"a.zip is not a dynafolio agent file"``. Messages
        start with it.
    max_file_bytes : int
        Largest archive accepted.
    max_members : int
        Most members accepted.
    fix : str
        What to do instead, appended to every message.
    """

    def __init__(
        self, path: Path, where: str, *, max_file_bytes: int, max_members: int, fix: str = ""
    ) -> None:
        self.where, self.fix = where, fix
        try:
            size = path.stat().st_size
        except OSError as error:
            raise _refuse(where, f"it cannot be read ({error.strerror or error})", fix) from None
        if size > max_file_bytes:
            raise _refuse(
                where, f"it is {size:,} bytes, more than the {max_file_bytes:,} accepted", fix
            )
        self._handle = None
        try:
            self._handle = path.open("rb")
            # zipfile parses the whole central directory that this record points to.
            end = zipfile._EndRecData(self._handle)  # type: ignore[attr-defined]
            if end is None:
                raise zipfile.BadZipFile("File is not a zip file")
            directory = end[zipfile._ECD_SIZE]  # type: ignore[attr-defined]
            if directory > _MAX_ZIP_DIRECTORY:
                raise _refuse(
                    where,
                    f"its zip directory is {directory:,} bytes, more than the "
                    f"{_MAX_ZIP_DIRECTORY:,} accepted",
                    fix,
                )
            self._archive = zipfile.ZipFile(self._handle)
            infos = self._archive.infolist()
        except DataError:
            self.close()
            raise
        except Exception as error:  # a broken archive raises many types; each means the same
            self.close()
            raise self._broken(error) from None
        names = [info.filename for info in infos]
        problem = None
        if len(infos) > max_members:
            problem = f"it has {len(infos):,} members, more than the {max_members} expected"
        elif len(set(names)) != len(names):
            problem = f"members {sorted({n for n in names if names.count(n) > 1})} appear twice"
        else:
            for info in infos:
                if info.flag_bits & 0x1:
                    problem = f"member {info.filename} is encrypted"
                elif info.compress_type not in _ZIP_METHODS:
                    problem = (
                        f"member {info.filename} uses zip compression method "
                        f"{info.compress_type}; only stored and deflated members are read"
                    )
                if problem:
                    break
        if problem:
            self.close()
            raise _refuse(where, problem, fix)
        self.members: dict[str, zipfile.ZipInfo] = dict(zip(names, infos, strict=True))

    def _broken(self, error: BaseException) -> DataError:
        detail = str(error) or type(error).__name__
        detail = detail if len(detail) <= 160 else detail[:157] + "..."
        return DataError(f"{self.where} ({detail})" + (f"; {self.fix}" if self.fix else ""))

    def read(self, name: str, max_bytes: int) -> bytearray:
        """The bytes of member ``name``, refused if it declares more than ``max_bytes``.

        The member is decompressed in 1 MiB chunks into a buffer of its declared size, so
        memory is that size and no more. zipfile never returns more than the declared size,
        and at the end the CRC check refuses a member that claimed to be smaller than it is.
        """
        info = self.members[name]
        if info.file_size > max_bytes:
            raise _refuse(
                self.where,
                f"member {name} is {info.file_size:,} bytes, more than the {max_bytes:,} it "
                "can hold",
                self.fix,
            )
        data = bytearray(info.file_size)
        filled = 0
        try:
            with self._archive.open(info) as member:
                while filled < len(data):
                    chunk = member.read(min(1 << 20, len(data) - filled))
                    if not chunk:
                        break
                    data[filled : filled + len(chunk)] = chunk
                    filled += len(chunk)
                extra = member.read(1)
        except Exception as error:  # bad CRC, corrupt deflate stream, truncated file, ...
            raise self._broken(error) from None
        if filled != len(data) or extra:
            raise _refuse(self.where, f"member {name} is not the size it declares", self.fix)
        return data

    def close(self) -> None:
        if getattr(self, "_archive", None) is not None:
            self._archive.close()
        if self._handle is not None:
            self._handle.close()

    def __enter__(self) -> SafeZip:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# ------------------------------------------------------------------------ safetensors
#: Bytes per element of the safetensors dtypes.
_SAFETENSORS_DTYPES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
}  # fmt: skip
_MAX_DIMS = 8


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a safetensors file as its header declares it; its data are the
    ``numel`` elements of ``dtype`` from byte ``offset`` of the blob (little-endian)."""

    dtype: str
    shape: tuple[int, ...]
    offset: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def safetensors_layout(
    blob: bytes | bytearray, where: str, max_header_bytes: int = 64 * 1024, fix: str = ""
) -> dict[str, TensorInfo]:
    """The tensors that a safetensors blob holds (name to dtype, shape and data offset),
    read from its header without building any tensor.

    The blob is an 8-byte little-endian header length, a JSON header, then the data. Every
    entry must have a known dtype, at most 8 non-negative dimensions and offsets that span
    exactly ``numel`` elements of the dtype. The entries must tile the data section
    exactly, so the shapes match the bytes that are actually there.
    """
    what = f"{where} is not a safetensors file"
    if len(blob) < 8:
        raise _refuse(what, f"it is {len(blob)} bytes long", fix)
    size = int.from_bytes(blob[:8], "little")
    if size > max_header_bytes or size > len(blob) - 8:
        raise _refuse(
            what,
            f"its header claims {size:,} bytes, more than the "
            f"{min(max_header_bytes, len(blob) - 8):,} available",
            fix,
        )
    header = load_json(
        blob[8 : 8 + size],
        f"{what} (header)",
        Limits(
            max_bytes=max_header_bytes,
            max_depth=3,
            max_items=max_header_bytes // 8,
            max_keys=max_header_bytes // 64,
        ),
        fix,
    )
    if not isinstance(header, dict):
        raise _refuse(what, f"its header is a {type(header).__name__}, not a mapping", fix)
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _refuse(what, "its __metadata__ is not a mapping of strings", fix)
    layout: dict[str, TensorInfo] = {}
    spans = []
    for name, entry in header.items():
        problem = _entry_problem(entry)
        if problem:
            raise _refuse(what, f"tensor {name!r}: {problem}", fix)
        begin, end = entry["data_offsets"]
        info = TensorInfo(entry["dtype"], tuple(entry["shape"]), 8 + size + begin)
        if end - begin != info.numel * _SAFETENSORS_DTYPES[info.dtype]:
            raise _refuse(
                what,
                f"tensor {name!r} of shape {list(info.shape)} ({info.dtype}) spans "
                f"{end - begin:,} bytes",
                fix,
            )
        layout[name] = info
        spans.append((begin, end))
    position = 0
    for begin, end in sorted(spans):
        if begin != position:
            raise _refuse(what, f"its tensors leave a gap or overlap at byte {begin:,}", fix)
        position = end
    if position != len(blob) - 8 - size:
        raise _refuse(
            what,
            f"its tensors span {position:,} bytes but it holds {len(blob) - 8 - size:,}",
            fix,
        )
    return layout


def _entry_problem(entry: object) -> str | None:
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        return "an entry needs exactly dtype, shape and data_offsets"
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in _SAFETENSORS_DTYPES:
        return f"unknown dtype {short_repr(dtype)}"
    if not isinstance(shape, list) or len(shape) > _MAX_DIMS or not all(_natural(d) for d in shape):
        return f"shape {short_repr(shape)} is not a list of at most {_MAX_DIMS} sizes"
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(map(_natural, offsets)):
        return f"data_offsets {short_repr(offsets)} is not [begin, end]"
    if offsets[1] < offsets[0]:
        return f"data_offsets {offsets} ends before it begins"
    return None


def _natural(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# ---------------------------------------------------------------------------- schemas
def validation_error(
    error: ValidationError, where: str, fix: str = "", limit: int = 5
) -> DataError:
    """One :class:`DataError` naming each field (up to ``limit``) that a pydantic
    validation refused, with the value it was given."""
    problems = error.errors(include_url=False)
    parts = []
    for problem in problems[:limit]:
        given = problem.get("input")
        shown = "" if isinstance(given, dict | list | tuple) else f" (got {short_repr(given)})"
        parts.append(f"{_field(tuple(problem['loc']))}: {problem['msg']}{shown}")
    if len(problems) > limit:
        parts.append(f"and {len(problems) - limit} more")
    return _refuse(where, "; ".join(parts), fix)
