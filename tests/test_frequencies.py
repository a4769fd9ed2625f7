"""Frequency grids, folding into [0, pi] and float64 phases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from freqnn.frequencies import fold_frequency, frequency_grid, phase, wrap_phase


@pytest.mark.parametrize("K", [1, 2, 5, 8])
def test_grids(K):
    k = np.arange(K)
    np.testing.assert_allclose(frequency_grid("paper", K).numpy(), 2 * np.pi * k / K)
    np.testing.assert_allclose(frequency_grid("dct", K).numpy(), (2 * k + 1) * np.pi / (2 * K))
    half = frequency_grid("half", K).numpy()
    assert half[0] == 0 and (K == 1 or half[-1] == pytest.approx(np.pi))
    assert np.all(np.diff(half) > 0)


def test_fold_is_the_alias_in_band_with_unit_slope():
    omega = torch.tensor([0.0, 1.0, math.pi, 4.0, 2 * math.pi + 0.5, -0.5], requires_grad=True)
    folded = fold_frequency(omega)
    expected = [0.0, 1.0, math.pi, 2 * math.pi - 4.0, 0.5, 0.5]
    torch.testing.assert_close(folded, torch.tensor(expected), atol=1e-6, rtol=0)
    folded.sum().backward()
    torch.testing.assert_close(omega.grad, torch.tensor([1.0, 1.0, 1.0, -1.0, 1.0, -1.0]))
    # same cosine and |sine|: the alias is indistinguishable on integer steps
    t = torch.arange(20.0)
    for w, f in zip(omega.detach(), folded.detach(), strict=True):
        torch.testing.assert_close(torch.cos(w * t), torch.cos(f * t), atol=1e-4, rtol=0)


def test_phase_is_exact_at_large_times_in_float32():
    omega = torch.tensor([0.3, 1.7], dtype=torch.float32)
    t = torch.tensor([1e7 + 3, 1.0], dtype=torch.float64)
    got = phase(omega, t)
    exact = np.mod(np.outer(t.numpy(), omega.double().numpy()), 2 * np.pi)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.double().numpy(), exact, atol=1e-5)


def test_wrap_phase_range_and_gradient():
    phi = torch.tensor([-7.0, 0.0, 6.5, 100.0], dtype=torch.float64, requires_grad=True)
    wrapped = wrap_phase(phi)
    assert torch.all((wrapped >= 0) & (wrapped < 2 * math.pi))
    torch.testing.assert_close(torch.cos(wrapped), torch.cos(phi))
    wrapped.sum().backward()
    assert torch.all(phi.grad == 1)
