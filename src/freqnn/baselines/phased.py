"""Phased LSTM (Neil, Pfeiffer, Liu, NeurIPS 2016)."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import MAX_TIME, check_step_times, fail
from ..sfm.state import last_time
from ._base import Carry, RecurrentCell, RecurrentLayer, init_uniform

__all__ = ["PhasedLSTM", "PhasedLSTMState", "time_gate"]


class PhasedLSTMState(NamedTuple):
    """State of a [`PhasedLSTM`][freqnn.baselines.phased.PhasedLSTM].

    Attributes
    ----------
    h, c : Tensor [shape=(L, B, H)]
        Output and cell state of each layer.
    time : Tensor [shape=(B,)], float64
        Timestamp of the last step taken (0 before the first); the default time axis continues
        from it (steps time + 1, time + 2, ...).
    """

    h: Tensor
    c: Tensor
    time: Tensor


def time_gate(times: Tensor, period: Tensor, shift: Tensor, r_on: float, alpha: float
              ) -> Tensor:
    r"""The time gate k_t of Phased LSTM (Neil et al. 2016).

    $$
    \phi_t = \frac{(t - s) \bmod \tau}{\tau}, \qquad
    k_t = \begin{cases}
        2 \phi_t / r_{on} & \phi_t < r_{on} / 2 \\
        2 - 2 \phi_t / r_{on} & r_{on} / 2 \le \phi_t < r_{on} \\
        \alpha \phi_t & \text{otherwise (closed phase)}
    \end{cases}
    $$

    Parameters
    ----------
    times : Tensor [shape=(...,)], float64
        Timestamps t.
    period
        tau and s of each unit.
    shift
        tau and s of each unit.
    r_on
        Open ratio and closed-phase leak.
    alpha
        Open ratio and closed-phase leak.

    Returns
    -------
    Tensor [shape=(..., H)], the dtype of ``period``
        The phase is computed in float64 (exact at large t) and the gate cast back.
    """
    tau = period.to(torch.float64)
    phi = torch.remainder(times.unsqueeze(-1) - shift.to(torch.float64), tau) / tau
    up = 2.0 * phi / r_on
    k = torch.where(phi < 0.5 * r_on, up, torch.where(phi < r_on, 2.0 - up, alpha * phi))
    return k.to(period.dtype)


#: The bounds of ``period_range``: periods between 2**-53 and 2**53 time units (the largest
#: accepted timestamp, freqnn.checks.MAX_TIME); both are normal float32 numbers.
MAX_PERIOD = MAX_TIME
MIN_PERIOD = 1.0 / MAX_TIME


def _leak(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not 0 <= value < math.inf:  # NaN fails too
        fail(name, "a finite non-negative float", repr(value))
    return float(value)  # type: ignore[arg-type]


class PhasedLSTMCell(RecurrentCell):
    """One Phased LSTM layer: a peephole LSTM whose updates pass through the time gate."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        r_on: float,
        alpha: float,
        period_range: tuple[float, float],
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        H = hidden_size
        self.hidden_size = H
        self.r_on = r_on
        self.alpha = alpha
        self.eval_alpha: float | None = 0.0
        self.period_range = period_range
        # gate rows: input i, forget f, candidate (the paper's c), output o
        self.weight_ih = nn.Parameter(torch.empty(4 * H, input_size, **kw))
        self.weight_hh = nn.Parameter(torch.empty(4 * H, H, **kw))
        self.bias = nn.Parameter(torch.empty(4 * H, **kw))
        # peephole weights w_ci, w_cf, w_co
        self.weight_ch = nn.Parameter(torch.empty(3, H, **kw))
        self.period = nn.Parameter(torch.empty(H, **kw))
        self.shift = nn.Parameter(torch.empty(H, **kw))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_uniform(self.hidden_size, self.weight_ih, self.weight_hh, self.bias, self.weight_ch)
        low, high = self.period_range
        with torch.no_grad():
            self.period.uniform_(math.log(low), math.log(high)).exp_()
            self.shift.uniform_(0.0, 1.0).mul_(self.period)

    def project(self, x: Tensor, clock: Tensor | None) -> Tensor:
        """The gates' input part and, last, the time gate k of every step (T, B, 5 H)."""
        assert clock is not None
        leak = self.alpha if self.training or self.eval_alpha is None else self.eval_alpha
        k = time_gate(clock, self.period, self.shift, self.r_on, leak)
        return torch.cat([F.linear(x, self.weight_ih, self.bias), k], dim=-1)

    def step(
        self, gx: Tensor, weight: Tensor, carry: Carry, clock: Tensor | None
    ) -> tuple[Tensor, Carry]:
        h, c = carry
        H = self.hidden_size
        k = gx[:, 4 * H:]
        gi, gf, gc, go = torch.addmm(gx[:, : 4 * H], h, weight.t()).chunk(4, dim=1)
        # unbind, not tuple unpacking: export's scan took the unpacked rows for aliased inputs
        w_i, w_f, w_o = self.weight_ch.unbind(0)
        i = torch.sigmoid(gi + w_i * c)
        f = torch.sigmoid(gf + w_f * c)
        c_new = f * c + i * torch.tanh(gc)
        o = torch.sigmoid(go + w_o * c_new)
        h_new = o * torch.tanh(c_new)
        c = k * c_new + (1 - k) * c
        h = k * h_new + (1 - k) * h
        return h, (h, c)


