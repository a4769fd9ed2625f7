"""ParallelSFM against SFM's equations with the z_{t-1} weights removed: a per-step float64 loop
and freqnn.SFM with those weights zeroed (outputs and gradients), the chunked scan at every
piece boundary, streaming, the step method, padding, long sequences, tools and bad input."""

from __future__ import annotations

import cmath
import math

import pytest
import torch

import freqnn
from freqnn.frequencies import frequency_grid
from freqnn.sfm import ParallelSFM, use_path, use_reference
from freqnn.sfm.kernels import parallel as kernel
from freqnn.sfm.parallel import ParallelSFMCell, chunked_scan

from .kernels.common import assert_float32_accurate, float64_twin
from .reference import randomise_, reference_sfm

N, M, D, K = 3, 4, 3, 5
RECURRENT = ("W_ste", "W_fre", "W_g", "W_i", "W_o")


@pytest.fixture
def small_pieces(monkeypatch):
    """Blocks of 6 steps in chunks of 3: T = 14 gives two blocks, one whole chunk and a rest of
    2 steps, so every boundary of the scan is crossed."""
    monkeypatch.setattr(ParallelSFMCell, "block_size", 6)
    monkeypatch.setattr(ParallelSFMCell, "chunk_size", 3)
    monkeypatch.setattr(kernel, "PROJECTION_ROWS", 12)  # blocked projection, a partial block


def make(*args, **kw) -> ParallelSFM:
    module = ParallelSFM(N, M, D, K, *args, dtype=torch.float64, **kw)
    randomise_(module)
    return module


def irregular_times(T: int, B: int) -> torch.Tensor:
    return torch.cumsum(torch.rand(B, T, dtype=torch.float64) * 2.0 + 0.1, dim=1)


def sfm_twin(module: ParallelSFM) -> freqnn.SFM:
    """freqnn.SFM with the parameters of ``module`` and every z_{t-1} weight zero."""
    options = {"frequencies": module.cells[0]._grid_spec, "bias": module.cells[0].bias,
               "learn_frequencies": module.cells[0].learn_frequencies}
    twin = freqnn.SFM(N, M, D, K, module.num_layers, dtype=torch.float64, **options)
    with torch.no_grad():
        for layer in range(module.num_layers):
            ours, theirs = module.paper_parameters(layer), twin.paper_parameters(layer)
            assert set(theirs) - set(ours) == set(RECURRENT)
            for name, value in theirs.items():
                value.copy_(ours[name] if name in ours else torch.zeros_like(value))
    return twin


def loss_and_grads(module, x, **kw):
    out, state = module(x, **kw)
    loss = (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum() + state.re.sum()
    named = dict(module.named_parameters())
    grads = torch.autograd.grad(loss, [x, *named.values()])
    return out, state, dict(zip(["x", *named], grads, strict=True))


@pytest.mark.parametrize(
    "options",
    [{}, {"bias": False}, {"frequencies": "half"}, {"frequencies": "dct",
                                                    "learn_frequencies": True}],
)
@pytest.mark.parametrize("checkpoint", [True, False])
def test_equals_sfm_with_recurrent_weights_zeroed(small_pieces, monkeypatch, options, checkpoint):
    """2 layers, irregular times and a padded batch: outputs, state and every gradient."""
    monkeypatch.setattr(ParallelSFMCell, "checkpoint", checkpoint)
    module = make(num_layers=2, **options)
    twin = sfm_twin(module)
    T, lengths = 14, torch.tensor([14, 9, 1, 0])
    x = torch.randn(T, 4, N, dtype=torch.float64, requires_grad=True)
    kw = {"times": irregular_times(T, 4), "lengths": lengths}
    out, state, grads = loss_and_grads(module, x, **kw)
    with use_reference():
        want, want_state, want_grads = loss_and_grads(twin, x, **kw)
    torch.testing.assert_close(out, want, atol=1e-10, rtol=0)
    for got, expected in zip(state, want_state, strict=True):
        if got is not None:
            torch.testing.assert_close(got, expected, atol=1e-10, rtol=0)
    # the fused parameters share names and layouts; SFM also has its (zero) weight_hh
    assert set(want_grads) - set(grads) == {"cells.0.weight_hh", "cells.1.weight_hh"}
    for name, got in grads.items():
        assert got.abs().max() > 0, name
        torch.testing.assert_close(got, want_grads[name], atol=1e-10, rtol=0, msg=name)


@pytest.mark.parametrize("steps", [1, 2, 3, 6, 14, 40])
def test_equals_per_step_loop(small_pieces, steps):
    """One layer against the plain loop of tests/sfm/reference.py (complex memory, explicit
    loops) with W_* = 0, for lengths on both sides of every chunk and block boundary."""
    module = make(frequencies="half")
    B = 2
    x = torch.randn(steps, B, N, dtype=torch.float64)
    times = irregular_times(steps, B)
    out, state = module(x, times=times)
    p = dict(module.paper_parameters())
    p.update({"W_ste": torch.zeros(D, M), "W_g": torch.zeros(D, M), "W_i": torch.zeros(D, M),
              "W_fre": torch.zeros(K, M), "W_o": torch.zeros(K, M, M)})
    p = {k: v.detach().double() for k, v in p.items()}
    expected = reference_sfm(p, x, times.t(), omega=frequency_grid("half", K))
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=0)
    torch.testing.assert_close(state.z[0], expected[-1], atol=1e-10, rtol=0)
    torch.testing.assert_close(state.time, times[:, -1])


