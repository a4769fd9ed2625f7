"""freqnn.functional: DCT pair against scipy, grid FFT kernels and the float64 cosine basis."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.fft
import torch

import freqnn.functional as Fn
from freqnn.transform import CosineTransform

SIZES = [1, 2, 3, 7, 64, 512, 4096]


def _reference_basis(freqs: np.ndarray, n: int) -> np.ndarray:
    """Independent reference: numpy float64 cos(w t) with a long-double product."""
    t = np.arange(n, dtype=np.longdouble)
    return np.cos(freqs.astype(np.longdouble)[:, None] * t).astype(np.float64)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("norm", ["ortho", "backward"])
def test_dct_idct_match_scipy_float64(n: int, norm: str) -> None:
    x = torch.rand(2, 3, n, dtype=torch.float64) * 2 - 1
    ref2 = scipy.fft.dct(x.numpy(), type=2, norm=norm)
    ref3 = scipy.fft.idct(x.numpy(), type=2, norm=norm)
    scale = max(1.0, np.abs(ref2).max())
    np.testing.assert_allclose(Fn.dct(x, norm).numpy(), ref2, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(Fn.idct(x, norm).numpy(), ref3, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(Fn.idct(Fn.dct(x, norm), norm).numpy(), x.numpy(), atol=1e-12)


@pytest.mark.parametrize("shape", [(7,), (5, 7), (2, 3, 7)])
def test_dct_float32_batch_shapes_and_device(shape: tuple[int, ...], device: str) -> None:
    x = torch.rand(shape, device=device) * 2 - 1
    out = Fn.dct(x)
    assert out.shape == x.shape and out.dtype == torch.float32 and out.device == x.device
    ref = scipy.fft.dct(x.cpu().double().numpy(), type=2, norm="ortho")
    np.testing.assert_allclose(out.cpu().numpy(), ref, atol=1e-6)
    np.testing.assert_allclose(Fn.idct(out).cpu().numpy(), x.cpu().numpy(), atol=1e-6)


def test_low_precision_input_is_computed_in_float32() -> None:
    x = (torch.rand(4, 64) * 2 - 1).to(torch.bfloat16)
    out = Fn.dct(x)
    assert out.dtype == torch.bfloat16
    ref = scipy.fft.dct(x.double().numpy(), type=2, norm="ortho")
    np.testing.assert_allclose(out.double().numpy(), ref, atol=0.05)


def test_dct_is_differentiable() -> None:
    x = torch.rand(3, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: Fn.dct(v), (x,))
    assert torch.autograd.gradcheck(lambda v: Fn.idct(v, "backward"), (x,))


@pytest.mark.parametrize("n", [1, 5, 8, 33])
@pytest.mark.parametrize("m", [1, 3, 5])
def test_grid_kernels_equal_the_sums_they_define(n: int, m: int) -> None:
    if m > n:
        m = n
    for p in sorted({m, m + 2, n, 3 * m + 1}):
        if p < m:
            continue
        freqs = (2 * np.arange(m) + 1) * np.pi / (2 * p)
        basis = _reference_basis(freqs, n)
        x = np.random.default_rng(n + m + p).uniform(-1, 1, size=(4, n))
        sums = Fn.grid_cosine_sums(torch.from_numpy(x), m, p).numpy()
        np.testing.assert_allclose(sums, x @ basis.T, atol=1e-12)
        c = np.random.default_rng(p).uniform(-1, 1, size=(4, m))
        expansion = Fn.grid_cosine_expansion(torch.from_numpy(c), n, p).numpy()
        np.testing.assert_allclose(expansion, c @ basis, atol=1e-12)


def test_dct_grid_values_and_errors() -> None:
    np.testing.assert_allclose(Fn.dct_grid(4).numpy(), [np.pi / 8, 3 * np.pi / 8,
                                                       5 * np.pi / 8, 7 * np.pi / 8])
    np.testing.assert_allclose(Fn.dct_grid(2, 8).numpy(), [np.pi / 16, 3 * np.pi / 16])
    with pytest.raises(ValueError, match="p: expected an int >= m = 3"):
        Fn.dct_grid(3, 2)
    with pytest.raises(TypeError, match="m: expected an int"):
        Fn.dct_grid(2.0)  # type: ignore[arg-type]


def test_cosine_basis_exact_on_grid_at_large_n() -> None:
    n = 16384
    offsets = torch.zeros(n, dtype=torch.float64)
    t = np.arange(n)
    for rows in (slice(0, 3), slice(777, 779), slice(8190, 8192), slice(n - 3, n)):
        # the row builder behind cosine_basis (building all 16384 rows would take 2 GiB)
        basis = Fn._cos_sin(offsets, rows, n, n, "cos").numpy()
        sines = Fn._cos_sin(offsets, rows, n, n, "sin").numpy()
        # exact reference: integer phase reduction, then cos of a phase in [0, 2 pi)
        k = np.arange(rows.start, rows.stop)
        residue = ((2 * k[:, None] + 1) * t) % (4 * n)
        np.testing.assert_allclose(basis, np.cos(residue * np.pi / (2 * n)), rtol=0, atol=1e-14)
        np.testing.assert_allclose(sines, np.sin(residue * np.pi / (2 * n)), rtol=0, atol=1e-14)
    # and the public builder agrees with its rows
    small = Fn.cosine_basis(offsets[:3], n, grid=n).numpy()
    np.testing.assert_allclose(small, Fn._cos_sin(offsets, slice(0, 3), n, n, "cos").numpy(),
                               rtol=0, atol=0)


def test_cosine_basis_off_grid_matches_reference_and_dtype() -> None:
    freqs = torch.tensor([0.0, 0.1, 1.0, 2.5, math.pi, 4.0, -1.3], dtype=torch.float64)
    n = 300
    out = Fn.cosine_basis(freqs, n)
    np.testing.assert_allclose(out.numpy(), _reference_basis(freqs.numpy(), n), atol=1e-12)
    with_grid = Fn.cosine_basis(freqs - Fn.dct_grid(7, 9), n, grid=9)
    np.testing.assert_allclose(with_grid.numpy(), out.numpy(), atol=1e-12)
    as32 = Fn.cosine_basis(freqs, n, dtype=torch.float32)
    assert as32.dtype == torch.float32
    np.testing.assert_allclose(as32.numpy(), out.numpy(), atol=1e-7)


def test_cosine_basis_gradcheck_and_cached_gradient() -> None:
    freqs = torch.tensor([0.3, 1.1, 2.9], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w: Fn.cosine_basis(w, 11), (freqs,))
    assert torch.autograd.gradcheck(lambda w: Fn.cosine_basis(w, 11, grid=4), (freqs,))
    # a cached basis is returned as is and still carries the gradient
    fresh = Fn.cosine_basis(freqs, 11)
    cached = Fn.cosine_basis(freqs, 11, cached=fresh.detach())
    g1 = torch.autograd.grad(fresh.sin().sum(), freqs)[0]
    g2 = torch.autograd.grad(cached.sin().sum(), freqs)[0]
    torch.testing.assert_close(g1, g2, rtol=0, atol=0)
    t = torch.arange(11, dtype=torch.float64)
    analytic = (torch.cos(torch.cos(freqs[:, None] * t)) * -t * torch.sin(freqs[:, None] * t))
    torch.testing.assert_close(g1, analytic.sum(-1).detach())


def test_cosine_analysis_and_synthesis_follow_the_contract() -> None:
    """Direct float64 evaluation of the formulas in docs/transform.md (M < N, any amplitudes)."""
    rng = np.random.default_rng(0)
    n, m = 10, 4
    w, v = rng.uniform(0, np.pi, m), rng.uniform(0, np.pi, m)
    a1, a2, a3, a4 = 0.7, 1.3, rng.uniform(0.5, 1.5, m), rng.uniform(0.5, 1.5, m)
    x, X = rng.uniform(-1, 1, (3, n)), rng.uniform(-1, 1, (3, m))
    ref_X = np.zeros((3, m))
    ref_y = np.zeros((3, n))
    for k in range(m):
        ref_X[:, k] = (a1 * x[:, 0] + a2 * sum(x[:, t] * np.cos(w[k] * t) for t in range(1, n)))
    for t in range(n):
        c = a3 if t == 0 else a4
        ref_y[:, t] = sum(c[k] * np.cos(v[k] * t) * X[:, k] for k in range(m))
    ref_X /= np.sqrt(n)
    ref_y /= np.sqrt(n)
    T = torch.from_numpy
    out_X = Fn.cosine_analysis(T(x), T(w), a1, a2)
    out_y = Fn.cosine_synthesis(T(X), T(v), n, T(a3), T(a4))
    np.testing.assert_allclose(out_X.numpy(), ref_X, atol=1e-13)
    np.testing.assert_allclose(out_y.numpy(), ref_y, atol=1e-13)


def test_functional_forms_have_module_twins() -> None:
    """dct / idct are the synthesis / analysis of a frozen CosineTransform (shared path)."""
    x = torch.rand(5, 16, dtype=torch.float64)
    ct = CosineTransform(16, learn_frequencies=False, learn_amplitudes=False,
                         dtype=torch.float64)
    torch.testing.assert_close(ct(x), Fn.idct(x), rtol=0, atol=1e-14)
    torch.testing.assert_close(ct.inverse(x), Fn.dct(x), rtol=0, atol=1e-14)
    for name in Fn.__all__:
        assert getattr(Fn, name).__doc__, f"{name} has no docstring"


def test_functional_error_paths() -> None:
    with pytest.raises(TypeError, match="x: expected a floating-point tensor"):
        Fn.dct(torch.arange(4))
    with pytest.raises(ValueError, match="x: expected a tensor with at least 1 dimension"):
        Fn.dct(torch.tensor(1.0))
    with pytest.raises(ValueError, match="x: expected a non-empty last dimension"):
        Fn.dct(torch.zeros(3, 0))
    with pytest.raises(ValueError, match="norm: expected one of"):
        Fn.idct(torch.zeros(4), norm="forward")
    with pytest.raises(ValueError, match="frequencies: expected at most n = 3"):
        Fn.cosine_analysis(torch.zeros(2, 3), torch.zeros(4))
    with pytest.raises(ValueError, match="fft: expected False unless grid is given"):
        Fn.cosine_analysis(torch.zeros(2, 3), torch.zeros(3), fft=True)
    with pytest.raises(ValueError, match="a1: expected a scalar or a tensor of shape \\(3,\\)"):
        Fn.cosine_analysis(torch.zeros(2, 3), torch.zeros(3), torch.ones(2))
    with pytest.raises(ValueError, match="X: expected a last dimension of m = 3"):
        Fn.cosine_synthesis(torch.zeros(2, 4), torch.zeros(3), 5)
    with pytest.raises(ValueError, match="grid: expected an int >= m = 3"):
        Fn.cosine_basis(torch.zeros(3), 5, grid=2)
    with pytest.raises(ValueError, match="cached: expected a \\(3, 5\\) tensor"):
        Fn.cosine_basis(torch.zeros(3), 5, cached=torch.zeros(3, 4))
    with pytest.raises(ValueError, match="basis: expected a tensor of shape \\(3, 5\\)"):
        Fn.cosine_analysis(torch.zeros(5), torch.zeros(3), basis=torch.zeros(5, 3))
