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


@pytest.mark.parametrize("K", [2, 3, 8])
def test_log_grid_spans_the_periods_geometrically(K):
    grid = frequency_grid("log", K, min_period=10.0, max_period=100.0)
    periods = 2 * np.pi / grid.numpy()
    expected = 100.0 * (10.0 / 100.0) ** (np.arange(K) / (K - 1))
    np.testing.assert_allclose(periods, expected, rtol=1e-12)
    assert np.all(np.diff(grid.numpy()) > 0) and grid.dtype == torch.float64
    ratios = periods[:-1] / periods[1:]
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-12)


def test_log_grid_with_one_frequency_is_the_geometric_mean_period():
    grid = frequency_grid("log", 1, min_period=4, max_period=16, dtype=torch.float32)
    torch.testing.assert_close(grid, torch.tensor([2 * math.pi / 8.0]))
    torch.testing.assert_close(frequency_grid("log", 1, min_period=5, max_period=5),
                               torch.tensor([2 * math.pi / 5], dtype=torch.float64))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, r"min_period: expected a finite period > 0 .*got None"),
        ({"min_period": 10.0}, r"max_period: expected a finite period > 0 .*got None"),
        ({"min_period": 0.0, "max_period": 5.0}, r"min_period: expected .*> 0.*got 0\.0"),
        ({"min_period": 1.0, "max_period": math.inf}, r"max_period: .*got inf"),
        ({"min_period": 10.0, "max_period": 10.0}, r"max_period: expected > min_period = 10\.0"),
        ({"min_period": 10.0, "max_period": 2.0}, r"max_period: expected > min_period"),
        ({"min_period": True, "max_period": 2.0}, r"min_period: .*got True"),
        # issue 27 item 12: 2*pi / 1e-320 is inf
        ({"min_period": 1e-320, "max_period": 1.0},
         r"min_period: expected a period >= 2\*pi/2\*\*53 = 6.976e-16 .*got 1e-320"),
        ({"min_period": 1e-16, "max_period": 1.0}, r"min_period: .*got 1e-16"),
    ],
)
def test_log_grid_errors_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        frequency_grid("log", 4, **kwargs)


@pytest.mark.parametrize("spec", ["paper", "dct", torch.zeros(4)])
def test_periods_are_refused_for_the_other_grids(spec):
    with pytest.raises(ValueError, match=r"min_period: expected None \(periods define only"):
        frequency_grid(spec, 4, min_period=3.0)


@pytest.mark.parametrize("value", [1e308, -1e308, 2.0**53 * 1.01, math.nan, math.inf])
def test_frequencies_beyond_the_bound_are_refused(value):
    # issue 27 item 12: SFM(..., frequencies=torch.full((3,), 1e308)) gave all-NaN outputs
    import freqnn

    spec = torch.full((3,), value, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^frequencies: expected (values in \[-9.0072e\+15, "
                       r"9.0072e\+15\]|finite values), got"):
        frequency_grid(spec, 3)
    with pytest.raises(ValueError, match=r"^frequencies: expected"):
        freqnn.SFM(3, 4, 2, 3, frequencies=spec)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_frequencies_at_the_bound_give_finite_outputs(dtype):
    import freqnn
    from freqnn.frequencies import MAX_FREQUENCY

    layer = freqnn.SFM(3, 4, 2, 3, frequencies=torch.full((3,), MAX_FREQUENCY), dtype=dtype)
    x = torch.randn(5, 2, 3, dtype=dtype)
    times = torch.tensor([0.0, 1.0, 2.0**40, 2.0**52, 2.0**53], dtype=torch.float64)
    assert bool(torch.isfinite(layer(x, times=times)[0]).all())
    with torch.no_grad():
        assert bool(torch.isfinite(layer(x, times=times)[0]).all())


def test_num_freqs_is_checked():
    with pytest.raises(ValueError, match=r"num_freqs: expected an int >= 1, got 0"):
        frequency_grid("paper", 0)


def test_layers_accept_the_log_grid_and_name_the_missing_periods():
    import freqnn

    grid = freqnn.frequency_grid("log", 4, min_period=10.0, max_period=100.0)
    for cls in (freqnn.SFM, freqnn.AdaptiveSFM, freqnn.ParallelSFM):
        layer = cls(1, 3, 2, 4, frequencies=grid)
        torch.testing.assert_close(layer.cells[0].frequencies().double(), grid)
    with pytest.raises(ValueError, match=r"min_period: .*pass the tensor as frequencies="):
        freqnn.SFM(1, 3, 2, 4, frequencies="log")
