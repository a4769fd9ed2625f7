"""PhasedLSTM against a per-step reference written from Neil, Pfeiffer & Liu (2016), and the
closed-phase property."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from freqnn.baselines import PhasedLSTM
from freqnn.baselines.phased import time_gate

from .conftest import N, build, random_state

TOL = {"rtol": 1e-10, "atol": 1e-10}


def gate(t: float, tau: float, s: float, r_on: float, alpha: float) -> float:
    """The paper's time gate of one unit at time t, in plain floats."""
    phi = ((t - s) % tau) / tau
    if phi < r_on / 2:
        return 2 * phi / r_on
    if phi < r_on:
        return 2 - 2 * phi / r_on
    return alpha * phi


@torch.no_grad()
def reference(model: PhasedLSTM, x: torch.Tensor, times: torch.Tensor, state):
    """Outputs (T, B, H) and final (h, c) per layer; ``times`` (T, B)."""
    T, B, _ = x.shape
    H = model.hidden_size
    sig = torch.sigmoid
    layer_input, finals = x, []
    for layer, cell in enumerate(model.cells):
        W_x = dict(zip("ifco", cell.weight_ih.split(H), strict=True))
        W_h = dict(zip("ifco", cell.weight_hh.split(H), strict=True))
        b = dict(zip("ifco", cell.bias.split(H), strict=True))
        w_ci, w_cf, w_co = cell.weight_ch
        h, c = state.h[layer].clone(), state.c[layer].clone()
        outputs = torch.zeros(T, B, H, dtype=x.dtype)
        for t in range(T):
            for n in range(B):
                xt, hp, cp = layer_input[t, n], h[n].clone(), c[n].clone()
                i = sig(W_x["i"] @ xt + W_h["i"] @ hp + w_ci * cp + b["i"])
                f = sig(W_x["f"] @ xt + W_h["f"] @ hp + w_cf * cp + b["f"])
                c_tilde = f * cp + i * torch.tanh(W_x["c"] @ xt + W_h["c"] @ hp + b["c"])
                o = sig(W_x["o"] @ xt + W_h["o"] @ hp + w_co * c_tilde + b["o"])
                h_tilde = o * torch.tanh(c_tilde)
                k = torch.tensor([
                    gate(float(times[t, n]), float(cell.period[j]), float(cell.shift[j]),
                         model.r_on, model.alpha) for j in range(H)], dtype=x.dtype)
                c[n] = k * c_tilde + (1 - k) * cp
                h[n] = k * h_tilde + (1 - k) * hp
            outputs[t] = h
        finals.append((h, c))
        layer_input = outputs
    return layer_input, finals


def test_matches_the_reference_with_irregular_times() -> None:
    model = build("plstm", num_layers=2)
    x = torch.randn(9, 3, N, dtype=torch.float64)
    times = 3.0 + torch.cumsum(torch.rand(3, 9, dtype=torch.float64) * 1.5, dim=1)
    state = random_state(model, 3)
    out, final = model(x, state, times=times)
    ref_out, ref_final = reference(model, x, times.t(), state)
    torch.testing.assert_close(out, ref_out, **TOL)
    torch.testing.assert_close(final.h, torch.stack([h for h, _ in ref_final]), **TOL)
    torch.testing.assert_close(final.c, torch.stack([c for _, c in ref_final]), **TOL)
    torch.testing.assert_close(final.time, times[:, -1], rtol=0, atol=0)


def test_default_times_continue_from_the_state() -> None:
    model = build("plstm")
    x = torch.randn(6, 2, N, dtype=torch.float64)
    state = random_state(model, 2)
    out, final = model(x, state)
    steps = state.time.unsqueeze(0) + torch.arange(1, 7, dtype=torch.float64).unsqueeze(1)
    ref_out, _ = reference(model, x, steps, state)
    torch.testing.assert_close(out, ref_out, **TOL)
    torch.testing.assert_close(final.time, state.time + 6, rtol=0, atol=0)
    # shared (T,) timestamps equal the same row for every sequence
    shared = torch.linspace(0.5, 9.0, 6, dtype=torch.float64)
    torch.testing.assert_close(model(x, times=shared)[0],
                               model(x, times=shared.expand(2, 6))[0], rtol=0, atol=0)


def test_time_gate_shape() -> None:
    tau = torch.tensor([10.0], dtype=torch.float64)
    shift = torch.tensor([1.0], dtype=torch.float64)
    t = 1.0 + 10.0 * torch.tensor([0.0, 0.05, 0.1, 0.15, 0.2, 0.6, 1.05], dtype=torch.float64)
    k = time_gate(t + 30.0, tau, shift, r_on=0.2, alpha=1e-3)[:, 0]
    expected = torch.tensor([0.0, 0.5, 1.0, 0.5, 0.2e-3, 0.6e-3, 0.5],
                            dtype=torch.float64)
    torch.testing.assert_close(k, expected, rtol=1e-12, atol=1e-12)
    # float32 parameters: the phase is still exact at a large timestamp
    k32 = time_gate(torch.tensor([1e9 + 1.5], dtype=torch.float64), tau.float(), shift.float(),
                    0.2, 0.0)
    assert k32.dtype == torch.float32 and math.isclose(float(k32), 0.5, rel_tol=1e-6)


