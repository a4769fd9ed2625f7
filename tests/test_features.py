"""Speech features against independent numpy / scipy references (float64)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.fft
import torch

from freqnn import features as F

SR = 16000


def np_frames(x, length=400, hop=160):
    out = []
    start = 0
    while start + length <= len(x):
        out.append(x[start : start + length])
        start += hop
    return np.array(out).reshape(-1, length)


def np_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def np_imel(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def np_filterbank(num_bands, freqs, fmin, fmax):
    """Triangles by explicit loops over bands and frequencies."""
    mels = np.linspace(np_mel(fmin), np_mel(fmax), num_bands + 2)
    edges = np_imel(mels)
    out = np.zeros((num_bands, len(freqs)))
    for b in range(num_bands):
        lo, c, hi = edges[b], edges[b + 1], edges[b + 2]
        for k, f in enumerate(freqs):
            if lo < f <= c:
                out[b, k] = (f - lo) / (c - lo)
            elif c < f < hi:
                out[b, k] = (hi - f) / (hi - c)
    return out


def np_logmel(x, num_bands=40, n_fft=512, preemph=0.97):
    y = np.concatenate([x[:1], x[1:] - preemph * x[:-1]])
    frames = np_frames(y) * np.hamming(400)
    power = np.abs(np.fft.rfft(frames, n=n_fft)) ** 2
    fb = np_filterbank(num_bands, np.arange(n_fft // 2 + 1) * SR / n_fft, 0.0, SR / 2)
    return np.log(np.maximum(power @ fb.T, 1e-10))


def np_deltas(c, width=2):
    padded = np.pad(c, ((width, width), (0, 0)), mode="edge")
    denom = 2 * sum(k * k for k in range(1, width + 1))
    out = np.zeros_like(c)
    for t in range(c.shape[0]):
        acc = 0.0
        for k in range(1, width + 1):
            acc = acc + k * (padded[t + width + k] - padded[t + width - k])
        out[t] = acc / denom
    return out


# ------------------------------------------------------------------------------------ framing
@pytest.mark.parametrize("length", [0, 399, 400, 401, 559, 560, 561, 16000, 16123])
def test_framing_matches_loop(length):
    x = np.random.default_rng(length).standard_normal(length)
    got = F.frame_signal(torch.from_numpy(x))
    ref = np_frames(x)
    assert got.shape == (ref.shape[0], 400) == (F.num_frames(length), 400)
    np.testing.assert_array_equal(got.numpy(), ref)


def test_framing_batched_and_indices():
    x = torch.arange(2 * 1000, dtype=torch.float64).reshape(2, 1000)
    frames = F.frame_signal(x, 400, 160)
    assert frames.shape == (2, 4, 400)
    assert frames[1, 3, 0].item() == 1000 + 480 and frames[0, 2, -1].item() == 320 + 399
    assert F.num_frames(1000) == 4 and F.num_frames(399) == 0
    times = F.frame_times(3)
    np.testing.assert_allclose(times.numpy(), [0.0125, 0.0225, 0.0325], rtol=0, atol=1e-15)


def test_frame_labels_against_loop():
    rng = np.random.default_rng(1)
    bounds = np.sort(rng.uniform(0, 2.0, 41))
    starts, ends = bounds[:-1].copy(), bounds[1:].copy()
    ends[5] = starts[6] - 0.0 - 0.03 if starts[6] - 0.03 > starts[5] else ends[5]  # a gap
    labels = rng.integers(0, 39, 40)
    count = F.num_frames(int(2.2 * SR))
    got = F.frame_labels(starts, ends, labels, count)
    centres = (np.arange(count) * 160 + 200) / SR
    for i, c in enumerate(centres):
        hits = [labels[j] for j in range(40) if starts[j] <= c < ends[j]]
        assert got[i].item() == (hits[0] if hits else -1)
    assert (got == -1).sum() > 0  # frames after the last segment


def test_frame_labels_boundaries_and_errors():
    # centre of frame 0 is 0.0125 s: exactly a boundary -> the later segment
    got = F.frame_labels([0.0, 0.0125], [0.0125, 1.0], [3, 7], 2)
    assert got.tolist() == [7, 7]
    got = F.frame_labels([0.0], [0.02], [4], 2, fill=-5)
    assert got.tolist() == [4, -5]
    assert F.frame_labels([], [], torch.zeros(0, dtype=torch.long), 3).tolist() == [-1] * 3
    with pytest.raises(ValueError, match="ends: expected end >= start"):
        F.frame_labels([0.5], [0.1], [1], 3)
    with pytest.raises(ValueError, match="starts: expected segments in time order"):
        F.frame_labels([0.0, 0.05], [0.1, 0.2], [1, 2], 3)
    with pytest.raises(ValueError, match="labels: expected as many"):
        F.frame_labels([0.0], [0.1], [1, 2], 3)
    with pytest.raises(TypeError, match="labels: expected integer"):
        F.frame_labels([0.0], [0.1], [1.5], 3)
    with pytest.raises(ValueError, match="starts: expected finite"):
        F.frame_labels([float("nan")], [0.1], [1], 3)


# --------------------------------------------------------------------------------- mel, window
def test_mel_scale_known_values():
    assert F.hz_to_mel(700.0).item() == pytest.approx(2595 * math.log10(2))
    assert F.hz_to_mel(1000.0).item() == pytest.approx(1000.0, abs=0.05)
    f = torch.linspace(0, 8000, 17, dtype=torch.float64)
    torch.testing.assert_close(F.mel_to_hz(F.hz_to_mel(f)), f)


@pytest.mark.parametrize(("bands", "n_fft", "fmin", "fmax"),
                         [(40, 512, 0.0, None), (23, 400, 64.0, 7000.0), (80, 1024, 20.0, None)])
def test_mel_filterbank_matches_loops(bands, n_fft, fmin, fmax):
    got = F.mel_filterbank(bands, n_fft, SR, fmin, fmax)
    freqs = np.arange(n_fft // 2 + 1) * SR / n_fft
    ref = np_filterbank(bands, freqs, fmin, SR / 2 if fmax is None else fmax)
    assert got.dtype == torch.float64 and got.shape == ref.shape
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-12)


def test_mel_filterbank_partition_of_unity():
    # between the first and last band centre, adjacent triangles sum to exactly 1
    freqs = torch.linspace(0, 8000, 3001, dtype=torch.float64)
    fb = F.mel_filterbank(40, frequencies=freqs)
    centres = F.mel_to_hz(torch.linspace(0, float(F.hz_to_mel(8000.0)), 42))[1:-1]
    inside = (freqs >= centres[0]) & (freqs <= centres[-1])
    torch.testing.assert_close(fb.sum(0)[inside], torch.ones(int(inside.sum()),
                                                             dtype=torch.float64))
    assert fb.max().item() <= 1.0


def test_windows():
    np.testing.assert_allclose(F.window("hamming", 400).numpy(), np.hamming(400), atol=1e-15)
    np.testing.assert_allclose(F.window("hann", 400).numpy(), np.hanning(400), atol=1e-15)
    assert F.window("rectangular", 5).tolist() == [1.0] * 5
    with pytest.raises(ValueError, match="window: expected one of"):
        F.window("kaiser", 10)


def test_filterbank_errors():
    with pytest.raises(ValueError, match="num_bands: expected at most"):
        F.mel_filterbank(200, 256)
    with pytest.raises(ValueError, match="fmax: expected fmin < fmax"):
        F.mel_filterbank(10, fmin=4000.0, fmax=3000.0)
    with pytest.raises(ValueError, match="fmax"):
        F.mel_filterbank(10, fmax=9000.0)
    with pytest.raises(TypeError, match="num_bands: expected a positive int"):
        F.mel_filterbank(4.0)


# ------------------------------------------------------------------------------------ log-mel
def test_log_mel_matches_numpy():
    x = np.random.default_rng(3).standard_normal(8000) * 0.1
    got = F.log_mel_spectrogram(torch.from_numpy(x))
    ref = np_logmel(x)
    assert got.dtype == torch.float64 and got.shape == ref.shape == (48, 40)
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-9)


def test_log_mel_float32_batched_and_tone():
    t = torch.arange(16000, dtype=torch.float64) / SR
    tone = torch.sin(2 * math.pi * 1000.0 * t)
    out = F.LogMel(preemph=0.0)(torch.stack([tone, 0.5 * tone]).float())
    assert out.dtype == torch.float32 and out.shape == (2, 98, 40)
    centres = F.mel_to_hz(torch.linspace(0, float(F.hz_to_mel(8000.0)), 42))[1:-1]
    assert abs(centres[out[0, 50].argmax()].item() - 1000.0) < 100
    torch.testing.assert_close(out[0] - out[1], torch.full((98, 40), math.log(4.0)), atol=1e-3,
                               rtol=0)


def test_deltas_match_loop():
    c = np.random.default_rng(4).standard_normal((13, 5))
    got = F.deltas(torch.from_numpy(c))
    np.testing.assert_allclose(got.numpy(), np_deltas(c), atol=1e-12)
    np.testing.assert_allclose(F.deltas(torch.from_numpy(c), 1).numpy(), np_deltas(c, 1),
                               atol=1e-12)
    full = F.add_deltas(torch.from_numpy(c))
    assert full.shape == (13, 15)
    np.testing.assert_allclose(full[:, 10:].numpy(), np_deltas(np_deltas(c)), atol=1e-12)
    # batched along leading dims, a linear ramp has delta 1 away from the edges
    ramp = torch.arange(10, dtype=torch.float64).reshape(1, 10, 1).expand(3, 10, 2)
    d = F.deltas(ramp)
    torch.testing.assert_close(d[:, 2:-2], torch.ones(3, 6, 2, dtype=torch.float64))
    module = F.LogMel(delta_order=2)
    x = torch.randn(4000, dtype=torch.float64)
    assert module(x).shape == (23, 120) and module.output_size == 120
    torch.testing.assert_close(module(x)[:, 40:80], F.deltas(F.LogMel()(x)))


def test_log_mel_errors():
    with pytest.raises(TypeError, match="waveform: expected a floating-point"):
        F.LogMel()(torch.zeros(1000, dtype=torch.long))
    with pytest.raises(ValueError, match="n_fft: expected an int >= frame_length"):
        F.LogMel(n_fft=256)
    with pytest.raises(ValueError, match="delta_order"):
        F.LogMel(delta_order=3)
    with pytest.raises(ValueError, match="features: expected a tensor of shape"):
        F.deltas(torch.zeros(5))
    with pytest.raises(ValueError, match="coefficient"):
        F.preemphasis(torch.zeros(5), -1.0)
    assert F.LogMel()(torch.zeros(300)).shape == (0, 40)


# --------------------------------------------------------------------------- cosine front end
def test_cosine_front_end_initial_is_dct_log_mel():
    torch.manual_seed(0)
    fe = F.CosineFrontEnd(400, 40).double()
    fe.reset_parameters()  # amplitudes set in float64 (not float32-rounded sqrt(2))
    frames = torch.randn(7, 400, dtype=torch.float64)
    got = fe(frames)
    coeffs = scipy.fft.dct(frames.numpy() * np.hamming(400), type=3, norm="ortho", axis=-1)
    hz = (2 * np.arange(400) + 1) * np.pi / 800 * SR / (2 * np.pi)
    ref = np.log(np.maximum(coeffs**2 @ np_filterbank(40, hz, 0.0, SR / 2).T, 1e-10))
    np.testing.assert_allclose(got.detach().numpy(), ref, atol=1e-8)
    np.testing.assert_allclose(fe.initial_frequencies_hz().numpy(), hz, atol=1e-9)
    torch.testing.assert_close(fe.frequencies_hz, fe.initial_frequencies_hz())


def test_cosine_front_end_tracks_log_mel_and_learns():
    torch.manual_seed(1)
    wave = torch.randn(2, 6000) * 0.1
    frames = F.frame_signal(F.preemphasis(wave))
    fe = F.CosineFrontEnd(400, 40)
    fe.fit_normalization(frames)
    out = fe(frames)
    assert out.shape == (2, 36, 40) and fe.output_size == 40
    assert out.reshape(-1, 40).mean(0).abs().max() < 1e-4
    assert (out.reshape(-1, 40).std(0) - 1).abs().max() < 1e-3
    # same spectral shape as the FFT log-mel up to a per-band offset
    ref = F.LogMel()(wave)
    corr = torch.corrcoef(torch.stack([fe.log_energies(frames).flatten(), ref.flatten()]))[0, 1]
    assert corr > 0.99
    # every trainable parameter gets a gradient, and a step moves the frequencies
    trainable = [p for p in fe.parameters() if p.requires_grad]
    assert [p is fe.transform.w_offset for p in trainable] == [True]
    before = fe.frequencies_hz.detach().clone()
    opt = torch.optim.SGD(fe.parameters(), lr=1e-4)
    loss = (fe(frames)[..., :5]).square().mean()
    loss.backward()
    assert torch.isfinite(fe.transform.w_offset.grad).all()
    assert fe.transform.w_offset.grad.abs().sum() > 0
    opt.step()
    assert not torch.equal(fe.frequencies_hz.detach(), before)


def test_cosine_front_end_errors():
    fe = F.CosineFrontEnd(64, 8, sample_rate=8000)
    with pytest.raises(ValueError, match=r"frames: expected a tensor of shape \(\.\.\., 64\)"):
        fe(torch.zeros(3, 65))
    with pytest.raises(ValueError, match="num_bands: expected at most"):
        F.CosineFrontEnd(64, 60, sample_rate=8000)
    with pytest.raises(ValueError, match="frames: expected at least 2 frames"):
        fe.fit_normalization(torch.zeros(1, 64))
    with pytest.raises(ValueError, match="floor"):
        F.CosineFrontEnd(64, 8, floor=0.0)
