"""Task heads on SFM / A-SFM / stock SFM / LSTM / GRU, bidirectional LSTM / GRU and the paper's
other baselines (:mod:`freqnn.baselines`), and parameter-count matching of the baselines.

:class:`SequenceModel` is a recurrent body followed by a linear read-out, for both kinds of task:

* ``head="sequence"``: one output per sequence, read from the body's output at the last valid
  step of each sequence (sequence classification);
* ``head="step"``: one output per step (next-frame prediction, forecasting).

Time handling is the one place where the bodies differ. With real timestamps ``times`` (B, T),
the SFM bodies take them as the phase times (``times=``: the phase of a step is omega * t) and
Phased LSTM as the times of its oscillations; LSTM / GRU and the other baselines cannot, so they
get the time since the previous sample as one more input feature (0 for the first sample).
Without ``times``, every body uses the step index.

The ``time`` option replaces those times for every body, to rebuild the SFM authors' protocol
(their released code, ``SFM_train.py``, feeds the phase times ``(arange(n) + 1) / n``):

* ``"data"`` (default): the task's timestamps, else the step index, as above;
* ``"normalised"``: t_n = (n + 1) / L for the steps n = 0 .. L - 1 of a sequence of true length
  L, so every sequence spans (0, 1] whatever its length;
* ``"authors"``: t_n = (n + 1) // L, the integer division that Theano performs on the released
  code's integer tensors: t = 0 at every step but the last, where t = 1. The SFM's phases are
  then 0 (its memory a plain gated sum, the frequencies unused) until the last step. For
  reproducing the released code only; building such a model warns.

The bodies that read timestamps get these times; the others get their differences as the time
feature, as for real timestamps.

The bidirectional LSTM / GRU (arch ``"bilstm"`` / ``"bigru"``, :class:`BidirectionalRNN`) are
non-causal baselines: the backward direction reads each sequence reversed within its true
length (:func:`reverse_padded`), so it sees the future of every step.

Baselines are compared at an equal budget: :func:`matched_hidden_size` picks the baseline's
hidden size whose whole-model parameter count (body + read-out) is closest to the SFM's. The
reference is always the standard SFM (arch ``"sfm"``) of the same configuration, also for the
A-SFM and the KDD 2017 stock variant (arch ``"sfm-stock"``, :class:`freqnn.sfm.stock.StockSFM`,
whose body has D = M = ``hidden_size`` and ignores ``state_size``) and ParallelSFM (arch
``"psfm"``, :class:`freqnn.ParallelSFM`: SFM without the z_{t-1} weights, so fewer parameters).
"""

from __future__ import annotations

import warnings
from typing import Literal

import torch
from torch import Tensor, nn

from .baselines import ACTRNN, RHN, AssociativeLSTM, ClockworkRNN, PhasedLSTM
from .checks import (
    check_floating,
    check_integer,
    check_range,
    check_rank,
    check_shape,
    describe,
    fail,
)
from .frequencies import frequency_grid
from .sfm import SFM, AdaptiveSFM, ParallelSFM
from .sfm.stock import StockSFM

__all__ = [
    "ARCHS",
    "ARCH_LABELS",
    "BIDIRECTIONAL_ARCHS",
    "OPTION_ARCHS",
    "TIME_MODES",
    "BidirectionalRNN",
    "SequenceModel",
    "arch_rank",
    "build_model",
    "count_parameters",
    "matched_hidden_size",
    "reverse_padded",
    "rnn_parameter_count",
    "step_times",
    "time_deltas",
]

ARCHS = ("sfm", "asfm", "sfm-stock", "psfm", "lstm", "gru", "bilstm", "bigru", "cwrnn", "plstm",
         "rhn", "alstm", "act")
