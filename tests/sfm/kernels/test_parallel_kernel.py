"""ParallelSFM's fused CPU operator (freqnn::psfm_block) against its PyTorch algorithm
(``use_path("pytorch")``): outputs, final state and every gradient, in grad / no_grad /
inference_mode, float32 and float64, with lengths, without biases, streaming, and through the
operator's PyTorch fallback."""

from __future__ import annotations

import pytest
import torch

from freqnn.sfm import ParallelSFM, use_path
from freqnn.sfm.kernels import compiled_available, parallel_compiled
from freqnn.sfm.kernels import parallel as kernel
from freqnn.sfm.parallel import ParallelSFMCell

from .common import assert_float32_accurate, assert_same, float64_twin

N, M, D, K = 3, 5, 4, 3

pytestmark = pytest.mark.skipif(not compiled_available(), reason="no compiled kernel")


@pytest.fixture
def small_pieces(monkeypatch):
    monkeypatch.setattr(ParallelSFMCell, "block_size", 6)
    monkeypatch.setattr(ParallelSFMCell, "chunk_size", 3)
    # chunks of 2 steps of 4 sequences inside the kernel
    monkeypatch.setattr(parallel_compiled, "ROWS", 8)
    monkeypatch.setattr(kernel, "PROJECTION_ROWS", 12)  # blocked projection, a partial block


def run(module, x, path, **kw):
    """Outputs, final state and the gradients of a loss touching both, as one list (None for an
    absent state part), and the gradients by name."""
    with use_path(path):
        out, state = module(x, **kw)
        loss = (out * torch.linspace(-1, 1, out.numel()).to(x.dtype).view_as(out)).sum()
        loss = loss + (state.re * 0.3 - state.im).sum()
        named = dict(module.named_parameters())
        grads = dict(zip(["x", *named], torch.autograd.grad(loss, [x, *named.values()]),
                         strict=True))  # fmt: skip
    return [out, *state, *grads.values()], grads


@pytest.mark.numerics
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("options", [{}, {"bias": False}, {"learn_frequencies": True}])
@pytest.mark.parametrize("checkpoint", [True, False])
def test_gradients_equal_the_pytorch_algorithm(small_pieces, monkeypatch, dtype, options,
                                               checkpoint):  # fmt: skip
    monkeypatch.setattr(ParallelSFMCell, "checkpoint", checkpoint)
    torch.manual_seed(0)
    module = ParallelSFM(N, M, D, K, num_layers=2, dtype=dtype, **options)
    T, lengths = 14, torch.tensor([14, 9, 1, 0])
    x = torch.randn(T, 4, N, dtype=dtype, requires_grad=True)
    times = torch.cumsum(torch.rand(4, T, dtype=torch.float64) + 0.1, 1)
    kw = {"times": times, "lengths": lengths}
    got, grads = run(module, x, "fast", **kw)
    want, _ = run(module, x, "pytorch", **kw)
    for name, g in grads.items():
        assert g.abs().max() > 0 or name.endswith("b_z"), name
    if dtype == torch.float64:
        assert_same(got, want)
    else:
        twin, x64, _ = float64_twin(module, x, None)
        assert_float32_accurate(got, want, run(twin, x64, "pytorch", **kw)[0])


@pytest.mark.parametrize("mode", ["grad", "no_grad", "inference_mode"])
def test_grad_modes_and_streaming(small_pieces, mode):
    torch.manual_seed(1)
    module = ParallelSFM(N, M, D, K, num_layers=2, dtype=torch.float64)
    x = torch.randn(17, 3, N, dtype=torch.float64)
    context = {"grad": torch.enable_grad, "no_grad": torch.no_grad,
               "inference_mode": torch.inference_mode}[mode]  # fmt: skip
    with context():
        with use_path("pytorch"):
            want, want_state = module(x)
        whole, whole_state = module(x)
        state, outs = None, []
        for start, stop in ((0, 5), (5, 6), (6, 17)):
            out, state = module(x[start:stop], state)
            outs.append(out)
    assert whole.requires_grad == (mode == "grad")
    torch.testing.assert_close(whole, want, atol=1e-10, rtol=0)
    torch.testing.assert_close(torch.cat(outs), want, atol=1e-10, rtol=0)
    for a, b, c in zip(whole_state, state, want_state, strict=True):
        if a is not None:
            torch.testing.assert_close(a, c, atol=1e-10, rtol=0)
            torch.testing.assert_close(b, c, atol=1e-10, rtol=0)


def test_the_kernel_runs_and_its_fallback_agrees(small_pieces, monkeypatch):
    """The fast path calls the operator, and the operator without its library (the PyTorch
    fallback inside it: no_grad forward, backward by autograd of a recomputation) agrees."""
    calls = []
    original = kernel.block
    monkeypatch.setattr(kernel, "block", lambda *a: calls.append(1) or original(*a))
    torch.manual_seed(2)
    module = ParallelSFM(N, M, D, K, dtype=torch.float64)
    x = torch.randn(14, 2, N, dtype=torch.float64, requires_grad=True)
    got, _ = run(module, x, "fast")
    assert calls
    monkeypatch.setattr(kernel, "_library", lambda dtype: None)
    assert_same(got, run(module, x, "fast")[0])


def test_only_cpu_float_tensors_take_the_operator():
    gx = torch.zeros(2, 1, 3)
    assert kernel.applies(gx, gx)
    assert not kernel.applies(gx.bfloat16(), gx.bfloat16())
    assert not kernel.applies(gx, gx.double())
    with use_path("pytorch"):
        assert not kernel.applies(gx, gx)
    with use_path("reference"):
        assert not kernel.applies(gx, gx)


def test_second_derivatives_raise_clearly_and_the_pytorch_path_has_them():
    torch.manual_seed(2)
    module = ParallelSFM(N, M, D, K, dtype=torch.float64)
    x = torch.randn(6, 2, N, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(module(x)[0].sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match=r'first derivatives only.*use_path\("pytorch"\)'):
        torch.autograd.grad(g.sum(), x)
    with use_path("pytorch"):
        assert torch.autograd.gradgradcheck(lambda v: module(v)[0], (x[:3, :1],))


@pytest.mark.parametrize("bias", [True, False])
def test_blocked_projection_equals_linear(monkeypatch, bias):
    """ProjectionFunction (GEMMs over blocks of rows into a reusable buffer) against F.linear:
    output and the gradients of x, weight and bias, with a partial last block; gradcheck."""
    monkeypatch.setattr(kernel, "PROJECTION_ROWS", 4)
    x = torch.randn(5, 3, N, dtype=torch.float64, requires_grad=True)  # 15 rows
    w = torch.randn(7, N, dtype=torch.float64, requires_grad=True)
    b = torch.randn(7, dtype=torch.float64, requires_grad=True) if bias else None
    got = kernel.projection(x, w, b)
    want = torch.nn.functional.linear(x, w, b)
    leaves = [x, w] + ([b] if bias else [])
    g = torch.randn_like(want)
    for a, e in zip(torch.autograd.grad(got, leaves, g), torch.autograd.grad(want, leaves, g),
                    strict=True):  # fmt: skip
        torch.testing.assert_close(a, e)
    torch.testing.assert_close(got, want)
    assert torch.autograd.gradcheck(kernel.ProjectionFunction.apply, (x, w, b))
    with use_path("pytorch"):  # elsewhere the layer projects with F.linear
        assert kernel.projection(x, w, b) is None
