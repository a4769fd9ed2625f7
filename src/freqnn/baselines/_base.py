"""The interface plumbing every baseline shares, written once.

[`RecurrentLayer`][freqnn.baselines._base.RecurrentLayer] is the ``nn.LSTM``-style layer: input
validation, ``batch_first``,
unbatched input, stacked layers with dropout between them, padded batches (``lengths``), state
validation and state passing. A baseline subclasses it with

* a state type (a ``NamedTuple``): per-layer fields of shape (L, B, ...) first, then, for a
  model with a clock, one per-sequence field (B,) last;
* a cell class (``RecurrentCell``) holding one layer's parameters and its step equations;
* ``RecurrentLayer._state_shapes`` (trailing shapes of the per-layer fields) and, with a
  clock, ``RecurrentLayer._clock``.

The scan runs the cell's step one time step after the other (``freqnn.sfm.export.run_steps``:
torch's scan operator under ``torch.export``, so T stays symbolic). At a padded step the state
does not move and the output is zero, so a padded sequence gives what it gives alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from ..checks import (
    check_finite,
    check_floating,
    check_integer,
    check_lengths,
    check_range,
    check_sequence,
    check_shape,
    check_times,
    describe,
    fail,
)
from ..sfm.directions import Reversal, check_bidirectional, pack_like, unpack
from ..sfm.export import portable, run_steps

__all__ = ["RecurrentCell", "RecurrentLayer", "check_positive_int", "init_uniform"]

Carry = tuple[Tensor, ...]


def check_positive_int(name: str, value: object) -> int:
    """Require a positive ``int`` (``bool`` excluded)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        fail(name, "a positive int", repr(value))
    return value  # type: ignore[return-value]


def init_uniform(hidden_size: int, *tensors: Tensor) -> None:
    """``nn.LSTM``'s initialisation: U(-1/sqrt(H), 1/sqrt(H))."""
    bound = hidden_size**-0.5
    with torch.no_grad():
        for tensor in tensors:
            tensor.uniform_(-bound, bound)


class RecurrentCell(nn.Module):
    """One layer's parameters and step equations;
    [`RecurrentLayer`][freqnn.baselines._base.RecurrentLayer] scans it over time.

    A cell implements

    * ``project(x, clock) -> gx``: what the steps need from the input and the clock, for
      every step at once: x (T, B, N) and clock (T, B) or ``None`` -> (T, B, G) (one matrix
      product instead of T);
    * ``recurrent_weight() -> w``: the recurrent weight in the form the step uses, built once
      per scan (``weight_hh`` itself for most cells; the block-triangular matrix assembled
      from its blocks for the clockwork RNN);
    * ``step(gx_t, w, carry, clock_t) -> (output_t, carry)``: one time step. ``carry`` is the
      layer's state fields (B, ...) followed by the layer's extra accumulators, if any;
      ``clock_t`` (B,) is the step's clock value (``None`` for models without a clock);
    * ``reset_parameters()``.
    """

    def project(self, x: Tensor, clock: Tensor | None) -> Tensor:
        raise NotImplementedError

    def recurrent_weight(self) -> Tensor:
        return self.weight_hh

    def step(
        self, gx: Tensor, weight: Tensor, carry: Carry, clock: Tensor | None
    ) -> tuple[Tensor, Carry]:
        raise NotImplementedError

    def reset_parameters(self) -> None:
        raise NotImplementedError


