"""The stock variant of the SFM cell (Zhang, Aggarwal & Qi, KDD 2017).

The authors' released stock-prediction layer (Keras) differs from the ICML SFM of
``docs/sfm.md`` in five ways: hard-sigmoid gates, the squared amplitude |S|^2 instead of |S|, an
output gate that does not see the amplitude, one shared amplitude read-out ``U_a`` over the
frequencies, and (in the model) a linear read-out of h. The hidden output has the size of the
number of states, M = D. One step, for one sequence, with hs the Keras hard sigmoid
``hs(x) = clamp(0.2 x + 0.5, 0, 1)`` (*not* ``torch.nn.functional.hardsigmoid``, slope 1/6)::

    f_ste = hs(W_ste z_{t-1} + V_ste x_t + b_ste)              (D)    state forget gate
    f_fre = hs(W_fre z_{t-1} + V_fre x_t + b_fre)              (K)    frequency forget gate
    f_t   = outer(f_ste, f_fre)                                (D, K)
    g_t   = hs(W_g z_{t-1} + V_g x_t + b_g)                    (D)    input gate
    i_t   = tanh(W_i z_{t-1} + V_i x_t + b_i)                  (D)    input modulation
    Re S_t = f_t * Re S_{t-1} + (g_t * i_t) outer cos(omega t)
    Im S_t = f_t * Im S_{t-1} + (g_t * i_t) outer sin(omega t)
    A_t   = Re S_t^2 + Im S_t^2                                (D, K) (no square root)
    a_t   = tanh(A_t U_a + b_a)                                (D)    U_a (K,), b_a (D,)
    o_t   = hs(W_o z_{t-1} + V_o x_t + b_o)                    (D)    does not see A_t
    z_t   = o_t * a_t                                          (D)

The released code uses omega_k = 2 pi k / K (freqnn's ``"paper"`` grid, the default here) and
the absolute step t = 1, 2, ... (freqnn's default time axis). The read-out ``p = W_p z_t + b_p``
belongs to the model head (``freqnn.models.SequenceModel``), not to the cell.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .cell import SFMCell
from .layer import SFM

__all__ = ["StockSFM", "StockSFMCell", "hard_sigmoid"]


def hard_sigmoid(x: Tensor) -> Tensor:
    """Keras' ``hard_sigmoid``: ``clamp(0.2 * x + 0.5, 0, 1)`` (0 below -2.5, 1 above 2.5).

    ``torch.nn.functional.hardsigmoid`` is a different function (slope 1/6, saturating at +-3).
    """
    return torch.clamp(0.2 * x + 0.5, 0.0, 1.0)


class StockSFMCell(SFMCell):
    r"""One layer of the KDD 2017 stock variant of SFM, stepped one time step per call.

    The equations are in the module docstring of ``freqnn.sfm.stock``. The affine maps are
    fused as in [`SFMCell`][freqnn.SFMCell]: ``weight_ih`` (4D + K, N), ``weight_hh`` (4D + K, D)
    and
    ``bias_ih`` (4D + K,) with rows ``ste (D) | g (D) | i (D) | fre (K) | o (D)``; the amplitude
    read-out is ``weight_a`` = U_a (K,) and ``bias_a`` = b_a (D,).
    ``paper_parameters`` gives them under the names of the equations.

    Parameters
    ----------
    input_size : int
        N, features of x_t.
    hidden_size : int
        M, size of z_t; must equal ``state_size`` (the variant's output is one value per state).
    state_size : int
        D, number of memory states.
    num_freqs : int
        K, frequencies per state.
    bias : bool
        Whether the affine maps have biases (b_ste, b_g, b_i, b_fre, b_o, b_a).
    frequencies : {"paper", "half", "dct"} or Tensor [shape=(K,)]
        Frequency grid in rad per unit of time; ``"paper"`` (2 pi k / K) is the released code's.
    learn_frequencies : bool
        Train the frequencies (stored unconstrained, used folded into [0, pi]; |S|^2 is unchanged
        by the fold, as |S| is for [`SFMCell`][freqnn.SFMCell]).

    Notes
    -----
    ``forward(x_t, state=None, t=None) -> (z_t, state)`` as [`SFMCell`][freqnn.SFMCell] (inherited,
    with
    its validation); the state is an [`freqnn.SFMState`][freqnn.SFMState] with ``phase=None``. Only
    a
    reference time loop exists (no fast path): autograd differentiates it. Initialisation
    (``reset_parameters``, inherited): every weight and bias uniform in +-1/sqrt(D) as in
    ``nn.LSTM``; the released Keras code's Glorot-uniform input weights, orthogonal recurrent
    weights and zero biases (b_ste = b_fre = 1) are not reproduced.
    """

    separate_state_size = False

    # ------------------------------------------------------------------ parameters
    def _gate_sizes(self) -> dict[str, int]:
        D, K = self.state_size, self.num_freqs
        return {"ste": D, "g": D, "i": D, "fre": K, "o": D}

    def _readout_shapes(self) -> tuple[tuple[int, ...], str, tuple[int, ...]]:
        return (self.num_freqs,), "bias_a", (self.state_size,)

    def _readout_parameters(self, out: dict[str, Tensor]) -> None:
        out["U_a"] = self.weight_a
        if self.bias_a is not None:
            out["b_a"] = self.bias_a

    # ------------------------------------------------------------------ equations
    def _step(
        self, carry: tuple[Tensor, ...], x_t: tuple[Tensor, ...]
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """One step of the equations of the module docstring: carry (z, re, im) at t - 1 and
        ``x_t`` = (V_* x_t + b_* (B, 4D + K), cos and sin of omega * t (B, K)) -> (z_t, carry
        at t). [`SFMCell.scan`][freqnn.SFMCell.scan] runs it over a sequence (a plain time
        loop differentiated by autograd, torch's scan operator under export)."""
        D, K = self.state_size, self.num_freqs
        gx_t, cos_t, sin_t = x_t
        z, re, im = carry
        ste, g, i, fre, o = torch.addmm(gx_t, z, self.weight_hh.t()).split([D, D, D, K, D], -1)
        f_t = hard_sigmoid(ste).unsqueeze(-1) * hard_sigmoid(fre).unsqueeze(-2)
        write = (hard_sigmoid(g) * torch.tanh(i)).unsqueeze(-1)
        re_new = f_t * re + write * cos_t.unsqueeze(-2)
        im_new = f_t * im + write * sin_t.unsqueeze(-2)
        A = re_new * re_new + im_new * im_new
        a_pre = torch.matmul(A, self.weight_a)
        if self.bias_a is not None:
            a_pre = a_pre + self.bias_a
        z_new = hard_sigmoid(o) * torch.tanh(a_pre)
        return z_new, (z_new, re_new, im_new)


class StockSFM(SFM):
    r"""Multi-layer KDD 2017 stock variant of SFM ([`StockSFMCell`][freqnn.StockSFMCell] layers).

    Same interface as [`freqnn.SFM`][freqnn.SFM] (``forward(x, state=None, *, times=None,
    lengths=None)``, states, batch-first, dropout between layers) except that there is no
    ``state_size``: the output of each layer has one value per memory state, D = M =
    ``hidden_size``.

    Parameters
    ----------
    input_size : int
        N, features per step.
    hidden_size : int
        M = D, memory states and size of the output z_t.
    num_freqs : int
        K, frequencies per state.
    num_layers : int
        Stacked layers; layer l > 0 reads the output of layer l - 1.
    bias
        As [`freqnn.SFM`][freqnn.SFM].
    batch_first
        As [`freqnn.SFM`][freqnn.SFM].
    dropout
        As [`freqnn.SFM`][freqnn.SFM].
    bidirectional
        As [`freqnn.SFM`][freqnn.SFM].
    frequencies
        As [`freqnn.SFM`][freqnn.SFM]; ``"paper"`` (2 pi k / K) is the released code's grid.
    learn_frequencies
        As [`freqnn.SFM`][freqnn.SFM].
    device
        As [`freqnn.SFM`][freqnn.SFM].
    dtype
        As [`freqnn.SFM`][freqnn.SFM].

    Notes
    -----
    Differences from [`freqnn.SFM`][freqnn.SFM] (``docs/sfm.md``): hard-sigmoid gates (Keras slope
    0.2), amplitude |S|^2, output o_t * tanh(A_t U_a + b_a) with an output gate that does not
    see A_t, and D = M. The state has ``re``, ``im`` of shape (L, B, M, K) and ``z`` (L, B, M).
    The paper's linear read-out is the model head (``freqnn.models`` arch ``"sfm-stock"``).
    """

    cell_type = StockSFMCell

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_freqs: int,
        num_layers: int = 1,
        *,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        frequencies: str | Tensor = "paper",
        learn_frequencies: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            input_size,
            hidden_size,
            hidden_size,
            num_freqs,
            num_layers,
            bias=bias,
            batch_first=batch_first,
            dropout=dropout,
            bidirectional=bidirectional,
            frequencies=frequencies,
            learn_frequencies=learn_frequencies,
            device=device,
            dtype=dtype,
        )
