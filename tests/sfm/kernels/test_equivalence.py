"""The SFM operator (freqnn.sfm.kernels) against the autograd reference path.

Everything is compared in float64 to 1e-10: outputs, final states and the gradients of x, of every
parameter and of every part of the initial state, for the compiled kernel and the PyTorch fallback.
"""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

import freqnn
from freqnn.sfm import kernels
from freqnn.sfm.kernels import build, op
from freqnn.sfm.kernels import compiled as compiled_mod
from freqnn.sfm.kernels.pytorch import Inputs

from ..reference import randomise_
from .common import (
    CELLS,
    CLASSES,
    FAST,
    TOL,
    D,
    K,
    M,
    N,
    assert_float32_accurate,
    assert_same,
    float64_twin,
    irregular_times,
    make,
    random_state,
    run,
)


@pytest.fixture(scope="module")
def compiled() -> None:
    """The compiled kernel must build on the test machines (CI has a C++ compiler)."""
    assert kernels.compiled_available(), kernels.compiled_status()


@pytest.fixture
def fresh_kernel(monkeypatch):
    """Forget the loaded kernel for one test; restore it afterwards."""
    monkeypatch.setattr(build, "_lib", None)
    monkeypatch.setattr(build, "_lib_error", None)
    monkeypatch.setattr(build, "_lib_info", {})


@pytest.mark.parametrize("path", FAST)
@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"bias": False},
        {"learn_frequencies": True, "frequencies": "dct"},
        {"num_layers": 2, "learn_frequencies": True},
    ],
    ids=["default", "no-bias", "learned-freqs", "two-layers"],
)
@pytest.mark.parametrize("inputs", ["plain", "times+lengths+state"])
def test_fast_equals_reference(compiled, path, cls, options, inputs):
    module = make(cls, **options)
    T, B = 6, 4
    x = torch.randn(T, B, N, dtype=torch.float64, requires_grad=True)
    state, kw = None, {}
    if inputs != "plain":
        state = random_state(module, B)
        kw = {"times": irregular_times(T, B), "lengths": torch.tensor([6, 3, 1, 0])}
    assert_same(run(module, path, x, state, **kw), run(module, "reference", x, state, **kw))


@pytest.mark.parametrize("path", FAST)
@pytest.mark.parametrize("cls", CLASSES)
def test_fast_equals_reference_with_shared_times_and_all_padding(compiled, path, cls):
    """(T,) timestamps, a batch of one and a sequence fully padded except its first step."""
    module = make(cls, num_layers=2)
    x = torch.randn(7, 2, N, dtype=torch.float64, requires_grad=True)
    kw = {
        "times": torch.linspace(0.5, 20.0, 7, dtype=torch.float64),
        "lengths": torch.tensor([1, 7]),
    }
    state = random_state(module, 2)
    assert_same(run(module, path, x, state, **kw), run(module, "reference", x, state, **kw))
    x1 = x[:, :1].detach().requires_grad_()
    assert_same(run(module, path, x1, None), run(module, "reference", x1, None))


@pytest.mark.parametrize("cls", CLASSES)
def test_adaptive_times_gradient_falls_back_to_reference(compiled, cls):
    """Gradients w.r.t. ``times``: SFM gets them through the phases, A-SFM from the reference."""
    module = make(cls)
    x = torch.randn(5, 2, N, dtype=torch.float64)
    base, results = irregular_times(5, 2), []
    for path in ("fast", "reference"):
        times = base.clone().requires_grad_()
        with kernels.use_path(path):
            out, _ = module(x, times=times)
        results.append(torch.autograd.grad(out.square().sum(), times)[0])
    torch.testing.assert_close(results[0], results[1], **TOL)
    assert results[0].abs().sum() > 0


@pytest.mark.numerics
@pytest.mark.parametrize("path", FAST)
@pytest.mark.parametrize("cls", CLASSES)
def test_float32_close_to_reference(compiled, path, cls):
    module = cls(N, M, D, K, num_layers=2)
    randomise_(module)
    x = torch.randn(20, 3, N, requires_grad=True)
    kw = {"lengths": torch.tensor([20, 11, 4])}
    twin, x64, _ = float64_twin(module, x, None)
    assert_float32_accurate(
        run(module, path, x, None, **kw),
        run(module, "reference", x, None, **kw),
        run(twin, "reference", x64, None, **kw),
    )


