"""Bounded reading of binary containers: zip archives (sizes, methods, names checked before a
member is decompressed) and the safetensors layout (see :mod:`dynafolio.safe_files`)."""

from __future__ import annotations

import io
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from dynafolio.errors import DataError
from dynafolio.safe_files.text import Limits, load_json, refuse, short_repr

_MAX_ZIP_DIRECTORY = 64 * 1024
_ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}


# -------------------------------------------------------------------------------- zip
class SafeZip:
    """A zip archive opened for bounded reads.

    The file size and the central directory are checked before :mod:`zipfile` parses the
    directory. Every member must be stored or deflated, unencrypted and named once.
    :meth:`read` refuses a member larger than its cap before decompressing it. Any error of a
    broken archive, from zipfile, zlib or the OS, becomes a :class:`DataError`.

    Parameters
    ----------
    source : Path or bytes
        The archive's file, or its contents already in memory (an agent file read on a
        Ray driver and shipped to a worker, which cannot open the driver's paths). Bytes
        get exactly the checks a file gets.
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
        self,
        source: Path | bytes | bytearray,
        where: str,
        *,
        max_file_bytes: int,
        max_members: int,
        fix: str = "",
    ) -> None:
        self.where, self.fix = where, fix
        self._handle: BinaryIO | None = None
        in_memory = isinstance(source, bytes | bytearray)
        if in_memory:
            size = len(source)
        else:
            try:
                size = source.stat().st_size
            except OSError as error:
                raise refuse(where, f"it cannot be read ({error.strerror or error})", fix) from None
        if size > max_file_bytes:
            raise refuse(
                where, f"it is {size:,} bytes, more than the {max_file_bytes:,} accepted", fix
            )
        try:
            # Bytes are read through a file object, so both go through the same checks.
            self._handle = io.BytesIO(source) if in_memory else source.open("rb")
            # zipfile parses the whole central directory that this record points to.
            end = zipfile._EndRecData(self._handle)  # type: ignore[attr-defined]
            if end is None:
                raise zipfile.BadZipFile("File is not a zip file")
            directory = end[zipfile._ECD_SIZE]  # type: ignore[attr-defined]
            if directory > _MAX_ZIP_DIRECTORY:
                raise refuse(
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
            raise refuse(where, problem, fix)
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
            raise refuse(
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
            raise refuse(self.where, f"member {name} is not the size it declares", self.fix)
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
        raise refuse(what, f"it is {len(blob)} bytes long", fix)
    size = int.from_bytes(blob[:8], "little")
    if size > max_header_bytes or size > len(blob) - 8:
        raise refuse(
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
        raise refuse(what, f"its header is a {type(header).__name__}, not a mapping", fix)
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise refuse(what, "its __metadata__ is not a mapping of strings", fix)
    layout: dict[str, TensorInfo] = {}
    spans = []
    for name, entry in header.items():
        problem = _entry_problem(entry)
        if problem:
            raise refuse(what, f"tensor {name!r}: {problem}", fix)
        begin, end = entry["data_offsets"]
        info = TensorInfo(entry["dtype"], tuple(entry["shape"]), 8 + size + begin)
        if end - begin != info.numel * _SAFETENSORS_DTYPES[info.dtype]:
            raise refuse(
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
            raise refuse(what, f"its tensors leave a gap or overlap at byte {begin:,}", fix)
        position = end
    if position != len(blob) - 8 - size:
        raise refuse(
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
