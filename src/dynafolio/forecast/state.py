"""A fitted forecaster's state, and its file: a JSON header and the arrays as safetensors.

A run saves every forecaster it fits (one file per fit, under ``forecasters/``), so that a
decision "as of" a date of the run (``dynafolio rebalance --run``) uses the models that were
in force then instead of training them again. :meth:`Forecaster.fitted_state` gives the
state (arrays: network weights, scaler statistics, coefficients; plus a few integers such as
the number of inputs) and :meth:`Forecaster.restore` rebuilds a fitted model from it.

:func:`load_forecaster` reads a file without trusting it: the header is validated
completely, the arrays' dtypes, shapes and bytes are checked from the safetensors header,
and the model is rebuilt from *the caller's* forecaster (its class and parameters, from the
run's config), never from a name in the file. A file written by another forecaster, with
other parameters or for another universe of assets is refused with a message that says which.
Nothing in a file is unpickled or executed.
"""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import Field, ValidationError

from dynafolio.errors import DataError
from dynafolio.safe_files import Limits, SafeZip, load_json, safetensors_layout, short_repr
from dynafolio.safe_files import validation_error as _validation_error
from dynafolio.settings import Settings

if TYPE_CHECKING:
    from torch import nn

    from dynafolio.forecast.base import Forecaster

__all__ = [
    "FORECASTER_FORMAT",
    "FORECASTER_VERSION",
    "FittedState",
    "forecaster_bytes",
    "load_forecaster",
    "module_arrays",
    "restore_from",
    "restore_module",
    "save_forecaster",
]

FORECASTER_FORMAT = "dynafolio-forecaster"
FORECASTER_VERSION = 1
_HEADER = "forecaster.json"
_ARRAYS = "state.safetensors"
#: Most assets a universe may have in a file (as many as an agent file allows).
MAX_ASSETS = 10_000
_MAX_FILE_BYTES = 1 << 30
_MAX_ARRAYS = 4_096
_HEADER_LIMITS = Limits(max_bytes=4 * 1024 * 1024, max_depth=6, max_items=100_000, max_keys=256)
_SAFETENSORS_HEADER_BYTES = 1 << 20
#: safetensors dtype -> numpy dtype of the arrays a state may hold.
_DTYPES = {"F32": "<f4", "F64": "<f8", "I64": "<i8"}

_Name = Annotated[str, Field(min_length=1, max_length=200)]
_Date = Annotated[str, Field(max_length=32)]
_Param = int | float | str | bool | None | list[int | float | str | bool | None]


@dataclass
class FittedState:
    """What a fitted forecaster learned, as plain data.

    Attributes
    ----------
    assets : tuple of str
        The assets the model forecasts (its ``assets_``: those with enough history).
    arrays : dict of str -> ndarray
        Network weights (``network.<parameter>``), scaler statistics, coefficients.
    sizes : dict of str -> int
        Integers the model needs to be rebuilt (e.g. ``n_inputs`` of a network).
    """

    assets: tuple[str, ...] = ()
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)


class _Header(Settings):
    """The JSON header of a forecaster file: which model, fitted when and on what."""

    format: Literal["dynafolio-forecaster"]
    version: Literal[1]
    forecaster: _Name
    params: dict[_Name, _Param] = Field(max_length=256)
    universe: tuple[_Name, ...] = Field(max_length=MAX_ASSETS, fail_fast=True)
    assets: tuple[_Name, ...] = Field(max_length=MAX_ASSETS, fail_fast=True)
    sizes: dict[_Name, Annotated[int, Field(ge=0, le=1_000_000)]] = Field(max_length=64)
    fit_period: tuple[_Date, _Date]


def _params(model: Forecaster) -> dict[str, Any]:
    """The constructor parameters as JSON values (tuples as lists). Values that are not
    plain data (the known-answer market of the oracle, which the run supplies) are left out."""
    out = {}
    params = (
        model.get_params()
        if hasattr(model, "get_params")
        else {f.name: getattr(model, f.name) for f in dataclasses.fields(model)}
    )
    for name, value in sorted(params.items()):
        if isinstance(value, tuple):
            value = list(value)
        if value is None or isinstance(value, int | float | str | bool):
            out[name] = value
        elif isinstance(value, list) and all(
            v is None or isinstance(v, int | float | str | bool) for v in value
        ):
            out[name] = value
    return out


