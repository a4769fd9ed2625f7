"""SFM and AdaptiveSFM: multi-layer sequence modules with an ``nn.LSTM``-like interface."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from ..checks import (
    check_lengths,
    check_sequence,
    check_step_times,
    fail,
)
from .cell import AdaptiveSFMCell, SFMCell, check_phase
from .directions import Reversal, check_bidirectional, pack_like, unpack
from .export import portable
from .state import SFMState, check_state, map_batch_axis, zero_state

__all__ = ["SFM", "AdaptiveSFM"]


class SFM(nn.Module):
    r"""State-Frequency Memory recurrent network (Hu & Qi, ICML 2017).

    Each layer keeps a memory S_t in C^{D x K}: D states, each a gated, windowed Fourier
    transform of its input stream at K frequencies; the output reads the amplitudes |S_t|.
    The equations are in ``docs/sfm.md`` and in ``freqnn.sfm.step`` under the same names.

    Parameters
    ----------
    input_size : int
        N, features of x_t.
    hidden_size : int
        M, size of the output z_t of every layer.
    state_size : int
        D, number of memory states per layer.
    num_freqs : int
        K, number of frequency components of each state.
    num_layers : int
        Stacked layers; layer l > 0 reads the output z of layer l - 1.
    bias : bool
        Biases in every affine map.
    batch_first : bool
        Input and output as (B, T, ...) instead of (T, B, ...). The state is never batch-first.
    dropout : float
        Dropout on the outputs of every layer but the last (as ``nn.LSTM``).
    bidirectional : bool
        A second stack of cells reads each sequence backwards (``cells_reverse``), as
        ``nn.LSTM``: outputs [forward, backward] of size 2M, layer l > 0 reads 2M features, the
        state has 2L layers (layer l's directions at 2l, 2l + 1). The backward direction runs
        over each sequence's own length and on reflected timestamps
        ([`freqnn.sfm.directions`][freqnn.sfm.directions]).
    frequencies : {"paper", "half", "dct"} or Tensor [shape=(K,)]
        Frequency grid in rad per unit of time ([`freqnn.frequencies`][freqnn.frequencies]).
    learn_frequencies : bool
        Train the frequencies (kept in [0, pi] by folding).
    memory : {"paper", "normalised"}
        The memory update of every layer ([`SFMCell`][freqnn.SFMCell]): the paper's, or the
        normalised
        one (the write weighted by 1 - f_t, so |S| <= 1), which trains stably with long
        windows (``docs/sfm.md``, "Training SFM").
    forget_init : {"uniform", "chrono"}
        The forget-gate biases at initialisation: ``nn.LSTM``'s uniform rule, or windows from
        the periods of the frequency grid ([`SFMCell`][freqnn.SFMCell]).
    readout : {"sum", "mean"}
        z_t as the paper's sum of the K frequency read-outs, or their mean (bounded by 1;
        [`SFMCell`][freqnn.SFMCell]).

    Notes
    -----
    ``forward(x, state=None, *, times=None, lengths=None) -> (output, state)``

    * ``x``: (T, B, N), (B, T, N) with ``batch_first``, unbatched (T, N), or a
      ``torch.nn.utils.rnn.PackedSequence`` (then the output is one too, and ``lengths`` is
      not given).
    * ``state``: [`freqnn.SFMState`][freqnn.SFMState] with a leading layer dimension (L, or 2L
      when bidirectional); ``None`` means zeros at time 0.
    * ``times``: real timestamps of the steps, (T,) or (B, T) (also with ``batch_first=False``);
      the phase of step t is omega * times[t]. Default: the absolute steps time + 1, time + 2, ...
      continuing from ``state.time``. (The authors' code divides time by the sequence length;
      pass ``times=torch.arange(1, T + 1) / T`` to reproduce it.)
    * ``lengths``: (B,) true lengths of a padded batch, in [0, T]: padded steps change nothing,
      their output is zero and the returned state is each sequence's state at its last step.
    * ``output``: (T, B, M) (or batch-first / unbatched to match x), the top layer's z_t;
      (T, B, 2M) when bidirectional, the forward direction's z_t first.
    """

    cell_type: type[SFMCell] = SFMCell

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        state_size: int,
        num_freqs: int,
        num_layers: int = 1,
        *,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        frequencies: str | Tensor = "paper",
        learn_frequencies: bool = False,
        memory: str = "paper",
        forget_init: str = "uniform",
        readout: str = "sum",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.bidirectional = check_bidirectional(bidirectional)
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
            fail("num_layers", "a positive int", repr(num_layers))
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) \
                or not 0.0 <= dropout <= 1.0:  # dropout=True became 1.0
            fail("dropout", "a float in [0, 1]", repr(dropout))
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.state_size = state_size
        self.num_freqs = num_freqs
        self.num_layers = num_layers
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        options = {"bias": bias, "frequencies": frequencies, "learn_frequencies": learn_frequencies,
                   "memory": memory, "forget_init": forget_init, "readout": readout,
                   "device": device, "dtype": dtype}
        sizes = [input_size] + [hidden_size * self.num_directions] * (num_layers - 1)

        def stack() -> nn.ModuleList:
            return nn.ModuleList(
                self.cell_type(n, hidden_size, state_size, num_freqs, **options) for n in sizes
            )

        self.cells = stack()
        #: the backward direction's layers (None unless ``bidirectional``)
        self.cells_reverse = stack() if self.bidirectional else None

    @property
    def num_directions(self) -> int:
        """2 when bidirectional, else 1."""
        return 2 if self.bidirectional else 1

    def _layer_cells(self) -> list[tuple[SFMCell, ...]]:
        """Each layer's cells, the forward direction's first (the order of the state's layers)."""
        if self.cells_reverse is None:
            return [(cell,) for cell in self.cells]
        return list(zip(self.cells, self.cells_reverse, strict=True))

    @property
    def adaptive(self) -> bool:
        return self.cell_type.adaptive

    def reset_parameters(self) -> None:
        """Re-initialise every layer (see
        [`SFMCell.reset_parameters`][freqnn.SFMCell.reset_parameters])."""
        for cells in self._layer_cells():
            for cell in cells:
                cell.reset_parameters()

    def paper_parameters(self, layer: int = 0, *, reverse: bool = False) -> dict[str, Tensor]:
        """Parameters of ``layer`` with the names and shapes of ``docs/sfm.md`` (shared storage);
        with ``reverse``, those of its backward direction (bidirectional layers)."""
        if isinstance(layer, bool) or not isinstance(layer, int) \
                or not 0 <= layer < self.num_layers:
            fail("layer", f"an int in [0, {self.num_layers - 1}]", repr(layer))
        if reverse and self.cells_reverse is None:
            fail("reverse", "False (the layer is not bidirectional)", repr(reverse))
        return (self.cells_reverse if reverse else self.cells)[layer].paper_parameters()

    def extra_repr(self) -> str:
        s = self.cells[0].extra_repr()
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        x: Tensor | PackedSequence,
        state: SFMState | None = None,
        *,
        times: Tensor | None = None,
        lengths: Tensor | None = None,
    ) -> tuple[Tensor | PackedSequence, SFMState]:
        """Run the layers over a sequence (or a padded batch of them).

        Parameters
        ----------
        x : Tensor [shape=(T, B, N)] or PackedSequence
            The input; (B, T, N) with ``batch_first``, (T, N) unbatched; or a
            ``PackedSequence`` (its sequences in their original batch order are the B of
            ``state`` and ``times``, T the longest).
        state : SFMState or None
            The state to continue from, with a leading layer dimension (2L when
            bidirectional); None: zeros at time 0.
        times : Tensor [shape=(T,) or (B, T)], optional
            Real timestamps of the steps (the phase of step t is omega * times[t]); default
            the steps ``state.time + 1, state.time + 2, ...``. The backward direction of a
            bidirectional layer uses them reflected within each sequence
            ([`freqnn.sfm.directions`][freqnn.sfm.directions]).
        lengths : Tensor [shape=(B,)], optional
            True lengths of a padded batch, in [0, T]: padded steps change nothing and output
            zeros. Not with a ``PackedSequence``.

        Returns
        -------
        output : Tensor [shape=(T, B, M)] or PackedSequence
            The top layer's z_t (batch-first or unbatched as ``x``, packed as a packed ``x``);
            (T, B, 2M) when bidirectional, [forward, backward].
        state : SFMState
            The state after each sequence's last valid step (under ``torch.export`` a plain
            tuple of its fields, so that a saved program loads without freqnn:
            [`freqnn.sfm.export.portable`][freqnn.sfm.export.portable]).
        """
        packed = x if isinstance(x, PackedSequence) else None
        x, lengths = unpack(x, lengths, self.batch_first)
        x = check_sequence(x, self.input_size, self.batch_first, self.cells[0].weight_ih.dtype)
        unbatched = x.dim() == 2
        if unbatched:
            x = x.unsqueeze(1)
        elif self.batch_first:
            x = x.transpose(0, 1)
        steps, batch = x.shape[0], x.shape[1]
        dims = (self.hidden_size, self.state_size, self.num_freqs, self.adaptive)
        layers = self._layer_cells()
        lead = (self.num_layers * self.num_directions,)
        if state is None:
            origins = [cell.initial_phase() for cells in layers for cell in cells]
            phase0 = None if origins[0] is None else torch.stack(origins)
            state = zero_state(
                lead, (batch,), *dims, dtype=x.dtype, device=x.device, phase0=phase0
            )
        else:
            state = check_state(
                state, lead, () if unbatched else (batch,), *dims, dtype=x.dtype, device=x.device
            )
            if unbatched:
                state = map_batch_axis(state, 1, squeeze=False)
        if times is None:
            offsets = torch.arange(1, steps + 1, dtype=torch.float64, device=x.device)
            times = state.time.unsqueeze(0) + offsets.unsqueeze(1)
        else:
            times = check_step_times(times, steps, batch, x.device)
        mask = None
        if lengths is not None:
            lengths = check_lengths(lengths, steps, batch, x.device)
            mask = torch.arange(steps, device=x.device).unsqueeze(1) < lengths.unsqueeze(0)
        reverse = Reversal(steps, lengths, mask) if self.bidirectional else None

        finals = []
        layer_input = x
        for layer, cells in enumerate(layers):
            outputs = []
            for direction, cell in enumerate(cells):
                k = len(finals)
                layer_state = SFMState(
                    state.z[k],
                    state.re[k],
                    state.im[k],
                    state.time,
                    None if state.phase is None else state.phase[k],
                )
                if direction == 0:
                    out, final = cell.scan(
                        cell.input_projection(layer_input), layer_state, times, mask
                    )
                else:  # the backward direction, on the reversed sequences
                    assert reverse is not None
                    out, final = cell.scan(cell.input_projection(reverse(layer_input)),
                                           layer_state, reverse.reflect(times), mask)
                    out = reverse(out)
                outputs.append(out)
                finals.append(final)
            layer_input = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)
            if self.dropout and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, self.training)

        new_state = SFMState(
            z=torch.stack([f.z for f in finals]),
            re=torch.stack([f.re for f in finals]),
            im=torch.stack([f.im for f in finals]),
            time=finals[0].time,
            phase=torch.stack([f.phase for f in finals]) if self.adaptive else None,
        )
        out = layer_input
        if unbatched:
            out = out.squeeze(1)
            new_state = map_batch_axis(new_state, 1, squeeze=True)
        elif self.batch_first:
            out = out.transpose(0, 1)
        new_state = portable(new_state)
        if packed is not None:
            assert lengths is not None
            return pack_like(out, lengths, packed, self.batch_first), new_state
        return out, new_state


