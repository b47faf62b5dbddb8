"""Bounded, data-only reading of text files: JSON, YAML and TOML, checked for size, depth,
item count and non-finite or oversized numbers, and pydantic errors turned into one message
(see :mod:`dynafolio.safe_files`)."""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from dynafolio.errors import DataError

#: Largest integer magnitude accepted in a file (no setting or count comes near it).
MAX_INT = 2**63
#: A zip central directory holds one ~50-byte record per member plus its name. A 64 KiB cap
#: allows hundreds of members, so zipfile never parses a directory sized by the file itself.


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


def refuse(where: str, problem: str, fix: str) -> DataError:
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
        raise refuse(where, f"it cannot be read ({error.strerror or error})", fix) from None
    if len(data) > max_bytes:
        raise refuse(where, f"it is larger than {max_bytes:,} bytes, the most accepted", fix)
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
                raise refuse(
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
            raise refuse(where, f"it has more than {limits.max_items:,} entries", fix)
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
        raise refuse(
            where, f"it is {len(data):,} bytes, more than the {limits.max_bytes:,} accepted", fix
        )
    if not isinstance(data, str):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise refuse(where, f"it is not UTF-8 text (byte {error.start:,})", fix) from None
    _scan_json(data, where, limits, fix)
    try:
        tree = json.loads(data)
    except RecursionError:  # unreachable after the scan; kept so no other type escapes
        raise refuse(where, "it is nested too deeply to read", fix) from None
    except ValueError as error:  # JSONDecodeError, or an integer of over 4,300 digits
        raise refuse(where, f"it is not valid JSON ({error})", fix) from None
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
                raise refuse(
                    where,
                    f"{_field(path)}: lists and mappings are nested more than "
                    f"{limits.max_depth} deep",
                    fix,
                )
            if items + len(node) > limits.max_items:
                raise refuse(where, f"it has more than {limits.max_items:,} entries", fix)
            if isinstance(node, dict) and len(node) > limits.max_keys:
                raise refuse(
                    where,
                    f"{_field(path)} has {len(node):,} keys, more than the {limits.max_keys:,} "
                    "accepted",
                    fix,
                )
            children = node.items() if isinstance(node, dict) else enumerate(node)
            stack.extend((value, (*path, key), depth + 1) for key, value in children)
        elif isinstance(node, float) and not math.isfinite(node):
            raise refuse(where, f"{_field(path)} is {node}, not a finite number", fix)
        elif isinstance(node, int) and not isinstance(node, bool) and abs(node) > MAX_INT:
            raise refuse(where, f"{_field(path)} is an integer beyond ±2**63", fix)


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
            raise refuse(
                where, f"lists and mappings are nested more than {limits.max_depth} deep", fix
            )
        if seen > limits.max_items:
            raise refuse(
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
        raise refuse(
            where, f"it is {size:,} bytes, more than the {limits.max_bytes:,} accepted", fix
        )
    try:
        tree = parse(text, where, limits, fix)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as error:
        raise DataError(f"{where} is not valid {kind}: {error}") from error
    except RecursionError:  # tomllib recurses once per level of inline arrays and tables
        raise refuse(where, "lists and tables are nested too deeply to read", fix) from None
    check_tree(tree, where, limits, fix)
    return tree


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
    return refuse(where, "; ".join(parts), fix)
