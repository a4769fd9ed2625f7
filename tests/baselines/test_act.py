"""ACTRNN against a per-sequence reference of Graves (2016)'s halting rule, and its ponder
cost."""

from __future__ import annotations

import torch
from torch import nn

from freqnn.baselines import ACTRNN

from .conftest import N, build, random_state

EPS = 0.01


def gru(cell, x_with_flag: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """nn.GRUCell's equations, one sequence."""
    H = cell.hidden_size
    gi = cell.weight_ih @ x_with_flag + cell.bias_ih
    gh = cell.weight_hh @ s + cell.bias_hh
    r = torch.sigmoid(gi[:H] + gh[:H])
    z = torch.sigmoid(gi[H: 2 * H] + gh[H: 2 * H])
    n = torch.tanh(gi[2 * H:] + r * gh[2 * H:])
    return (1 - z) * n + z * s


@torch.no_grad()
def reference(model: ACTRNN, x: torch.Tensor, state, lengths: list[int]):
    """Sequence by sequence, a while loop over ponder steps with scalar halting sums. Returns
    outputs, final h per layer, the ponder cost (time_penalty * mean rho over valid steps,
    summed over layers) and the number of ponder steps N(t) of every valid step."""
    T, B, _ = x.shape
    H = model.hidden_size
    layer_input, finals, rho_total, counts = x, [], 0.0, []
    for layer, cell in enumerate(model.cells):
        h = state.h[layer].clone()
        outputs = torch.zeros(T, B, H, dtype=x.dtype)
        for b in range(B):
            for t in range(lengths[b]):
                s, halts, states = h[b], [], []
                while True:
                    flag = torch.tensor([1.0 if not states else 0.0], dtype=x.dtype)
                    s = gru(cell, torch.cat([layer_input[t, b], flag]), s)
                    states.append(s)
                    halts.append(float(torch.sigmoid(cell.weight_halt[0] @ s
                                                     + cell.bias_halt[0])))
                    if sum(halts) >= 1 - EPS or len(states) == model.max_ponder:
                        break
                remainder = 1 - sum(halts[:-1])
                weights = [*halts[:-1], remainder]
                h[b] = sum(p * s_n for p, s_n in zip(weights, states, strict=True))
                outputs[t, b] = h[b]
                rho_total += len(states) + remainder
                counts.append(len(states))
        finals.append(h)
        layer_input = outputs
    cost = model.time_penalty * rho_total / max(sum(lengths), 1)
    return layer_input, torch.stack(finals), cost, counts


def test_matches_the_reference_with_padding() -> None:
    model = build("act", num_layers=2)
    x = torch.randn(6, 3, N, dtype=torch.float64)
    state = random_state(model, 3)
    lengths = [6, 4, 1]
    out, final = model(x, state, lengths=torch.tensor(lengths))
    ref_out, ref_h, ref_cost, counts = reference(model, x, state, lengths)
    assert len(set(counts)) > 1  # sequences and steps halt after different ponder steps
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(final.h, ref_h, rtol=1e-10, atol=1e-10)
    assert model.ponder_cost.dim() == 0 and model.ponder_cost.requires_grad
    assert abs(model.ponder_cost.item() - ref_cost) < 1e-10


def test_ponder_steps_vary_and_reach_the_limit() -> None:
    """Steps halt before and at the limit M; without halting every step costs M + 1."""
    model = build("act")
    x = 3.0 * torch.randn(10, 4, N, dtype=torch.float64)
    _, _, _, counts = reference(model, x, random_state(model, 4), [10] * 4)
    assert min(counts) < model.max_ponder and model.max_ponder in counts
    with torch.no_grad():
        model.cells[0].bias_halt.fill_(-30.0)  # never halts: always M steps, R = 1
        model(x)
    assert abs(model.ponder_cost.item() - model.time_penalty * (model.max_ponder + 1)) < 1e-9


def test_one_ponder_step_is_a_gru_with_the_flag_as_bias() -> None:
    model = ACTRNN(N, 5, max_ponder=1, time_penalty=0.5, dtype=torch.float64)
    cell = model.cells[0]
    gru_ref = nn.GRU(N, 5, dtype=torch.float64)
    with torch.no_grad():
        gru_ref.weight_ih_l0.copy_(cell.weight_ih[:, :N])
        gru_ref.bias_ih_l0.copy_(cell.bias_ih + cell.weight_ih[:, N])
        gru_ref.weight_hh_l0.copy_(cell.weight_hh)
        gru_ref.bias_hh_l0.copy_(cell.bias_hh)
    x = torch.randn(7, 2, N, dtype=torch.float64)
    out, state = model(x)
    expected, h_n = gru_ref(x)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(state.h, h_n, rtol=1e-12, atol=1e-12)
    # N(t) = 1 and R(t) = 1 at every step
    assert model.ponder_cost.item() == 0.5 * 2.0


def test_ponder_cost_has_gradients_and_follows_the_last_forward() -> None:
    model = build("act")
    assert model.ponder_cost is None
    model(torch.randn(5, 2, N, dtype=torch.float64))
    first = model.ponder_cost
    first.backward()
    assert model.cells[0].weight_halt.grad.abs().sum() > 0
    model(torch.randn(3, 2, N, dtype=torch.float64), lengths=torch.tensor([0, 0]))
    assert model.ponder_cost.item() == 0.0