class AdaptiveSFM(SFM):
    """Adaptive SFM (A-SFM): frequencies computed from the input at every step,
    omega_t = W_omega_x x_t + W_omega_z z_{t-1} + b_omega.

    The interface of [`SFM`][freqnn.SFM] (its arguments, ``forward``, state and shapes), plus
    the phase rule (equations in ``docs/sfm.md`` and
    [`AdaptiveSFMCell`][freqnn.AdaptiveSFMCell]). ``paper_parameters`` adds ``W_omega_z``,
    ``W_omega_x``, ``b_omega`` (and has no ``omega``).

    Parameters
    ----------
    input_size
        As [`SFM`][freqnn.SFM].
    hidden_size
        As [`SFM`][freqnn.SFM].
    state_size
        As [`SFM`][freqnn.SFM].
    num_freqs
        As [`SFM`][freqnn.SFM].
    num_layers
        As [`SFM`][freqnn.SFM].
    bias
        As [`SFM`][freqnn.SFM].
    batch_first
        As [`SFM`][freqnn.SFM].
    dropout
        As [`SFM`][freqnn.SFM].
    bidirectional
        As [`SFM`][freqnn.SFM].
    frequencies
        As [`SFM`][freqnn.SFM]; ``frequencies`` is the grid b_omega starts from.
    learn_frequencies
        As [`SFM`][freqnn.SFM].
    memory
        As [`SFM`][freqnn.SFM].
    forget_init
        As [`SFM`][freqnn.SFM].
    readout
        As [`SFM`][freqnn.SFM].
    device
        As [`SFM`][freqnn.SFM].
    dtype
        As [`SFM`][freqnn.SFM].
    phase : {"accumulate", "authors"}
        ``"accumulate"`` (default): the accumulated phase phi_t = phi_{t-1} + omega_t dt, omega_t
        used at its own step; the state's ``phase`` carries phi_t (zero at the start).
        ``"authors"``: the rule of the authors' released code: step t uses cos(omega_{t-1} t),
        sin(omega_{t-1} t) and computes omega_t for step t + 1; the state's ``phase`` carries
        omega_t (rad per unit of time, not a phase), starting at the frequency grid of
        ``frequencies`` (which stays fixed when b_omega is trained). Stored as ``self.phase``
        (and on every cell); not part of the ``state_dict``, so give the same value to the
        module a checkpoint is loaded into. [`SFM`][freqnn.SFM] has no ``phase`` argument (its phase
        is
        omega * t under both rules) and raises ``TypeError`` if given one.
    """

    cell_type = AdaptiveSFMCell

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        state_size: int,
        num_freqs: int,
        num_layers: int = 1,
        *,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        frequencies: str | Tensor = "paper",
        learn_frequencies: bool = False,
        memory: str = "paper",
        forget_init: str = "uniform",
        readout: str = "sum",
        phase: str = "accumulate",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        phase = check_phase(phase)  # before anything is built
        super().__init__(
            input_size, hidden_size, state_size, num_freqs, num_layers, bias=bias,
            batch_first=batch_first, dropout=dropout, bidirectional=bidirectional,
            frequencies=frequencies,
            learn_frequencies=learn_frequencies, memory=memory, forget_init=forget_init,
            readout=readout, device=device, dtype=dtype,
        )
        self.phase = phase

    @property
    def phase(self) -> str:
        """The phase rule of every layer, ``"accumulate"`` or ``"authors"`` (setting it sets
        every cell's)."""
        return self.cells[0].phase

    @phase.setter
    def phase(self, value: str) -> None:
        value = check_phase(value)
        for cells in self._layer_cells():
            for cell in cells:
                cell.phase = value