def test_streaming_in_pieces_equals_one_pass(small_pieces):
    module = make(num_layers=2)
    T, B = 20, 3
    x = torch.randn(T, B, N, dtype=torch.float64)
    times = irregular_times(T, B)
    whole, whole_state = module(x, times=times)
    state, outs = None, []
    for start, stop in ((0, 5), (5, 6), (6, 20)):
        out, state = module(x[start:stop], state, times=times[:, start:stop])
        outs.append(out)
    torch.testing.assert_close(torch.cat(outs), whole, atol=1e-10, rtol=0)
    for got, want in zip(state, whole_state, strict=True):
        if got is not None:
            torch.testing.assert_close(got, want, atol=1e-10, rtol=0)
    # the default time axis continues from the state's time too
    first, state = module(x[:7])
    rest, _ = module(x[7:], state)
    torch.testing.assert_close(torch.cat([first, rest]), module(x)[0], atol=1e-10, rtol=0)


@pytest.mark.parametrize("batch_first", [False, True])
def test_step_equals_forward(batch_first):
    module = make(num_layers=2, batch_first=batch_first)
    T, B = 9, 3
    x = torch.randn(T, B, N, dtype=torch.float64)
    times = irregular_times(T, B)
    out, final = module(x.transpose(0, 1) if batch_first else x, times=times)
    if batch_first:
        out = out.transpose(0, 1)
    state = None
    for t in range(T):
        z, state = module.step(x[t], state, t=times[:, t])
        torch.testing.assert_close(z, out[t], atol=1e-10, rtol=0)
    for got, want in zip(state, final, strict=True):
        if got is not None:
            torch.testing.assert_close(got, want, atol=1e-10, rtol=0)
    # unbatched, default times (state.time + 1), a scalar t, and the cell's own step
    single, _ = module(x[:, 0])
    state = None
    for t in range(T):
        z, state = module.step(x[t, 0], state, t=float(t + 1) if t % 2 else None)
        torch.testing.assert_close(z, single[t], atol=1e-10, rtol=0)
    _, cell_state = module.cells[0](x[0], None, t=times[:, 0])
    torch.testing.assert_close(cell_state.re, module.step(x[0], t=times[:, 0])[1].re[0])
    with torch.no_grad():  # inference takes no other path (SFM's streaming kernel is SFM's)
        _, no_grad_state = module.cells[0](x[0], None, t=times[:, 0])
        torch.testing.assert_close(no_grad_state.re, cell_state.re, atol=0, rtol=0)
        torch.testing.assert_close(module.step(x[0], t=times[:, 0])[0], out[0], atol=1e-10,
                                   rtol=0)


def test_padded_batch_equals_each_sequence_alone(small_pieces):
    module = make(num_layers=2)
    T, lengths = 14, [14, 7, 1, 0]
    x = torch.randn(T, len(lengths), N, dtype=torch.float64)
    padded = x.clone()
    for b, n in enumerate(lengths):
        padded[n:, b] = 100.0  # garbage in the padding must not matter
    times = irregular_times(T, len(lengths))
    out, state = module(padded, times=times, lengths=torch.tensor(lengths))
    for b, n in enumerate(lengths):
        assert torch.all(out[n:, b] == 0)
        if n == 0:
            assert torch.all(state.z[:, b] == 0) and torch.all(state.re[:, b] == 0)
            assert state.time[b] == 0
            continue
        alone, alone_state = module(x[:n, b : b + 1], times=times[b : b + 1, :n])
        torch.testing.assert_close(out[:n, b : b + 1], alone, atol=1e-12, rtol=0)
        for got, want in zip(state, alone_state, strict=True):
            if got is not None:
                got_b, want_b = (got[b], want[0]) if got.dim() == 1 else (got[:, b], want[:, 0])
                torch.testing.assert_close(got_b, want_b, atol=1e-12, rtol=0)