def test_initialisation_of_period_and_shift() -> None:
    torch.manual_seed(0)
    model = PhasedLSTM(2, 400, period_range=(2.0, 200.0))
    tau, shift = model.cells[0].period.detach(), model.cells[0].shift.detach()
    assert tau.min() >= 2.0 and tau.max() <= 200.0
    logs = tau.log()
    # log-uniform: the mean log is the middle of the log range, both halves are populated
    assert abs(float(logs.mean()) - math.log(20.0)) < 0.25
    assert torch.all(shift >= 0) and torch.all(shift <= tau)


@torch.no_grad()
def closed_steps_unchanged(model: PhasedLSTM, x: torch.Tensor, times: torch.Tensor) -> int:
    """Step through the sequence one step at a time; assert that every unit whose gate is
    closed at a step keeps h and c exactly; return how many (unit, step) were closed."""
    state, closed = None, 0
    for t in range(x.shape[0]):
        _, new = model(x[t: t + 1], state, times=times[:, t: t + 1])
        if state is not None:
            for layer, cell in enumerate(model.cells):
                for b in range(x.shape[1]):
                    for j in range(model.hidden_size):
                        tau, s = float(cell.period[j]), float(cell.shift[j])
                        if ((float(times[b, t]) - s) % tau) / tau < model.r_on:
                            continue
                        closed += 1
                        assert new.h[layer, b, j] == state.h[layer, b, j]
                        assert new.c[layer, b, j] == state.c[layer, b, j]
        state = new
    return closed


@pytest.mark.numerics
@given(
    seed=st.integers(0, 2**16),
    steps=st.integers(2, 8),
    layers=st.integers(1, 2),
    r_on=st.floats(0.05, 0.9),
    gaps=st.lists(st.floats(0.01, 5.0), min_size=8, max_size=8),
)
def test_property_with_alpha_zero_closed_steps_leave_the_state_unchanged(
    seed: int, steps: int, layers: int, r_on: float, gaps: list[float]
) -> None:
    torch.manual_seed(seed)
    model = PhasedLSTM(N, 4, layers, r_on=r_on, alpha=0.0, period_range=(0.5, 20.0),
                       dtype=torch.float64)
    x = torch.randn(steps, 2, N, dtype=torch.float64)
    times = torch.tensor(gaps[:steps], dtype=torch.float64).cumsum(0).expand(2, steps) * (
        torch.tensor([[1.0], [1.7]], dtype=torch.float64))
    closed_steps_unchanged(model, x, times)


def test_the_closed_phase_check_is_not_vacuous() -> None:
    x = torch.randn(8, 2, N, dtype=torch.float64)
    times = torch.arange(1.0, 9.0, dtype=torch.float64).expand(2, 8)
    torch.manual_seed(3)
    model = PhasedLSTM(N, 4, r_on=0.2, alpha=0.0, period_range=(3.0, 10.0), dtype=torch.float64)
    assert closed_steps_unchanged(model, x, times) > 20
    model.alpha = 0.05  # with a leak, closed units move: the same check fails
    try:
        closed_steps_unchanged(model, x, times)
    except AssertionError:
        return
    raise AssertionError("closed units kept their state despite alpha > 0")


def test_eval_alpha_is_the_closed_leak_in_eval_mode() -> None:
    """eval() uses eval_alpha (0 by default, the authors' test mode); None keeps alpha."""
    x = torch.randn(30, 2, 3, dtype=torch.float64)
    model = PhasedLSTM(3, 4, r_on=0.2, alpha=0.05, period_range=(3.0, 10.0),
                       dtype=torch.float64)
    reference = PhasedLSTM(3, 4, r_on=0.2, alpha=0.0, period_range=(3.0, 10.0),
                           dtype=torch.float64)
    reference.load_state_dict(model.state_dict())
    train_out = model(x)[0]
    model.eval()
    torch.testing.assert_close(model(x)[0], reference(x)[0], rtol=0, atol=0)
    assert not torch.allclose(model(x)[0], train_out)
    model.eval_alpha = None
    torch.testing.assert_close(model(x)[0], train_out, rtol=0, atol=0)
    with pytest.raises(ValueError,
                       match="eval_alpha: expected a finite non-negative float, got -1"):
        model.eval_alpha = -1
