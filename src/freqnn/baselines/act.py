"""Adaptive Computation Time over a GRU (Graves 2016)."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import fail
from ._base import Carry, RecurrentCell, RecurrentLayer, check_positive_int, init_uniform

__all__ = ["ACTRNN", "ACTRNNState"]

#: the halting threshold's epsilon: a step halts once its halting probabilities reach 1 - EPS
EPS = 0.01
#: initial bias of the halting unit (Graves initialises it to 1: short pondering at first)
HALT_BIAS = 1.0


class ACTRNNState(NamedTuple):
    """State of an [`ACTRNN`][freqnn.baselines.act.ACTRNN].

    Attributes
    ----------
    h : Tensor [shape=(L, B, H)]
        s_t of each layer: the halting-weighted mean of its ponder states.
    """

    h: Tensor


class ACTCell(RecurrentCell):
    """One ACT layer: a GRU cell run 1 to ``max_ponder`` times per step, and a halting unit."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        max_ponder: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        H = hidden_size
        self.hidden_size = H
        self.max_ponder = max_ponder
        # GRU rows r, z, n as nn.GRU; the last input column is the first-ponder-step flag
        self.weight_ih = nn.Parameter(torch.empty(3 * H, input_size + 1, **kw))
        self.weight_hh = nn.Parameter(torch.empty(3 * H, H, **kw))
        self.bias_ih = nn.Parameter(torch.empty(3 * H, **kw))
        self.bias_hh = nn.Parameter(torch.empty(3 * H, **kw))
        self.weight_halt = nn.Parameter(torch.empty(1, H, **kw))
        self.bias_halt = nn.Parameter(torch.empty(1, **kw))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_uniform(self.hidden_size, self.weight_ih, self.weight_hh, self.bias_ih,
                     self.bias_hh, self.weight_halt)
        with torch.no_grad():
            self.bias_halt.fill_(HALT_BIAS)

    def project(self, x: Tensor, clock: Tensor | None) -> Tensor:
        return F.linear(x, self.weight_ih[:, :-1], self.bias_ih)

    def _gru(self, gx: Tensor, s: Tensor, weight: Tensor) -> Tensor:
        x_r, x_z, x_n = gx.chunk(3, dim=1)
        h_r, h_z, h_n = F.linear(s, weight, self.bias_hh).chunk(3, dim=1)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        return (1 - z) * n + z * s

    def step(
        self, gx: Tensor, weight: Tensor, carry: Carry, clock: Tensor | None
    ) -> tuple[Tensor, Carry]:
        h, ponder = carry
        s = h
        out = torch.zeros_like(h)
        total = torch.zeros_like(ponder)  # halting probabilities of the steps before halting
        updates = torch.zeros_like(ponder)  # N(t)
        running = torch.ones_like(ponder, dtype=torch.bool)
        for n in range(self.max_ponder):
            s = self._gru(gx + self.weight_ih[:, -1] if n == 0 else gx, s, weight)
            halt = torch.sigmoid(F.linear(s, self.weight_halt, self.bias_halt)).squeeze(1)
            last = n == self.max_ponder - 1
            stop = running if last else running & (total + halt >= 1 - EPS)
            going = running & ~stop
            # p = R(t) = 1 - total at the halting step, h at the steps before, 0 after
            p = torch.where(stop, 1 - total, torch.where(going, halt, 0.0))
            out = out + p.unsqueeze(1) * s
            updates = updates + running.to(ponder.dtype)
            total = torch.where(going, total + halt, total)
            running = going
            # every sequence has halted: the remaining ponder steps would change nothing (a
            # compiled graph runs them all rather than synchronise on the data, and so does a
            # run on the meta device, which has no data)
            if (not last and not torch.compiler.is_compiling() and not running.is_meta
                    and not bool(running.any())):
                break
        # rho_t = N(t) + R(t), with R(t) = 1 - total once halted
        return out, (out, ponder + updates + (1 - total))


