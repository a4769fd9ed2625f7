"""Argument validation shared by every public entry point.

Every check raises with one wording: ``<name>: expected <what>, got <what came>``, so a user
reading an error always learns which argument is wrong, what was expected and what was received.
Value problems raise ``ValueError``; dtype problems raise ``TypeError``.

Checks of tensor *values* (:func:`check_finite`, :func:`check_range`, :func:`check_times`) read
the data (``.item()``), which ``torch.compile`` / ``torch.export`` cannot trace without a graph
break; while they trace, and for tensors without values (the meta device), these checks are
skipped (shapes and dtypes are still checked). Run a model once in eager mode to validate its
inputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "EXPERIMENTS_HINT",
    "check_device",
    "check_devices",
    "check_finite",
    "check_floating",
    "check_integer",
    "check_lengths",
    "check_range",
    "check_rank",
    "check_sequence",
    "check_shape",
    "check_step_times",
    "check_times",
    "describe",
    "fail",
]


#: How to install the experiments extra, for the messages of the modules that need it: freqnn
#: is installed from a checkout (the extra's name alone is not on a package index)
EXPERIMENTS_HINT = ('pip install -e ".[experiments]" in a checkout of freqnn (pip install '
                    '"freqnn[experiments]" where freqnn comes from a package index)')


def describe(x: object) -> str:
    """Short description of a value for error messages (shape and dtype for tensors; a container
    of tensors, such as a state passed as a dict or a tuple of the wrong length, by the shapes of
    its items instead of their values)."""
    if isinstance(x, Tensor):
        return f"tensor of shape {tuple(x.shape)} and dtype {x.dtype}"
    if isinstance(x, dict) and any(isinstance(v, Tensor) for v in x.values()):
        items = ", ".join(f"{k!r}: {_brief(v)}" for k, v in x.items())
        return f"dict of {len(x)} item(s) {{{items}}}"
    if isinstance(x, (tuple, list)) and any(isinstance(v, Tensor) for v in x):
        return f"{type(x).__name__} of {len(x)} item(s) ({', '.join(map(_brief, x))})"
    return f"{type(x).__name__} {x!r}"


def _brief(x: object) -> str:
    """An item of a container in :func:`describe`: a tensor by its shape only."""
    if isinstance(x, Tensor):
        return f"tensor of shape {tuple(x.shape)}"
    return type(x).__name__ if isinstance(x, (tuple, list, dict)) else repr(x)


def fail(name: str, expected: str, got: str, error: type[Exception] = ValueError) -> None:
    """Raise ``error`` with the project's single wording for argument errors."""
    raise error(f"{name}: expected {expected}, got {got}")


def check_choice(value: object, name: str, choices: Sequence[str]) -> str:
    """``value`` if it is one of the strings ``choices``, else a ValueError naming ``name``."""
    if not isinstance(value, str) or value not in choices:
        fail(name, f"one of {tuple(choices)}", repr(value))
    return value  # type: ignore[return-value]


