"""ParallelSFM: SFM's memory with gates driven by the input alone, computed by a scan over time.

Remove every weight on z_{t-1} (W_ste, W_fre, W_g, W_i, W_o) from the SFM step of
``docs/sfm.md`` and the gates of step t depend on x_t only::

    f_ste = sigmoid(V_ste x_t + b_ste)        f_fre = sigmoid(V_fre x_t + b_fre)
    g_t   = sigmoid(V_g x_t + b_g)            i_t   = tanh(V_i x_t + b_i)
    S_t   = F_t * S_{t-1} + (g_t * i_t) outer e^{j phi_t},    F_t = outer(f_ste, f_fre)
    A_t   = |S_t|
    z_t   = sum_k sigmoid(U_o^k A_t^k + V_o^k x_t + b_o^k) * tanh(W_z^k A_t^k + b_z^k)

The memory is then a diagonal linear recurrence with coefficients F_t in (0, 1)^{D x K}, so a
layer is one GEMM for the gates of all steps (:meth:`ParallelSFMCell.input_projection`), then,
block by block of ``block_size`` steps (blocks keep the tensors cache-sized), a scan for S and
one batched GEMM for the read-out of all the block's steps; on the CPU, the fused operator of
:mod:`freqnn.sfm.kernels.parallel` does all of it in one call. The equations are those of
:mod:`freqnn.sfm.step` (``split_gates``, ``memory_update``, ``amplitude``, ``output``), phases
are :func:`freqnn.frequencies.phase` (float64, reduced modulo 2 pi).

The scan (:func:`freqnn.sfm.kernels.parallel_torch.chunked_scan`, re-exported here) cuts time
into chunks of c steps. Inside every chunk, all chunks at once, it runs the recurrence from a
zero state (c - 1 vectorised steps) and the relative cumulative forget
P_{t} = prod_{s = chunk start .. t} F_s = exp(cumsum log F), which lies in [0, 1]: it cannot
overflow, and where it underflows to 0 the true value is below the dtype's
smallest number. The chunks are then joined in order, S_t = local_t + P_t * S_{chunk start - 1}.
Nothing is ever divided by a product of forget gates (the cumsum-and-divide form
S_t = P_t (S_0 + sum_s u_s / P_s) overflows for forget gates near 0). Its error is that of the
step-by-step recurrence with the sum regrouped at chunk boundaries, plus the rounding of
exp(cumsum), about c |log F| eps relative where P is not negligible: against a float64 loop at
T = 10^4 at most 1.8e-12 in float64 and 8.6e-5 in float32 for |S| up to 152. It was chosen by
measurement over the plain loop, the log-space cumulative sum and torch's associative scan
(faster than all three, as accurate as the loop; ``benchmarks/parallel.py``, ``docs/sfm.md``
section "ParallelSFM").
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..checks import check_floating, check_rank, check_shape, fail
from ..frequencies import phase
from .cell import SFMCell
from .export import exporting
from .kernels import parallel as kernel
from .kernels.parallel_torch import block_torch, chunked_scan
from .layer import SFM
from .state import SFMState, check_placement, last_time

__all__ = ["ParallelSFM", "ParallelSFMCell", "block_torch", "chunked_scan"]


def _pieces(steps: int | Tensor | torch.SymInt, block: int, chunk: int) -> list[tuple[int, int]]:
    """Cut ``steps`` into (length, chunk) pieces: whole blocks, whole chunks, then the rest
    (fewer than ``chunk`` steps) as one chunk of its own."""
    # int(): under jit.trace (legacy ONNX) a size is a traced tensor, and T fixed there anyway;
    # a SymInt of torch.compile(dynamic=True) is specialised (export never comes here)
    blocks, rest = divmod(int(steps), block)
    whole = rest - rest % chunk
    pieces = [(block, chunk)] * blocks + [(whole, chunk)] * bool(whole)
    return pieces + [(rest - whole, rest - whole)] * bool(rest - whole)


def _functorch_active() -> bool:
    """Whether a ``torch.func`` transform (grad, vmap, ...) is running (never seen while
    torch.compile traces: Dynamo cannot trace the interpreter stack)."""
    if torch.compiler.is_compiling():
        return False
    return torch._C._functorch.peek_interpreter_stack() is not None


def _at_last_step(values: Tensor, mask: Tensor | None, start: Tensor) -> Tensor:
    """``values`` (T, B, M) at each sequence's last valid step; ``start`` (B, M) for a sequence
    without one (the rule of :func:`freqnn.sfm.state.last_time`, for vectors)."""
    if mask is None:
        return values[-1]
    steps = mask.sum(0)
    index = (steps - 1).clamp(min=0).view(1, -1, 1).expand(1, *values.shape[1:])
    return torch.where((steps > 0).unsqueeze(-1), values.gather(0, index).squeeze(0), start)


class ParallelSFMCell(SFMCell):
    r"""One ParallelSFM layer: :class:`SFMCell` without the weights on z_{t-1}.

    Parameters are those of :class:`SFMCell` (``weight_ih``, ``bias_ih``, ``weight_a``, ``b_z``,
    ``omega``) less ``weight_hh``; :meth:`paper_parameters` names them as ``docs/sfm.md``
    (SFM's table without W_ste, W_fre, W_g, W_i, W_o).

    Attributes
    ----------
    chunk_size : int
        Steps per chunk of :func:`chunked_scan`.
    block_size : int
        Steps computed together (gates, scan, read-out) by the PyTorch algorithm and under
        checkpointing; blocks run in order, carrying S, so that their tensors stay small. A
        multiple of ``chunk_size``. The compiled kernel without checkpointing takes the whole
        sequence in one call (it keeps chunks of ``ROWS`` rows in cache itself).
    checkpoint : bool or None
        Recompute each block in the backward instead of keeping its activations (never under
        ``torch.func`` transforms, which refuse its saved-tensor hooks). None (the
        default): only on the PyTorch algorithm, whose activations are large (at T = 10^4,
        B=16, N=88, D=50, K=4, M=50 a forward + backward peaks at 1.3 GB instead of 2.7 GB, for
        1.2x the time); the fused CPU operator keeps 2KD + 2KM values per step and sequence
        and is faster without (``benchmarks/parallel.py``).

    Notes
    -----
    ``forward(x_t, state=None, t=None)`` steps one time step (inherited from :class:`SFMCell`,
    validation included, then :meth:`scan` of one step); :meth:`scan` runs a whole sequence.
    """

    chunk_size = 16
    block_size = 256
    checkpoint: bool | None = None

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        state_size: int,
        num_freqs: int,
        *,
        bias: bool = True,
        frequencies: str | Tensor = "paper",
        learn_frequencies: bool = False,
        memory: str = "paper",
        forget_init: str = "uniform",
        readout: str = "sum",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        for key, value, paper in (("memory", memory, "paper"), ("readout", readout, "sum")):
            if value != paper:
                fail(key, f"{paper!r} (ParallelSFM has the paper's equations only)", repr(value))
        super().__init__(
            input_size, hidden_size, state_size, num_freqs, bias=bias, frequencies=frequencies,
            learn_frequencies=learn_frequencies, memory=memory, forget_init=forget_init,
            readout=readout, device=device, dtype=dtype,
        )  # fmt: skip
        del self.weight_hh  # no z_{t-1} weights

    def reset_parameters(self) -> None:
        """:meth:`SFMCell.reset_parameters` with the random draws of construction: SFMCell's
        constructor initialises ``weight_hh`` second, before it is removed, so a scratch
        ``weight_hh`` takes that place again and a seed gives the same weights whether the
        cell is built eagerly or re-initialised (after ``to_empty``, say)."""
        if "weight_hh" in self._parameters:  # inside SFMCell's constructor
            super().reset_parameters()
            return
        own = dict(self._parameters)
        self._parameters.clear()
        for name, p in own.items():
            self._parameters[name] = p
            if name == "weight_ih":
                scratch = p.new_empty(p.shape[0], self.hidden_size)
                self._parameters["weight_hh"] = nn.Parameter(scratch)
        try:
            super().reset_parameters()
        finally:
            del self._parameters["weight_hh"]

    def input_projection(self, x: Tensor) -> Tensor:
        """V_* x + b_* for every gate at once, (..., N) -> (..., G): for a long sequence on the
        compiled kernel in cache-sized blocks into a reusable buffer
        (:func:`freqnn.sfm.kernels.parallel.projection`), else :meth:`SFMCell.input_projection`."""
        gx = kernel.projection(x, self.weight_ih, self.bias_ih)
        return super().input_projection(x) if gx is None else gx

    def paper_parameters(self) -> dict[str, Tensor]:
        """``V_ste, V_g, V_i`` (D, N), ``V_fre`` (K, N), ``V_o`` (K, M, N), ``b_*``, ``U_o``,
        ``W_z`` (K, M, D), ``b_z`` (K, M) and ``omega`` (K,): views sharing storage."""
        sizes = self._gate_sizes()
        blocks = self.weight_ih.split(list(sizes.values()))
        out = {f"V_{name}": b for name, b in zip(sizes, blocks, strict=True)}
        if self.bias_ih is not None:
            blocks = self.bias_ih.split(list(sizes.values()))
            out.update((f"b_{name}", b) for name, b in zip(sizes, blocks, strict=True))
        self._readout_parameters(out)
        out["omega"] = self.omega
        return out

    def _block(
        self,
        gx: Tensor,
        cos: Tensor,
        sin: Tensor,
        mask: Tensor | None,
        re: Tensor,
        im: Tensor,
        chunk: int,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Outputs (L, B, M) and the final Re S, Im S of L steps from the state (re, im): the
        fused operator where it applies (:mod:`freqnn.sfm.kernels.parallel`), else
        :func:`block_torch`."""
        if kernel.applies(gx, self.weight_a):
            return kernel.block(gx, cos, sin, mask, re, im, self.weight_a, self.b_z, chunk)
        valid = None if mask is None else mask.to(gx.dtype)
        return block_torch(gx, cos, sin, valid, re, im, self.weight_a, self.b_z, chunk)

    def scan(
        self,
        gx: Tensor,
        state: SFMState,
        times: Tensor,
        mask: Tensor | None = None,
    ) -> tuple[Tensor, SFMState]:
        """Run a whole sequence (the signature of :meth:`SFMCell.scan`).

        Parameters
        ----------
        gx : Tensor [shape=(T, B, G)], input projections from :meth:`input_projection`
        state : SFMState, initial state of this layer (no layer dimension); its ``z`` is not
            read (nothing depends on z_{t-1}) but returned for padded-only sequences
        times : Tensor [shape=(T, B)], float64 timestamps of the steps
        mask : Tensor [shape=(T, B)] bool or None, False at padded steps (they change nothing)

        Returns
        -------
        output : Tensor [shape=(T, B, M)], z_t (zeros at padded steps)
        state : SFMState at each sequence's last valid step
        """
        for key in ("chunk_size", "block_size"):  # plain attributes, set by users: checked here
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                fail(key, "an int >= 1", repr(value))  # chunk_size = 0: ZeroDivisionError
        if self.block_size % self.chunk_size:
            fail("block_size", f"a multiple of chunk_size={self.chunk_size}", repr(self.block_size))
        check_placement(state, gx.device)  # the operator reads re and im
        phases = phase(self.frequencies(), times)  # (T, B, K), float64 reduced mod 2 pi
        cos, sin = torch.cos(phases), torch.sin(phases)
        # not under torch.func transforms: they refuse checkpoint's saved-tensor hooks
        recompute = torch.is_grad_enabled() and not _functorch_active() and (
            self.checkpoint
            if self.checkpoint is not None
            else not kernel.applies(gx, self.weight_a)
        )
        if exporting():  # T symbolic: PyTorch's operators only, the whole sequence at once
            out, re, im = self._block_portable(gx, cos, sin, mask, state)
            return out, self._final(out, re, im, state, times, mask)
        # the compiled kernel keeps its own chunks in cache: one call for the whole sequence
        # (blocks would add a call per block and a cat of their gradients in the backward)
        whole = not recompute and kernel.compiled(gx, self.weight_a)
        steps = gx.shape[0]
        # one piece without arithmetic on T, which torch.compile(dynamic=True) keeps symbolic
        pieces = [(steps, self.chunk_size)] if whole else _pieces(
            steps, self.block_size, self.chunk_size)
        lengths = [length for length, _ in pieces]
        # split, not slicing: the backward of a slice is a full-size gradient per piece
        parts = [t.split(lengths) if len(pieces) > 1 else (t,) for t in (gx, cos, sin)]
        masks = [None] * len(pieces) if mask is None else mask.split(lengths)
        re, im = state.re, state.im
        outputs = []
        for (_, chunk), gx_p, cos_p, sin_p, mask_p in zip(pieces, *parts, masks, strict=True):
            args = (gx_p, cos_p, sin_p, mask_p, re, im, chunk)
            if recompute:
                z, re, im = checkpoint(self._block, *args, use_reentrant=False)
            else:
                z, re, im = self._block(*args)
            outputs.append(z)
        out = torch.cat(outputs) if len(outputs) > 1 else outputs[0]
        return out, self._final(out, re, im, state, times, mask)

    def _block_portable(
        self, gx: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | None, state: SFMState
    ) -> tuple[Tensor, Tensor, Tensor]:
        """:func:`block_torch` over the whole sequence, whatever its length (its scan pads to
        whole chunks and joins them with torch's scan operator under export): no custom op,
        no arithmetic on T in Python, so an exported program keeps T symbolic."""
        valid = None if mask is None else mask.to(gx.dtype)
        return block_torch(gx, cos, sin, valid, state.re, state.im, self.weight_a, self.b_z,
                           self.chunk_size)

    @staticmethod
    def _final(out: Tensor, re: Tensor, im: Tensor, state: SFMState, times: Tensor,
               mask: Tensor | None) -> SFMState:
        """The state after each sequence's last valid step from the outputs and final S."""
        return SFMState(
            _at_last_step(out, mask, state.z), re, im, last_time(times, mask, state.time), None
        )


class ParallelSFM(SFM):
    r"""State-Frequency Memory with input-driven gates, computed in parallel over time.

    SFM's equations (``docs/sfm.md``) with every weight on z_{t-1} removed: the gates read x_t
    only, so the memory S is a linear recurrence computed by a chunked scan (see
    :mod:`freqnn.sfm.parallel`), and the read-out is one batched GEMM per block of steps. Depth
    restores what the recurrent gates gave (layer l > 0 reads the outputs of layer l - 1).

    The constructor, ``forward(x, state=None, *, times=None, lengths=None) -> (output, state)``
    and the state (:class:`freqnn.SFMState`, ``phase=None``) are those of :class:`freqnn.SFM`:
    ``batch_first``, ``num_layers``, ``dropout``, ``frequencies``, ``learn_frequencies``,
    timestamps, padded batches, unbatched input, streaming by passing the state back,
    ``bidirectional`` and ``PackedSequence`` input (:mod:`freqnn.sfm.directions`).
    :meth:`paper_parameters` gives SFM's names without W_ste, W_fre, W_g, W_i and W_o;
    :meth:`step` runs one time step.
    """

    cell_type = ParallelSFMCell

    def step(
        self, x: Tensor, state: SFMState | None = None, t: Tensor | float | None = None
    ) -> tuple[Tensor, SFMState]:
        """One time step of every layer.

        Parameters
        ----------
        x : Tensor [shape=(B, N) or (N,)]
            Input of this step (``batch_first`` does not apply: there is no time axis).
        state : SFMState or None
            As in :meth:`forward` (a leading layer dimension); ``None`` = zeros at time 0.
        t : float or Tensor [shape=() or (B,)] or None
            Timestamp of the step; default ``state.time + 1``.

        Returns
        -------
        z : Tensor [shape=(B, M) or (M,)], the top layer's output
        state : SFMState after the step

        Raises
        ------
        ValueError
            On a bidirectional model: its backward direction starts at each sequence's end,
            which a stream does not have (call the model on the whole sequence).
        """
        if self.bidirectional:
            fail("bidirectional", "False for step() (the backward direction reads each sequence "
                 "from its end: run the whole sequence with forward)", "True")
        check_floating(x, "x")
        check_rank(x, "x", (1, 2), "of shape (batch, input_size) or (input_size,)")
        times = None
        if t is not None:
            times = torch.as_tensor(t, device=x.device)
            if times.dim() != 0:
                check_shape(times, "t", x.shape[:-1], "(a scalar or one timestamp per sequence)")
            # forward's times with T = 1: (T,) or (B, T)
            times = times.reshape(-1, 1) if times.dim() else times.reshape(1)
        time_axis = 1 if self.batch_first and x.dim() == 2 else 0
        out, state = self(x.unsqueeze(time_axis), state, times=times)
        return out.squeeze(time_axis), state