@pytest.mark.parametrize("path", FAST)
@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("T", [1, 4, 5])
def test_inference_without_histories_equals_training_forward(compiled, path, cls, T):
    """Under no_grad only two state slots are kept (odd and even T exercise both)."""
    module = make(cls, num_layers=2)
    x = torch.randn(T, 3, N, dtype=torch.float64)
    kw = {"lengths": torch.tensor([T, max(T - 2, 0), 1])}
    with kernels.use_path(path):
        out, state = module(x, **kw)
        with torch.no_grad():
            out_ng, state_ng = module(x, **kw)
    torch.testing.assert_close(out_ng, out.detach(), **TOL)
    for u, v in zip(state_ng, state, strict=True):
        if u is not None:
            torch.testing.assert_close(u, v.detach(), **TOL)


@pytest.mark.parametrize("cls", CELLS)
def test_streaming_cell_steps_equal_reference(compiled, cls):
    cell = cls(N, M, D, K, dtype=torch.float64)
    randomise_(cell)
    x = torch.randn(4, 2, N, dtype=torch.float64)
    outs = {}
    for path in ("fast", "reference"):
        state, zs = None, []
        with kernels.use_path(path):
            for t in range(4):
                z, state = cell(x[t], state)
                zs.append(z)
        outs[path] = torch.stack(zs)
    torch.testing.assert_close(outs["fast"], outs["reference"], **TOL)


def _op_inputs(adaptive: bool, masked: bool, authors: bool = False) -> Inputs:
    T, B, d, k, m = 3, 2, 2, 2, 3
    G = 3 * d + k + k * m + (k if adaptive else 0)

    def r(*shape, scale=1.0):
        return (torch.randn(*shape, dtype=torch.float64) * scale).requires_grad_()

    phases = torch.rand(T, B, k, dtype=torch.float64) * 6
    times = torch.cumsum(torch.rand(T, B, dtype=torch.float64) + 0.5, dim=0)
    return Inputs(
        gx=r(T, B, G),
        z0=r(B, m, scale=0.5),
        re0=r(B, d, k),
        im0=r(B, d, k),
        phi0=r(B, k) if adaptive else None,
        cos=None if adaptive else torch.cos(phases).requires_grad_(),
        sin=None if adaptive else torch.sin(phases).requires_grad_(),
        omega=None,
        times=times,
        time0=torch.zeros(B, dtype=torch.float64),
        mask=torch.tensor([[True, True], [True, False], [False, True]]) if masked else None,
        weight_hh=r(G, m, scale=0.5),
        weight_a=r(k, 2 * m, d, scale=0.5),
        b_z=r(k, m),
        authors=authors,
    )


@pytest.mark.parametrize("path", FAST)
@pytest.mark.parametrize("rule", ["sfm", "accumulate", "authors"])
@pytest.mark.parametrize("masked", [False, True])
def test_gradcheck_of_the_op(compiled, path, rule, masked):
    adaptive = rule != "sfm"
    p = _op_inputs(adaptive, masked, authors=rule == "authors")

    def f(*tensors):
        out, z, re, im, phi = torch.ops.freqnn.sfm_scan(*tensors, True)[:5]
        return (out, z, re, im, phi) if adaptive else (out, z, re, im)

    with kernels.use_path(path):
        assert (op.cpu_library(torch.float64) is None) == (path == "pytorch")
        assert torch.autograd.gradcheck(f, tuple(p), atol=1e-7)


def test_double_backward_is_refused(compiled):
    module = make(freqnn.SFM)
    x = torch.randn(3, 2, N, dtype=torch.float64, requires_grad=True)
    # the first derivatives come (torch.func.grad asks for them this way) ...
    (g,) = torch.autograd.grad(module(x)[0].sum(), x, create_graph=True)
    # ... a second derivative raises instead of being silently wrong
    with pytest.raises(RuntimeError, match=r"first derivatives only .*use_reference"):
        g.sum().backward()
    with kernels.use_reference():  # the reference has them
        (g,) = torch.autograd.grad(module(x)[0].sum(), x, create_graph=True)
    g.sum().backward()


