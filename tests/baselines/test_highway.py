"""RHN against a per-step reference written from Zilly et al. (2017)."""

from __future__ import annotations

import torch

from freqnn.baselines import RHN

from .conftest import N, build, random_state


@torch.no_grad()
def reference(model: RHN, x: torch.Tensor, state):
    """Micro-layer by micro-layer, one sequence at a time, with explicit W_H, W_T, R, b."""
    T, B, _ = x.shape
    H = model.hidden_size
    layer_input, finals = x, []
    for layer, cell in enumerate(model.cells):
        W_H, W_T = cell.weight_ih[:H], cell.weight_ih[H:]
        s = state.h[layer].clone()
        outputs = torch.zeros(T, B, H, dtype=x.dtype)
        for t in range(T):
            for n in range(B):
                s_l = s[n].clone()
                for micro in range(model.depth):
                    R_H, R_T = cell.weight_hh[micro, :H], cell.weight_hh[micro, H:]
                    b_H, b_T = cell.bias[micro, :H], cell.bias[micro, H:]
                    x_part = (W_H @ layer_input[t, n], W_T @ layer_input[t, n]) if micro == 0 \
                        else (0.0, 0.0)
                    h = torch.tanh(x_part[0] + R_H @ s_l + b_H)
                    t_gate = torch.sigmoid(x_part[1] + R_T @ s_l + b_T)
                    c_gate = 1 - t_gate
                    s_l = h * t_gate + s_l * c_gate
                s[n] = s_l
            outputs[t] = s
        finals.append(s)
        layer_input = outputs
    return layer_input, torch.stack(finals)


def test_matches_the_reference() -> None:
    model = build("rhn", num_layers=2)
    x = torch.randn(7, 3, N, dtype=torch.float64)
    state = random_state(model, 3)
    out, final = model(x, state)
    ref_out, ref_h = reference(model, x, state)
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(final.h, ref_h, rtol=1e-10, atol=1e-10)


def test_transform_gates_start_closed() -> None:
    model = RHN(2, 8, depth=3)
    bias = model.cells[0].bias
    assert torch.all(bias[:, 8:] == -2.0)
    assert bias[:, :8].abs().max() <= 8**-0.5 and bias[:, :8].std() > 0


def test_depth_one_is_a_single_highway_step() -> None:
    model = RHN(N, 5, depth=1, dtype=torch.float64)
    x = torch.randn(1, 2, N, dtype=torch.float64)
    out, _ = model(x)
    cell = model.cells[0]
    pre = x[0] @ cell.weight_ih.t() + cell.bias[0]
    # from s = 0: s_1 = tanh(h) * t
    expected = torch.tanh(pre[:, :5]) * torch.sigmoid(pre[:, 5:])
    torch.testing.assert_close(out[0], expected, rtol=1e-12, atol=1e-12)