class ACTRNN(RecurrentLayer):
    r"""Adaptive Computation Time over a GRU (A. Graves, "Adaptive Computation Time for
    Recurrent Neural Networks", arXiv:1603.08983, 2016).

    At every step the cell S (a GRU) ponders N(t) times on the same input, with a flag on the
    first ponder step, and a halting unit decides when to stop:

    $$
    \begin{aligned}
    s_t^n &= S\big(s_t^{n-1}, [x_t, \delta_{n,1}]\big), \quad s_t^0 = s_{t-1} \\
    h_t^n &= \sigma(W_h s_t^n + b_h) \\
    N(t) &= \min\Big\{M, \min\big\{n' : \textstyle\sum_{n=1}^{n'} h_t^n \ge 1 - \epsilon
        \big\}\Big\} \\
    R(t) &= 1 - \textstyle\sum_{n=1}^{N(t)-1} h_t^n, \quad
    p_t^n = R(t) \text{ if } n = N(t) \text{ else } h_t^n \\
    s_t &= \textstyle\sum_{n=1}^{N(t)} p_t^n s_t^n
    \end{aligned}
    $$

    The output is s_t (the paper's output y_t = sum_n p_t^n y_t^n is linear in s_t^n, so the
    read-out after the layer gives it). The ponder cost of a step is rho_t = N(t) + R(t); the
    training loss adds ``time_penalty`` times the ponder cost.

    Parameters
    ----------
    input_size
        As ``torch.nn.GRU``.
    hidden_size
        As ``torch.nn.GRU``.
    num_layers
        As ``torch.nn.GRU``.
    max_ponder : int
        M, the most ponder steps per time step (default 10).
    time_penalty : float
        tau, the weight of the ponder cost (default 0.01).
    batch_first
        As ``torch.nn.GRU``.
    dropout
        As ``torch.nn.GRU``.
    bidirectional
        As ``torch.nn.GRU``.
    device
        As ``torch.nn.GRU``.
    dtype
        As ``torch.nn.GRU``.

    Attributes
    ----------
    ponder_cost : Tensor or None
        ``time_penalty`` times the mean of rho_t over the valid (sequence, step) pairs of the
        last forward, summed over layers: a 0-d tensor in the graph, to add to the training
        loss (``freqnn train`` does). ``None`` before the first forward. This is the one
        value the baselines keep on the module between calls; read it right after the forward
        it belongs to.

    Notes
    -----
    Choices where the paper leaves a detail open:

    * the ponder cost is a mean over the valid steps (the paper sums rho_t over a sequence):
      the runner's losses are means over their units too, so the penalty keeps its weight
      whatever the sequence length and batch size; multiply by the length for the paper's sum;
    * epsilon = 0.01 (the paper's value) and the halting bias starts at 1 (as in the paper's
      experiments); the GRU is ``nn.GRU``'s (reset gate applied after the recurrent product,
      two bias vectors), weights U(-1/sqrt(H), 1/sqrt(H));
    * the ponder loop stops early once every sequence of the batch has halted (one
      synchronisation per ponder step; the outputs are those of running all M steps, which
      is what a ``torch.compile`` graph does).

    ``forward(x, state=None, *, lengths=None) -> (output, state)``: see
    [`freqnn.baselines.RecurrentLayer`][freqnn.baselines.RecurrentLayer]; the state is an
    [`ACTRNNState`][freqnn.baselines.act.ACTRNNState].
    """

    state_type = ACTRNNState

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        max_ponder: int = 10,
        time_penalty: float = 0.01,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(input_size, hidden_size, num_layers, batch_first=batch_first,
                         dropout=dropout, bidirectional=bidirectional)
        self.max_ponder = check_positive_int("max_ponder", max_ponder)
        if (isinstance(time_penalty, bool) or not isinstance(time_penalty, (int, float))
                or not 0 <= time_penalty < math.inf):  # NaN fails too
            fail("time_penalty", "a finite non-negative float", repr(time_penalty))
        self.time_penalty = float(time_penalty)
        self.ponder_cost: Tensor | None = None
        self._build_cells(lambda n: ACTCell(n, hidden_size, max_ponder, device, dtype))

    @staticmethod
    def parameter_count(input_size: int, hidden_size: int, num_layers: int = 1,
                        **options: Any) -> int:
        """Parameters: per layer a GRU with N_l + 1 inputs, 3 H (N_l + 1 + H + 2), and the
        halting unit, H + 1."""
        H = hidden_size
        sizes = RecurrentLayer.cell_input_sizes(input_size, H, num_layers, options)
        return sum(3 * H * (n + H + 3) + H + 1 for n in sizes)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, max_ponder={self.max_ponder}, "
                f"time_penalty={self.time_penalty}")

    def _state_shapes(self) -> tuple[tuple[int, ...], ...]:
        return ((self.hidden_size,),)

    def _extra_carry(self, batch: int, like: Tensor) -> Carry:
        return (like.new_zeros(batch),)  # the sum of rho_t over the valid steps

    def _finish(self, extras: list[Carry], steps_taken: Tensor) -> None:
        total = torch.stack([ponder.sum() for (ponder,) in extras]).sum()
        self.ponder_cost = self.time_penalty * total / steps_taken.sum().clamp(min=1)
