"""ClockworkRNN against a per-step, per-module reference written from Koutník et al. (2014)."""

from __future__ import annotations

import torch

from freqnn.baselines import ClockworkRNN

from .conftest import N, build, random_state


def reference(model: ClockworkRNN, x: torch.Tensor, state) -> tuple[torch.Tensor, list]:
    """Module by module: module i (k units, period T_i) is recomputed at the steps t with
    t mod T_i = 0 from the input and the modules j >= i; the others keep their value."""
    periods, k = model.periods, model.hidden_size // len(model.periods)
    g = len(periods)
    T, B, _ = x.shape
    layer_input = x
    finals = []
    for layer, cell in enumerate(model.cells):
        h = state.h[layer].clone()
        outputs = torch.zeros(T, B, model.hidden_size, dtype=x.dtype)
        for t in range(T):
            new = h.clone()
            for b in range(B):
                step = int(state.step[b]) + t
                for i in range(g):
                    if step % periods[i]:
                        continue
                    rows = slice(i * k, (i + 1) * k)
                    total = cell.weight_ih[rows] @ layer_input[t, b] + cell.bias[rows]
                    for j in range(i, g):
                        block = cell.weight_hh[i][:, (j - i) * k:(j - i + 1) * k]
                        total = total + block @ h[b, j * k:(j + 1) * k]
                    new[b, rows] = torch.tanh(total)
            h = new
            outputs[t] = h
        finals.append(h)
        layer_input = outputs
    return layer_input, finals


def test_matches_the_reference() -> None:
    model = build("cwrnn", num_layers=2)
    x = torch.randn(12, 3, N, dtype=torch.float64)
    state = random_state(model, 3)
    out, final = model(x, state)
    ref_out, ref_h = reference(model, x, state)
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(final.h, torch.stack(ref_h), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(final.step, state.step + 12, rtol=0, atol=0)


def test_slow_modules_hold_their_value_between_ticks() -> None:
    model = build("cwrnn")  # periods 1, 2, 5 of 2 units each
    out, _ = model(torch.randn(11, 1, N, dtype=torch.float64))
    slow = out[:, 0, 4:]
    for t in range(1, 11):
        assert torch.equal(slow[t], slow[t - 1]) == (t % 5 != 0)
    middle = out[:, 0, 2:4]
    assert all(torch.equal(middle[t], middle[t - 1]) for t in range(1, 11, 2))


def test_parameters_are_the_blocks_on_and_above_the_diagonal() -> None:
    model = ClockworkRNN(2, 6, periods=3)
    assert model.periods == (1, 2, 4)
    w = model.cells[0].recurrent_weight()
    assert w.shape == (6, 6)
    below = torch.ones(6, 6, dtype=torch.bool).tril(-1) & ~torch.block_diag(
        *[torch.ones(2, 2, dtype=torch.bool)] * 3)
    assert torch.all(w[below] == 0) and torch.all(w[~below] != 0)
    # the paper's count: H (N + 1) + k^2 g (g + 1) / 2
    assert ClockworkRNN.parameter_count(2, 6, periods=3) == 6 * 3 + 4 * 6 == sum(
        p.numel() for p in model.parameters())


def test_the_clock_continues_across_chunks_and_skips_padding() -> None:
    model = build("cwrnn")
    x = torch.randn(7, 2, N, dtype=torch.float64)
    _, state = model(x, lengths=torch.tensor([7, 3]))
    assert state.step.tolist() == [7, 3]
    out, _ = model(x[:4], state)
    whole, _ = model(torch.cat([x[:3, 1:], x[:4, 1:]]))
    torch.testing.assert_close(out[:, 1], whole[3:, 0], rtol=1e-12, atol=1e-12)
