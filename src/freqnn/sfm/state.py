"""The recurrent state of SFM / A-SFM layers and its validation."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

import torch
from torch import Tensor
from torch.utils._pytree import GetAttrKey, register_pytree_node

from ..checks import (
    check_devices,
    check_finite,
    check_floating,
    check_shape,
    check_times,
    describe,
    fail,
)

__all__ = [
    "SFMState",
    "check_placement",
    "check_state",
    "conforms",
    "last_time",
    "map_batch_axis",
    "where_valid",
    "zero_state",
]


class _Fields(NamedTuple):
    z: Tensor
    re: Tensor
    im: Tensor
    time: Tensor
    phase: Tensor | None = None


class SFMState(_Fields):
    """State of an SFM / A-SFM, everything needed to continue a sequence.

    For a layer the tensors carry a leading layer dimension L; for a cell (one layer) they do not.
    For unbatched input the batch dimension B is absent.

    Attributes
    ----------
    z : Tensor [shape=(L, B, M)]
        Hidden output z_t of each layer.
    re, im : Tensor [shape=(L, B, D, K)]
        Real and imaginary parts of the state-frequency memory S_t.
    time : Tensor [shape=(B,)], float64
        Timestamp of the last step taken (0 before the first step). The default time axis
        continues from it (steps time + 1, time + 2, ...); kept in float64 so that long streams
        keep their phase.
    phase : Tensor [shape=(L, B, K)] or None
        A-SFM only, and what it holds depends on the layer's phase rule
        ([`freqnn.AdaptiveSFM`][freqnn.AdaptiveSFM], ``phase=``): under ``"accumulate"`` (the
        default) the
        accumulated phase phi_t in [0, 2*pi) of each layer (zero in the zero state); under
        ``"authors"`` the frequencies omega_t (rad per unit of time) computed at the last step,
        which the next step uses, cos(omega_t * t_{t+1}) (the layer's frequency grid in the
        zero state). Shapes, dtype and checks are the same for both. ``None`` for SFM, whose
        phase ``omega * time`` follows from ``time``.

    Notes
    -----
    A named tuple, and a pytree whose leaves are its tensors: an absent ``phase`` (None) is not
    a leaf, so ``torch.utils._pytree.tree_map(torch.Tensor.detach, state)`` returns an
    ``SFMState`` with ``phase=None``.
    """

    __slots__ = ()

    # torch's pytree flattens every class with a callable _asdict and _make as a namedtuple,
    # None included as a leaf, and ignores a registration; a property (what it reads on the
    # class is not callable) makes it use the flattening registered below, while Dynamo, which
    # looks at _make, still traces the state as a named tuple
    @property
    def _asdict(self) -> Callable[[], dict[str, Tensor | None]]:
        return lambda: dict(zip(self._fields, self, strict=True))


def _present(state: SFMState) -> tuple[str, ...]:
    return tuple(name for name, value in zip(state._fields, state, strict=True)
                 if value is not None)


def _flatten(state: SFMState) -> tuple[list[Tensor], tuple[str, ...]]:
    names = _present(state)
    return [getattr(state, name) for name in names], names


def _flatten_with_keys(state: SFMState) -> tuple[list[tuple[GetAttrKey, Tensor]], tuple[str, ...]]:
    names = _present(state)
    return [(GetAttrKey(name), getattr(state, name)) for name in names], names


def _unflatten(values: Iterable[Tensor], names: tuple[str, ...]) -> SFMState:
    return SFMState(**dict(zip(names, values, strict=True)))


register_pytree_node(
    SFMState,
    _flatten,
    _unflatten,
    serialized_type_name="freqnn.sfm.state.SFMState",
    to_dumpable_context=list,
    from_dumpable_context=tuple,
    flatten_with_keys_fn=_flatten_with_keys,
)


def zero_state(
    lead: tuple[int, ...],
    batch: tuple[int, ...],
    hidden_size: int,
    state_size: int,
    num_freqs: int,
    adaptive: bool,
    *,
    dtype: torch.dtype,
    device: torch.device,
    phase0: Tensor | None = None,
) -> SFMState:
    """The zero state at time 0 for leading dims ``lead`` (layers) and ``batch`` (() or (B,)).

    Everything is zero except, where ``phase0`` (shape ``lead + (K,)``) is given, A-SFM's phase
    slot, which then holds ``phase0`` for every sequence: the frequency grid of an A-SFM under
    the authors' phase rule (see [`SFMState`][freqnn.SFMState]).
    """
    kw = {"dtype": dtype, "device": device}
    shape = lead + batch
    phase = None
    if adaptive:
        if phase0 is None:
            phase = torch.zeros(*shape, num_freqs, **kw)
        else:
            per_sequence = phase0.to(**kw).reshape(*lead, *(1,) * len(batch), num_freqs)
            phase = per_sequence.expand(*shape, num_freqs).clone(
                memory_format=torch.contiguous_format
            )
    return SFMState(
        z=torch.zeros(*shape, hidden_size, **kw),
        re=torch.zeros(*shape, state_size, num_freqs, **kw),
        im=torch.zeros(*shape, state_size, num_freqs, **kw),
        time=torch.zeros(batch, dtype=torch.float64, device=device),
        phase=phase,
    )


def _expected(
    lead: tuple[int, ...],
    batch: tuple[int, ...],
    hidden_size: int,
    state_size: int,
    num_freqs: int,
    adaptive: bool,
    dtype: torch.dtype,
) -> dict[str, tuple[tuple[int, ...], torch.dtype] | None]:
    shape = lead + batch
    memory = (*shape, state_size, num_freqs)
    return {
        "z": ((*shape, hidden_size), dtype),
        "re": (memory, dtype),
        "im": (memory, dtype),
        "time": (batch, torch.float64),
        "phase": ((*shape, num_freqs), dtype) if adaptive else None,
    }


def conforms(
    state: SFMState,
    lead: tuple[int, ...],
    batch: tuple[int, ...],
    hidden_size: int,
    state_size: int,
    num_freqs: int,
    adaptive: bool,
    dtype: torch.dtype,
    device: torch.device | None,
) -> bool:
    """Whether ``state`` is an SFMState whose fields have the expected shapes and dtypes (float64
    time; phase only for A-SFM, the same shape (K per sequence and layer) whether it holds the
    accumulated phase or the authors' rule's omega_t), strided and on ``device`` (any device
    for None). Values are not looked at."""
    expected = _expected(lead, batch, hidden_size, state_size, num_freqs, adaptive, dtype)
    return isinstance(state, SFMState) and all(
        value is None
        if spec is None
        else isinstance(value, Tensor)
        and value.dtype == spec[1]
        and value.shape == spec[0]
        and value.layout == torch.strided
        and (device is None or value.device == device)
        for value, spec in zip(state, expected.values(), strict=True)
    )


def check_placement(state: SFMState, device: torch.device, name: str = "state") -> None:
    """Require every tensor of ``state`` to be strided and on ``device`` (the input's device):
    what the kernels are handed must be memory they can read. The error names the field."""
    check_devices(SFMState._fields, state, device, f"{name}.")


def check_state(
    state: object,
    lead: tuple[int, ...],
    batch: tuple[int, ...],
    hidden_size: int,
    state_size: int,
    num_freqs: int,
    adaptive: bool,
    dtype: torch.dtype,
    name: str = "state",
    *,
    device: torch.device | None = None,
) -> SFMState:
    """Validate a user-supplied state against the expected shapes and dtype, strided and on
    ``device`` (the input's; None: not checked here, the fast path checks it before its kernel
    runs, ``check_placement``); values finite."""
    if not isinstance(state, SFMState):
        if isinstance(state, tuple) and len(state) == len(SFMState._fields):
            state = SFMState(*state)
        else:
            fail(name, "an SFMState (z, re, im, time, phase) or None", describe(state), TypeError)
    dims = (hidden_size, state_size, num_freqs, adaptive)
    # Streaming validates the state at every step: test the common case (everything right)
    # with plain comparisons and describe a mismatch only when there is one.
    if not conforms(state, lead, batch, *dims, dtype, device):
        expected = _expected(lead, batch, *dims, dtype)
        layout = "(layers, batch, ...)" if lead else "(batch, ...)"
        for field in ("z", "re", "im"):
            value = getattr(state, field)
            check_floating(value, f"{name}.{field}", dtype)
            check_shape(value, f"{name}.{field}", expected[field][0], layout)
        check_floating(state.time, f"{name}.time")
        check_shape(state.time, f"{name}.time", batch, "(one timestamp per sequence)")
        if adaptive:
            if state.phase is None:
                fail(
                    f"{name}.phase",
                    "a tensor (A-SFM keeps its accumulated phase, or its omega_t under "
                    "phase='authors')",
                    "None",
                )
            check_floating(state.phase, f"{name}.phase", dtype)
            check_shape(state.phase, f"{name}.phase", expected["phase"][0], layout)
        elif state.phase is not None:
            fail(
                f"{name}.phase", "None for SFM (its phase follows from time)", describe(state.phase)
            )
        if device is not None:
            check_placement(state, device, name)
        state = state._replace(time=state.time.to(torch.float64))
    for field, value in zip(SFMState._fields, state, strict=True):
        if field != "time" and value is not None:
            check_finite(value, f"{name}.{field}")
    check_times(state.time, f"{name}.time")
    return state


def last_time(times: Tensor, mask: Tensor | None, start: Tensor) -> Tensor:
    """The state's time after a scan: each sequence's timestamp at its last valid step.

    ``times`` (T, B) float64, ``mask`` (T, B) bool or None (False at padded steps), ``start``
    (B,) the time before the scan, kept by a sequence with no valid step.
    """
    if mask is None:
        return times[-1]
    steps = mask.sum(0)
    last = times.gather(0, (steps - 1).clamp(min=0).unsqueeze(0)).squeeze(0)
    return torch.where(steps > 0, last, start)


def where_valid(
    valid: Tensor, new: tuple[Tensor, ...], old: tuple[Tensor, ...]
) -> tuple[Tensor, ...]:
    """One masked step of a scan: ``new`` for the sequences whose step is ``valid`` (B,) bool,
    ``old`` for the padded ones (their state does not move). Tensors have the batch axis first."""
    return tuple(
        torch.where(valid.view(-1, *(1,) * (n.dim() - 1)), n, o)
        for n, o in zip(new, old, strict=True)
    )


def map_batch_axis(state: SFMState, axis: int, squeeze: bool) -> SFMState:
    """Insert (or remove, with ``squeeze``) the batch axis of an unbatched state.

    ``axis`` is the batch axis of z, re, im and phase (0 for a cell, 1 for a layer); the batch
    axis of ``time`` is always 0.
    """

    def op(t: Tensor | None, ax: int) -> Tensor | None:
        if t is None:
            return None
        return t.squeeze(ax) if squeeze else t.unsqueeze(ax)

    return SFMState(
        op(state.z, axis),
        op(state.re, axis),
        op(state.im, axis),
        op(state.time, 0),
        op(state.phase, axis),
    )