def loop_memory(f_ste: torch.Tensor, f_fre: torch.Tensor, write: torch.Tensor,
                angle: torch.Tensor) -> torch.Tensor:
    """S_t = F_t * S_{t-1} + write_t outer e^{j angle_t} from S_0 = 0, one step at a time in
    Python complex numbers (float64). Returns S, complex128 of shape (T, D, K)."""
    fs, ff, w, a = f_ste.tolist(), f_fre.tolist(), write.tolist(), angle.tolist()
    d, k = len(fs[0]), len(ff[0])
    S = [[0j] * k for _ in range(d)]
    history = []
    for t in range(len(w)):
        rot = [cmath.exp(1j * phi) for phi in a[t]]
        S = [[fs[t][i] * ff[t][j] * S[i][j] + w[t][i] * rot[j] for j in range(k)]
             for i in range(d)]
        history.append(S)
    return torch.tensor(history, dtype=torch.complex128)


@pytest.fixture
def one_thread():
    """Small ops in parallel regions wait for a second thread on a shared machine (seconds here
    at T = 100,000); the test is about numbers, not threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.numerics
def test_long_sequence_forget_gates_near_one_and_near_zero(one_thread):
    """T = 100,000 with state 0 forgetting almost nothing (f ~ 1 - 1e-4) and state 1 almost
    everything (f ~ 1e-13): finite, and equal to a per-step float64 loop to 1e-8. The data is
    checked to break the closed form S_t = P_t (sum_s u_s / P_s), P_t = prod F: 1 / P overflows."""
    T, n, m, d, k = 100_000, 1, 2, 2, 2
    module = ParallelSFM(n, m, d, k, frequencies="half", dtype=torch.float64)
    p = module.paper_parameters()
    with torch.no_grad():
        for value in p.values():
            if value is not p["omega"]:
                value.uniform_(-0.05, 0.05)
        p["b_ste"].copy_(torch.tensor([9.2, -30.0]))
        p["b_fre"].fill_(12.0)
        p["b_g"].fill_(1.0)
        p["b_i"].fill_(1.0)
        p["U_o"].normal_(0, 0.1)  # |S| reaches thousands in state 0
        p["W_z"].normal_(0, 1e-3)
    x = torch.randn(T, 1, n, dtype=torch.float64)
    with torch.no_grad():
        out, state = module(x)

    p = {key: v.detach() for key, v in p.items()}
    xs = x[:, 0]
    f_ste = torch.sigmoid(xs @ p["V_ste"].T + p["b_ste"])
    f_fre = torch.sigmoid(xs @ p["V_fre"].T + p["b_fre"])
    write = torch.sigmoid(xs @ p["V_g"].T + p["b_g"]) * torch.tanh(xs @ p["V_i"].T + p["b_i"])
    angle = p["omega"] * torch.arange(1, T + 1, dtype=torch.float64)[:, None]
    S = loop_memory(f_ste, f_fre, write, angle)
    A = S.abs()  # (T, D, K)
    o = torch.sigmoid(torch.einsum("kmd,tdk->tkm", p["U_o"], A)
                      + (xs @ p["V_o"].flatten(0, 1).T).view(T, k, m) + p["b_o"])
    expected = (o * torch.tanh(torch.einsum("kmd,tdk->tkm", p["W_z"], A) + p["b_z"])).sum(1)

    assert torch.isfinite(out).all() and A[:, 0].max() > 1e3 and f_ste[:, 1].max() < 1e-12
    torch.testing.assert_close(out[:, 0], expected, atol=1e-8, rtol=0)
    torch.testing.assert_close(state.re[0, 0], S[-1].real, atol=1e-8, rtol=1e-10)
    torch.testing.assert_close(state.im[0, 0], S[-1].imag, atol=1e-8, rtol=1e-10)
    with torch.no_grad():  # the closed form the chunked scan avoids
        P = torch.cumprod(torch.einsum("td,tk->tdk", f_ste, f_fre), 0)
        naive = P * torch.cumsum(write[:, :, None] / P, 0)
    assert not torch.isfinite(naive).all()
    # float32, the default dtype: finite, and as accurate as the PyTorch algorithm in float32
    module, x = module.float(), x.float()
    twin, x64, _ = float64_twin(module, x, None)
    with torch.no_grad():
        out32, _ = module(x)
        with use_path("pytorch"):
            reference32, _ = module(x)
        exact, _ = twin(x64)
    assert torch.isfinite(out32).all()
    assert_float32_accurate([out32], [reference32], [exact])


def test_chunked_scan_equals_recurrence_for_every_chunk_length():
    L = 24
    log_f = -torch.rand(L, 3, dtype=torch.float64) * torch.tensor([1e-3, 1.0, 40.0])
    u = torch.randn(L, 3, dtype=torch.float64)
    h0 = torch.randn(3, dtype=torch.float64)
    h, expected = h0, []
    for t in range(L):
        h = torch.exp(log_f[t]) * h + u[t]
        expected.append(h)
    for chunk in (1, 2, 3, 8, 24):
        (got,) = chunked_scan(log_f, (u,), (h0,), chunk)
        torch.testing.assert_close(got, torch.stack(expected), atol=1e-14, rtol=0)


def test_paper_parameters_and_parameter_count():
    module = ParallelSFM(N, M, D, K, num_layers=2)
    p = module.paper_parameters(1)
    expected = {
        "V_ste": (D, M), "V_g": (D, M), "V_i": (D, M), "b_ste": (D,), "b_g": (D,),
        "b_i": (D,), "V_fre": (K, M), "b_fre": (K,), "U_o": (K, M, D), "V_o": (K, M, M),
        "b_o": (K, M), "W_z": (K, M, D), "b_z": (K, M), "omega": (K,),
    }
    assert {k: tuple(v.shape) for k, v in p.items()} == expected
    assert not hasattr(module.cells[0], "weight_hh")
    sfm = freqnn.SFM(N, M, D, K, num_layers=2)
    recurrent = sum(w.numel() for layer in range(2) for name, w in
                    sfm.paper_parameters(layer).items() if name in RECURRENT)
    count = sum(q.numel() for q in module.parameters())
    assert count == sum(q.numel() for q in sfm.parameters()) - recurrent
    with torch.no_grad():  # shared storage: W_z = b_z = 0 silences the layer
        module.paper_parameters(1)["W_z"].zero_()
        module.paper_parameters(1)["b_z"].zero_()
    assert torch.all(module(torch.randn(4, 1, N))[0] == 0)
    module.reset_parameters()
    assert module.cells[1].weight_ih.abs().max() <= 1 / math.sqrt(M)
    assert "ParallelSFMCell" in repr(module) and "num_layers=2" in repr(module)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtypes_and_devices(dtype, device):
    module = ParallelSFM(N, M, D, K, num_layers=2, dropout=0.2, learn_frequencies=True,
                         device=device, dtype=dtype)
    x = torch.randn(300, 2, N, dtype=dtype, device=device)
    out, state = module(x, lengths=torch.tensor([300, 17], device=device))
    assert out.dtype == dtype and out.device.type == device
    assert state.time.dtype == torch.float64
    out.sum().backward()
    assert all(torch.isfinite(q.grad).all() for q in module.parameters())


@pytest.mark.numerics
def test_phase_precision_at_large_times_float32():
    """A global time shift of 1e7 leaves every output unchanged (float64 phases mod 2 pi): the
    shifted outputs are as close to the unshifted ones in float64 as the unshifted float32 are."""
    module = ParallelSFM(N, M, D, K, frequencies="dct")
    x = torch.randn(30, 2, N)
    early = module(x)[0]
    late = module(x, times=torch.arange(1, 31, dtype=torch.float64) + 1e7)[0]
    twin, x64, _ = float64_twin(module, x, None)
    assert_float32_accurate([late], [early], [twin(x64)[0]])


@pytest.mark.numerics
@pytest.mark.parametrize("tool", ["compile", "export"])
def test_compile_fullgraph_and_export(small_pieces, tool):
    torch._dynamo.reset()
    module = ParallelSFM(N, M, D, K, num_layers=2, batch_first=True)
    x = torch.randn(2, 7, N)  # a block of 6 steps and a rest of 1
    twin, x64, _ = float64_twin(module, x, None)
    backward = tool == "compile"  # aot_eager traces forward and backward without codegen

    def results(module, forward, x):
        with torch.set_grad_enabled(backward):
            out, state = forward(x)
        grads = torch.autograd.grad(out.sum(), list(module.parameters())) if backward else ()
        return [out, *state, *grads]

    if tool == "export":
        forward = torch.export.export(module, (x,)).module()
    else:  # a graph break would raise
        forward = torch.compile(module, fullgraph=True, backend="aot_eager")
    assert_float32_accurate(
        results(module, forward, x), results(module, module, x), results(twin, twin, x64)
    )


def test_errors_name_the_argument():
    module = ParallelSFM(N, M, D, K, num_layers=2)
    with pytest.raises(ValueError, match=r"x: expected 2-D or 3-D input .*shape \(5,\)"):
        module(torch.randn(5))
    with pytest.raises(TypeError, match=r"x: expected dtype torch.float32.*torch.float64"):
        module(torch.randn(5, 2, N, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"lengths: expected values in \[0, 5\]"):
        module(torch.randn(5, 2, N), lengths=torch.tensor([6, 1]))
    with pytest.raises(ValueError, match=r"times: expected shape \(5,\) or \(2, 5\)"):
        module(torch.randn(5, 2, N), times=torch.arange(4.0))
    with pytest.raises(ValueError, match=r"x: expected finite values"):
        module(torch.full((5, 2, N), math.nan))
    state = module(torch.randn(5, 2, N))[1]
    with pytest.raises(ValueError, match=r"state.z: expected shape \(2, 3, 4\)"):
        module(torch.randn(5, 3, N), state)
    with pytest.raises(ValueError, match=r"state.re: expected shape \(2, 2, 3, 5\)"):
        module(torch.randn(5, 2, N), state._replace(re=state.re[:, :, :2]))
    with pytest.raises(ValueError, match=r"state.phase: expected None for SFM"):
        module(torch.randn(5, 2, N), state._replace(phase=torch.zeros(2, 2, K)))
    with pytest.raises(ValueError, match=r"x: expected 1-D or 2-D input .*\(5, 2, 3\)"):
        module.step(torch.randn(5, 2, N))
    with pytest.raises(TypeError, match=r"x: expected a torch.Tensor, got list"):
        module.step([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"t: expected shape \(2,\) .*\(3,\)"):
        module.step(torch.randn(2, N), t=torch.ones(3))
    with pytest.raises(ValueError, match=r"layer: expected an int in \[0, 1\]"):
        module.paper_parameters(2)
    module.cells[0].block_size = 10
    with pytest.raises(ValueError, match=r"block_size: expected a multiple of chunk_size=16"):
        module(torch.randn(5, 2, N))


def test_func_grad_on_the_default_path(small_pieces):
    """torch.func.grad of a model through the fused operator (an autograd.Function with
    setup_context) equals autograd's gradients; a second derivative still raises."""
    torch.manual_seed(0)
    module = ParallelSFM(N, M, D, K, num_layers=2)
    x = torch.randn(7, 2, N)
    params = {name: p.detach() for name, p in module.named_parameters()}

    def loss(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        out, state = torch.func.functional_call(module, p, (x,))
        return out.square().sum() + state.re.sum()

    got = torch.func.grad(loss)(params, x)
    named = dict(module.named_parameters())
    want = torch.autograd.grad(loss(named, x), list(named.values()))
    for (name, g), w in zip(got.items(), want, strict=True):
        torch.testing.assert_close(g, w, msg=name)
    with pytest.raises(RuntimeError, match="first derivatives only"):
        torch.func.grad(lambda x: torch.func.grad(loss, argnums=1)(params, x).sum())(x)


@pytest.mark.parametrize(
    "options",
    [{}, {"learn_frequencies": True, "bias": False},
     {"frequencies": "dct", "forget_init": "chrono"}],
)
def test_meta_initialisation_equals_eager(options):
    """meta -> to_empty -> load_state_dict, or -> reset_parameters under the same seed, gives
    the eager module: every parameter and buffer (the non-persistent grid included), outputs."""
    torch.manual_seed(3)
    eager = ParallelSFM(N, M, D, K, num_layers=2, **options)
    x = torch.randn(5, 2, N)
    for how in ("load_state_dict", "reset_parameters"):
        module = ParallelSFM(N, M, D, K, num_layers=2, device="meta", **options)
        module.to_empty(device="cpu")
        with torch.no_grad():  # what to_empty leaves is undefined: NaN makes that visible
            for t in (*module.parameters(), *module.buffers()):
                t.fill_(math.nan)
        if how == "load_state_dict":
            module.load_state_dict(eager.state_dict())
        else:
            torch.manual_seed(3)
            module.reset_parameters()
        want = dict(eager.named_parameters()) | dict(eager.named_buffers())
        got = dict(module.named_parameters()) | dict(module.named_buffers())
        assert got.keys() == want.keys()
        for name, value in want.items():
            torch.testing.assert_close(got[name], value, rtol=0, atol=0, msg=f"{how}: {name}")
        torch.testing.assert_close(module(x), eager(x), rtol=0, atol=0)