def forecaster_bytes(model: Forecaster, universe: list[str], fit_period: tuple[str, str]) -> bytes:
    """The file :func:`save_forecaster` writes, as bytes (what a worker hands back)."""
    state = model.fitted_state()
    header = _Header(
        format=FORECASTER_FORMAT,
        version=FORECASTER_VERSION,
        forecaster=type(model).__name__,
        params=_params(model),
        universe=tuple(map(str, universe)),
        assets=tuple(map(str, state.assets)),
        sizes=state.sizes,
        fit_period=fit_period,
    )
    import safetensors.numpy

    arrays = {name: np.ascontiguousarray(a) for name, a in state.arrays.items()}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(_member(_HEADER), header.model_dump_json())
        archive.writestr(_member(_ARRAYS), safetensors.numpy.save(arrays))
    return buffer.getvalue()


def save_forecaster(
    model: Forecaster, path: str | Path, universe: list[str], fit_period: tuple[str, str]
) -> Path:
    """Write a fitted forecaster to ``path`` (one ``.zip``: JSON header + safetensors).

    ``universe`` is every asset of the history it was fitted on, ``fit_period`` the first
    and last dates of that history.
    """
    path = Path(path)
    path.write_bytes(forecaster_bytes(model, universe, fit_period))
    return path


def load_forecaster(
    path: str | Path,
    template: Forecaster,
    universe: list[str],
    fit_date: str | None = None,
) -> Forecaster:
    """The fitted model saved in ``path``, rebuilt from ``template`` (unfitted).

    Refused with a :class:`DataError` that names the file and the reason: not a forecaster
    file, a header or arrays that do not hold together, another forecaster class or other
    parameters than ``template``'s, another universe than ``universe``, a fit on a history
    ending on another date than ``fit_date`` (when given).
    """
    return restore_from(path, template.clone(), universe, fit_date)


def restore_from(path: str | Path, model: Any, universe: list[str], fit_date: str | None):
    """:func:`load_forecaster` into ``model`` itself (any object with the fitted-state
    methods and parameters, such as a strategy that trains its own network); returns it."""
    path = Path(path)
    template = model
    fix = "use the forecasters/ folder of a dynafolio run made with this config and data"
    if not path.is_file():
        raise DataError(f"forecaster file {path} does not exist or is not a file; {fix}")
    what = f"{path} is not a dynafolio forecaster file"
    try:
        with SafeZip(path, what, max_file_bytes=_MAX_FILE_BYTES, max_members=4, fix=fix) as zf:
            if set(zf.members) != {_HEADER, _ARRAYS}:
                raise DataError(
                    f"{what}: it holds {sorted(zf.members)[:6]}, not {_HEADER} and {_ARRAYS}; {fix}"
                )
            header = _read_header(zf.read(_HEADER, _HEADER_LIMITS.max_bytes), what, fix)
            blob = zf.read(_ARRAYS, _MAX_FILE_BYTES)
    except DataError:
        raise
    except Exception as error:  # a last guard: each failure above has its own message
        raise DataError(
            f"{what} ({type(error).__name__}: {short_repr(str(error), 200)}); {fix}"
        ) from None
    _check_fits(header, template, universe, fit_date, path)
    state = FittedState(
        assets=header.assets, arrays=_read_arrays(blob, what, fix), sizes=dict(header.sizes)
    )
    try:
        return model.restore(state)
    except DataError as error:
        raise DataError(f"{path}: {error}; {fix}") from None


def _read_header(text: bytearray, what: str, fix: str) -> _Header:
    raw = load_json(text, f"{what}: its header {_HEADER}", _HEADER_LIMITS, fix)
    if not isinstance(raw, dict) or raw.get("format") != FORECASTER_FORMAT:
        shown = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise DataError(f"{what} (format {short_repr(shown)}); {fix}")
    if raw.get("version") != FORECASTER_VERSION:
        raise DataError(
            f"{what} of version {short_repr(raw.get('version'))}: this dynafolio reads version "
            f"{FORECASTER_VERSION}; rerun the experiment or upgrade dynafolio"
        )
    try:
        return _Header.model_validate_json(json.dumps(raw), strict=True)
    except ValidationError as error:
        raise _validation_error(error, f"{what}: its header is invalid", fix) from None


