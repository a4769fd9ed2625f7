"""StockSFM (KDD 2017 stock variant) against its equations, streaming, padding and gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from freqnn.sfm.state import SFMState
from freqnn.sfm.stock import StockSFM, StockSFMCell, hard_sigmoid

N, D, K = 3, 4, 5


def make(**kw) -> StockSFM:
    module = StockSFM(N, D, K, dtype=torch.float64, **kw)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if "omega" not in name:
                param.normal_(0.0, 0.5)
    return module


def keras_hs(x: torch.Tensor) -> torch.Tensor:
    """Keras 2 ``hard_sigmoid``, written out piecewise."""
    out = 0.2 * x + 0.5
    out = torch.where(x < -2.5, torch.zeros_like(x), out)
    return torch.where(x > 2.5, torch.ones_like(x), out)


def reference_stock(
    p: dict[str, torch.Tensor], x: torch.Tensor, times: torch.Tensor
) -> torch.Tensor:
    """Outputs (T, B, D) of one layer from zero state, straight from the KDD 2017 equations:
    complex memory, one sequence and one step at a time, ``times`` (T, B) absolute."""
    T, B, _ = x.shape
    Dp, Kp = p["W_ste"].shape[0], p["W_fre"].shape[0]
    zero = torch.zeros((), dtype=x.dtype)

    def b(name: str) -> torch.Tensor:
        return p.get(name, zero)

    out = torch.zeros(T, B, Dp, dtype=x.dtype)
    for s in range(B):
        h = torch.zeros(Dp, dtype=x.dtype)
        S = torch.zeros(Dp, Kp, dtype=torch.complex128)
        for t in range(T):
            xt = x[t, s]
            ste = keras_hs(p["W_ste"] @ h + p["V_ste"] @ xt + b("b_ste"))
            fre = keras_hs(p["W_fre"] @ h + p["V_fre"] @ xt + b("b_fre"))
            gate = keras_hs(p["W_g"] @ h + p["V_g"] @ xt + b("b_g"))
            c = gate * torch.tanh(p["W_i"] @ h + p["V_i"] @ xt + b("b_i"))
            angle = p["omega"].to(torch.float64) * float(times[t, s])
            S = torch.outer(ste, fre) * S + torch.outer(c, torch.exp(1j * angle))
            A = (S.real**2 + S.imag**2).to(x.dtype)
            a = torch.tanh(A @ p["U_a"] + b("b_a"))
            o = keras_hs(p["W_o"] @ h + p["V_o"] @ xt + b("b_o"))
            h = o * a
            out[t, s] = h
    return out


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("use_times", [False, True])
def test_matches_reference_equations(bias: bool, use_times: bool) -> None:
    module = make(bias=bias, num_layers=2)
    T, B = 6, 3
    x = torch.randn(T, B, N, dtype=torch.float64)
    times = torch.cumsum(torch.rand(B, T, dtype=torch.float64) * 2 + 0.1, 1) if use_times else None
    out, state = module(x, times=times)
    ref_times = times.t() if use_times else torch.arange(1.0, T + 1).double()[:, None].expand(T, B)
    hidden = reference_stock(module.paper_parameters(0), x, ref_times)
    expected = reference_stock(module.paper_parameters(1), hidden, ref_times)
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=0)
    torch.testing.assert_close(state.z[0], hidden[-1], atol=1e-10, rtol=0)
    assert state.phase is None and state.re.shape == (2, B, D, K)
    # default grid is the released code's 2 pi k / K
    k = torch.arange(K, dtype=torch.float64)
    torch.testing.assert_close(module.cells[0].omega, 2 * math.pi * k / K)


def test_hard_sigmoid_is_keras_slope() -> None:
    x = torch.tensor([-4.0, -2.5, -1.0, 0.0, 1.0, 2.5, 4.0], dtype=torch.float64)
    expected = torch.tensor([0.0, 0.0, 0.3, 0.5, 0.7, 1.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(hard_sigmoid(x), expected, atol=1e-15, rtol=0)
    torch.testing.assert_close(hard_sigmoid(x), keras_hs(x), atol=1e-15, rtol=0)
    assert not torch.allclose(hard_sigmoid(x), F.hardsigmoid(x))  # torch's slope is 1/6
    # the cell's gates use it: zero weights, b_o = 1, U_a = 0 -> z = hs(1) tanh(b_a) = 0.7 tanh(b_a)
    cell = StockSFMCell(N, D, D, K, dtype=torch.float64)
    p = cell.paper_parameters()
    with torch.no_grad():
        for name, value in p.items():
            if name != "omega":
                value.zero_()
        p["b_o"].fill_(1.0)
        p["b_a"].copy_(torch.linspace(-1, 1, D, dtype=torch.float64))
    z, _ = cell(torch.randn(2, N, dtype=torch.float64))
    torch.testing.assert_close(z, (0.7 * torch.tanh(p["b_a"])).expand(2, D), atol=1e-15, rtol=0)


def test_chunked_streaming_equals_whole_run() -> None:
    module = make(num_layers=2)
    x = torch.randn(11, 2, N, dtype=torch.float64)
    whole, final = module(x)
    state, pieces = None, []
    for lo, hi in ((0, 4), (4, 5), (5, 11)):
        out, state = module(x[lo:hi], state)
        pieces.append(out)
    torch.testing.assert_close(torch.cat(pieces), whole, atol=1e-12, rtol=0)
    for got, want in zip(state, final, strict=True):
        if want is None:
            assert got is None
        else:
            torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    # one step at a time through the cell's forward
    cell, st, steps = module.cells[0], None, []
    for t in range(x.shape[0]):
        z, st = cell(x[t], st)
        steps.append(z)
    first = StockSFM(N, D, K, dtype=torch.float64)
    layer0 = {k: v for k, v in module.state_dict().items() if k.startswith("cells.0.")}
    first.load_state_dict(layer0)
    torch.testing.assert_close(torch.stack(steps), first(x)[0], atol=1e-12, rtol=0)
    assert float(st.time[0]) == x.shape[0]


def test_padded_sequence_equals_sequence_alone() -> None:
    module = make(batch_first=True)
    x = torch.randn(3, 7, N, dtype=torch.float64)
    lengths = torch.tensor([7, 4, 0])
    out, state = module(x, lengths=lengths)
    assert torch.all(out[1, 4:] == 0) and torch.all(out[2] == 0)
    for b, n in ((0, 7), (1, 4)):
        alone, s = module(x[b : b + 1, :n])
        torch.testing.assert_close(out[b, :n], alone[0], atol=1e-12, rtol=0)
        torch.testing.assert_close(state.re[:, b], s.re[:, 0], atol=1e-12, rtol=0)
        assert float(state.time[b]) == n
    assert torch.all(state.z[:, 2] == 0) and float(state.time[2]) == 0


def test_time_shift_leaves_outputs_unchanged() -> None:
    module = make()
    x = torch.randn(5, 2, N, dtype=torch.float64)
    times = torch.cumsum(torch.rand(2, 5, dtype=torch.float64) + 0.2, 1)
    torch.testing.assert_close(module(x, times=times)[0], module(x, times=times + 1e7)[0],
                               atol=1e-9, rtol=0)


def test_gradcheck() -> None:
    # the "dct" grid lies inside (0, pi): the fold of learned frequencies has kinks at 0 and pi
    module = StockSFM(2, 3, 2, dtype=torch.float64, learn_frequencies=True, frequencies="dct")
    cell = module.cells[0]
    x = torch.randn(4, 2, 2, dtype=torch.float64, requires_grad=True)
    names = ("weight_ih", "weight_hh", "bias_ih", "weight_a", "bias_a", "omega")
    params = [getattr(cell, n).detach().clone().requires_grad_(True) for n in names]

    def fn(x, *values):
        state = dict(zip(names, values, strict=True))
        out, s = torch.func.functional_call(module, {f"cells.0.{n}": v for n, v in state.items()},
                                            (x,))
        return out, s.re, s.im

    assert torch.autograd.gradcheck(fn, (x, *params))


def test_state_size_must_equal_hidden_size() -> None:
    with pytest.raises(ValueError, match=r"state_size: expected state_size == hidden_size=4"):
        StockSFMCell(N, 4, 3, K)
    with pytest.raises(ValueError, match="num_freqs: expected a positive int"):
        StockSFMCell(N, 4, 4, 0)


def test_paper_parameters_names_shapes_and_storage() -> None:
    cell = StockSFMCell(N, D, D, K)
    p = cell.paper_parameters()
    shapes = {f"W_{g}": (D, D) for g in ("ste", "g", "i", "o")}
    shapes |= {f"V_{g}": (D, N) for g in ("ste", "g", "i", "o")}
    shapes |= {f"b_{g}": (D,) for g in ("ste", "g", "i", "o")}
    shapes |= {"W_fre": (K, D), "V_fre": (K, N), "b_fre": (K,), "U_a": (K,), "b_a": (D,),
               "omega": (K,)}
    assert {k: tuple(v.shape) for k, v in p.items()} == shapes
    bound = 1 / math.sqrt(D)  # nn.LSTM-like initialisation
    assert all(float(q.detach().abs().max()) <= bound for q in cell.parameters())
    with torch.no_grad():
        p["W_o"][1, 2] = 7.0
        p["V_fre"][0, 1] = -3.0
        p["b_i"][3] = 5.0
    assert cell.weight_hh[3 * D + K + 1, 2] == 7.0
    assert cell.weight_ih[3 * D, 1] == -3.0
    assert cell.bias_ih[2 * D + 3] == 5.0
    total = sum(v.numel() for k, v in p.items() if k != "omega")
    assert total == sum(q.numel() for q in cell.parameters())
    bare = StockSFMCell(N, D, D, K, bias=False).paper_parameters()
    assert not any(k.startswith("b_") for k in bare)
    assert "StockSFMCell(3, 4, num_freqs=5" in repr(cell)


def test_state_is_validated_like_sfm() -> None:
    module = make()
    x = torch.randn(3, 2, N, dtype=torch.float64)
    _, state = module(x)
    bad = SFMState(state.z, state.re[..., :-1], state.im, state.time, None)
    with pytest.raises(ValueError, match=r"state.re: expected shape \(1, 2, 4, 5\)"):
        module(x, bad)


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
def test_cell_steps_without_gradients_follow_the_stock_equations(mode) -> None:
    """Eager inference of SFMCell goes to SFM's streaming kernel; the stock cell, whose
    equations differ, must keep its own recurrence there too."""
    cell = make(num_layers=1).cells[0]
    x = torch.randn(4, 2, N, dtype=torch.float64)
    want, st = [], None
    for t in range(4):
        z, st = cell(x[t], st)
        want.append(z.detach())
    got, st = [], None
    with mode():
        for t in range(4):
            z, st = cell(x[t], st)
            got.append(z)
    torch.testing.assert_close(torch.stack(got), torch.stack(want), atol=1e-12, rtol=0)


def test_func_grad_over_functional_call_equals_autograd() -> None:
    """torch.func.grad through StockSFM (issue 28: func.grad for every module)."""
    from torch.func import functional_call, grad

    model = StockSFM(3, 5, 4, num_layers=2).double()
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(values: dict[str, torch.Tensor]) -> torch.Tensor:
        return functional_call(model, values, (x,))[0].square().sum()

    got = grad(loss)(params)
    model(x)[0].square().sum().backward()
    for key, parameter in model.named_parameters():
        want = torch.zeros_like(parameter) if parameter.grad is None else parameter.grad
        torch.testing.assert_close(got[key], want, rtol=1e-12, atol=1e-12)
