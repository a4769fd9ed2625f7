"""SFMCell and AdaptiveSFMCell: the parameters of one SFM layer and its time loop."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._buffers import DerivedBuffers
from ..checks import (
    check_choice,
    check_device,
    check_finite,
    check_floating,
    check_rank,
    check_shape,
    check_times,
    describe,
    fail,
)
from ..frequencies import fold_frequency, frequency_grid, phase
from . import kernels
from .export import exporting, run_steps
from .state import SFMState, check_state, last_time, map_batch_axis, zero_state
from .step import Gates, advance_phase, amplitude, memory_update, output, split_gates

__all__ = [
    "FORGET_INITS",
    "MEMORIES",
    "PHASE_RULES",
    "READOUTS",
    "AdaptiveSFMCell",
    "SFMCell",
    "check_phase",
]

#: A-SFM's phase rules (``AdaptiveSFM(..., phase=...)``): the accumulated phase (default) and the
#: rule of the authors' released code
PHASE_RULES = ("accumulate", "authors")
#: the memory update (``SFM(..., memory=...)``): the paper's, or the normalised one whose write is
#: weighted by 1 - f_t (``freqnn.sfm.step.memory_update``)
MEMORIES = ("paper", "normalised")
#: initialisations of the forget-gate biases b_ste, b_fre (``SFM(..., forget_init=...)``)
FORGET_INITS = ("uniform", "chrono")
#: the read-out over the K frequencies (``SFM(..., readout=...)``): the paper's sum, or the mean
READOUTS = ("sum", "mean")


def check_phase(value: object) -> str:
    """Validate A-SFM's ``phase`` argument (one of ``PHASE_RULES``)."""
    return check_choice(value, "phase", PHASE_RULES)