def _check_fits(
    header: _Header, template: Forecaster, universe: list[str], fit_date: str | None, path: Path
) -> None:
    """Refuse a file fitted by another model, with other settings, on other assets or at
    another date than the one it is loaded for."""
    fix = "use the run's own forecasters/ folder, or leave --run out to fit the models afresh"
    name = type(template).__name__
    if header.forecaster != name:
        raise DataError(
            f"{path} holds a {header.forecaster}, not the {name} of this strategy; {fix}"
        )
    wanted = _params(template)
    if header.params != wanted:
        differ = sorted(
            k for k in {*wanted, *header.params} if wanted.get(k) != header.params.get(k)
        )
        shown = {k: (header.params.get(k), wanted.get(k)) for k in differ[:5]}
        raise DataError(
            f"{path} was fitted with other settings than this strategy's forecaster "
            f"(file vs config: {short_repr(shown, 300)}); {fix}"
        )
    if list(header.universe) != [str(a) for a in universe]:
        extra = sorted(set(header.universe) - set(map(str, universe)))[:5]
        missing = sorted(set(map(str, universe)) - set(header.universe))[:5]
        order = "; the same assets in another order" if not extra and not missing else ""
        raise DataError(
            f"{path} was fitted on another universe of assets ({len(header.universe)} assets; "
            f"not in this data: {extra or 'none'}; in the data but not in the file: "
            f"{missing or 'none'}{order}); {fix}"
        )
    if not set(header.assets) <= set(header.universe):
        raise DataError(f"{path}: its forecast assets are not all in its universe; {fix}")
    if fit_date is not None and header.fit_period[1] != fit_date:
        raise DataError(
            f"{path} was fitted on the history up to {header.fit_period[1]}, not up to "
            f"{fit_date} as the refit schedule needs here; {fix}"
        )


def _read_arrays(blob: bytearray, what: str, fix: str) -> dict[str, np.ndarray]:
    layout = safetensors_layout(blob, f"{what}: {_ARRAYS}", _SAFETENSORS_HEADER_BYTES, fix)
    if len(layout) > _MAX_ARRAYS:
        raise DataError(f"{what}: {len(layout)} arrays, more than {_MAX_ARRAYS}; {fix}")
    arrays = {}
    for name, info in layout.items():
        if info.dtype not in _DTYPES:
            raise DataError(
                f"{what}: array {short_repr(name)} is of dtype {info.dtype}; forecaster files "
                f"hold {', '.join(_DTYPES)} arrays only; {fix}"
            )
        values = np.frombuffer(
            blob, dtype=_DTYPES[info.dtype], count=info.numel, offset=info.offset
        )
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            raise DataError(f"{what}: array {short_repr(name)} holds NaN or infinite values; {fix}")
        arrays[name] = values.reshape(info.shape).astype(values.dtype.newbyteorder("="))
    return arrays


# ------------------------------------------------------------------- helpers for models
def module_arrays(module: nn.Module, prefix: str = "network") -> dict[str, np.ndarray]:
    """A torch module's parameters and buffers as ``{prefix.name: array}`` (CPU copies)."""
    return {
        f"{prefix}.{name}": tensor.detach().cpu().numpy().copy()
        for name, tensor in module.state_dict().items()
    }


def restore_module(module: nn.Module, arrays: dict[str, np.ndarray], prefix: str = "network"):
    """Copy ``arrays`` (as written by :func:`module_arrays`) into ``module``, which must have
    exactly these tensors with these shapes; returns the module in eval mode."""
    import torch

    state = module.state_dict()
    held = {
        k.removeprefix(prefix + "."): a for k, a in arrays.items() if k.startswith(prefix + ".")
    }
    wanted = {name: tuple(t.shape) for name, t in state.items()}
    found = {name: tuple(a.shape) for name, a in held.items()}
    if found != wanted:
        differ = sorted(k for k in {*wanted, *found} if wanted.get(k) != found.get(k))[:4]
        raise DataError(
            f"its network tensors do not fit the model the settings build ("
            f"{', '.join(f'{k}: file {found.get(k)}, model {wanted.get(k)}' for k in differ)})"
        )
    with torch.no_grad():
        for name, tensor in state.items():
            tensor.copy_(torch.from_numpy(held[name]).to(tensor.dtype))
    return module.eval()


def take(arrays: dict[str, np.ndarray], name: str, shape: tuple[int, ...]) -> np.ndarray:
    """``arrays[name]``, which must exist with ``shape`` (a clear error otherwise)."""
    if name not in arrays:
        raise DataError(f"it has no array {name!r}")
    if arrays[name].shape != shape:
        raise DataError(f"its array {name!r} has shape {arrays[name].shape}, expected {shape}")
    return arrays[name]


def _member(name: str) -> zipfile.ZipInfo:
    """A zip member dated 1980-01-01, so the same content gives the same bytes."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    return info
