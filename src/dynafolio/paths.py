"""Names are never paths: safe file stems for display names, and the output folder's checks.

A strategy, experiment or table name is text for people. Wherever it has to name a file it goes
through :func:`unique_stems`, which maps every name to a short ASCII stem that cannot leave its
folder (no separators, no dots, no ``..``) and never lets two names share a file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import unicodedata
from collections.abc import Sequence
from pathlib import Path

from dynafolio.errors import ConfigError

__all__ = [
    "PARTIAL_MARKER",
    "check_display_name",
    "file_stem",
    "name_problem",
    "prepare_out_dir",
    "sweep_partial_runs",
    "unique_stems",
    "write_partial_marker",
]

#: Longest stem derived from a name (file systems allow 255 bytes; suffixes need room).
MAX_STEM = 80
#: Names Windows refuses as file names whatever the extension.
_RESERVED = {"con", "prn", "aux", "nul"} | {f"{p}{i}" for p in ("com", "lpt") for i in range(10)}
#: Written inside every partial run directory: who is writing it.
PARTIAL_MARKER = ".dynafolio-partial.json"
_PARTIAL = re.compile(r"^\..+\.partial-[0-9a-f]{8}$")


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a display name, or None if it can.

    Control and invisible format characters (NUL, newlines, tabs, bidirectional overrides)
    are refused, and so is a blank name. Everything else — spaces, slashes, any script — is a
    valid display name; :func:`unique_stems` makes the file names.
    """
    if not isinstance(name, str) or not name.strip():
        return f"a name must be non-empty text, got {name!r}"
    for position, char in enumerate(name):
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            return (
                f"the name {name!r} contains the control or invisible character "
                f"U+{ord(char):04X} at position {position}; use printable characters only"
            )
    return None


def check_display_name(name: str, key: str) -> str:
    """Return ``name`` if :func:`name_problem` finds nothing, else raise naming ``key``.

    Raises
    ------
    ConfigError
    """
    problem = name_problem(name)
    if problem is not None:
        raise ConfigError(f"{key}: {problem}")
    return name


def file_stem(name: str) -> str:
    """A readable ASCII stem for ``name``: lowercase letters, digits and ``-``, at most 80 long.

    ``"Hybrid LSTM+PPO Top-5"`` → ``"hybrid-lstm-ppo-top-5"``; accents are dropped
    (``"Équipondéré"`` → ``"equipondere"``). A name with nothing left (``"等权"``) gives
    ``"name-<hash>"``. Different names may share a stem; :func:`unique_stems` resolves that.
    """
    ascii_text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    stem = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    stem = stem[:MAX_STEM].rstrip("-")
    if not stem:
        return f"name-{_digest(name)}"
    if stem in _RESERVED:
        return f"{stem}-{_digest(name)}"
    return stem


def unique_stems(names: Sequence[str]) -> dict[str, str]:
    """Map each distinct name to a file stem no other name shares, deterministically.

    Names whose stems collide (``"a/b"`` and ``"a-b"``, two names in another script, two long
    names with the same first 80 characters) each get ``-<8 hex digits of their hash>``, so
    the suffix depends on the name only, not on the order. Never two names, one file.
    """
    distinct = list(dict.fromkeys(names))
    stems = {name: file_stem(name) for name in distinct}
    counts: dict[str, int] = {}
    for stem in stems.values():
        counts[stem] = counts.get(stem, 0) + 1
    for name, stem in stems.items():
        if counts[stem] > 1:
            stems[name] = f"{stem[: MAX_STEM - 9]}-{_digest(name)}"
    taken: set[str] = set()
    for name in distinct:  # a hash suffix equal to another name's stem: order decides, stably
        stem, n = stems[name], 1
        while stems[name] in taken:
            n += 1
            stems[name] = f"{stem}-{n}"
        taken.add(stems[name])
    return stems


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def prepare_out_dir(out: str | os.PathLike[str]) -> Path:
    """Check that runs can be written under ``out`` before any work starts.

    Nothing is created: the nearest existing folder on the way to ``out`` is probed with a
    temporary file (removed at once), so a run that fails later leaves no empty folder.

    Raises
    ------
    ConfigError
        If ``out`` is a file, lies under a file, or cannot be written, with what to do.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(
            f"--out {out} is a file, not a folder; pass a folder for the run directories "
            "(it is created if missing)"
        )
    existing = out
    for existing in (out, *out.parents):
        if existing.exists():
            break
    if not existing.is_dir():
        raise ConfigError(f"--out {out} lies under {existing}, which is a file; choose a folder")
    try:
        handle, probe = tempfile.mkstemp(prefix=".dynafolio-write-check-", dir=existing)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise ConfigError(
            f"--out {out} cannot be written ({error.strerror or error} in {existing}); choose "
            "a folder you can write to"
        ) from None
    return out


def write_partial_marker(partial: Path) -> None:
    """Record which process writes ``partial``, so a later run can tell a stale one."""
    (partial / PARTIAL_MARKER).write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
        )
    )


def sweep_partial_runs(out: Path) -> list[str]:
    """Remove partial run directories in ``out`` left by killed runs; report the others.

    A ``.NAME.partial-XXXXXXXX`` folder is removed when its marker says it was written on this
    host by a process that no longer exists (e.g. a run killed with SIGKILL). One without a
    marker, from another host, or whose writer is alive is left alone and reported.

    Returns
    -------
    list of str
        One line per partial directory found: removed, or left with the reason.
    """
    lines = []
    if not out.is_dir():
        return lines
    for path in sorted(out.iterdir()):
        if not (path.is_dir() and _PARTIAL.match(path.name)):
            continue
        owner = _read_marker(path)
        if owner is None:
            lines.append(
                f"{path} is an unfinished run directory without an owner record; remove it "
                "by hand if no run is writing it"
            )
        elif owner.get("host") != socket.gethostname():
            lines.append(f"{path} is an unfinished run from host {owner.get('host')!r}; left alone")
        elif _alive(owner.get("pid")):
            lines.append(
                f"{path} is being written by process {owner.get('pid')} (still running); left"
            )
        else:
            shutil.rmtree(path, ignore_errors=True)
            lines.append(
                f"removed {path}: left by an interrupted run (process {owner.get('pid')}, "
                f"started {owner.get('started')})"
            )
    return lines


def _read_marker(path: Path) -> dict | None:
    try:
        owner = json.loads((path / PARTIAL_MARKER).read_text())
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) and isinstance(owner.get("pid"), int) else None


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True