def _check_size(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        fail(
            name,
            "a positive int",
            repr(value),
            TypeError if not isinstance(value, int) else ValueError,
        )
    return value  # type: ignore[return-value]


class SFMCell(DerivedBuffers):
    r"""One State-Frequency Memory layer (Hu & Qi, ICML 2017), stepped one time step per call.

    Parameters
    ----------
    input_size : int
        N, features of x_t.
    hidden_size : int
        M, size of the output z_t.
    state_size : int
        D, number of memory states.
    num_freqs : int
        K, number of frequency components of each state.
    bias : bool
        Whether the affine maps have biases (b_ste, b_fre, b_g, b_i, b_o, b_z).
    frequencies : {"paper", "half", "dct"} or Tensor [shape=(K,)]
        The frequency grid (rad per unit of time), see [`freqnn.frequencies`][freqnn.frequencies].
    learn_frequencies : bool
        Train the frequencies. They are stored unconstrained and used folded into [0, pi]
        ([`freqnn.frequencies.fold_frequency`][freqnn.frequencies.fold_frequency]), which leaves the
        output of an SFM unchanged
        for in-band values and keeps learned ones alias-free.
    memory : {"paper", "normalised"}
        The memory update: the paper's S_t = f_t S_{t-1} + (g_t i_t) e^{j omega t}, or the
        normalised S_t = f_t S_{t-1} + (1 - f_t)(g_t i_t) e^{j omega t}, an exponentially
        weighted average whose amplitude stays at most 1 however long the window (the
        paper's grows as 1 / (1 - f_t)); see ``docs/sfm.md``, "Training SFM".
    forget_init : {"uniform", "chrono"}
        The forget-gate biases at initialisation. ``"uniform"``: U(-1/sqrt(M), 1/sqrt(M)) like
        every other parameter (``nn.LSTM``'s rule): f_ste f_fre starts near 0.25, a memory
        window of one or two steps. ``"chrono"``: windows from the time scale of the grid
        (chrono initialisation, Tallec & Ollivier 2018): with T_max the longest period of the
        frequency grid (2 pi / its smallest non-zero frequency, at least 2), the state gates'
        windows are drawn uniform in [2, T_max] (b_ste = log(u), u ~ U(1, T_max - 1)) and
        frequency k's window is its own period P_k (b_fre^k = log(P_k - 1), P_k clipped to
        [2, T_max]). Periods are in units of time, so the windows (in steps) assume about one
        sample per unit of time. Not part of the equations: ``reset_parameters`` applies it.
    readout : {"sum", "mean"}
        z_t over the K frequency read-outs: the paper's sum z_t = sum_k z_t^k (|z_t| <= K), or
        their mean (1/K) sum_k z_t^k, bounded by 1 like an LSTM's h_t, which divides the gain
        of the recurrence through z_{t-1} by K (``docs/sfm.md``, "Training SFM").

    Notes
    -----
    ``forward(x_t, state=None, t=None) -> (z_t, state)``: ``x_t`` (B, N) or (N,); ``t`` the
    timestamp of this step (scalar or (B,)), by default ``state.time + 1``. The state has no
    layer dimension (see [`freqnn.SFMState`][freqnn.SFMState]).
    """

    adaptive = False
    #: whether D is a size of its own (the stock variant ties it to M)
    separate_state_size = True

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
        super().__init__()
        self.memory = check_choice(memory, "memory", MEMORIES)
        self.forget_init = check_choice(forget_init, "forget_init", FORGET_INITS)
        self.readout = check_choice(readout, "readout", READOUTS)
        self.input_size = _check_size(input_size, "input_size")
        self.hidden_size = _check_size(hidden_size, "hidden_size")
        self.state_size = _check_size(state_size, "state_size")
        self.num_freqs = _check_size(num_freqs, "num_freqs")
        if not self.separate_state_size and state_size != hidden_size:
            fail(
                "state_size",
                f"state_size == hidden_size={hidden_size} (in {type(self).__name__} the output "
                "z_t has one value per memory state)",
                repr(state_size),
            )
        self.bias = bool(bias)
        self.learn_frequencies = bool(learn_frequencies)
        self._grid_spec = frequencies if isinstance(frequencies, str) else "tensor"
        factory = {"device": device, "dtype": dtype}
        # the grid's values, kept on the CPU in the parameters' dtype: reset_parameters and
        # load_state_dict rebuild the frequencies and _initial_grid from them, also for a
        # module built on the meta device (whose tensors have no values)
        with torch.device("cpu"):
            grid = frequency_grid(frequencies, num_freqs)
        self._grid = grid.to(dtype=dtype or torch.get_default_dtype())
        rows = sum(self._gate_sizes().values())
        weight_rows = rows + (self.num_freqs if self.adaptive else 0)
        readout_shape, readout_bias, readout_bias_shape = self._readout_shapes()
        # registration order = initialisation order of reset_parameters (seeded runs rely on it)
        self.weight_ih = nn.Parameter(torch.empty(weight_rows, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(weight_rows, hidden_size, **factory))
        self.weight_a = nn.Parameter(torch.empty(readout_shape, **factory))
        if self.bias:
            self.bias_ih = nn.Parameter(torch.empty(rows, **factory))
            self.register_parameter(
                readout_bias, nn.Parameter(torch.empty(readout_bias_shape, **factory))
            )
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter(readout_bias, None)
        name = "b_omega" if self.adaptive else "omega"
        if self.learn_frequencies:
            self.register_parameter(name, nn.Parameter(torch.empty(num_freqs, **factory)))
        else:
            self.register_buffer(name, torch.empty(num_freqs, **factory))
        self.register_buffer("_initial_grid", torch.empty(num_freqs, **factory), persistent=False)
        self.reset_parameters()

    def _gate_sizes(self) -> dict[str, int]:
        """Row blocks of the fused affine maps, in order (see ``freqnn.sfm.step``); an A-SFM
        appends K rows for omega_t to ``weight_ih`` and ``weight_hh``."""
        D, K, M = self.state_size, self.num_freqs, self.hidden_size
        return {"ste": D, "g": D, "i": D, "fre": K, "o": K * M}

    def _readout_shapes(self) -> tuple[tuple[int, ...], str, tuple[int, ...]]:
        """Shape of ``weight_a`` ([U_o ; W_z]), name and shape of the read-out bias (b_z)."""
        D, K, M = self.state_size, self.num_freqs, self.hidden_size
        return (K, 2 * M, D), "b_z", (K, M)

    # ------------------------------------------------------------------ parameters
    def reset_parameters(self) -> None:
        """Uniform(-1/sqrt(M), 1/sqrt(M)) weights and biases as in ``nn.LSTM``; frequencies back
        to their initial grid; A-SFM's W_omega_x, W_omega_z start at zero so that omega_t starts
        on the grid; then, with ``forget_init="chrono"``, the forget-gate biases from the
        grid's periods (see the class docstring). Every buffer is written too, so a module
        materialised from the meta device (``to_empty``) equals one built eagerly."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        frequencies = self._frequency_tensor()
        self.fill_buffers()
        with torch.no_grad():
            for p in self.parameters():
                if p is not frequencies:
                    p.uniform_(-bound, bound)
            if self.adaptive:
                self.weight_ih[-self.num_freqs :].zero_()
                self.weight_hh[-self.num_freqs :].zero_()
            frequencies.copy_(self._initial_grid)
            if self.forget_init == "chrono" and self.bias_ih is not None:
                self._chrono_forget_biases()

    @torch.no_grad()
    def fill_buffers(self) -> None:
        """The grid the layer was built with into ``_initial_grid`` (not in the state dict)."""
        self._initial_grid.copy_(self._grid)

    def _chrono_forget_biases(self) -> None:
        """b_ste = log(u), u ~ U(1, T_max - 1); b_fre^k = log(P_k - 1) (class docstring)."""
        D, K = self.state_size, self.num_freqs
        omega = self._grid.abs().double()  # on the CPU: the periods are read on the host
        periods = 2 * math.pi / omega.clamp_min(torch.finfo(torch.float64).tiny)
        longest = float(periods[omega > 0].max()) if bool((omega > 0).any()) else 2.0
        longest = max(longest, 2.0)
        b_ste, b_fre = self.bias_ih[:D], self.bias_ih[3 * D : 3 * D + K]
        if longest > 2.0:
            b_ste.uniform_(1.0, longest - 1.0).log_()
        else:
            b_ste.zero_()
        b_fre.copy_(torch.log(periods.clamp(2.0, longest) - 1.0))

    def _frequency_tensor(self) -> Tensor:
        return self.b_omega if self.adaptive else self.omega

    @property
    def carries_omega(self) -> bool:
        """Whether the state's phase slot carries omega_t (A-SFM under the authors' rule)."""
        return False

    def initial_phase(self) -> Tensor | None:
        """The phase slot of this layer's zero state, (K,), or None for zeros (or no slot):
        the frequency grid under A-SFM's authors' rule."""
        return None

    def frequencies(self) -> Tensor:
        """The frequencies in use (rad per unit of time), shape (K,): SFM's omega (folded into
        [0, pi] when learned) or A-SFM's base b_omega."""
        omega = self._frequency_tensor()
        return fold_frequency(omega) if self.learn_frequencies and not self.adaptive else omega

    def paper_parameters(self) -> dict[str, Tensor]:
        """The parameters under the names and shapes of ``docs/sfm.md`` (views sharing storage).

        Biases are absent when ``bias=False``. SFM has ``omega`` (the stored, unfolded value);
        A-SFM has ``W_omega_z``, ``W_omega_x`` and ``b_omega`` instead.
        """
        sizes = self._gate_sizes()
        out: dict[str, Tensor] = {}
        for prefix, weight in (("W", self.weight_hh), ("V", self.weight_ih)):
            blocks = weight.split([*sizes.values(), weight.shape[0] - sum(sizes.values())])
            out.update((f"{prefix}_{name}", b) for name, b in zip(sizes, blocks, strict=False))
            if self.adaptive:
                out[f"W_omega_{'z' if prefix == 'W' else 'x'}"] = blocks[-1]
        if self.bias_ih is not None:
            blocks = self.bias_ih.split(list(sizes.values()))
            out.update((f"b_{name}", b) for name, b in zip(sizes, blocks, strict=True))
        self._readout_parameters(out)
        out["b_omega" if self.adaptive else "omega"] = self._frequency_tensor()
        return out

    def _readout_parameters(self, out: dict[str, Tensor]) -> None:
        """Add the output maps to [`paper_parameters`][freqnn.SFMCell.paper_parameters]: W_o, V_o,
        b_o as (K, M, ...), U_o, W_z,
        b_z."""
        K, M = self.num_freqs, self.hidden_size
        for key in ("W_o", "V_o", "b_o"):
            if key in out:
                out[key] = out[key].unflatten(0, (K, M))
        out["U_o"] = self.weight_a[:, :M]
        out["W_z"] = self.weight_a[:, M:]
        if self.b_z is not None:
            out["b_z"] = self.b_z

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, "
        if self.separate_state_size:
            s += f"state_size={self.state_size}, "
        s += f"num_freqs={self.num_freqs}, frequencies={self._grid_spec!r}"
        if self.learn_frequencies:
            s += ", learn_frequencies=True"
        if self.memory != "paper":
            s += f", memory={self.memory!r}"
        if self.forget_init != "uniform":
            s += f", forget_init={self.forget_init!r}"
        if self.readout != "sum":
            s += f", readout={self.readout!r}"
        if not self.bias:
            s += ", bias=False"
        if self.adaptive:
            s += f", phase={self.phase!r}"
        return s

    # ------------------------------------------------------------------ equations
    def input_projection(self, x: Tensor) -> Tensor:
        """V_* x + b_* for every gate at once (any leading dims): (..., N) -> (..., G)."""
        bias = self.bias_ih
        if self.adaptive:
            zeros = x.new_zeros(self.weight_ih.shape[0] - self.num_freqs)
            bias = torch.cat([zeros if bias is None else bias, self.b_omega])
        return F.linear(x, self.weight_ih, bias)

    def scan(
        self,
        gx: Tensor,
        state: SFMState,
        times: Tensor,
        mask: Tensor | None = None,
        record: list[tuple[Gates, Tensor]] | None = None,
    ) -> tuple[Tensor, SFMState]:
        """Run the recurrence over a whole sequence.

        By default this runs the registered operator ``torch.ops.freqnn.sfm_scan``
        (``freqnn.sfm.kernels``: a hand-written backward-through-time, compiled on the CPU
        where a C++ compiler is available). Inside ``with freqnn.sfm.use_reference():`` (or
        with ``FREQNN_SFM_PATH=reference``), and under ONNX export, it
        runs the reference: the step equations of ``freqnn.sfm.step``, one step at a
        time, differentiated by autograd. Both give the same outputs and gradients. Under
        ``torch.export`` (and the dynamo ONNX exporter) the reference's loop is torch's scan
        operator ([`freqnn.sfm.export`][freqnn.sfm.export]): T stays symbolic.

        Parameters
        ----------
        gx : Tensor [shape=(T, B, G)]
            Input projections from [`input_projection`][freqnn.SFMCell.input_projection].
        state : SFMState
            Initial state of this layer (no layer dimension).
        times : Tensor [shape=(T, B)]
            float64 timestamps of the steps.
        mask : Tensor [shape=(T, B)] bool or None
            False at padded steps (they change nothing).
        record : list or None
            If given, the reference path runs and appends each step's pre-activations and
            amplitude ``(Gates, A_t)`` to it (``freqnn.sfm.trace.trace`` reads them).

        Returns
        -------
        output : Tensor [shape=(T, B, M)], z_t (zeros at padded steps)
        state : SFMState at each sequence's last valid step
        """
        if record is None:
            if exporting():
                return self._reference_scan(gx, state, times, mask)
            if self._has_kernel():
                result = kernels.scan(self, gx, state, times, mask)
                if result is not None:
                    return result
        return self._reference_scan(gx, state, times, mask, record)

    def _has_kernel(self) -> bool:
        """Whether the registered operator computes this cell's recurrence (SFM's and A-SFM's
        equations; a subclass with a step of its own has only the reference)."""
        return type(self)._step is SFMCell._step and type(self).scan is SFMCell.scan

    def _reference_scan(
        self,
        gx: Tensor,
        state: SFMState,
        times: Tensor,
        mask: Tensor | None,
        record: list[tuple[Gates, Tensor]] | None = None,
    ) -> tuple[Tensor, SFMState]:
        """The step equations over the sequence (``freqnn.sfm.export.run_steps``: a Python loop,
        torch's scan operator under export); arguments and results as ``scan``."""
        carry = tuple(v for v in (state.z, state.re, state.im, state.phase) if v is not None)
        if record is None:
            step = self._step
        else:
            def step(carry: tuple[Tensor, ...], clock_t: tuple[Tensor, ...]
                     ) -> tuple[Tensor, tuple[Tensor, ...]]:
                return self._step(carry, clock_t, record)
        out, final = run_steps(step, carry, (gx, *self._clocks(state, times, gx.dtype)), mask)
        z, re, im, *phi = final
        return out, SFMState(z, re, im, last_time(times, mask, state.time),
                             phi[0] if phi else None)

    def _clocks(self, state: SFMState, times: Tensor, dtype: torch.dtype) -> tuple[Tensor, ...]:
        """What every step needs of the time axis, (T, B, ...) each: cos and sin of SFM's phases
        omega * t (float64, reduced modulo 2*pi, then cast); A-SFM's time increments dt
        (accumulated phase); the float64 timestamps (the authors' phase rule)."""
        if self.carries_omega:
            return (times,)
        if self.adaptive:
            # the previous timestamps as [time0, times][:-1]: slicing times[:-1] first made
            # export guard T != 2 (and torch.diff has no legacy ONNX export)
            prev = torch.cat([state.time.unsqueeze(0), times])[:-1]
            return ((times - prev).to(dtype),)
        phases = phase(self.frequencies(), times)
        return torch.cos(phases), torch.sin(phases)

    def _step(
        self,
        carry: tuple[Tensor, ...],
        x_t: tuple[Tensor, ...],
        record: list[tuple[Gates, Tensor]] | None = None,
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """One step of the equations: carry (z, re, im[, phi]) at t - 1 and ``x_t`` (the input
        projection (B, G) and the step's ``_clocks``) -> (z_t, carry at t)."""
        D, K, M = self.state_size, self.num_freqs, self.hidden_size
        gx_t, *clock_t = x_t
        z, re, im, *phi = carry
        gates = split_gates(torch.addmm(gx_t, z, self.weight_hh.t()), D, K, M)
        new_phi: tuple[Tensor, ...] = ()
        if self.carries_omega:
            # float64 omega_{t-1} * t reduced modulo 2*pi, as SFM's phases; omega_t is carried
            # to step t + 1
            angle = phase(phi[0], clock_t[0])
            cos_t, sin_t = torch.cos(angle), torch.sin(angle)
            new_phi = (gates.omega,)
        elif self.adaptive:
            new_phi = (advance_phase(phi[0], gates.omega, clock_t[0]),)
            cos_t, sin_t = torch.cos(new_phi[0]), torch.sin(new_phi[0])
        else:
            cos_t, sin_t = clock_t
        re_new, im_new = memory_update(gates, re, im, cos_t, sin_t, self.memory == "normalised")
        A_t = amplitude(re_new, im_new)
        if record is not None:
            record.append((gates, A_t))
        z_new = output(gates, A_t, self.weight_a, self.b_z, self.readout == "mean")
        return z_new, (z_new, re_new, im_new, *new_phi)

    # ------------------------------------------------------------------ one step
    def forward(
        self, x: Tensor, state: SFMState | None = None, t: Tensor | float | None = None
    ) -> tuple[Tensor, SFMState]:
        """One step: ``x`` (B, N) or (N,) -> ``(z_t, state)`` with z_t (B, M) or (M,)."""
        # eager CPU inference: one kernel call, for the cells whose recurrence is the kernel's
        # (a subclass with equations of its own overrides scan and keeps the general path)
        if self._has_kernel():
            fast = kernels.step(self, x, state, t)
            if fast is not None:
                return fast
        check_floating(x, "x", self.weight_ih.dtype)
        check_rank(x, "x", (1, 2), "of shape (batch, input_size) or (input_size,)")
        if x.shape[-1] != self.input_size:
            fail("x", f"last dimension input_size={self.input_size}", describe(x))
        if x.dim() == 2 and x.shape[0] == 0:
            fail("x", "a batch of at least one sequence (B >= 1)", describe(x))
        check_finite(x, "x")
        batch = tuple(x.shape[:-1])
        dims = (self.hidden_size, self.state_size, self.num_freqs, self.adaptive)
        if state is None:
            state = zero_state(
                (), batch, *dims, dtype=x.dtype, device=x.device, phase0=self.initial_phase()
            )
        else:
            state = check_state(state, (), batch, *dims, dtype=x.dtype, device=x.device)
        if t is None:
            t = state.time + 1.0
        else:
            _check_step_time(t, x)
            t = torch.as_tensor(t, dtype=torch.float64, device=x.device)
            if t.dim() != 0:
                check_shape(t, "t", batch, "(a scalar or one timestamp per sequence)")
            check_times(t, "t")
            t = t.expand(batch)
        unbatched = x.dim() == 1
        if unbatched:
            x, t = x.unsqueeze(0), t.unsqueeze(0)
            state = map_batch_axis(state, 0, squeeze=False)
        out, state = self.scan(self.input_projection(x).unsqueeze(0), state, t.unsqueeze(0))
        if unbatched:
            state = map_batch_axis(state, 0, squeeze=True)
        return out[0, 0] if unbatched else out[0], state


def _check_step_time(t: object, x: Tensor) -> None:
    """A cell's ``t``: a real number or a real-valued tensor with values (a complex ``t`` lost its
    imaginary part, a bool was taken as 0 or 1, a str or a meta tensor gave torch's errors)."""
    real_tensor = isinstance(t, Tensor) and not (t.is_complex() or t.dtype == torch.bool)
    if isinstance(t, bool) or not (isinstance(t, (int, float)) or real_tensor):
        fail("t", "a real number or a real-valued tensor of shape () or (batch,)", describe(t),
             TypeError)
    if isinstance(t, Tensor) and t.is_meta and not x.is_meta:
        check_device(t, "t", x.device)


class AdaptiveSFMCell(SFMCell):
    r"""Adaptive SFM layer: the frequencies follow the input,
    omega_t = W_omega_x x_t + W_omega_z z_{t-1} + b_omega.

    Parameters
    ----------
    input_size
        As [`SFMCell`][freqnn.SFMCell].
    hidden_size
        As [`SFMCell`][freqnn.SFMCell].
    state_size
        As [`SFMCell`][freqnn.SFMCell].
    num_freqs
        As [`SFMCell`][freqnn.SFMCell].
    bias
        As [`SFMCell`][freqnn.SFMCell].
    frequencies
        As [`SFMCell`][freqnn.SFMCell]; ``frequencies`` is the grid b_omega starts from.
    learn_frequencies
        As [`SFMCell`][freqnn.SFMCell].
    memory
        As [`SFMCell`][freqnn.SFMCell].
    forget_init
        As [`SFMCell`][freqnn.SFMCell].
    readout
        As [`SFMCell`][freqnn.SFMCell].
    device
        As [`SFMCell`][freqnn.SFMCell].
    dtype
        As [`SFMCell`][freqnn.SFMCell].
    phase : {"accumulate", "authors"}
        The phase rule (stored as ``self.phase``):

        * ``"accumulate"`` (default): the accumulated phase
          phi_t = phi_{t-1} + omega_t * (t - t_{t-1}) (reduced modulo 2*pi), omega_t used at its
          own step (no lag: it depends only on x_t and z_{t-1}, both known at step t). The
          state's ``phase`` slot carries phi_t, zero in the zero state.
        * ``"authors"``: the rule of the authors' released Theano code. Step t uses
          cos(omega_{t-1} * t) and sin(omega_{t-1} * t), t the step's timestamp (the product in
          float64 reduced modulo 2*pi, as SFM's phases), then computes omega_t for step t + 1.
          The state's ``phase`` slot carries omega_t (not a phase); in the zero state it holds
          the frequency grid the layer was built with (the grid b_omega is initialised to,
          which does not move when b_omega is trained), so step 1 uses the grid. A padded step
          (``lengths``) leaves the carried omega unchanged.

    Notes
    -----
    For a constant omega both rules give omega * t, so SFM is the special case
    W_omega_x = W_omega_z = 0 under either rule; at initialisation those weights are zero and
    b_omega holds the frequency grid, so an A-SFM starts as the SFM with the same weights.
    omega_t is unconstrained (no nonlinearity, as in the paper). With ``learn_frequencies=False``
    b_omega stays fixed while W_omega_x, W_omega_z are trained; b_omega is present even with
    ``bias=False`` (it carries the grid). See ``docs/sfm.md`` for when to use which rule.
    """

    adaptive = True

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
        phase: str = "accumulate",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        phase = check_phase(phase)  # before anything is built
        super().__init__(
            input_size, hidden_size, state_size, num_freqs, bias=bias, frequencies=frequencies,
            learn_frequencies=learn_frequencies, memory=memory, forget_init=forget_init,
            readout=readout, device=device, dtype=dtype,
        )
        self.phase = phase

    @property
    def phase(self) -> str:
        """The phase rule, ``"accumulate"`` or ``"authors"`` (validated when set)."""
        return self._phase

    @phase.setter
    def phase(self, value: str) -> None:
        self._phase = check_phase(value)

    @property
    def carries_omega(self) -> bool:
        return self._phase == "authors"

    def initial_phase(self) -> Tensor | None:
        return self._initial_grid if self._phase == "authors" else None