#: display names; tables and reports list models in the order of ARCHS (see arch_rank)
ARCH_LABELS = {
    "sfm": "SFM",
    "asfm": "A-SFM",
    "sfm-stock": "SFM (stock variant)",
    "psfm": "ParallelSFM",
    "lstm": "LSTM",
    "gru": "GRU",
    "bilstm": "BiLSTM",
    "bigru": "BiGRU",
    "cwrnn": "CW-RNN",
    "plstm": "Phased LSTM",
    "rhn": "RHN",
    "alstm": "A-LSTM",
    "act": "ACT-RNN",
}
_SFM_ARCHS = ("sfm", "asfm", "sfm-stock", "psfm")
#: the bodies with the options memory, forget_init and readout (SFMCell's), and the runner's
#: recurrent_lr_scale: SFM and A-SFM
OPTION_ARCHS = ("sfm", "asfm")
#: those options' defaults, the paper's model (the only values the other bodies take)
_OPTION_DEFAULTS = {"memory": "paper", "forget_init": "uniform", "readout": "sum"}
#: values of ``time`` (module docstring)
TIME_MODES = ("data", "normalised", "authors")
_GATES = {"lstm": 4, "gru": 3}
#: bidirectional arch -> the unidirectional layer of each direction
_BIDIRECTIONAL = {"bilstm": "lstm", "bigru": "gru"}
#: the non-causal archs (their backward direction reads each sequence from its end)
BIDIRECTIONAL_ARCHS = tuple(_BIDIRECTIONAL)
#: the paper's other baselines, built with their default options (freqnn.baselines)
_BASELINES = {"cwrnn": ClockworkRNN, "plstm": PhasedLSTM, "rhn": RHN, "alstm": AssociativeLSTM,
              "act": ACTRNN}
#: bodies that read real timestamps (``times=``); the others get time deltas as a feature
_TIMED_ARCHS = (*_SFM_ARCHS, "plstm")
#: the baselines sized by matched_hidden_size
_MATCHED_ARCHS = (*_GATES, *_BIDIRECTIONAL, *_BASELINES)


def arch_rank(arch: str) -> int:
    """Position of ``arch`` in :data:`ARCHS` (unknown names sort last): the order of tables."""
    return ARCHS.index(arch) if arch in ARCHS else len(ARCHS)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable scalars of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def time_deltas(times: Tensor) -> Tensor:
    """Time since the previous sample, (B, T) -> (B, T), 0 for the first sample (float64)."""
    times = times.to(torch.float64)
    deltas = torch.zeros_like(times)
    deltas[:, 1:] = times[:, 1:] - times[:, :-1]
    return deltas


def step_times(mode: str, batch: int, steps: int, lengths: Tensor | None = None,
               device: torch.device | str | None = None) -> Tensor:
    """The times of ``time=mode`` (module docstring) for a batch, (B, T) float64.

    Parameters
    ----------
    mode : {"normalised", "authors"}
    batch, steps : int
        B and T of the (padded) batch.
    lengths : Tensor [shape=(B,)], optional
        True lengths L; T for every sequence when omitted. Padded steps (n >= L) continue the
        formula.
    """
    if mode not in TIME_MODES[1:]:
        fail("time", f"one of {TIME_MODES[1:]}", repr(mode))
    n1 = torch.arange(1, steps + 1, dtype=torch.float64, device=device).expand(batch, steps)
    size = (torch.full((batch, 1), float(steps), dtype=torch.float64, device=device)
            if lengths is None else lengths.to(device=device, dtype=torch.float64)[:, None])
    return n1 / size if mode == "normalised" else torch.div(n1, size, rounding_mode="floor")


def rnn_parameter_count(
    arch: str, input_size: int, hidden_size: int, num_layers: int = 1, output_size: int = 0
) -> int:
    """Parameters of a baseline body plus a ``Linear(width, output)`` read-out: ``nn.LSTM`` /
    ``nn.GRU`` (with biases), their bidirectional stacks (:class:`BidirectionalRNN`) or a
    :mod:`freqnn.baselines` model with its default options.

    Closed forms: an LSTM / GRU layer has ``gates * hidden * (layer_input + hidden + 2)``
    parameters per direction (input and recurrent weights, two bias vectors), where ``gates``
    is 4 (LSTM) or 3 (GRU); a bidirectional layer has two directions, and the layers above the
    first read both (``layer_input = 2 * hidden``), as does the read-out (``width = 2 *
    hidden``; ``hidden`` otherwise). The other baselines' counts are their classes'
    ``parameter_count``.
    """
    directions = 2 if arch in _BIDIRECTIONAL else 1
    if arch in _BASELINES:
        total = _BASELINES[arch].parameter_count(input_size, hidden_size, num_layers)
    elif arch in _GATES or arch in _BIDIRECTIONAL:
        gates = _GATES[_BIDIRECTIONAL.get(arch, arch)]
        total = 0
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else directions * hidden_size
            total += directions * gates * hidden_size * (layer_input + hidden_size + 2)
    else:
        fail("arch", f"a baseline (one of {', '.join(_MATCHED_ARCHS)})", repr(arch))
    if output_size:
        total += directions * hidden_size * output_size + output_size
    return total


