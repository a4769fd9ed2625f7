"""Clockwork RNN (Koutník, Greff, Gomez, Schmidhuber, ICML 2014)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._buffers import DerivedBuffers
from ..checks import fail
from ._base import Carry, RecurrentCell, RecurrentLayer, init_uniform

__all__ = ["CWRNNState", "ClockworkRNN"]


class CWRNNState(NamedTuple):
    """State of a [`ClockworkRNN`][freqnn.baselines.clockwork.ClockworkRNN].

    Attributes
    ----------
    h : Tensor [shape=(L, B, H)]
        Hidden state of each layer.
    step : Tensor [shape=(B,)], int64
        Steps taken so far (0 before the first): the clock that decides which modules run.
    """

    h: Tensor
    step: Tensor


#: The longest module period (the clock counts steps in int64).
MAX_PERIOD = 2**62


def _periods(periods: int | Sequence[int]) -> tuple[int, ...]:
    """The module periods from the ``periods`` argument (see
    [`ClockworkRNN`][freqnn.baselines.clockwork.ClockworkRNN])."""
    values: object = periods
    if isinstance(periods, int) and not isinstance(periods, bool):
        values = tuple(2**i for i in range(periods))
    valid = (
        isinstance(values, Sequence)
        and len(values) > 0
        and all(isinstance(p, int) and not isinstance(p, bool) and p >= 1 for p in values)
        and all(a < b for a, b in itertools.pairwise(values))
    )
    if not valid:
        fail("periods", "a positive int g or a strictly increasing sequence of positive ints",
             repr(periods))
    if max(values) > MAX_PERIOD:  # type: ignore[call-overload]
        # ClockworkRNN(periods=64) failed with "Overflow when unpacking long long"
        fail("periods", "module periods at most 2**62 (int64 step counters; an int g <= 63)",
             repr(periods))
    return tuple(values)  # type: ignore[arg-type]


class ClockworkCell(DerivedBuffers, RecurrentCell):
    """One clockwork layer: g modules of k = H / g units, module i with period T_i."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        periods: tuple[int, ...],
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        g = len(periods)
        k = hidden_size // g
        self.hidden_size = hidden_size
        self.module_size = k
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size, **kw))
        self.bias = nn.Parameter(torch.empty(hidden_size, **kw))
        # module i reads the modules j >= i (periods increase): the block row i of W_H
        self.weight_hh = nn.ParameterList(
            nn.Parameter(torch.empty(k, (g - i) * k, **kw)) for i in range(g)
        )
        self.periods = periods
        self.register_buffer(
            "unit_periods", torch.empty(hidden_size, dtype=torch.long, device=device),
            persistent=False,
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.fill_buffers()
        init_uniform(self.hidden_size, self.weight_ih, self.bias, *self.weight_hh)

    @torch.no_grad()
    def fill_buffers(self) -> None:
        """The period of every unit, ``unit_periods`` (H,), from the module periods."""
        periods = torch.tensor(self.periods, device="cpu").repeat_interleave(self.module_size)
        self.unit_periods.copy_(periods)

    def project(self, x: Tensor, clock: Tensor | None) -> Tensor:
        return F.linear(x, self.weight_ih, self.bias)

    def recurrent_weight(self) -> Tensor:
        """The block upper-triangular W_H (H, H); the blocks below the diagonal are zero."""
        H = self.hidden_size
        return torch.cat([F.pad(w, (H - w.shape[1], 0)) for w in self.weight_hh])

    def step(
        self, gx: Tensor, weight: Tensor, carry: Carry, clock: Tensor | None
    ) -> tuple[Tensor, Carry]:
        (h,) = carry
        assert clock is not None
        candidate = torch.tanh(torch.addmm(gx, h, weight.t()))
        # module i runs at the steps t with t mod T_i = 0; the others keep their state
        active = torch.remainder(clock.unsqueeze(1), self.unit_periods) == 0
        h = torch.where(active, candidate, h)
        return h, (h,)


class ClockworkRNN(RecurrentLayer):
    r"""Clockwork RNN (J. Koutník, K. Greff, F. Gomez, J. Schmidhuber, "A Clockwork RNN",
    ICML 2014).

    The hidden state of each layer is split into g modules of equal size k = H / g, module i
    with clock period T_i (T_1 < ... < T_g). At step t (0, 1, 2, ... counted from the start
    of the stream) the modules with t mod T_i = 0 are updated and the others keep their value:

    $$
    h_t^{(i)} = \begin{cases}
        \tanh\big(W_H^{(i)} h_{t-1} + W_I^{(i)} x_t + b^{(i)}\big) & t \bmod T_i = 0 \\
        h_{t-1}^{(i)} & \text{otherwise}
    \end{cases}
    $$

    W_H is block upper-triangular: module i reads the modules j >= i, the slower ones and
    itself (slower-to-faster connections); W_I and b are full. The output is h_t (the paper's
    output layer is the read-out after the layer).

    Parameters
    ----------
    input_size
        As ``torch.nn.RNN``.
    hidden_size
        As ``torch.nn.RNN``; ``hidden_size`` must be a multiple of g.
    num_layers
        As ``torch.nn.RNN``.
    periods : int or sequence of int
        The module periods: an int g gives the paper's exponential clock 1, 2, 4, ...,
        2^(g-1); a sequence gives them explicitly (strictly increasing). Default 4 modules.
    batch_first
        As ``torch.nn.RNN``.
    dropout
        As ``torch.nn.RNN``.
    bidirectional
        As ``torch.nn.RNN``.
    device
        As ``torch.nn.RNN``.
    dtype
        As ``torch.nn.RNN``.

    Notes
    -----
    Choices where the paper leaves a detail open:

    * the first step of a stream is t = 0, so every module is updated by the first input (a
      module would otherwise output its zero initial state for T_i - 1 steps); the state
      carries the step count, so a stream in chunks runs the same clock as one pass, and a
      padded step does not advance it;
    * the activation is tanh, as in the paper's experiments;
    * every weight and bias is initialised U(-1/sqrt(H), 1/sqrt(H)) (``nn.RNN``'s rule; the
      paper does not give its initialisation);
    * only the blocks on and above the diagonal of W_H are parameters (``weight_hh[i]`` is
      block row i, shape (k, (g - i) k)), so the parameter count is the paper's.

    ``forward(x, state=None, *, lengths=None) -> (output, state)``: see
    [`freqnn.baselines.RecurrentLayer`][freqnn.baselines.RecurrentLayer]; the state is a
    [`CWRNNState`][freqnn.baselines.clockwork.CWRNNState].
    """

    state_type = CWRNNState
    clock_dtype = torch.int64

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        periods: int | Sequence[int] = 4,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(input_size, hidden_size, num_layers, batch_first=batch_first,
                         dropout=dropout, bidirectional=bidirectional)
        self.periods = _periods(periods)
        if hidden_size % len(self.periods):
            fail("hidden_size", f"a multiple of the number of modules g={len(self.periods)}",
                 repr(hidden_size))
        self._build_cells(lambda n: ClockworkCell(n, hidden_size, self.periods, device, dtype))

    @staticmethod
    def parameter_count(input_size: int, hidden_size: int, num_layers: int = 1, *,
                        periods: int | Sequence[int] = 4, **options: Any) -> int:
        """Parameters of a model of these sizes: per layer H (N_l + 1) + k^2 g (g + 1) / 2."""
        g = len(_periods(periods))
        k = hidden_size // g
        return sum(hidden_size * (n + 1) + k * k * g * (g + 1) // 2
                   for n in RecurrentLayer.cell_input_sizes(input_size, hidden_size, num_layers,
                                                            options))

    @staticmethod
    def hidden_size_step(*, periods: int | Sequence[int] = 4, **options: Any) -> int:
        """Hidden sizes must be multiples of this (g)."""
        return len(_periods(periods))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, periods={self.periods}"

    def _state_shapes(self) -> tuple[tuple[int, ...], ...]:
        return ((self.hidden_size,),)

    def _clock(self, start: Tensor, steps: int, mask: Tensor | None, **kwargs: Any
               ) -> tuple[Tensor, Tensor]:
        index = start.unsqueeze(0) + torch.arange(steps, device=start.device).unsqueeze(1)
        taken = steps if mask is None else mask.sum(0)
        return index, start + taken