def test_inplace_edit_of_returned_state_does_not_change_gradients(compiled):
    module = make(freqnn.AdaptiveSFM)
    x = torch.randn(4, 2, N, dtype=torch.float64, requires_grad=True)
    out, state = module(x)
    with torch.no_grad():
        state.re.mul_(3.0)
        state.z.zero_()
    (after,) = torch.autograd.grad(out.sum(), x)
    out2, _ = module(x)
    (expected,) = torch.autograd.grad(out2.sum(), x)
    torch.testing.assert_close(after, expected, **TOL)


def test_path_selection_and_errors(monkeypatch):
    assert kernels.get_path() == "fast"
    with kernels.use_path("pytorch"):
        assert kernels.get_path() == "pytorch"
        with kernels.use_reference():
            assert kernels.get_path() == "reference"
        assert kernels.get_path() == "pytorch"
    assert kernels.get_path() == "fast"
    with pytest.raises(ValueError, match=r"path: expected one of \('fast', 'compiled'"):
        with kernels.use_path("turbo"):
            pass
    monkeypatch.setattr(kernels.path, "_default_path", "fast")
    kernels.set_path("reference")
    assert kernels.get_path() == "reference"
    with pytest.raises(ValueError, match="path: expected one of"):
        kernels.set_path(None)


