"""Which implementation runs the SFM recurrence.

``"fast"`` (default)
    The op ``freqnn::sfm_scan``: the compiled CPU kernel where it applies (CPU, float32 /
    float64, a kernel that builds), the PyTorch algorithm otherwise.
``"compiled"`` / ``"pytorch"``
    The op, forced to one implementation (``"compiled"`` raises where it cannot run).
``"triton"``
    The op on the Triton kernels (:mod:`.triton_scan`; what ``"fast"`` selects for CUDA float32
    tensors where triton is installed and the layer fits the kernel). CPU tensors run them only
    in Triton's interpreter (``TRITON_INTERPRET=1``); elsewhere they raise.
``"reference"``
    The step equations of :mod:`freqnn.sfm.step`, one step at a time, differentiated by
    autograd: the tests' oracle (and the only path with second derivatives).

Set it per process with :func:`set_path` or ``FREQNN_SFM_PATH``, or for a block with
``with use_path(...)`` (context-local). Under ``torch.compile`` / ``torch.export``, which cannot
trace a context variable, the process default applies (``use_path`` blocks are not seen).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator

import torch

from ...checks import fail

__all__ = ["PATHS", "PATH_ENV", "get_path", "set_path", "use_path", "use_reference"]

PATHS = ("fast", "compiled", "pytorch", "triton", "reference")
PATH_ENV = "FREQNN_SFM_PATH"


def _check_path(path: object, name: str = "path") -> str:
    if path not in PATHS:
        fail(name, f"one of {PATHS}", repr(path))
    return path  # type: ignore[return-value]


_default_path = _check_path(os.environ.get(PATH_ENV, "fast"), PATH_ENV)
_path_override: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "freqnn_sfm_path", default=None
)


def get_path() -> str:
    """The recurrence path in use: the innermost :func:`use_path`, else the process default
    (always the process default while ``torch.compile`` / ``torch.export`` trace)."""
    if torch.compiler.is_compiling():
        return _default_path
    override = _path_override.get()
    return _default_path if override is None else override


def set_path(path: str) -> None:
    """Set the process-wide default path: ``"fast"`` | ``"compiled"`` | ``"pytorch"`` |
    ``"triton"`` | ``"reference"`` (initially ``$FREQNN_SFM_PATH`` or ``"fast"``)."""
    global _default_path
    _default_path = _check_path(path)


@contextlib.contextmanager
def use_path(path: str) -> Iterator[None]:
    """Run the SFM recurrences inside the ``with`` block on ``path`` (context-local)."""
    token = _path_override.set(_check_path(path))
    try:
        yield
    finally:
        _path_override.reset(token)


def use_reference() -> contextlib.AbstractContextManager[None]:
    """``with use_reference():`` runs the plain autograd reference path (the tests' oracle)."""
    return use_path("reference")