def matched_hidden_size(
    target: int,
    arch: str,
    input_size: int,
    output_size: int,
    num_layers: int = 1,
    max_hidden: int = 8192,
) -> int:
    """The baseline hidden size whose model (body + read-out) has the parameter count closest
    to ``target`` (ties go to the smaller size), among the sizes the baseline accepts
    (multiples of the clockwork RNN's module count, even sizes for the A-LSTM).

    Parameters
    ----------
    target : int
        Parameter count to match (e.g. ``count_parameters`` of the SFM model).
    arch : {"lstm", "gru", "bilstm", "bigru", "cwrnn", "plstm", "rhn", "alstm", "act"}
    input_size, output_size, num_layers : int
        As the baseline will be built (``input_size`` includes the time feature if any).
    """
    if not isinstance(target, int) or target < 1:
        fail("target", "a positive int parameter count", repr(target))
    step = _BASELINES[arch].hidden_size_step() if arch in _BASELINES else 1
    best, best_gap = step, None
    for hidden in range(step, max_hidden + 1, step):
        count = rnn_parameter_count(arch, input_size, hidden, num_layers, output_size)
        gap = abs(count - target)
        if best_gap is None or gap < best_gap:
            best, best_gap = hidden, gap
        if count > target:  # counts grow with hidden: nothing further can be closer
            break
    return best


def _check_batch(x: Tensor, lengths: Tensor | None, input_size: int) -> None:
    """Check a batch-first input (B, T, input_size) and its true lengths (B,) in [1, T]."""
    check_floating(x, "x")
    check_rank(x, "x", (3,), "of shape (batch, time, input_size)")
    if x.shape[-1] != input_size:
        fail("x", f"last dimension input_size={input_size}", describe(x))
    if lengths is not None:
        # check_range reads no values while torch.compile traces (no graph break)
        check_integer(lengths, "lengths")
        check_shape(lengths, "lengths", (x.shape[0],), "(one length per sequence)")
        check_range(lengths, "lengths", 1, x.shape[1])