@torch.no_grad()
def test_reference_path_never_calls_the_op(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("op used")

    module = make(freqnn.SFM)
    x = torch.randn(3, 2, N, dtype=torch.float64)
    monkeypatch.setattr(op, "scan_cpu", boom)  # eager inference calls the CPU kernel directly
    with kernels.use_reference():
        module(x)
    with pytest.raises(AssertionError, match="op used"):
        module(x)


@pytest.mark.parametrize("cls", CLASSES)
def test_fallback_when_the_kernel_cannot_build(fresh_kernel, monkeypatch, cls):
    monkeypatch.setattr(build, "_compiler", lambda: None)
    with pytest.warns(RuntimeWarning, match=r"no C\+\+ compiler.*PyTorch implementation"):
        assert not kernels.compiled_available()
    assert "no C++ compiler" in kernels.compiled_status()["error"]
    module = make(cls)
    x = torch.randn(4, 2, N, dtype=torch.float64, requires_grad=True)
    assert_same(run(module, "fast", x, None), run(module, "reference", x, None))
    with pytest.raises(RuntimeError, match="compiled SFM kernel is unavailable"):
        run(module, "compiled", x, None)


def test_fallback_when_the_kernel_fails_its_self_test(fresh_kernel, monkeypatch):
    def broken(lib):
        raise RuntimeError("the compiled SFM kernel failed its self-test")

    monkeypatch.setattr(build, "self_test", broken)
    with pytest.warns(RuntimeWarning, match="self-test"):
        assert not kernels.compiled_available()
    assert "self-test" in kernels.compiled_status()["error"]


def test_compiled_refuses_other_dtypes():
    module = freqnn.SFM(N, M, D, K, dtype=torch.bfloat16)
    x = torch.randn(3, 2, N, dtype=torch.bfloat16)
    with pytest.raises(RuntimeError, match="path: expected 'compiled' only for CPU float32"):
        with kernels.use_path("compiled"):
            module(x)
    with kernels.use_path("fast"):  # bfloat16 runs on the PyTorch fast path
        out, _ = module(x)
    with kernels.use_reference():
        ref, _ = module(x)
    torch.testing.assert_close(out, ref, atol=0.05, rtol=0.05)


@pytest.mark.parametrize("cls", CLASSES)
def test_pytorch_path_on_device(cls, device):
    module = make(cls, num_layers=2).to(device)
    x = torch.randn(5, 3, N, dtype=torch.float64, device=device, requires_grad=True)
    kw = {"lengths": torch.tensor([5, 2, 0], device=device)}
    assert_same(run(module, "fast", x, None, **kw), run(module, "reference", x, None, **kw))


def test_matches_the_functional_call_used_by_gradcheck(compiled):
    """Parameters swapped in by torch.func.functional_call reach the fast path."""
    module = make(freqnn.AdaptiveSFM)
    x = torch.randn(3, 2, N, dtype=torch.float64)
    params = {n: torch.zeros_like(p) for n, p in module.named_parameters()}
    out = functional_call(module, params, (x,))[0]
    assert torch.all(out == 0)  # W_z = b_z = 0: every output is o * tanh(0) = 0


@pytest.fixture
def small_cache(monkeypatch):
    """Route every training buffer through the reuse cache (normally only >= 16 MiB ones)."""
    cache = compiled_mod._HostCache()
    cache.enabled = True
    monkeypatch.setattr(cache, "min_bytes", 0)
    monkeypatch.setattr(compiled_mod, "_cache", cache)
    return cache


def test_cache_hands_out_only_free_buffers(small_cache):
    like = torch.empty(0, dtype=torch.float64)
    a = small_cache.empty((100,), like)
    b = small_cache.empty((100,), like)
    assert a.data_ptr() != b.data_ptr()  # a is alive: not handed out twice
    view, ptr = a[10:20], a.data_ptr()
    del a
    c = small_cache.empty((100,), like)
    assert c.data_ptr() != ptr  # a view keeps the buffer alive
    del view
    d = small_cache.empty((90,), like)  # within 2x of the size: reused
    assert d.data_ptr() == ptr
    assert small_cache.empty((30,), like).data_ptr() not in (ptr, b.data_ptr(), c.data_ptr())
    del b, c, d
    small_cache.clear()
    assert small_cache.nbytes() == 0


def test_cache_drops_stale_buffers(small_cache):
    like = torch.empty(0)
    small_cache.empty((1000,), like)
    for _ in range(small_cache.keep_takes + 1):
        small_cache.empty((10,), like)
    assert all(len(m) < 4000 for m in small_cache._maps)


@pytest.mark.parametrize("cls", CLASSES)
def test_cache_reuse_keeps_gradients_exact(compiled, small_cache, cls):
    """Two graphs alive at once, a retained graph run twice, buffers recycled in between."""
    module = make(cls, num_layers=2)
    x1 = torch.randn(6, 3, N, dtype=torch.float64, requires_grad=True)
    x2 = torch.randn(6, 3, N, dtype=torch.float64, requires_grad=True)
    with kernels.use_reference():
        ref1 = torch.autograd.grad(module(x1)[0].square().sum(), x1)[0]
        ref2 = torch.autograd.grad(module(x2)[0].square().sum(), x2)[0]
    loss1 = module(x1)[0].square().sum()
    loss2 = module(x2)[0].square().sum()
    torch.testing.assert_close(torch.autograd.grad(loss2, x2, retain_graph=True)[0], ref2, **TOL)
    module(x1)[0].sum().backward()  # recycles whatever is free
    torch.testing.assert_close(torch.autograd.grad(loss1, x1)[0], ref1, **TOL)
    torch.testing.assert_close(torch.autograd.grad(loss2, x2)[0], ref2, **TOL)
    assert small_cache.nbytes() > 0
    kernels.empty_cache()


@pytest.fixture
def threads(request):
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@pytest.mark.parametrize("threads", [2, 3], indirect=True)
@pytest.mark.parametrize("cls", CLASSES)
def test_compiled_kernel_in_blocks_of_sequences_equals_reference(compiled, cls, threads):
    """With several threads the kernel runs blocks of at least 8 sequences on threads of its
    own (35 sequences: blocks of 17 + 18, or 11 + 12 + 12); padding and state in every block."""
    module = make(cls, num_layers=2)
    T, B = 16, 35
    assert compiled_mod._threads(T, B) == threads  # the kernel may split the batch
    x = torch.randn(T, B, N, dtype=torch.float64, requires_grad=True)
    kw = {"times": irregular_times(T, B), "lengths": torch.randint(0, T + 1, (B,))}
    state = random_state(module, B)
    assert_same(run(module, "compiled", x, state, **kw), run(module, "reference", x, state, **kw))
    with torch.no_grad():
        with kernels.use_path("compiled"):
            fast, _ = module(x, state, **kw)
        with kernels.use_reference():
            ref, _ = module(x, state, **kw)
    torch.testing.assert_close(fast, ref, **TOL)
