"""CosineTransform and framing: scipy references, both paths, gradients, cache, framing, errors."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import scipy.fft
import torch

import freqnn.functional as Fn
from freqnn.transform import (
    CosineTransform,
    FramedTransform,
    frame,
    overlap_add,
    sqrt_hann_window,
)

SIZES = [1, 2, 3, 7, 64, 512, 4096]
SHAPES = [(), (5,), (2, 3)]
TOL = {torch.float32: 1e-5, torch.float64: 1e-12}
_MODULES: dict[tuple, CosineTransform] = {}


def _module(n: int, dtype: torch.dtype, matrix: bool) -> CosineTransform:
    """One module per configuration (the matrix path's basis is cached inside it)."""
    key = (n, dtype, matrix)
    if key not in _MODULES:
        _MODULES[key] = CosineTransform(n, learn_frequencies=matrix, dtype=dtype)
    return _MODULES[key]


# ---------------------------------------------------------------------------------------------
# acceptance 1: scipy references at initialisation, both paths
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("matrix", [False, True], ids=["fft", "matrix"])
def test_init_equals_scipy_dct3_dct2_and_reconstructs(
    n: int, dtype: torch.dtype, matrix: bool
) -> None:
    ct = _module(n, dtype, matrix)
    tol = TOL[dtype]
    for shape in SHAPES:
        x = torch.rand(*shape, n, dtype=dtype) * 2 - 1
        X = ct(x)
        assert ct.uses_fft("analysis") is not matrix  # learnable frequencies => matrix path
        assert X.shape == (*shape, n) and X.dtype == dtype
        ref = scipy.fft.dct(x.double().numpy(), type=3, norm="ortho")
        np.testing.assert_allclose(X.detach().double().numpy(), ref, rtol=0, atol=tol)
        c = torch.rand(*shape, n, dtype=dtype) * 2 - 1
        ref2 = scipy.fft.dct(c.double().numpy(), type=2, norm="ortho")
        np.testing.assert_allclose(ct.inverse(c).detach().double().numpy(), ref2, atol=tol)
        y = ct.inverse(X)
        assert (y - x).abs().max().item() <= tol


@pytest.mark.parametrize("n,m", [(12, 12), (12, 5), (9, 4), (40, 3), (7, 1)])
@pytest.mark.parametrize("init", ["full-band", "lowpass"])
@pytest.mark.parametrize("amplitudes", ["scalar", "per-coefficient"])
def test_fft_and_matrix_paths_agree(n: int, m: int, init: str, amplitudes: str) -> None:
    fast = CosineTransform(n, m, init=init, amplitudes=amplitudes, learn_frequencies=False,
                           dtype=torch.float64)
    slow = CosineTransform(n, m, init=init, amplitudes=amplitudes, dtype=torch.float64)
    with torch.no_grad():  # amplitudes away from their initial values, identical in both
        for name in ("a1", "a2", "a3", "a4"):
            value = torch.rand_like(getattr(fast, name)) + 0.5
            getattr(fast, name).copy_(value)
            getattr(slow, name).copy_(value)
    x = torch.rand(3, n, dtype=torch.float64) * 2 - 1
    X = torch.rand(3, m, dtype=torch.float64) * 2 - 1
    assert fast.uses_fft("analysis") and fast.uses_fft("synthesis")
    assert not slow.uses_fft("analysis") and not slow.uses_fft("synthesis")
    torch.testing.assert_close(fast(x), slow(x).detach(), rtol=0, atol=1e-13)
    torch.testing.assert_close(fast.inverse(X), slow.inverse(X).detach(), rtol=0, atol=1e-13)
    # both equal the explicit matrices
    torch.testing.assert_close(fast(x), x @ slow.analysis_matrix().detach().T, atol=1e-13,
                               rtol=0)
    torch.testing.assert_close(fast.inverse(X), X @ slow.synthesis_matrix().detach().T,
                               atol=1e-13, rtol=0)


def test_lowpass_and_full_band_grids() -> None:
    ct = CosineTransform(16, 4, init="lowpass", dtype=torch.float64)
    np.testing.assert_allclose(ct.analysis_frequencies.detach().numpy(),
                               (2 * np.arange(4) + 1) * np.pi / 32, atol=1e-15)
    full = CosineTransform(16, 4, dtype=torch.float64)
    np.testing.assert_allclose(full.synthesis_frequencies.detach().numpy(),
                               (2 * np.arange(4) + 1) * np.pi / 8, atol=1e-15)
    # lowpass analysis = first m rows of the n-point orthonormal DCT-III
    x = torch.rand(2, 16, dtype=torch.float64)
    ref = scipy.fft.dct(x.numpy(), type=3, norm="ortho")[:, :4]
    np.testing.assert_allclose(ct(x).detach().numpy(), ref, atol=1e-13)


def test_float32_module_keeps_exact_grid_phases() -> None:
    """Offsets, not absolute frequencies, are stored: a float32 module's basis is exact."""
    ct = CosineTransform(4096, 64, init="lowpass")
    x = torch.rand(2, 4096, dtype=torch.float64)
    ref = scipy.fft.dct(x.numpy(), type=3, norm="ortho")[:, :64]
    np.testing.assert_allclose(ct(x).detach().numpy(), ref, atol=1e-12)


def test_low_precision_input() -> None:
    ct = CosineTransform(32)
    x = torch.rand(4, 32).to(torch.bfloat16)
    out = ct(x)
    assert out.dtype == torch.bfloat16
    ref = scipy.fft.dct(x.double().numpy(), type=3, norm="ortho")
    np.testing.assert_allclose(out.detach().double().numpy(), ref, atol=0.05)


def test_device(device: str) -> None:
    ct = CosineTransform(64, 16, dtype=torch.float64).to(device)
    x = torch.rand(3, 64, dtype=torch.float64, device=device)
    X = ct(x)
    assert X.device.type == torch.device(device).type
    ref = CosineTransform(64, 16, dtype=torch.float64)(x.cpu())
    torch.testing.assert_close(X.cpu(), ref, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# acceptance 2: gradients
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("amplitudes", ["scalar", "per-coefficient"])
@pytest.mark.parametrize("n,m", [(6, 6), (7, 3)])
def test_gradcheck_frequencies_and_amplitudes(tied: bool, amplitudes: str, n: int,
                                              m: int) -> None:
    ct = CosineTransform(n, m, tied=tied, amplitudes=amplitudes, dtype=torch.float64)
    with torch.no_grad():  # away from the grid, so nothing is special about the point
        for p in ct.parameters():
            p.add_(0.05 * torch.randn_like(p))
    names = [name for name, _ in ct.named_parameters()]
    assert ("v_offset" in names) is not tied
    params = tuple(p.detach().clone().requires_grad_() for p in ct.parameters())
    x = torch.rand(2, n, dtype=torch.float64)
    X = torch.rand(2, m, dtype=torch.float64)

    def both(*values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        state = dict(zip(names, values, strict=True))
        out = torch.func.functional_call(ct, state, (x,))
        return out, _inverse_call(ct, state, X)

    assert torch.autograd.gradcheck(both, params)


def _inverse_call(ct: CosineTransform, state: dict, X: torch.Tensor) -> torch.Tensor:
    class _Inverse(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ct = ct

        def forward(self, X: torch.Tensor) -> torch.Tensor:
            return self.ct.inverse(X)

    wrapper = _Inverse()
    return torch.func.functional_call(wrapper, {f"ct.{k}": v for k, v in state.items()}, (X,))


def test_gradients_reach_every_parameter_and_one_step_changes_them() -> None:
    ct = CosineTransform(32, 8, amplitudes="per-coefficient")
    before = {name: p.detach().clone() for name, p in ct.named_parameters()}
    assert set(before) == {"w_offset", "v_offset", "a1", "a2", "a3", "a4"}
    opt = torch.optim.Adam(ct.parameters(), lr=1e-2)
    x = torch.rand(16, 32) * 2 - 1
    loss = (ct.inverse(ct(x)) - x).pow(2).mean()
    loss.backward()
    for name, p in ct.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    opt.step()
    for name, p in ct.named_parameters():
        assert not torch.equal(p.detach(), before[name]), name


def test_frozen_parts_are_buffers() -> None:
    ct = CosineTransform(8, learn_frequencies=False, learn_amplitudes=True)
    assert {n for n, _ in ct.named_parameters()} == {"a1", "a2", "a3", "a4"}
    assert {"w_offset", "v_offset"} <= set(ct.state_dict())
    frozen = CosineTransform(8, learn_amplitudes=False, tied=True)
    assert {n for n, _ in frozen.named_parameters()} == {"w_offset"}
    # amplitudes still get gradients on the FFT path
    x = torch.rand(3, 8)
    ct(x).pow(2).sum().backward()  # (sum over k of the grid cosines vanishes for t >= 1)
    assert ct.uses_fft() and ct.a2.grad is not None and ct.a2.grad.abs() > 0


# ---------------------------------------------------------------------------------------------
# frequencies: range and aliasing, custom init, exact inverse
# ---------------------------------------------------------------------------------------------
def test_frequencies_are_reported_in_zero_pi_and_aliases_give_the_same_transform() -> None:
    n, m = 16, 4
    base = torch.tensor([0.2, 1.0, 2.0, 3.0], dtype=torch.float64)
    ref = CosineTransform(n, m, init=base, dtype=torch.float64)
    aliased = CosineTransform(n, m, init=base, dtype=torch.float64)
    aliased.set_frequencies(torch.stack([-base[0], base[1] + 2 * math.pi,
                                         2 * math.pi - base[2], base[3] - 4 * math.pi]))
    x = torch.rand(3, n, dtype=torch.float64)
    torch.testing.assert_close(aliased(x), ref(x), rtol=0, atol=1e-12)
    torch.testing.assert_close(aliased.analysis_frequencies, base, rtol=0, atol=1e-12)
    freqs = aliased.analysis_frequencies
    assert bool(((freqs >= 0) & (freqs <= math.pi)).all())
    np.testing.assert_allclose(ref.initial_frequencies().numpy(), base.numpy())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_exact_inverse_after_training(dtype: torch.dtype) -> None:
    ct = CosineTransform(24, dtype=dtype)
    with torch.no_grad():
        for p in ct.parameters():
            p.add_(0.02 * torch.randn_like(p))
    x = torch.rand(5, 24, dtype=dtype)
    X = ct(x)
    approx = ct.inverse(X)
    exact = ct.inverse(X, exact=True)
    assert (approx - x).abs().max() > 1e-3  # synthesis parameters no longer invert
    assert (exact - x).abs().max() < (1e-4 if dtype == torch.float32 else 1e-10)
    # differentiable too
    X = X.detach().requires_grad_()
    ct.inverse(X, exact=True).sum().backward()
    assert X.grad is not None and torch.isfinite(X.grad).all()


# ---------------------------------------------------------------------------------------------
# basis cache
# ---------------------------------------------------------------------------------------------
def _count_builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = Fn._cos_sin

    def counting(*args, **kwargs):
        if args[-1] == "cos":
            calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(Fn, "_cos_sin", counting)
    return calls


def test_cache_reused_while_parameters_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_builds(monkeypatch)
    ct = CosineTransform(16, 16, tied=True, dtype=torch.float64)
    x = torch.rand(2, 16, dtype=torch.float64)
    first = ct(x)
    ct.inverse(first)  # tied: the synthesis uses the same (cached) basis
    second = ct(x)
    assert len(calls) == 1
    torch.testing.assert_close(first, second, rtol=0, atol=0)


@pytest.mark.parametrize("edit", ["optimizer", "no_grad", "data", "load_state_dict", "set"])
def test_cache_invalidated_by_every_kind_of_edit(edit: str) -> None:
    ct = CosineTransform(16, 8, dtype=torch.float64)
    x = torch.rand(4, 16, dtype=torch.float64)
    X = torch.rand(4, 8, dtype=torch.float64)
    ct(x), ct.inverse(X)  # fill the cache
    if edit == "optimizer":
        opt = torch.optim.SGD(ct.parameters(), lr=0.1)
        ((ct.inverse(ct(x)) - x) ** 2).sum().backward()
        opt.step()
    elif edit == "no_grad":
        with torch.no_grad():
            ct.w_offset.add_(0.01)
            ct.v_offset.sub_(0.02)
    elif edit == "data":
        ct.w_offset.data.add_(0.01)
        ct.v_offset.data.add_(0.03)
    elif edit == "load_state_dict":
        state = {k: v.clone() for k, v in ct.state_dict().items()}
        state["w_offset"] += 0.01
        state["v_offset"] -= 0.01
        ct.load_state_dict(state)
    else:
        ct.set_frequencies(ct.analysis_frequencies.detach() + 0.01,
                           ct.synthesis_frequencies.detach() + 0.02)
    fresh = CosineTransform(16, 8, dtype=torch.float64)
    fresh.load_state_dict(ct.state_dict())
    assert not torch.equal(ct.w_offset, torch.zeros(8, dtype=torch.float64))
    with torch.no_grad():
        torch.testing.assert_close(ct(x), fresh(x), rtol=0, atol=1e-14)
        torch.testing.assert_close(ct.inverse(X), fresh.inverse(X), rtol=0, atol=1e-14)
        torch.testing.assert_close(ct(x), x @ fresh.analysis_matrix().T, rtol=0, atol=1e-13)


def test_cache_cleared_on_dtype_change() -> None:
    ct = CosineTransform(16, 8)
    x = torch.rand(2, 16, dtype=torch.float64)
    ct(x.float())
    ct.double()
    assert not ct._cache
    ref = scipy.fft.dct(x.numpy(), type=3, norm="ortho")
    # full-band m < n is not a truncation; compare with the explicit matrix instead
    torch.testing.assert_close(ct(x), x @ ct.analysis_matrix().T, rtol=0, atol=1e-13)
    assert ref.shape == (2, 16)


# ---------------------------------------------------------------------------------------------
# acceptance 3: framing
# ---------------------------------------------------------------------------------------------
def test_sqrt_hann_is_power_complementary() -> None:
    w = sqrt_hann_window(64, dtype=torch.float64)
    torch.testing.assert_close(w[:32] ** 2 + w[32:] ** 2, torch.ones(32, dtype=torch.float64))
    assert bool((w > 0).all())


@pytest.mark.parametrize("mode", ["block", "half"])
@pytest.mark.parametrize("length", [1, 15, 16, 17, 83])
@pytest.mark.parametrize("matrix", [False, True], ids=["fft", "matrix"])
def test_framed_reconstruction_at_init(mode: str, length: int, matrix: bool) -> None:
    ct = CosineTransform(16, learn_frequencies=matrix, dtype=torch.float64)
    framed = FramedTransform(ct, mode)
    x = torch.rand(2, 3, length, dtype=torch.float64) * 2 - 1
    X = framed(x)
    assert X.shape == (2, 3, framed.num_frames(length), 16)
    y = framed.inverse(X, length)
    assert y.shape == x.shape
    assert (y - x).abs().max().item() < 1e-12


def test_framed_float32_and_default_length() -> None:
    framed = FramedTransform(CosineTransform(512), "half")
    x = torch.rand(3 * 512 + 100) * 2 - 1
    X = framed(x)
    y = framed.inverse(X)
    assert y.shape[-1] >= x.shape[-1]
    assert (y[: x.shape[-1]] - x).abs().max().item() < 1e-5


def test_frame_and_overlap_add_are_adjoint() -> None:
    x = torch.rand(2, 50, dtype=torch.float64)
    frames = torch.rand(2, 7, 8, dtype=torch.float64)
    lhs = (frame(x, 8, 6)[:, :7] * frames).sum()
    rhs = (x[:, : 6 * 6 + 8] * overlap_add(frames, 6)).sum()
    torch.testing.assert_close(lhs, rhs)
    assert frame(x, 8, 6).shape == (2, 1 + (50 - 8) // 6, 8)


# ---------------------------------------------------------------------------------------------
# error paths and repr
# ---------------------------------------------------------------------------------------------
def test_error_paths() -> None:
    with pytest.raises(ValueError, match="n: expected an int >= 1, got int 0"):
        CosineTransform(0)
    with pytest.raises(TypeError, match="n: expected an int"):
        CosineTransform(8.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="m: expected an int <= n = 8"):
        CosineTransform(8, 9)
    with pytest.raises(ValueError, match="init: expected one of"):
        CosineTransform(8, init="highpass")
    with pytest.raises(ValueError, match="init: expected a tensor of shape \\(4,\\)"):
        CosineTransform(8, 4, init=torch.zeros(3))
    with pytest.raises(ValueError, match="amplitudes: expected one of"):
        CosineTransform(8, amplitudes="vector")
    with pytest.raises(TypeError, match="tied: expected a bool"):
        CosineTransform(8, tied=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=re.escape("dtype: expected a floating-point torch.dtype")):
        CosineTransform(8, dtype=torch.int64)
    ct = CosineTransform(8, 4)
    with pytest.raises(ValueError, match=re.escape("x: expected a tensor of shape (..., 8)")):
        ct(torch.zeros(3, 7))
    with pytest.raises(TypeError, match="x: expected a floating-point tensor"):
        ct(torch.zeros(3, 8, dtype=torch.long))
    with pytest.raises(ValueError, match=re.escape("X: expected a tensor of shape (..., 4)")):
        ct.inverse(torch.zeros(8))
    with pytest.raises(ValueError, match="exact: expected False when m < n"):
        ct.inverse(torch.zeros(4), exact=True)
    with pytest.raises(ValueError, match="analysis: expected a tensor of shape \\(4,\\)"):
        ct.set_frequencies(torch.zeros(5))
    with pytest.raises(ValueError, match="direction: expected"):
        ct.uses_fft("both")
    with pytest.raises(ValueError, match="transform: expected an even block length"):
        FramedTransform(CosineTransform(7), "half")
    with pytest.raises(ValueError, match="mode: expected one of"):
        FramedTransform(ct, "quarter")
    with pytest.raises(ValueError, match="window: expected None in mode 'block'"):
        FramedTransform(ct, "block", window=torch.ones(8))
    framed = FramedTransform(CosineTransform(8), "half")
    X = framed(torch.zeros(20))
    with pytest.raises(ValueError, match="length: expected a length that gives 6 frames"):
        framed.inverse(X, 40)
    expected = "x: expected a tensor of shape (..., T) with T >= size = 8"
    with pytest.raises(ValueError, match=re.escape(expected)):
        frame(torch.zeros(5), 8, 4)


def test_repr_and_reset() -> None:
    ct = CosineTransform(8, 4, tied=True, init="lowpass")
    assert "n=8, m=4, init='lowpass', tied=True" in repr(ct)
    with torch.no_grad():
        ct.w_offset.add_(1.0)
        ct.a1.mul_(3.0)
    ct.reset_parameters()
    assert torch.equal(ct.w_offset, torch.zeros(4)) and ct.a1.item() == 1.0
    assert ct.a2.item() == pytest.approx(math.sqrt(2.0))


def test_every_constructor_argument_is_documented() -> None:
    import inspect

    for cls in (CosineTransform, FramedTransform):
        doc = cls.__doc__ or ""
        for name in inspect.signature(cls.__init__).parameters:
            if name != "self":
                assert f"\n    {name}" in doc or f", {name}" in doc, f"{cls.__name__}: {name}"


# issue 27 item 12: the transforms passed NaN and inf through (the layers refuse them)
_NON_FINITE = [
    ("dct", lambda x: Fn.dct(x), "x"),
    ("idct", lambda x: Fn.idct(x), "X"),
    ("dct_backward", lambda x: Fn.dct(x, norm="backward"), "x"),
    ("forward", lambda x: CosineTransform(8)(x), "x"),
    ("inverse", lambda x: CosineTransform(8).inverse(x), "X"),
    ("inverse_exact", lambda x: CosineTransform(8).inverse(x, exact=True), "X"),
    ("framed", lambda x: FramedTransform(CosineTransform(8), "block")(x), "x"),
]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize(("call", "name"), [case[1:] for case in _NON_FINITE],
                         ids=[case[0] for case in _NON_FINITE])
def test_non_finite_input_is_refused(call, name: str, value: float) -> None:
    x = torch.randn(3, 8, dtype=torch.float64)
    x[1, 2] = value
    with pytest.raises(ValueError, match=re.escape(
            f"{name}: expected finite values, got 1 NaN or infinite element(s) in tensor of "
            "shape (3, 8) and dtype torch.float64")):
        call(x)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_framed_window_must_be_finite(value: float) -> None:
    window = torch.ones(8, dtype=torch.float64)
    window[0] = value
    with pytest.raises(ValueError, match=re.escape(
            "window: expected finite values, got 1 NaN or infinite element(s) in tensor of "
            "shape (8,) and dtype torch.float64")):
        FramedTransform(CosineTransform(8), "half", window=window)


# Layer API: CosineTransform(8)(torch.randn(0, 8)) raised an MKL FFT error
_EMPTY = [
    ("dct", lambda x: Fn.dct(x), (0, 8)),
    ("idct", lambda x: Fn.idct(x), (0, 8)),
    ("forward", lambda x: CosineTransform(8)(x), (0, 8)),
    ("forward_m", lambda x: CosineTransform(8, 4)(x), (0, 4)),
    ("inverse", lambda x: CosineTransform(8).inverse(x), (0, 8)),
    ("inverse_exact", lambda x: CosineTransform(8).inverse(x, exact=True), (0, 8)),
    ("framed", lambda x: FramedTransform(CosineTransform(8), "block")(x), (0, 1, 8)),
]


@pytest.mark.parametrize(("call", "shape"), [case[1:] for case in _EMPTY],
                         ids=[case[0] for case in _EMPTY])
def test_empty_batch_gives_an_empty_result(call, shape: tuple[int, ...]) -> None:
    x = torch.randn(0, 8, requires_grad=True)
    out = call(x)
    assert out.shape == shape and out.dtype == x.dtype
    out.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