class PhasedLSTM(RecurrentLayer):
    r"""Phased LSTM (D. Neil, M. Pfeiffer, S.-C. Liu, "Phased LSTM: Accelerating Recurrent
    Network Training for Long or Event-based Sequences", NeurIPS 2016).

    A peephole LSTM (the paper's section 2) whose cell and output updates pass
    through a time gate k_t ([`time_gate`][freqnn.baselines.phased.time_gate]), an oscillation of
    period tau and shift s per
    unit that is open for a fraction ``r_on`` of each period:

    $$
    \begin{aligned}
    \tilde c_t &= f_t \odot c_{t-1} + i_t \odot \tanh(W_{xc} x_t + W_{hc} h_{t-1} + b_c) \\
    c_t &= k_t \odot \tilde c_t + (1 - k_t) \odot c_{t-1} \\
    \tilde h_t &= o_t \odot \tanh(\tilde c_t) \\
    h_t &= k_t \odot \tilde h_t + (1 - k_t) \odot h_{t-1}
    \end{aligned}
    $$

    with i_t = sigma(W_xi x_t + W_hi h_{t-1} + w_ci * c_{t-1} + b_i), f_t likewise with w_cf,
    and o_t = sigma(W_xo x_t + W_ho h_{t-1} + w_co * c~_t + b_o).

    Parameters
    ----------
    input_size
        As ``torch.nn.LSTM``.
    hidden_size
        As ``torch.nn.LSTM``.
    num_layers
        As ``torch.nn.LSTM``.
    r_on : float
        Fraction of the period the gate is open, in (0, 1] (0.05 as in the SFM paper's table).
    alpha : float
        Leak of the closed phase in training (1e-3). Also a plain attribute: ``model.alpha = 0``
        makes a closed unit keep its state exactly.
    eval_alpha : float or None
        Leak of the closed phase in ``eval()`` mode: 0 by default, as the authors' released
        code (``public_plstm``: ``off_slope = 0`` when deterministic); None uses ``alpha``
        in both modes. Also a plain attribute.
    period_range : (float, float)
        tau is initialised log-uniform in this range (default (1, 1000) time units), with
        2**-53 <= low <= high <= 2**53.
    batch_first
        As ``torch.nn.LSTM``.
    dropout
        As ``torch.nn.LSTM``.
    bidirectional
        As ``torch.nn.LSTM``.
    device
        As ``torch.nn.LSTM``.
    dtype
        As ``torch.nn.LSTM``.

    Notes
    -----
    ``forward(x, state=None, *, times=None, lengths=None) -> (output, state)`` as
    [`freqnn.baselines.RecurrentLayer`][freqnn.baselines.RecurrentLayer], and ``times`` as
    [`freqnn.SFM`][freqnn.SFM]: real
    timestamps of the steps, (T,) or (B, T) (also with ``batch_first=False``), by default the
    steps time + 1, time + 2, ... continuing from ``state.time``. The state is a
    [`PhasedLSTMState`][freqnn.baselines.phased.PhasedLSTMState].

    Choices where the paper leaves a detail open:

    * parameters: ``period`` (tau) and ``shift`` (s) per unit, trained; r_on and alpha fixed.
      tau is initialised log-uniform in ``period_range`` and s uniform in [0, tau] (one whole
      cycle: every opening position is equally likely). The default range, 1 to 1000, spans
      the step spacing of the tasks here up to twice their length (the SFM paper's signal
      task has about 500 samples, one per time unit);
    * tau is used as it is: phi stays in [0, 1) for either sign of tau, so no constraint is
      needed while training;
    * the output gate's peephole reads the new candidate cell c~_t (the cell of that step before
      the time gate);
    * one bias per gate (the paper's b); weights and biases U(-1/sqrt(H), 1/sqrt(H))
      (``nn.LSTM``'s rule);
    * the phase is computed in float64 from float64 timestamps, so it stays exact at large t;
    * layers of a stack share the timestamps and each has its own tau and s.
    """

    state_type = PhasedLSTMState
    clock_dtype = torch.float64

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        r_on: float = 0.05,
        alpha: float = 1e-3,
        eval_alpha: float | None = 0.0,
        period_range: tuple[float, float] = (1.0, 1000.0),
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(input_size, hidden_size, num_layers, batch_first=batch_first,
                         dropout=dropout, bidirectional=bidirectional)
        if isinstance(r_on, bool) or not isinstance(r_on, (int, float)) or not 0 < r_on <= 1:
            fail("r_on", "a float in (0, 1]", repr(r_on))
        if (
            not isinstance(period_range, (tuple, list))
            or len(period_range) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                       and MIN_PERIOD <= v <= MAX_PERIOD for v in period_range)
            or period_range[0] > period_range[1]
        ):
            # bounded so that the log-uniform init gives finite periods in float32 and float64
            # (period_range=(1, 1e308) gave all-NaN outputs)
            fail("period_range", "(low, high) with 2**-53 <= low <= high <= 2**53",
                 repr(period_range))
        self.r_on = float(r_on)
        self.period_range = (float(period_range[0]), float(period_range[1]))
        self._build_cells(lambda n: PhasedLSTMCell(n, hidden_size, self.r_on, 0.0,
                                                   self.period_range, device, dtype))
        self.alpha = alpha  # validated and given to every layer by the setters
        self.eval_alpha = eval_alpha

    @property
    def alpha(self) -> float:
        """Leak of the closed phase; setting it sets every layer's."""
        return self.cells[0].alpha

    @alpha.setter
    def alpha(self, value: float) -> None:
        for cell in self.all_cells():
            cell.alpha = _leak(value, "alpha")

    @property
    def eval_alpha(self) -> float | None:
        """Leak of the closed phase in ``eval()`` mode (None: ``alpha``); setting it sets
        every layer's."""
        return self.cells[0].eval_alpha

    @eval_alpha.setter
    def eval_alpha(self, value: float | None) -> None:
        for cell in self.all_cells():
            cell.eval_alpha = None if value is None else _leak(value, "eval_alpha")

    @staticmethod
    def parameter_count(input_size: int, hidden_size: int, num_layers: int = 1,
                        **options: Any) -> int:
        """Parameters: per layer 4 H (N_l + H + 1) weights and biases, 3 H peepholes, H periods
        and H shifts."""
        H = hidden_size
        sizes = RecurrentLayer.cell_input_sizes(input_size, H, num_layers, options)
        return sum(4 * H * (n + H + 1) + 5 * H for n in sizes)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, r_on={self.r_on}, alpha={self.alpha}, "
                f"eval_alpha={self.eval_alpha}")

    def forward(
        self,
        x: Tensor,
        state: PhasedLSTMState | None = None,
        *,
        times: Tensor | None = None,
        lengths: Tensor | None = None,
    ) -> tuple[Tensor, PhasedLSTMState]:
        return self._run(x, state, lengths, times=times)  # type: ignore[return-value]

    def _state_shapes(self) -> tuple[tuple[int, ...], ...]:
        return ((self.hidden_size,), (self.hidden_size,))

    def _clock(self, start: Tensor, steps: int, mask: Tensor | None, **kwargs: Any
               ) -> tuple[Tensor, Tensor]:
        times = kwargs["times"]
        if times is None:
            offsets = torch.arange(1, steps + 1, dtype=torch.float64, device=start.device)
            times = start.unsqueeze(0) + offsets.unsqueeze(1)
        else:
            times = check_step_times(times, steps, start.shape[0], start.device)
        return times, last_time(times, mask, start)