def _require_tensor(x: object, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        fail(name, "a torch.Tensor", describe(x), TypeError)
    return x  # type: ignore[return-value]


def check_floating(x: object, name: str, dtype: torch.dtype | None = None) -> Tensor:
    """Require a floating-point tensor (of ``dtype`` when given)."""
    x = _require_tensor(x, name)
    if not x.is_floating_point():
        fail(name, "a floating-point tensor (float32 or float64)", describe(x), TypeError)
    if dtype is not None and x.dtype != dtype:
        fail(name, f"dtype {dtype} (the module's dtype)", describe(x), TypeError)
    return x


def check_device(x: Tensor, name: str, device: torch.device) -> None:
    """Require a strided (dense) tensor on ``device``, the device of the input it goes with: the
    compiled kernels read its memory directly."""
    if x.device != device or x.layout != torch.strided:
        fail(name, f"a strided tensor on {device} (the device of the input it goes with)",
             f"{describe(x)} on {x.device} ({x.layout})")


def check_devices(
    names: Sequence[str], values: Sequence[object], device: torch.device, prefix: str = ""
) -> None:
    """:func:`check_device` for each tensor among ``values`` (others skipped), named
    ``prefix + name`` (cheap when every tensor is right: per-step code calls it)."""
    for name, value in zip(names, values, strict=True):
        if isinstance(value, Tensor) and (value.layout is not torch.strided
                                          or value.device != device):
            check_device(value, prefix + name, device)


def check_integer(x: object, name: str) -> Tensor:
    """Require an integer tensor."""
    x = _require_tensor(x, name)
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        fail(name, "an integer tensor", describe(x), TypeError)
    return x


def check_rank(x: Tensor, name: str, ranks: Sequence[int], meaning: str) -> None:
    """Require ``x.dim()`` in ``ranks``; ``meaning`` spells out the expected layouts."""
    if x.dim() not in ranks:
        fail(name, f"{' or '.join(f'{r}-D' for r in ranks)} input {meaning}", describe(x))


def check_shape(x: Tensor, name: str, shape: Sequence[int], meaning: str = "") -> None:
    """Require ``tuple(x.shape) == shape``."""
    if tuple(x.shape) != tuple(shape):
        suffix = f" {meaning}" if meaning else ""
        fail(name, f"shape {tuple(shape)}{suffix}", describe(x))


def _no_values(x: Tensor) -> bool:
    """Whether the values of ``x`` cannot be read: while tracing, on the meta device, or under
    ``torch.func.vmap`` (a batched tensor has no single value to read)."""
    return torch.compiler.is_compiling() or x.is_meta or vmapping()


def vmapping() -> bool:
    """Whether a ``torch.func.vmap`` transform is active (at any level of nested transforms)."""
    # no transform: the usual case; and Dynamo cannot trace the interpreter stack (under
    # torch.compile the value checks are skipped anyway)
    if torch.compiler.is_compiling() or torch._C._functorch.peek_interpreter_stack() is None:
        return False
    from torch._C._functorch import TransformType
    from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters

    return any(i.key() == TransformType.Vmap for i in retrieve_all_functorch_interpreters())


def check_finite(x: Tensor, name: str) -> None:
    """Require every element to be finite (no NaN or infinity); skipped while tracing."""
    if _no_values(x):
        return
    # A NaN or infinity makes the sum non-finite; one reduction and one read cost a few
    # microseconds (per-step calls need that). A finite sum proves every element finite; a
    # non-finite one may be an overflow of finite values, so only then is each element tested.
    if x.is_floating_point() and math.isfinite(x.sum().item()):
        return
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        fail(name, "finite values", f"{bad} NaN or infinite element(s) in {describe(x)}")


def check_range(x: Tensor, name: str, low: float | None = None, high: float | None = None) -> None:
    """Require ``low <= x <= high`` elementwise (either bound optional); skipped while tracing."""
    if x.numel() == 0 or _no_values(x):
        return
    lo, hi = x.min().item(), x.max().item()
    if (low is not None and lo < low) or (high is not None and hi > high):
        lo_s = "-inf" if low is None else f"{low:g}"
        hi_s = "inf" if high is None else f"{high:g}"
        fail(name, f"values in [{lo_s}, {hi_s}]", f"values in [{lo:g}, {hi:g}] ({describe(x)})")


#: The largest accepted timestamp magnitude, 2**53: beyond it float64 cannot tell t from t + 1,
#: so steps, phases and A-SFM time steps lose their meaning (and float32 products overflow).
MAX_TIME = float(2**53)


def check_times(x: Tensor, name: str) -> None:
    """Require finite timestamps with ``|t| <= MAX_TIME`` (2**53); skipped while tracing."""
    if x.numel() == 0 or _no_values(x):
        return
    # one reduction (streaming checks the state's time at every step); NaN fails the test too
    largest = torch.linalg.vector_norm(x, float("inf")).item()  # max |t|
    if not largest <= MAX_TIME:
        check_finite(x, name)  # names NaN / infinity as such
        fail(name, f"timestamps with |t| <= 2**53 = {MAX_TIME:.4g}", f"|t| up to {largest:g}")


def check_step_times(times: object, steps: int, batch: int, device: torch.device) -> Tensor:
    """Validate a recurrent layer's ``times=`` argument and lay it out as (T, B) float64.

    ``times`` is (T,) (shared by the batch) or (B, T), real-valued, with finite timestamps of
    magnitude at most :data:`MAX_TIME`. Float64 because phases omega * t need it (docs/sfm.md).
    """
    if not isinstance(times, Tensor) or times.dtype == torch.bool or times.is_complex():
        fail("times", "a real-valued tensor of shape (T,) or (B, T)", describe(times), TypeError)
    # rank first: comparing (T,) with (B, T) element-wise would make a symbolic T (export) be
    # guarded T != B
    shape = tuple(times.shape)
    if shape != ((steps,) if times.dim() == 1 else (batch, steps)):
        fail("times", f"shape ({steps},) or ({batch}, {steps}) (T={steps}, B={batch})",
             describe(times))
    times = times.to(device=device, dtype=torch.float64)
    check_times(times, "times")
    return times.t() if times.dim() == 2 else times.unsqueeze(1).expand(steps, batch)


def check_lengths(lengths: object, steps: int, batch: int, device: torch.device) -> Tensor:
    """Validate a recurrent layer's ``lengths=``: (B,) integers in [0, T], moved to ``device``."""
    lengths = check_integer(lengths, "lengths")
    check_shape(lengths, "lengths", (batch,), "(one length per sequence)")
    check_range(lengths, "lengths", 0, steps)
    return lengths.to(device)


def check_sequence(x: object, input_size: int, batch_first: bool, dtype: torch.dtype) -> Tensor:
    """Validate a recurrent layer's input ``x``: (T, B, N), (B, T, N) or unbatched (T, N).

    ``x`` must be a finite floating tensor of the layer's ``dtype`` with ``N = input_size``, at
    least one time step and, batched, at least one sequence (B = 0 failed inside the kernels'
    autograd and reshapes).
    """
    x = check_floating(x, "x", dtype)
    layout = "(batch, time, input_size)" if batch_first else "(time, batch, input_size)"
    check_rank(x, "x", (2, 3), f"of shape {layout} or unbatched (time, input_size)")
    if x.shape[-1] != input_size:
        fail("x", f"last dimension input_size={input_size}", describe(x))
    if x.shape[-2 if x.dim() == 2 or batch_first else 0] == 0:
        fail("x", "at least one time step", describe(x))
    if x.dim() == 3 and x.shape[0 if batch_first else 1] == 0:
        fail("x", "a batch of at least one sequence (B >= 1)", describe(x))
    check_finite(x, "x")
    return x
