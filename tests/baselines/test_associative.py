"""AssociativeLSTM against a per-step reference in complex arithmetic, written from
Danihelka et al. (2016)."""

from __future__ import annotations

import torch

from freqnn.baselines import AssociativeLSTM

from .conftest import N, build, random_state


def bound(z: torch.Tensor) -> torch.Tensor:
    return z / torch.clamp(z.abs(), min=1.0)


@torch.no_grad()
def reference(model: AssociativeLSTM, x: torch.Tensor, state):
    """Complex tensors throughout; one sequence and one copy at a time."""
    T, B, _ = x.shape
    H, n = model.hidden_size, model.hidden_size // 2
    layer_input, finals = x, []
    for layer, cell in enumerate(model.cells):
        h = state.h[layer].clone()
        c = torch.complex(state.re[layer], state.im[layer]).clone()  # (B, copies, n)
        outputs = torch.zeros(T, B, H, dtype=x.dtype)
        for t in range(T):
            for b in range(B):
                pre = cell.weight_ih @ layer_input[t, b] + cell.weight_hh @ h[b] + cell.bias
                g_f, g_i, g_o = torch.sigmoid(pre[: 3 * n]).split(n)
                parts = pre[3 * n:].split(n)
                r_i = bound(torch.complex(parts[0], parts[1]))
                r_o = bound(torch.complex(parts[2], parts[3]))
                u = bound(torch.complex(parts[4], parts[5]))
                read = torch.zeros(n, dtype=c.dtype)
                for s in range(model.copies):
                    perm = cell.permutations[s]
                    c[b, s] = g_f * c[b, s] + r_i[perm] * (g_i * u)
                    read = read + r_o[perm] * c[b, s]
                out = g_o * bound(read / model.copies)
                h[b] = torch.cat([out.real, out.imag])
            outputs[t] = h
        finals.append((h, c))
        layer_input = outputs
    return layer_input, finals


def test_matches_the_reference() -> None:
    model = build("alstm", num_layers=2)
    x = 2.0 * torch.randn(7, 3, N, dtype=torch.float64)  # large enough that bound() acts
    state = random_state(model, 3)
    out, final = model(x, state)
    ref_out, ref_final = reference(model, x, state)
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(final.h, torch.stack([h for h, _ in ref_final]), rtol=1e-10,
                               atol=1e-10)
    memory = torch.stack([c for _, c in ref_final])
    torch.testing.assert_close(final.re, memory.real, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(final.im, memory.imag, rtol=1e-10, atol=1e-10)


def test_bound_limits_the_modulus_and_passes_small_values() -> None:
    from freqnn.baselines.associative import bound as lib_bound

    re = torch.tensor([3.0, 0.3, 0.0], dtype=torch.float64, requires_grad=True)
    im = torch.tensor([4.0, -0.4, 0.0], dtype=torch.float64, requires_grad=True)
    b_re, b_im = lib_bound(re, im)
    torch.testing.assert_close(b_re, torch.tensor([0.6, 0.3, 0.0], dtype=torch.float64))
    torch.testing.assert_close(b_im, torch.tensor([0.8, -0.4, 0.0], dtype=torch.float64))
    (b_re.sum() + b_im.sum()).backward()
    assert torch.isfinite(re.grad).all() and torch.isfinite(im.grad).all()


def test_permutations_are_buffers_per_copy_drawn_with_the_weights() -> None:
    torch.manual_seed(0)
    model = AssociativeLSTM(2, 16, copies=5)
    perms = model.cells[0].permutations.clone()
    assert perms.shape == (5, 8)
    assert all(sorted(p.tolist()) == list(range(8)) for p in perms)
    assert len({tuple(p.tolist()) for p in perms}) == 5
    assert "cells.0.permutations" in model.state_dict()
    # reset_parameters draws them again, in construction's order: the same seed, the same model
    weights = model.state_dict()
    torch.manual_seed(0)
    model.reset_parameters()
    assert torch.equal(model.cells[0].permutations, perms)
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