def reverse_padded(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence of a zero-padded batch within its true length.

    Parameters
    ----------
    x : Tensor [shape=(B, T, ...)]
    lengths : Tensor [shape=(B,)], int, or None
        True lengths in [1, T]; ``None``: every sequence has T steps.

    Returns
    -------
    Tensor [shape=(B, T, ...)]
        ``out[b, t] = x[b, lengths[b] - 1 - t]`` for ``t < lengths[b]``; the padding stays in
        place. Applying it twice gives ``x`` back.
    """
    if lengths is None:
        return x.flip(1)
    t = torch.arange(x.shape[1], device=x.device)
    valid = lengths.to(x.device)[:, None]
    index = torch.where(t < valid, valid - 1 - t, t)  # (B, T)
    index = index.reshape(*index.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)


class BidirectionalRNN(nn.Module):
    """Stacked bidirectional LSTM / GRU on zero-padded, batch-first batches, without packing.

    Each layer runs two unidirectional layers: one reads the sequence forwards, the other reads
    each sequence reversed within its true length (:func:`reverse_padded`), so the padding at
    the end never enters the backward direction before the valid steps. Their outputs are
    concatenated, forward first; a layer above the first reads both (with dropout in between).
    Parameter for parameter this is ``nn.LSTM(..., bidirectional=True, batch_first=True)`` /
    ``nn.GRU`` on packed sequences (tested to 1e-10 in float64), about 20 times faster on CPU
    than packing.

    Parameters
    ----------
    mode : {"lstm", "gru"}
        The layer of each direction.
    input_size, hidden_size : int
        Features per step N; hidden size H of each direction.
    num_layers : int
        Stacked bidirectional layers.
    dropout : float
        Dropout on the outputs of every layer but the last, in [0, 1).

    Notes
    -----
    ``forward(x, lengths=None) -> out``: ``x`` (B, T, N), ``lengths`` (B,) int true lengths in
    [1, T] (``None``: all T); ``out`` (B, T, 2H), zero at padded steps. There is no state in or
    out: the backward direction needs the whole sequence, so a stream cannot be continued.
    """

    def __init__(self, mode: Literal["lstm", "gru"], input_size: int, hidden_size: int,
                 num_layers: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        if mode not in ("lstm", "gru"):
            fail("mode", "'lstm' or 'gru'", repr(mode))
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                            ("num_layers", num_layers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                fail(name, "a positive int", repr(value))
        if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not (
                0 <= dropout < 1):
            fail("dropout", "a number in [0, 1)", repr(dropout))
        rnn = nn.LSTM if mode == "lstm" else nn.GRU
        self.mode = mode
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers

        def layers() -> nn.ModuleList:
            return nn.ModuleList(
                rnn(input_size if k == 0 else 2 * hidden_size, hidden_size, batch_first=True)
                for k in range(num_layers))

        self.forward_layers = layers()
        self.backward_layers = layers()
        self.dropout = nn.Dropout(dropout)

    def reset_parameters(self) -> None:
        """Initialise every layer as construction does, in its order (so a model built on the
        meta device, then ``to_empty``, then this, equals one built eagerly from the same
        seed)."""
        for layer in (*self.forward_layers, *self.backward_layers):
            layer.reset_parameters()

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        _check_batch(x, lengths, self.input_size)
        steps = x.shape[1]
        for k, (ahead_rnn, behind_rnn) in enumerate(
                zip(self.forward_layers, self.backward_layers, strict=True)):
            if k:
                x = self.dropout(x)
            ahead, _ = ahead_rnn(x)
            behind, _ = behind_rnn(reverse_padded(x, lengths))
            x = torch.cat([ahead, reverse_padded(behind, lengths)], dim=-1)
        if lengths is None:
            return x
        valid = torch.arange(steps, device=x.device) < lengths.to(x.device)[:, None]
        return x * valid.unsqueeze(-1).to(x.dtype)

    def extra_repr(self) -> str:
        return (f"{self.mode}, {self.input_size}, {self.hidden_size}, "
                f"num_layers={self.num_layers}")


class SequenceModel(nn.Module):
    """A recurrent body (SFM, A-SFM, stock SFM, LSTM, GRU, bidirectional LSTM / GRU or one of
    :mod:`freqnn.baselines`) and a linear read-out.

    Parameters
    ----------
    arch : str, one of :data:`ARCHS`
        ``"sfm-stock"`` is the KDD 2017 stock variant (:class:`freqnn.sfm.stock.StockSFM`):
        its D is ``hidden_size`` (``state_size`` is ignored), and the linear read-out below is
        the paper's ``p = W_p h + b_p``. ``"psfm"`` is :class:`freqnn.ParallelSFM`.
        ``"bilstm"`` / ``"bigru"`` are :class:`BidirectionalRNN` (non-causal; ``num_layers``
        and ``dropout`` as for LSTM / GRU). The last five are :class:`freqnn.ClockworkRNN`,
        :class:`freqnn.PhasedLSTM`, :class:`freqnn.RHN`, :class:`freqnn.AssociativeLSTM` and
        :class:`freqnn.ACTRNN` with their default options.
    input_size : int
        Features per step N of the task (the time feature of the bodies that do not read
        timestamps is added here when ``use_times``).
    output_size : int
        Outputs of the read-out (classes, keys...).
    head : {"sequence", "step"}
        One output per sequence (at the last valid step) or per step. A bidirectional body's
        sequence output is read from both directions after the whole sequence: the forward
        half at the last valid step, the backward half at the first step.
    hidden_size : int
        M: size of the body's output (SFM z_t, the baselines' h_t; each direction's of a
        bidirectional body, whose output is 2M).
    state_size, num_freqs : int
        D and K of SFM / A-SFM (``num_freqs`` also for the stock SFM; ignored by LSTM / GRU).
    num_layers : int
        Stacked recurrent layers.
    dropout : float
        Dropout between stacked layers and before the read-out.
    frequencies, learn_frequencies :
        SFM frequency grid options (see :class:`freqnn.SFM`): a grid name or a tensor (K,)
        (:func:`freqnn.frequency_grid`).
    use_times : bool
        Whether the task provides real timestamps; the bodies other than SFM and Phased LSTM
        then get one more input feature.
    phase : {"accumulate", "authors"}
        The A-SFM's phase rule (:class:`freqnn.AdaptiveSFM`); the other bodies take only
        ``"accumulate"``.
    memory : {"paper", "normalised"}
        The memory update of SFM / A-SFM (:class:`freqnn.SFM`); the other bodies take only
        ``"paper"``.
    forget_init : {"uniform", "chrono"}
        SFM / A-SFM's forget-gate biases at initialisation (:class:`freqnn.SFM`); the other
        bodies take only ``"uniform"``.
    readout : {"sum", "mean"}
        SFM / A-SFM's z_t over the K read-outs (:class:`freqnn.SFM`); the other bodies take
        only ``"sum"``.
    time : {"data", "normalised", "authors"}
        The times the body sees (module docstring); ``"authors"`` warns.

    Notes
    -----
    ``forward(x, times=None, lengths=None) -> output``: ``x`` (B, T, N) float, ``times``
    (B, T) real timestamps, ``lengths`` (B,) int true lengths of a zero-padded batch. Output
    (B, output_size) for ``head="sequence"``, (B, T, output_size) for ``head="step"`` (padded
    steps are zero before the read-out, so their outputs are the read-out bias).
    """

    def __init__(
        self,
        arch: str,
        input_size: int,
        output_size: int,
        head: Literal["sequence", "step"] = "sequence",
        hidden_size: int = 32,
        state_size: int = 16,
        num_freqs: int = 8,
        num_layers: int = 1,
        dropout: float = 0.0,
        frequencies: str | Tensor = "paper",
        learn_frequencies: bool = False,
        use_times: bool = False,
        phase: str = "accumulate",
        time: str = "data",
        memory: str = "paper",
        forget_init: str = "uniform",
        readout: str = "sum",
    ) -> None:
        super().__init__()
        if arch not in ARCHS:
            fail("arch", f"one of {', '.join(ARCHS)}", repr(arch))
        options = {"memory": memory, "forget_init": forget_init, "readout": readout}
        for key, default in _OPTION_DEFAULTS.items():
            if options[key] != default and arch not in OPTION_ARCHS:
                fail(key, f"{default!r} for model {arch!r} (an option of SFM and A-SFM, models "
                     "'sfm' and 'asfm')", repr(options[key]))
        if phase != "accumulate" and arch != "asfm":
            fail("phase", f"'accumulate' for model {arch!r} (the phase rule 'authors' is the "
                 "A-SFM's, model 'asfm')", repr(phase))
        if time not in TIME_MODES:
            fail("time", f"one of {TIME_MODES}", repr(time))
        if time == "authors":
            warnings.warn(
                "time='authors': t = (n + 1) // L, the integer division of the SFM authors' "
                "released code, so t = 0 at every step but the last: the SFM's phases are 0 "
                "and its frequencies unused until the last step. For reproducing that code only.",
                UserWarning, stacklevel=2)
        if head not in ("sequence", "step"):
            fail("head", "'sequence' or 'step'", repr(head))
        for name, value in (
            ("input_size", input_size),
            ("output_size", output_size),
            ("hidden_size", hidden_size),
            ("num_layers", num_layers),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                fail(name, "a positive int", repr(value))
        self.arch = arch
        self.head = head
        self.input_size = input_size
        self.output_size = output_size
        self.time = time
        self.use_times = bool(use_times) or time != "data"
        self.is_sfm = arch in _SFM_ARCHS
        if self.is_sfm:
            layer = {"sfm": SFM, "asfm": AdaptiveSFM, "sfm-stock": StockSFM,
                     "psfm": ParallelSFM}[arch]
            # the stock variant has no state size of its own (D = M)
            sizes = (hidden_size, num_freqs) if arch == "sfm-stock" else (
                hidden_size, state_size, num_freqs)
            self.body: nn.Module = layer(
                input_size,
                *sizes,
                num_layers,
                batch_first=True,
                dropout=dropout if num_layers > 1 else 0.0,
                frequencies=frequencies,
                learn_frequencies=learn_frequencies,
                **({"phase": phase} if arch == "asfm" else {}),
                **(options if arch in OPTION_ARCHS else {}),
            )
        elif arch in _BIDIRECTIONAL:
            self.body = BidirectionalRNN(
                _BIDIRECTIONAL[arch],
                self.body_input_size,
                hidden_size,
                num_layers,
                dropout=dropout if num_layers > 1 else 0.0,
            )
        else:
            rnn = _BASELINES.get(arch) or (nn.LSTM if arch == "lstm" else nn.GRU)
            self.body = rnn(
                self.body_input_size,
                hidden_size,
                num_layers,
                batch_first=True,
                dropout=dropout if num_layers > 1 else 0.0,
            )
        self.dropout = nn.Dropout(dropout)
        self.readout = nn.Linear(self.directions * hidden_size, output_size)

    @property
    def directions(self) -> int:
        """2 for the bidirectional bodies (their output is [forward, backward]), else 1."""
        return 2 if self.arch in _BIDIRECTIONAL else 1

    @property
    def body_input_size(self) -> int:
        """Features the body reads per step (+ 1 time feature when ``use_times``, except for
        the bodies that read the timestamps themselves)."""
        return self.input_size + int(self.use_times and self.arch not in _TIMED_ARCHS)

    @property
    def auxiliary_loss(self) -> Tensor | None:
        """A penalty of the body's last forward that training adds to the task's loss (the
        ponder cost of ACT-RNN, :attr:`freqnn.ACTRNN.ponder_cost`), ``None`` for the others."""
        return getattr(self.body, "ponder_cost", None)

    def forward(
        self, x: Tensor, times: Tensor | None = None, lengths: Tensor | None = None
    ) -> Tensor:
        _check_batch(x, lengths, self.input_size)
        batch, steps = x.shape[0], x.shape[1]
        if times is not None and tuple(times.shape) != (batch, steps):
            fail("times", f"shape ({batch}, {steps})", describe(times))
        if self.time != "data":
            times = step_times(self.time, batch, steps, lengths, x.device)
        if self.use_times and times is None:
            fail("times", "timestamps (B, T): the model was built with use_times=True", "None")

        if self.arch in _TIMED_ARCHS:
            out, _ = self.body(x, times=times if self.use_times else None, lengths=lengths)
        else:
            if self.use_times:
                x = torch.cat([x, time_deltas(times).to(x.dtype).unsqueeze(-1)], dim=-1)
            padded = lengths is not None and bool((lengths < steps).any())
            if self.arch in _BASELINES:
                out, _ = self.body(x, lengths=lengths if padded else None)
            elif self.arch in _BIDIRECTIONAL:
                out = self.body(x, lengths=lengths if padded else None)
            else:
                # no packing (about 20 times slower on CPU): a forward recurrence's output at a
                # valid step reads only the steps up to it, so the padding at the end changes
                # none of the outputs the heads and losses read (step losses mask the padded
                # steps, the sequence head reads step length - 1)
                out, _ = self.body(x)
        if self.head == "sequence":
            last = (
                torch.full((batch,), steps - 1, device=x.device, dtype=torch.long)
                if lengths is None
                else lengths.to(x.device) - 1
            )
            rows = torch.arange(batch, device=x.device)
            if self.directions == 2:
                # both directions after reading the whole sequence: the forward one at the
                # last valid step, the backward one at the first step
                half = out.shape[-1] // 2
                out = torch.cat([out[rows, last, :half], out[:, 0, half:]], dim=-1)
            else:
                out = out[rows, last]
        return self.readout(self.dropout(out))


def build_model(
    arch: str,
    input_size: int,
    output_size: int,
    head: Literal["sequence", "step"] = "sequence",
    *,
    hidden_size: int = 32,
    state_size: int = 16,
    num_freqs: int = 8,
    num_layers: int = 1,
    dropout: float = 0.0,
    frequencies: str = "paper",
    learn_frequencies: bool = False,
    use_times: bool = False,
    rnn_hidden_size: int | None = None,
    match_params: bool = True,
    min_period: float | None = None,
    max_period: float | None = None,
    phase: str = "accumulate",
    time: str = "data",
    memory: str = "paper",
    forget_init: str = "uniform",
    readout: str = "sum",
) -> tuple[SequenceModel, dict[str, int]]:
    """Build the model of a run and report its parameter budget.

    For the baselines (``arch`` not an SFM: LSTM, GRU, their bidirectional stacks and
    :mod:`freqnn.baselines`) the hidden
    size is ``rnn_hidden_size`` if given, else, when ``match_params``, the size whose parameter
    count is closest to the SFM model built with the same task and SFM sizes
    (:func:`matched_hidden_size`), else ``hidden_size``. The reference
    is the standard SFM for every arch (``"sfm-stock"`` included: its own count is ``params``).

    ``frequencies="log"`` is :func:`freqnn.frequency_grid` ``("log", num_freqs, min_period=,
    max_period=)``; the periods are not used by the other grids (as ``state_size`` is not by
    LSTM), so a task may default to the log grid and a run still pick another grid alone.
    ``phase``, ``time``, ``memory``, ``forget_init`` and ``readout`` are those of
    :class:`SequenceModel`
    (given to SFM and A-SFM only; the count the other models are matched to does not depend on
    them).

    Returns
    -------
    model : SequenceModel
    counts : dict
        ``params`` (this model), ``sfm_params`` (the SFM model of the same configuration, the
        reference of the match) and ``hidden_size`` (the hidden size used).
    """
    log_grid = isinstance(frequencies, str) and frequencies == "log"
    common = {
        "head": head,
        "num_layers": num_layers,
        "dropout": dropout,
        "use_times": use_times or time != "data",
    }
    sfm_kw = {
        "state_size": state_size,
        "num_freqs": num_freqs,
        "frequencies": (frequency_grid("log", num_freqs, min_period=min_period,
                                       max_period=max_period)
                        if log_grid else frequencies),
        "learn_frequencies": learn_frequencies,
    }
    # the reference only counts parameters: built without the time mode (and its warning)
    reference = SequenceModel("sfm", input_size, output_size, hidden_size=hidden_size,
                              **sfm_kw, **common)
    sfm_params = count_parameters(reference)
    if arch in _MATCHED_ARCHS:
        if rnn_hidden_size is not None:
            size = rnn_hidden_size
        elif match_params:
            body_input = input_size + int(use_times and arch not in _TIMED_ARCHS)
            size = matched_hidden_size(sfm_params, arch, body_input, output_size, num_layers)
        else:
            size = hidden_size
        model = SequenceModel(arch, input_size, output_size, hidden_size=size, phase=phase,
                              time=time, **common)
    else:
        size = hidden_size
        options = {"memory": memory, "forget_init": forget_init, "readout": readout}
        model = (
            reference
            if arch == "sfm" and time == "data" and phase == "accumulate"
            and options == _OPTION_DEFAULTS
            else SequenceModel(arch, input_size, output_size, hidden_size=size, phase=phase,
                               time=time, **sfm_kw, **common,
                               **(options if arch in OPTION_ARCHS else {}))
        )
    return model, {"params": count_parameters(model), "sfm_params": sfm_params,
                   "hidden_size": size}
