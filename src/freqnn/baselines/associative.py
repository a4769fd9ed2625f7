"""Associative LSTM (Danihelka, Wayne, Uria, Kalchbrenner, Graves, ICML 2016)."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import fail
from ._base import Carry, RecurrentCell, RecurrentLayer, check_positive_int, init_uniform

__all__ = ["AssociativeLSTM", "AssociativeLSTMState", "bound"]


class AssociativeLSTMState(NamedTuple):
    """State of an [`AssociativeLSTM`][freqnn.baselines.associative.AssociativeLSTM].

    Attributes
    ----------
    h : Tensor [shape=(L, B, H)]
        Output of each layer: the real parts of its H / 2 complex units, then the imaginary
        parts.
    re, im : Tensor [shape=(L, B, copies, H / 2)]
        Real and imaginary parts of the memory c_s of each copy s.
    """

    h: Tensor
    re: Tensor
    im: Tensor


def bound(re: Tensor, im: Tensor) -> tuple[Tensor, Tensor]:
    """The paper's bound(): each complex number divided by max(1, |z|), so |z| <= 1.

    Written as sqrt(max(1, |z|^2)) so that the gradient is finite at z = 0 too.
    """
    d = torch.sqrt(torch.clamp(re * re + im * im, min=1.0))
    return re / d, im / d


class AssociativeCell(RecurrentCell):
    """One Associative LSTM layer with ``copies`` permuted copies of its complex memory."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        copies: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.hidden_size = hidden_size
        self.units = units = hidden_size // 2
        # rows: real gates g_f, g_i, g_o (units each), then the complex key r_i, key r_o and
        # value u, each as its real parts then its imaginary parts (2 units each)
        self.weight_ih = nn.Parameter(torch.empty(9 * units, input_size, **kw))
        self.weight_hh = nn.Parameter(torch.empty(9 * units, hidden_size, **kw))
        self.bias = nn.Parameter(torch.empty(9 * units, **kw))
        # P_s: a fixed random permutation of the complex units per copy (not trained)
        self.register_buffer(
            "permutations", torch.empty(copies, units, dtype=torch.long, device=device)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """New random permutations (drawn on the CPU's generator, whatever the device), then
        ``nn.LSTM``'s uniform weights."""
        copies, units = self.permutations.shape
        with torch.no_grad():
            self.permutations.copy_(
                torch.stack([torch.randperm(units, device="cpu") for _ in range(copies)])
            )
        init_uniform(self.hidden_size, self.weight_ih, self.weight_hh, self.bias)

    def project(self, x: Tensor, clock: Tensor | None) -> Tensor:
        return F.linear(x, self.weight_ih, self.bias)

    def step(
        self, gx: Tensor, weight: Tensor, carry: Carry, clock: Tensor | None
    ) -> tuple[Tensor, Carry]:
        h, c_re, c_im = carry
        n = self.units
        pre = torch.addmm(gx, h, weight.t())
        g_f, g_i, g_o = torch.sigmoid(pre[:, : 3 * n]).chunk(3, dim=1)
        # r_i, r_o, u as (B, 3, n) real and imaginary parts, bounded together
        z = pre[:, 3 * n:].view(-1, 3, 2, n)
        re, im = bound(z[:, :, 0], z[:, :, 1])
        # the keys r_i, r_o of every copy: (B, 2, copies, n)
        key_re, key_im = re[:, :2, self.permutations], im[:, :2, self.permutations]
        v_re, v_im = (g_i * re[:, 2]).unsqueeze(1), (g_i * im[:, 2]).unsqueeze(1)
        f = g_f.unsqueeze(1)
        c_re = f * c_re + key_re[:, 0] * v_re - key_im[:, 0] * v_im
        c_im = f * c_im + key_re[:, 0] * v_im + key_im[:, 0] * v_re
        read_re = (key_re[:, 1] * c_re - key_im[:, 1] * c_im).mean(dim=1)
        read_im = (key_re[:, 1] * c_im + key_im[:, 1] * c_re).mean(dim=1)
        read_re, read_im = bound(read_re, read_im)
        h = torch.cat([g_o * read_re, g_o * read_im], dim=1)
        return h, (h, c_re, c_im)


class AssociativeLSTM(RecurrentLayer):
    r"""Associative LSTM (I. Danihelka, G. Wayne, B. Uria, N. Kalchbrenner, A. Graves,
    "Associative Long Short-Term Memory", ICML 2016).

    An LSTM whose memory is a holographic associative array of complex numbers, stored in
    ``copies`` redundant copies, each read and written with its own fixed permutation P_s of
    the keys (the noise of the retrieval averages out over the copies):

    $$
    \begin{aligned}
    \hat g_f, \hat g_i, \hat g_o, \hat r_i, \hat r_o, \hat u
        &= W_{xh} x_t + W_{hh} h_{t-1} + b_h \\
    g_f, g_i, g_o = \sigma(\hat g_f, \hat g_i, \hat g_o), \quad
    r_i, r_o, u &= \mathrm{bound}(\hat r_i, \hat r_o, \hat u) \\
    c_{s,t} &= g_f \odot c_{s,t-1} + (P_s r_i) \circledast (g_i \odot u) \\
    h_t &= g_o \odot \mathrm{bound}\Big(\frac{1}{N_{copies}} \sum_s (P_s r_o)
        \circledast c_{s,t}\Big)
    \end{aligned}
    $$

    where the keys r_i, r_o, the value u, the memories c_s and h_t are complex vectors of
    H / 2 units, ⊛ is the elementwise complex product and bound(z) = z / max(1, |z|).

    Parameters
    ----------
    input_size
        As ``torch.nn.LSTM``.
    hidden_size
        As ``torch.nn.LSTM``; ``hidden_size`` counts real outputs (H / 2 complex units,
        real parts first), so it must be even.
    num_layers
        As ``torch.nn.LSTM``.
    copies : int
        Redundant copies of the memory, default 4 as in the SFM paper's table.
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
    Choices where the paper leaves a detail open:

    * the gates g_f, g_i, g_o are real, one per complex unit, and scale its real and imaginary
      parts alike (a gate changes the modulus of a stored value, not its phase), so the
      pre-activations are 3 H / 2 gates and 3 complex vectors of H / 2: 9 H / 2 rows;
    * every copy, the first included, has its own random permutation (``permutations``, a
      buffer drawn from torch's CPU generator, saved in the state dict;
      [`reset_parameters`][freqnn.AssociativeLSTM.reset_parameters]
      redraws it before the weights, as construction does, so that a model built on the meta
      device and reset equals one built eagerly from the same seed);
    * weights and biases are initialised U(-1/sqrt(H), 1/sqrt(H)) (``nn.LSTM``'s rule);
    * bound() divides by sqrt(max(1, |z|^2)), equal to max(1, |z|), whose gradient stays finite
      at z = 0.

    ``forward(x, state=None, *, lengths=None) -> (output, state)``: see
    [`freqnn.baselines.RecurrentLayer`][freqnn.baselines.RecurrentLayer]; the state is an
    [`AssociativeLSTMState`][freqnn.baselines.associative.AssociativeLSTMState].
    """

    state_type = AssociativeLSTMState

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        copies: int = 4,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(input_size, hidden_size, num_layers, batch_first=batch_first,
                         dropout=dropout, bidirectional=bidirectional)
        if hidden_size % 2:
            fail("hidden_size", "an even int (H / 2 complex units)", repr(hidden_size))
        self.copies = check_positive_int("copies", copies)
        self._build_cells(lambda n: AssociativeCell(n, hidden_size, copies, device, dtype))

    @staticmethod
    def parameter_count(input_size: int, hidden_size: int, num_layers: int = 1,
                        **options: Any) -> int:
        """Parameters: per layer 9 (H / 2) (N_l + H + 1) (the copies add none)."""
        H = hidden_size
        sizes = RecurrentLayer.cell_input_sizes(input_size, H, num_layers, options)
        return sum(9 * (H // 2) * (n + H + 1) for n in sizes)

    @staticmethod
    def hidden_size_step(**options: Any) -> int:
        return 2

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, copies={self.copies}"

    def _state_shapes(self) -> tuple[tuple[int, ...], ...]:
        memory = (self.copies, self.hidden_size // 2)
        return ((self.hidden_size,), memory, memory)