class RecurrentLayer(nn.Module):
    """Base of the baselines: an ``nn.LSTM``-style multi-layer recurrent network.

    Parameters
    ----------
    input_size
        Features per step N, size of the output (and of ``h``) H.
    hidden_size
        Features per step N, size of the output (and of ``h``) H.
    num_layers : int
        Stacked layers; layer l > 0 reads the output of layer l - 1.
    batch_first : bool
        Input and output as (B, T, ...) instead of (T, B, ...). The state is never batch-first.
    dropout : float
        Dropout on the outputs of every layer but the last (as ``nn.LSTM``).
    bidirectional : bool
        A second stack of cells (``cells_reverse``) reads each sequence backwards, within its
        length, as ``nn.LSTM``: outputs [forward, backward] of size 2H, layer l > 0 reads 2H
        features, per-layer state fields have 2L layers (layer l's directions at 2l, 2l + 1).
        A clock (timestamps, step counter) is reflected for the backward direction
        ([`freqnn.sfm.directions`][freqnn.sfm.directions]); the state's clock is the forward
        one's.

    Notes
    -----
    ``forward(x, state=None, *, lengths=None) -> (output, state)``

    * ``x``: (T, B, N), (B, T, N) with ``batch_first``, or unbatched (T, N); the module's dtype.
      Or a ``torch.nn.utils.rnn.PackedSequence``: the output is then packed the same way, and
      ``lengths`` is not given.
    * ``state``: the model's state ``NamedTuple``; ``None`` means zeros (and a clock at 0).
      Per-layer fields are (L, B, ...) (2L when bidirectional), the clock (B,); unbatched: no B
      axis.
    * ``lengths``: (B,) true lengths of a padded batch, in [0, T]: padded steps change nothing,
      their output is zero and the returned state is each sequence's state at its last step.
    * ``output``: (T, B, H) (or batch-first / unbatched to match ``x``), the top layer's h_t;
      (T, B, 2H) when bidirectional.

    Under ``torch.export`` the time loop is torch's scan operator (T stays symbolic) and the
    returned state a plain tuple of its fields ([`freqnn.sfm.export`][freqnn.sfm.export]).

    Passing the returned state to the next call continues the sequence exactly: a sequence in
    chunks gives the outputs of one pass. Nothing is kept on the module between calls.
    """

    #: the state NamedTuple; per-layer fields first, then the clock (if ``clock_dtype``)
    state_type: ClassVar[type[tuple]]
    #: dtype of the per-sequence clock field, ``None`` for models without a clock
    clock_dtype: ClassVar[torch.dtype | None] = None
    cells: nn.ModuleList
    #: the backward direction's layers (None unless ``bidirectional``)
    cells_reverse: nn.ModuleList | None

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
    ) -> None:
        super().__init__()
        self.bidirectional = check_bidirectional(bidirectional)
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                            ("num_layers", num_layers)):
            check_positive_int(name, value)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not (
            0.0 <= dropout <= 1.0
        ):
            fail("dropout", "a float in [0, 1]", repr(dropout))
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)

    @staticmethod
    def parameter_count(input_size: int, hidden_size: int, num_layers: int = 1,
                        **options: Any) -> int:
        """Closed-form parameter count of the model built with these arguments (constructor
        options that do not change it are accepted and ignored)."""
        raise NotImplementedError

    @staticmethod
    def hidden_size_step(**options: Any) -> int:
        """Valid hidden sizes are the multiples of this (for the model built with ``options``)."""
        return 1

    @staticmethod
    def cell_input_sizes(input_size: int, hidden_size: int, num_layers: int,
                         options: dict[str, Any]) -> list[int]:
        """Input size of every cell of a model built with these arguments (``options``: its
        other constructor arguments): N for the first layer, H (2H when bidirectional) for the
        others, each twice when bidirectional."""
        directions = 2 if options.get("bidirectional", False) else 1
        return ([input_size] + [hidden_size * directions] * (num_layers - 1)) * directions

    @property
    def num_directions(self) -> int:
        """2 when bidirectional, else 1."""
        return 2 if self.bidirectional else 1

    def _build_cells(self, make: Callable[[int], RecurrentCell]) -> None:
        """``cells`` (and ``cells_reverse``) from ``make(input size of the layer)``."""
        sizes = [self.input_size] + [self.hidden_size * self.num_directions] * (
            self.num_layers - 1)
        self.cells = nn.ModuleList(make(n) for n in sizes)
        self.cells_reverse = (nn.ModuleList(make(n) for n in sizes) if self.bidirectional
                              else None)

    def _layer_cells(self) -> list[tuple[RecurrentCell, ...]]:
        """Each layer's cells, the forward direction's first (the order of the state's layers)."""
        if self.cells_reverse is None:
            return [(cell,) for cell in self.cells]
        return list(zip(self.cells, self.cells_reverse, strict=True))

    def all_cells(self) -> list[RecurrentCell]:
        """Every cell, layer by layer, the forward direction's first."""
        return [cell for cells in self._layer_cells() for cell in cells]

    def reset_parameters(self) -> None:
        """Re-initialise every layer."""
        for cell in self.all_cells():
            cell.reset_parameters()

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s

    # ------------------------------------------------------------------ model hooks
    def _state_shapes(self) -> tuple[tuple[int, ...], ...]:
        """Trailing shapes (after L, B) of the per-layer state fields, in field order."""
        raise NotImplementedError

    def _clock(
        self, start: Tensor, steps: int, mask: Tensor | None, **kwargs: Any
    ) -> tuple[Tensor, Tensor]:
        """Models with a clock: its value at every step (T, B) and its final value (B,), from
        the state's clock ``start`` (B,); ``kwargs`` are the model's extra forward arguments."""
        raise NotImplementedError

    def _extra_carry(self, batch: int, like: Tensor) -> Carry:
        """Accumulators a layer carries through its scan next to its state (none by default);
        padded steps do not move them either."""
        return ()

    def _finish(self, extras: list[Carry], steps_taken: Tensor) -> None:
        """Receives each layer's final accumulators and the valid steps per sequence (B,)."""

    def _state_spec(self, batch: tuple[int, ...], dtype: torch.dtype
                    ) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        fields = self.state_type._fields  # type: ignore[attr-defined]
        lead = (self.num_layers * self.num_directions, *batch)
        shapes = self._state_shapes()
        spec = {name: ((*lead, *shape), dtype)
                for name, shape in zip(fields[: len(shapes)], shapes, strict=True)}
        if self.clock_dtype is not None:
            spec[fields[-1]] = (batch, self.clock_dtype)
        return spec

    def _zero_state(self, batch: tuple[int, ...], like: Tensor) -> tuple:
        spec = self._state_spec(batch, like.dtype)
        return self.state_type(
            *(torch.zeros(shape, dtype=dtype, device=like.device) for shape, dtype in spec.values())
        )

    def _check_state(self, state: object, batch: tuple[int, ...], like: Tensor) -> tuple:
        cls = self.state_type
        fields = cls._fields  # type: ignore[attr-defined]
        if not isinstance(state, cls):
            if isinstance(state, tuple) and len(state) == len(fields):
                state = cls(*state)
            else:
                article = "an" if cls.__name__[0] in "AEIOU" else "a"
                fail("state", f"{article} {cls.__name__} ({', '.join(fields)}) or None",
                     describe(state), TypeError)
        values = []
        for (field, (shape, dtype)), value in zip(
            self._state_spec(batch, like.dtype).items(), state, strict=True
        ):
            name = f"state.{field}"
            clock = len(shape) == len(batch)
            if dtype.is_floating_point:
                check_floating(value, name, None if clock else dtype)
            else:
                check_integer(value, name)
            meaning = "(one value per sequence)" if clock else "(layers, batch, ...)"
            check_shape(value, name, shape, meaning)
            if not dtype.is_floating_point:
                check_range(value, name, 0)
            elif clock:  # a float clock is a timestamp
                check_times(value, name)
            else:
                check_finite(value, name)
            values.append(value.to(device=like.device, dtype=dtype))
        return cls(*values)

    # ------------------------------------------------------------------ forward
    def forward(
        self, x: Tensor | PackedSequence, state: tuple | None = None, *,
        lengths: Tensor | None = None
    ) -> tuple[Tensor | PackedSequence, tuple]:
        return self._run(x, state, lengths)

    def _run(
        self, x: Tensor | PackedSequence, state: tuple | None, lengths: Tensor | None,
        **clock_args: Any
    ) -> tuple[Tensor | PackedSequence, tuple]:
        packed = x if isinstance(x, PackedSequence) else None
        x, lengths = unpack(x, lengths, self.batch_first)
        x = check_sequence(x, self.input_size, self.batch_first, next(self.parameters()).dtype)
        unbatched = x.dim() == 2
        if unbatched:
            x = x.unsqueeze(1)
        elif self.batch_first:
            x = x.transpose(0, 1)
        steps, batch = x.shape[0], x.shape[1]
        if state is None:
            state = self._zero_state((batch,), x)
        else:
            state = self._check_state(state, () if unbatched else (batch,), x)
            if unbatched:
                state = self._batch_axis(state, squeeze=False)
        mask = None
        steps_taken = torch.full((batch,), steps, dtype=torch.long, device=x.device)
        if lengths is not None:
            steps_taken = check_lengths(lengths, steps, batch, x.device)
            # no padding: the unmasked scan is the same and cheaper (a traced graph keeps the
            # mask rather than branch on the data, as does a run on the meta device)
            if (torch.compiler.is_compiling() or steps_taken.is_meta
                    or bool((steps_taken < steps).any())):
                mask = torch.arange(steps, device=x.device).unsqueeze(1) < steps_taken.unsqueeze(0)
        fields = len(self._state_shapes())
        clock_values, clock_final = None, ()
        if self.clock_dtype is not None:
            clock_values, final = self._clock(state[-1], steps, mask, **clock_args)
            clock_final = (final,)

        reverse = None
        if self.bidirectional:
            reverse = Reversal(steps, None if mask is None else steps_taken, mask)

        finals, extras = [], []
        layer_input = x
        for layer, cells in enumerate(self._layer_cells()):
            outputs = []
            for direction, cell in enumerate(cells):
                k = len(finals)
                carry = tuple(field[k] for field in state[:fields])
                carry += self._extra_carry(batch, x)
                if direction == 0:
                    out, carry = self._scan(cell, layer_input, carry, clock_values, mask)
                else:  # the backward direction, on the reversed sequences
                    assert reverse is not None
                    clock = None if clock_values is None else reverse.reflect(clock_values)
                    out, carry = self._scan(cell, reverse(layer_input), carry, clock, mask)
                    out = reverse(out)
                outputs.append(out)
                finals.append(carry[:fields])
                extras.append(carry[fields:])
            layer_input = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)
            if self.dropout and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, self.training)
        self._finish(extras, steps_taken)

        new_state = self.state_type(*(torch.stack(f) for f in zip(*finals, strict=True)),
                                    *clock_final)
        out = layer_input
        if unbatched:
            out = out.squeeze(1)
            new_state = self._batch_axis(new_state, squeeze=True)
        elif self.batch_first:
            out = out.transpose(0, 1)
        new_state = portable(new_state)  # a plain tuple under export
        if packed is not None:
            return pack_like(out, steps_taken, packed, self.batch_first), new_state
        return out, new_state

    @staticmethod
    def _scan(
        cell: RecurrentCell, x: Tensor, carry: Carry, clock: Tensor | None, mask: Tensor | None
    ) -> tuple[Tensor, Carry]:
        """One layer over the whole sequence: x (T, B, N) -> output (T, B, H), final carry (a
        Python loop; torch's scan operator under export, ``freqnn.sfm.export``)."""
        weight = cell.recurrent_weight()

        def step(carry: Carry, x_t: tuple[Tensor, ...]) -> tuple[Tensor, Carry]:
            return cell.step(x_t[0], weight, carry, x_t[1] if len(x_t) > 1 else None)

        xs = (cell.project(x, clock),) if clock is None else (cell.project(x, clock), clock)
        return run_steps(step, carry, xs, mask)

    def _batch_axis(self, state: tuple, squeeze: bool) -> tuple:
        """Remove (``squeeze``) or insert the batch axis of an unbatched state: axis 1 of the
        per-layer fields, axis 0 of the clock."""
        fields = len(self._state_shapes())
        axes = [1] * fields + [0] * (len(state) - fields)
        return self.state_type(*(
            v.squeeze(axis) if squeeze else v.unsqueeze(axis)
            for v, axis in zip(state, axes, strict=True)
        ))

