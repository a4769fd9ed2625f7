"""The wave generator: types against scipy's waveforms, ranges, balance, determinism, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import signal

from freqnn.data.waves import WAVE_TYPES, generate_waves, wave


def test_wave_shapes_match_scipy() -> None:
    t = np.linspace(0.0, 97.0, 2001)
    period, amp, phase, offset = 13.0, 1.7, 0.3, -0.2
    arg = 2 * math.pi * (t / period + phase)
    # scipy.signal.square is +1 on the first half of each period; sawtooth rises from -1 to 1
    np.testing.assert_allclose(wave("square", t, period, amp, phase, offset),
                               offset + amp * signal.square(arg), atol=1e-12)
    np.testing.assert_allclose(wave("sawtooth", t, period, amp, phase, offset),
                               offset + amp * signal.sawtooth(arg), atol=1e-9)
    np.testing.assert_allclose(wave("sine", t, period, amp, phase, offset),
                               offset + amp * np.sin(arg), atol=1e-9)


def test_generated_values_follow_the_drawn_parameters() -> None:
    w = generate_waves(30, types=WAVE_TYPES, length=300, offset=(-1.0, 1.0), seed=3)
    for i in range(30):
        ref = wave(w.types[w.labels[i]], w.times[i], w.period[i], w.amplitude[i], w.phase[i],
                   w.offset[i])
        np.testing.assert_allclose(w.values[i], ref, rtol=1e-6, atol=1e-6)


def test_shapes_dtypes_ranges_and_balance() -> None:
    w = generate_waves(301, length=500, seed=1)
    assert w.values.shape == (301, 500) and w.values.dtype == np.float32
    assert w.times.shape == (301, 500) and w.times.dtype == np.float64
    assert w.types == ("square", "sawtooth")
    assert np.bincount(w.labels).tolist() in ([151, 150], [150, 151])
    assert (w.times[:, 0] == 0).all()
    gaps = np.diff(w.times, axis=1)
    assert gaps.min() >= 0.2 and gaps.max() <= 1.8
    assert abs(gaps.mean() - 1.0) < 0.01
    assert w.period.min() >= 10 and w.period.max() <= 100
    # log-uniform: about half of the periods below the geometric mean sqrt(10 * 100)
    assert 0.4 < np.mean(w.period < math.sqrt(1000)) < 0.6
    assert w.amplitude.min() >= 0.5 and w.amplitude.max() <= 2.0
    assert w.phase.min() >= 0 and w.phase.max() < 1
    assert (np.abs(w.values).max(axis=1) <= w.amplitude + 1e-6).all()
    square = w.labels == 0
    np.testing.assert_allclose(np.abs(w.values[square]),
                               np.broadcast_to(w.amplitude[square, None], (square.sum(), 500)),
                               rtol=1e-6)


def test_noise_level_and_shared_parameters() -> None:
    clean = generate_waves(50, length=400, seed=5)
    noisy = generate_waves(50, length=400, seed=5, noise=0.1)
    np.testing.assert_array_equal(clean.labels, noisy.labels)
    np.testing.assert_array_equal(clean.times, noisy.times)
    ratio = (noisy.values - clean.values) / clean.amplitude[:, None]
    assert abs(ratio.std() - 0.1) < 0.005 and abs(ratio.mean()) < 0.005


def test_determinism_by_seed() -> None:
    a, b = generate_waves(20, seed=7), generate_waves(20, seed=7)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    c = generate_waves(20, seed=8)
    assert not np.array_equal(a.values, c.values)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 0}, "n: expected a positive int"),
        ({"length": 1}, "length: expected an int >= 2"),
        ({"types": ("square", "triangle")}, "types: expected distinct names"),
        ({"types": ("square", "square")}, "types: expected distinct names"),
        ({"period": (10.0, 5.0)}, "period: expected a pair"),
        ({"gap": (0.0, 1.0)}, "gap: expected a pair"),
        ({"amplitude": (1.0,)}, "amplitude: expected a pair"),
        ({"noise": -0.1}, "noise: expected a finite float >= 0"),
        ({"seed": -1}, "seed: expected an int >= 0"),
    ],
)
def test_errors(kwargs: dict, match: str) -> None:
    args = {"n": 4, **kwargs}
    n = args.pop("n")
    with pytest.raises(ValueError, match=match):
        generate_waves(n, **args)


def test_wave_unknown_kind() -> None:
    with pytest.raises(ValueError, match="kind: expected one of"):
        wave("triangle", np.zeros(3), 1.0)
