"""Where torch models train: one ``device`` setting (``auto``, ``cpu`` or ``cuda``) for every
forecaster, the end-to-end allocator and PPO.

``auto`` uses a GPU when torch sees one and the CPU otherwise; ``cuda`` insists on a GPU and
is refused with a :class:`~dynafolio.errors.ConfigError` when there is none. A run sets the
device once per task (:func:`using`, from the config's ``device``), in whichever process the
executor runs it; the training loops read it with :func:`current`, which is the CPU outside
:func:`using`.

Models train on the device and are moved back to the CPU when training ends: predictions,
saved files and the objects handed between processes never hold GPU tensors. On the CPU the
training code is exactly the CPU-only code, so CPU results are unchanged byte for byte. A GPU
run is reproducible on the same GPU (same seed, same results), but its results differ from a
CPU run's: the CUDA kernels round differently and dropout draws from CUDA's own random
generator.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Literal, get_args

from dynafolio.errors import ConfigError

if TYPE_CHECKING:  # annotations only: torch is imported when a device is first resolved
    import torch

__all__ = ["DEVICES", "Device", "current", "fork_rng", "resolve", "using"]

#: The ``device`` setting: ``auto`` (a GPU when torch sees one), ``cpu`` or ``cuda``.
Device = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[str, ...] = get_args(Device)

# The device of the block of :func:`using` being run in this process (None: the CPU). One per
# process: every executor runs one task at a time per process.
_current: torch.device | None = None


def resolve(device: str = "auto") -> torch.device:
    """The torch device that ``device`` names here: ``auto`` is ``cuda`` when torch sees a GPU,
    else ``cpu``.

    The CUDA device returned has no index: it is whichever GPU is current in the process.

    Raises
    ------
    ConfigError
        ``device`` is not one of auto, cpu, cuda; or it is ``cuda`` and torch sees no GPU.
    """
    if device not in DEVICES:
        raise ConfigError(f"device: {device!r} is not a device; choose auto, cpu or cuda")
    import torch

    if device == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if device == "auto":
        return torch.device("cpu")
    why = (
        f"this torch ({torch.__version__}) is built without CUDA"
        if torch.version.cuda is None
        else f"this torch is built for CUDA {torch.version.cuda} but finds no usable GPU"
    )
    raise ConfigError(
        f"device: cuda asks for a GPU, but torch sees none ({why}); use device: auto (a GPU "
        "when there is one, else the CPU) or device: cpu, or install a CUDA build of torch "
        "on a machine with an NVIDIA GPU"
    )


def current() -> torch.device:
    """The device torch models train on now: the one set by :func:`using`, else the CPU."""
    if _current is not None:
        return _current
    import torch

    return torch.device("cpu")


@contextmanager
def using(device: str) -> Iterator[torch.device]:
    """Train torch models on ``device`` (resolved by :func:`resolve`) inside the block.

    Restores the previous device on exit, so blocks nest.

    Raises
    ------
    ConfigError
        As :func:`resolve`, on entering the block (before any work in it).
    """
    global _current
    resolved = resolve(device)
    undo = _deterministic(resolved)
    previous, _current = _current, resolved
    try:
        yield resolved
    finally:
        _current = previous
        undo()


def _deterministic(device: torch.device) -> Callable[[], None]:
    """On a GPU, ask torch for deterministic kernels; return what undoes it (on the CPU
    nothing is changed).

    Same seed, same GPU, same results: several CUDA kernels (the scatter-adds of indexing
    backwards, cuBLAS reductions) are deterministic only when asked to be, and a task that
    fits a forecaster need not have called ``seed_everything``, which asks for it.
    """
    if device.type != "cuda":
        return lambda: None
    import torch

    # cuBLAS reads its workspace setting when it first starts in the process.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    return lambda: torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def fork_rng(device: torch.device) -> AbstractContextManager[None]:
    """``torch.random.fork_rng`` of the generators a model on ``device`` draws from: the CPU's
    always (initialisation), and on a GPU that GPU's too (dropout), so that seeding inside
    the block leaves the caller's random state untouched on either."""
    import torch

    if device.type != "cuda":
        return torch.random.fork_rng(devices=[])
    index = device.index if device.index is not None else torch.cuda.current_device()
    return torch.random.fork_rng(devices=[index], device_type="cuda")
