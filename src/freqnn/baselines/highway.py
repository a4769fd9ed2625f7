"""Recurrent Highway Network (Zilly, Srivastava, Koutník, Schmidhuber, ICML 2017)."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._base import Carry, RecurrentCell, RecurrentLayer, check_positive_int, init_uniform

__all__ = ["RHN", "RHNState"]

#: initial transform-gate bias (see the RHN docstring)
TRANSFORM_BIAS = -2.0


class RHNState(NamedTuple):
    """State of an [`RHN`][freqnn.baselines.highway.RHN].

    Attributes
    ----------
    h : Tensor [shape=(L, B, H)]
        s_t of each layer: the last micro-layer's output, also the layer's output.
    """

    h: Tensor


class RHNCell(RecurrentCell):
    """One RHN layer: ``depth`` highway micro-layers per time step, the input entering the
    first."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        depth: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        H = hidden_size
        self.hidden_size = H
        # rows: block input h (W_H), transform gate t (W_T)
        self.weight_ih = nn.Parameter(torch.empty(2 * H, input_size, **kw))
        # R_{H_l}, R_{T_l} and b_{H_l}, b_{T_l} of micro-layer l = 1 .. depth
        self.weight_hh = nn.Parameter(torch.empty(depth, 2 * H, H, **kw))
        self.bias = nn.Parameter(torch.empty(depth, 2 * H, **kw))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_uniform(self.hidden_size, self.weight_ih, self.weight_hh, self.bias)
        with torch.no_grad():
            self.bias[:, self.hidden_size:] = TRANSFORM_BIAS

    def project(self, x: Tensor, clock: Tensor | None) -> Tensor:
        return F.linear(x, self.weight_ih)

    def step(
        self, gx: Tensor, weight: Tensor, carry: Carry, clock: Tensor | None
    ) -> tuple[Tensor, Carry]:
        (s,) = carry
        for layer in range(weight.shape[0]):
            pre = torch.addmm(self.bias[layer], s, weight[layer].t())
            if layer == 0:
                pre = pre + gx
            h, t = pre.chunk(2, dim=1)
            t = torch.sigmoid(t)
            # coupled carry gate c = 1 - t
            s = torch.tanh(h) * t + s * (1 - t)
        return s, (s,)


class RHN(RecurrentLayer):
    r"""Recurrent Highway Network (J. G. Zilly, R. K. Srivastava, J. Koutník, J. Schmidhuber,
    "Recurrent Highway Networks", ICML 2017), with the coupled carry gate c = 1 - t.

    Each time step runs ``depth`` highway micro-layers l = 1 .. d; the input enters the first:

    $$
    \begin{aligned}
    h_t^{[l]} &= \tanh\big(W_H x_t \mathbb{1}_{l=1} + R_{H_l} s_t^{[l-1]} + b_{H_l}\big) \\
    t_t^{[l]} &= \sigma\big(W_T x_t \mathbb{1}_{l=1} + R_{T_l} s_t^{[l-1]} + b_{T_l}\big) \\
    s_t^{[l]} &= h_t^{[l]} \odot t_t^{[l]} + s_t^{[l-1]} \odot (1 - t_t^{[l]})
    \end{aligned}
    $$

    with s_t^{[0]} = s_{t-1}^{[d]}; the output and the state are s_t^{[d]}.

    Parameters
    ----------
    input_size
        As ``torch.nn.RNN``.
    hidden_size
        As ``torch.nn.RNN``.
    num_layers
        As ``torch.nn.RNN`` (``num_layers`` stacks RHN layers; ``depth`` is the
        recurrence depth inside one layer).
    depth : int
        Recurrence depth d (micro-layers per step), default 4 as in the SFM paper's table.
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

    * weights and the block biases b_H are initialised U(-1/sqrt(H), 1/sqrt(H)) (``nn.RNN``'s
      rule); the transform-gate biases b_T start at -2: negative, as for highway networks
      (Srivastava, Greff, Schmidhuber 2015), so that a micro-layer starts close to carrying
      its state;
    * the input has no bias of its own (the micro-layer biases cover it).

    ``forward(x, state=None, *, lengths=None) -> (output, state)``: see
    [`freqnn.baselines.RecurrentLayer`][freqnn.baselines.RecurrentLayer]; the state is an
    [`RHNState`][freqnn.baselines.highway.RHNState].
    """

    state_type = RHNState

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        depth: int = 4,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(input_size, hidden_size, num_layers, batch_first=batch_first,
                         dropout=dropout, bidirectional=bidirectional)
        self.depth = check_positive_int("depth", depth)
        self._build_cells(lambda n: RHNCell(n, hidden_size, depth, device, dtype))

    @staticmethod
    def parameter_count(input_size: int, hidden_size: int, num_layers: int = 1, *,
                        depth: int = 4, **options: Any) -> int:
        """Parameters: per layer 2 H N_l input weights and d (2 H^2 + 2 H) recurrent ones."""
        H = hidden_size
        return sum(2 * H * n + depth * 2 * H * (H + 1)
                   for n in RecurrentLayer.cell_input_sizes(input_size, H, num_layers, options))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, depth={self.depth}"

    def _state_shapes(self) -> tuple[tuple[int, ...], ...]:
        return ((self.hidden_size,),)
