"""Speech features in torch: framing, log-mel filterbanks, deltas, frame labels, and a learnable
raw-waveform front end built on [`freqnn.CosineTransform`][freqnn.CosineTransform].

Conventions (the usual ones for TIMIT frame classification, at 16 kHz)
---------------------------------------------------------------------
* **Frames.** 25 ms windows (``frame_length=400`` samples) every 10 ms (``hop_length=160``).
  Frame ``i`` covers samples ``[i * hop, i * hop + frame_length)``; only whole frames are kept
  (no padding, Kaldi's ``snip_edges``), so a signal of L >= frame_length samples has
  ``1 + (L - frame_length) // hop`` frames and a shorter one none. The frame's centre is at
  ``(i * hop + frame_length / 2) / sample_rate`` seconds
  ([`frame_times`][freqnn.features.frame_times]).
* **Frame labels.** A frame takes the label of the segment containing its centre, segments being
  half-open ``[start, end)`` ([`frame_labels`][freqnn.features.frame_labels]); frames whose centre
  lies in no segment get
  ``fill`` (-1, the ``ignore_index`` of a masked loss).
* **Log-mel filterbank** ([`log_mel_spectrogram`][freqnn.features.log_mel_spectrogram]):
  pre-emphasis ``y[t] = x[t] - 0.97
  x[t-1]`` of the whole signal (``y[0] = x[0]``), framing, a symmetric Hamming window (HTK's
  ``0.54 - 0.46 cos(2 pi t / (N - 1))``; Hann optional), power spectrum ``|rfft(frame,
  n_fft=512)|^2``, 40 triangular filters, ``log(max(energy, 1e-10))``.
* **Mel scale and filters** ([`mel_filterbank`][freqnn.features.mel_filterbank]): HTK's ``mel(f) =
  2595 log10(1 + f / 700)``.
  ``num_bands + 2`` edge frequencies are equally spaced in mel between ``fmin`` (0 Hz) and
  ``fmax`` (Nyquist); band b is the triangle rising linearly in Hz from edge b to 1 at edge b + 1
  and falling back to 0 at edge b + 2, sampled at the FFT bin frequencies ``k * sr / n_fft``.
  Peaks are 1 (HTK: no area normalisation).
* **Deltas** ([`deltas`][freqnn.features.deltas]): HTK's regression ``d_t = sum_{k=1}^{W} k (c_{t+k}
  - c_{t-k}) /
  (2 sum_{k=1}^{W} k^2)`` with ``W = 2`` and the first / last frame repeated at the edges;
  delta-deltas are the deltas of the deltas ([`add_deltas`][freqnn.features.add_deltas]).

The raw-waveform front end [`CosineFrontEnd`][freqnn.features.CosineFrontEnd] replaces the FFT of
the log-mel pipeline by
a learnable cosine transform of each windowed frame and pools the squared coefficients with the
same mel triangles; at initialisation (frequencies on the DCT grid) it is a DCT-based log-mel
filterbank, and training moves the analysis frequencies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .checks import check_finite, check_floating, describe, fail

__all__ = [
    "CosineFrontEnd",
    "LogMel",
    "add_deltas",
    "deltas",
    "frame_labels",
    "frame_signal",
    "frame_times",
    "hz_to_mel",
    "log_mel_spectrogram",
    "mel_filterbank",
    "mel_to_hz",
    "num_frames",
    "preemphasis",
    "window",
]

SAMPLE_RATE = 16000
FRAME_LENGTH = 400
HOP_LENGTH = 160
_WINDOWS = ("hamming", "hann", "rectangular")


# ------------------------------------------------------------------------------- small checks
def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        fail(name, "a positive int", describe(value), TypeError)
    if value < 1:  # type: ignore[operator]
        fail(name, "a positive int", describe(value))
    return int(value)  # type: ignore[arg-type]


def _nonneg_float(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        fail(name, "a real number", describe(value), TypeError)
    if not math.isfinite(value) or value < 0:  # type: ignore[arg-type,operator]
        fail(name, "a finite number >= 0", describe(value))
    return float(value)  # type: ignore[arg-type]


def _signal(x: object, name: str) -> Tensor:
    x = check_floating(x, name)
    if x.dim() == 0:
        fail(name, "a tensor of shape (..., samples)", describe(x))
    return x


# ------------------------------------------------------------------------------------ framing
def num_frames(length: int, frame_length: int = FRAME_LENGTH, hop_length: int = HOP_LENGTH) -> int:
    """Whole frames in a signal of ``length`` samples: ``1 + (L - frame_length) // hop`` or 0."""
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        fail("length", "an int >= 0", describe(length))
    frame_length = _positive_int(frame_length, "frame_length")
    hop_length = _positive_int(hop_length, "hop_length")
    return 0 if length < frame_length else 1 + (length - frame_length) // hop_length


def frame_signal(
    x: Tensor, frame_length: int = FRAME_LENGTH, hop_length: int = HOP_LENGTH
) -> Tensor:
    """Cut the last dimension into frames (a view: no copy).

    Parameters
    ----------
    x : Tensor [shape=(..., L)]
    frame_length, hop_length : int
        Window and hop in samples (400 and 160: 25 ms / 10 ms at 16 kHz).

    Returns
    -------
    Tensor [shape=(..., T, frame_length)], ``T = num_frames(L)``; frame i is
    ``x[..., i * hop : i * hop + frame_length]``.
    """
    x = _signal(x, "x")
    frame_length = _positive_int(frame_length, "frame_length")
    hop_length = _positive_int(hop_length, "hop_length")
    if x.shape[-1] < frame_length:
        return x.new_zeros((*x.shape[:-1], 0, frame_length))
    return x.unfold(-1, frame_length, hop_length)


def frame_times(
    count: int,
    frame_length: int = FRAME_LENGTH,
    hop_length: int = HOP_LENGTH,
    sample_rate: int = SAMPLE_RATE,
) -> Tensor:
    """(count,) float64 centre of each frame in seconds: ``(i * hop + frame_length / 2) / sr``."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        fail("count", "an int >= 0", describe(count))
    frame_length = _positive_int(frame_length, "frame_length")
    hop_length = _positive_int(hop_length, "hop_length")
    sample_rate = _positive_int(sample_rate, "sample_rate")
    starts = torch.arange(count, dtype=torch.float64) * hop_length
    return (starts + frame_length / 2) / sample_rate


def frame_labels(
    starts: Tensor | Sequence[float],
    ends: Tensor | Sequence[float],
    labels: Tensor | Sequence[int],
    count: int,
    *,
    frame_length: int = FRAME_LENGTH,
    hop_length: int = HOP_LENGTH,
    sample_rate: int = SAMPLE_RATE,
    fill: int = -1,
) -> Tensor:
    """Label of every frame: the label of the segment ``[start, end)`` holding its centre.

    Parameters
    ----------
    starts, ends : Tensor [shape=(S,)] or sequence of float
        Segment boundaries in seconds, in time order (ends non-decreasing, segments not
        overlapping: ``starts[i + 1] >= ends[i]``); gaps are allowed.
    labels : Tensor [shape=(S,)] or sequence of int
        Class of each segment.
    count : int
        Number of frames T (e.g. ``num_frames(len(wave))``).
    fill : int
        Label of frames whose centre is in no segment.

    Returns
    -------
    Tensor [shape=(T,)], int64.
    """
    starts = torch.as_tensor(starts, dtype=torch.float64).reshape(-1)
    ends = torch.as_tensor(ends, dtype=torch.float64).reshape(-1)
    labels_t = torch.as_tensor(labels)
    if labels_t.is_floating_point() or labels_t.dtype == torch.bool:
        fail("labels", "integer class labels", describe(labels_t), TypeError)
    labels_t = labels_t.reshape(-1).long()
    if not (starts.numel() == ends.numel() == labels_t.numel()):
        fail("labels", "as many starts, ends and labels",
             f"{starts.numel()}, {ends.numel()} and {labels_t.numel()}")
    check_finite(starts, "starts")
    check_finite(ends, "ends")
    if bool((ends < starts).any()):
        bad = int(torch.nonzero(ends < starts)[0])
        fail("ends", "end >= start for every segment",
             f"segment {bad} with start {float(starts[bad])} > end {float(ends[bad])}")
    if starts.numel() > 1 and bool((starts[1:] < ends[:-1]).any()):
        bad = int(torch.nonzero(starts[1:] < ends[:-1])[0]) + 1
        fail("starts", "segments in time order without overlap",
             f"segment {bad} starting at {float(starts[bad])} before the previous end "
             f"{float(ends[bad - 1])}")
    centres = frame_times(count, frame_length, hop_length, sample_rate)
    out = torch.full((count,), int(fill), dtype=torch.long)
    if starts.numel() == 0 or count == 0:
        return out
    # first segment whose end is after the centre; it holds the centre if it started before
    index = torch.searchsorted(ends, centres, right=True)
    inside = index < ends.numel()
    clipped = index.clamp(max=ends.numel() - 1)
    inside &= starts[clipped] <= centres
    out[inside] = labels_t[clipped[inside]]
    return out


# ------------------------------------------------------------------------------ mel and window
def hz_to_mel(f: Tensor | float) -> Tensor:
    """HTK mel scale ``2595 log10(1 + f / 700)`` (float64)."""
    f = torch.as_tensor(f, dtype=torch.float64)
    return 2595.0 * torch.log10(1.0 + f / 700.0)


def mel_to_hz(m: Tensor | float) -> Tensor:
    """Inverse of [`hz_to_mel`][freqnn.features.hz_to_mel]: ``700 (10^(m / 2595) - 1)``
    (float64)."""
    m = torch.as_tensor(m, dtype=torch.float64)
    return 700.0 * (torch.pow(10.0, m / 2595.0) - 1.0)


def mel_filterbank(
    num_bands: int = 40,
    n_fft: int = 512,
    sample_rate: int = SAMPLE_RATE,
    fmin: float = 0.0,
    fmax: float | None = None,
    *,
    frequencies: Tensor | None = None,
) -> Tensor:
    """Triangular mel filters, HTK style (peak 1), as a (num_bands, K) float64 matrix.

    Parameters
    ----------
    num_bands : int
    n_fft : int
        FFT size; the filters are sampled at the ``K = n_fft // 2 + 1`` bin frequencies
        ``k * sample_rate / n_fft`` unless ``frequencies`` is given.
    sample_rate : int
    fmin, fmax : float
        Band edges in Hz (``fmax`` defaults to ``sample_rate / 2``).
    frequencies : Tensor [shape=(K,)], optional
        Frequencies (Hz) to sample the filters at instead of the FFT bins (used by
        [`CosineFrontEnd`][freqnn.features.CosineFrontEnd] for its cosine coefficients).

    Raises
    ------
    ValueError
        For a band that no sampled frequency falls into (too many bands for the resolution).
    """
    num_bands = _positive_int(num_bands, "num_bands")
    sample_rate = _positive_int(sample_rate, "sample_rate")
    fmin = _nonneg_float(fmin, "fmin")
    nyquist = sample_rate / 2
    fmax = nyquist if fmax is None else _nonneg_float(fmax, "fmax")
    if not fmin < fmax <= nyquist:
        fail("fmax", f"fmin < fmax <= {nyquist:g} (the Nyquist frequency)",
             f"fmin={fmin:g}, fmax={fmax:g}")
    if frequencies is None:
        n_fft = _positive_int(n_fft, "n_fft")
        freqs = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sample_rate / n_fft
    else:
        freqs = check_floating(frequencies, "frequencies").detach().to(torch.float64).reshape(-1)
        check_finite(freqs, "frequencies")
    edges = mel_to_hz(torch.linspace(float(hz_to_mel(fmin)), float(hz_to_mel(fmax)),
                                     num_bands + 2, dtype=torch.float64))
    lo, centre, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs - lo) / (centre - lo)
    falling = (hi - freqs) / (hi - centre)
    weights = torch.clamp(torch.minimum(rising, falling), min=0.0)
    empty = torch.nonzero(weights.sum(-1) == 0).reshape(-1)
    if empty.numel():
        fail("num_bands", f"at most as many bands as the frequency resolution allows (bands "
             f"{empty.tolist()} contain no sampled frequency)", f"num_bands={num_bands}")
    return weights


def window(name: str, length: int, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """Symmetric analysis window: ``"hamming"`` (``0.54 - 0.46 cos(2 pi t / (N - 1))``, HTK),
    ``"hann"`` (``0.5 - 0.5 cos(2 pi t / (N - 1))``) or ``"rectangular"``."""
    length = _positive_int(length, "length")
    if name not in _WINDOWS:
        fail("window", f"one of {', '.join(_WINDOWS)}", repr(name))
    if name == "rectangular" or length == 1:
        return torch.ones(length, dtype=dtype)
    phase = 2 * math.pi * torch.arange(length, dtype=torch.float64) / (length - 1)
    a = 0.54 if name == "hamming" else 0.5
    return (a - (1 - a) * torch.cos(phase)).to(dtype)


def preemphasis(x: Tensor, coefficient: float = 0.97) -> Tensor:
    """``y[t] = x[t] - coefficient * x[t - 1]`` along the last dimension, ``y[0] = x[0]``."""
    x = _signal(x, "x")
    coefficient = _nonneg_float(coefficient, "coefficient")
    if coefficient == 0.0 or x.shape[-1] == 0:
        return x
    y = x.clone()
    y[..., 1:] = x[..., 1:] - coefficient * x[..., :-1]
    return y


# ----------------------------------------------------------------------------- log-mel, deltas
def log_mel_spectrogram(
    waveform: Tensor,
    *,
    sample_rate: int = SAMPLE_RATE,
    frame_length: int = FRAME_LENGTH,
    hop_length: int = HOP_LENGTH,
    n_fft: int = 512,
    num_bands: int = 40,
    window_name: str = "hamming",
    preemph: float = 0.97,
    fmin: float = 0.0,
    fmax: float | None = None,
    floor: float = 1e-10,
) -> Tensor:
    """Log-mel filterbank energies of a waveform (conventions in the module docstring).

    Parameters
    ----------
    waveform : Tensor [shape=(..., L)]
        Float samples (any scale; flite and TIMIT loaders give [-1, 1]).
    n_fft : int
        FFT size >= frame_length (frames are zero-padded).
    floor : float
        Energies are floored at this value before the log.

    Returns
    -------
    Tensor [shape=(..., T, num_bands)], dtype of ``waveform`` (computed in float64 for float64
    input, else float32).
    """
    return LogMel(sample_rate=sample_rate, frame_length=frame_length, hop_length=hop_length,
                  n_fft=n_fft, num_bands=num_bands, window_name=window_name, preemph=preemph,
                  fmin=fmin, fmax=fmax, floor=floor)(waveform)


def deltas(features: Tensor, width: int = 2) -> Tensor:
    """HTK regression deltas along the time axis (dim -2), edges padded by repetition.

    Parameters
    ----------
    features : Tensor [shape=(..., T, F)]
    width : int
        W: frames on each side.

    Returns
    -------
    Tensor [shape=(..., T, F)]: ``sum_k k (c[t+k] - c[t-k]) / (2 sum_k k^2)``.
    """
    features = check_floating(features, "features")
    if features.dim() < 2:
        fail("features", "a tensor of shape (..., time, features)", describe(features))
    width = _positive_int(width, "width")
    steps = features.shape[-2]
    if steps == 0:
        return features.clone()
    index = torch.arange(steps, device=features.device)
    out = torch.zeros_like(features)
    for k in range(1, width + 1):
        ahead = features.index_select(-2, (index + k).clamp(max=steps - 1))
        behind = features.index_select(-2, (index - k).clamp(min=0))
        out = out + k * (ahead - behind)
    return out / (2 * sum(k * k for k in range(1, width + 1)))


def add_deltas(features: Tensor, order: int = 2, width: int = 2) -> Tensor:
    """``[c, delta(c), delta(delta(c)), ...]`` up to ``order``, concatenated on the last dim:
    (..., T, F) -> (..., T, F * (order + 1))."""
    if isinstance(order, bool) or not isinstance(order, int) or order < 0:
        fail("order", "an int >= 0", describe(order))
    parts = [check_floating(features, "features")]
    for _ in range(order):
        parts.append(deltas(parts[-1], width))
    return torch.cat(parts, dim=-1)


class LogMel(nn.Module):
    """Log-mel filterbank (+ deltas) as a module; see
    [`log_mel_spectrogram`][freqnn.features.log_mel_spectrogram].

    Parameters
    ----------
    sample_rate, frame_length, hop_length, n_fft, num_bands, window_name, preemph, fmin, fmax,
    floor
        As in [`log_mel_spectrogram`][freqnn.features.log_mel_spectrogram].
    delta_order : int
        0 (static energies only), 1 (+ deltas) or 2 (+ delta-deltas).
    delta_width : int
        W of [`deltas`][freqnn.features.deltas].

    Notes
    -----
    ``forward(waveform)``: (..., L) -> (..., T, num_bands * (delta_order + 1)). The filterbank
    and window are float64 buffers, cast to the computation dtype.
    """

    def __init__(
        self,
        *,
        sample_rate: int = SAMPLE_RATE,
        frame_length: int = FRAME_LENGTH,
        hop_length: int = HOP_LENGTH,
        n_fft: int = 512,
        num_bands: int = 40,
        window_name: str = "hamming",
        preemph: float = 0.97,
        fmin: float = 0.0,
        fmax: float | None = None,
        floor: float = 1e-10,
        delta_order: int = 0,
        delta_width: int = 2,
    ) -> None:
        super().__init__()
        self.sample_rate = _positive_int(sample_rate, "sample_rate")
        self.frame_length = _positive_int(frame_length, "frame_length")
        self.hop_length = _positive_int(hop_length, "hop_length")
        self.n_fft = _positive_int(n_fft, "n_fft")
        if self.n_fft < self.frame_length:
            fail("n_fft", f"an int >= frame_length = {self.frame_length}", describe(n_fft))
        self.num_bands = _positive_int(num_bands, "num_bands")
        self.preemph = _nonneg_float(preemph, "preemph")
        self.floor = _nonneg_float(floor, "floor")
        if self.floor == 0.0:
            fail("floor", "a positive energy floor", describe(floor))
        if isinstance(delta_order, bool) or delta_order not in (0, 1, 2):
            fail("delta_order", "0, 1 or 2", describe(delta_order))
        self.delta_order = int(delta_order)
        self.delta_width = _positive_int(delta_width, "delta_width")
        self.window_name = window_name
        self.fmin, self.fmax = fmin, fmax
        bins = self.n_fft // 2 + 1
        self.register_buffer("window", torch.empty(self.frame_length, dtype=torch.float64))
        self.register_buffer("filterbank",
                             torch.empty(self.num_bands, bins, dtype=torch.float64))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Compute the window and the filterbank into their buffers (no parameters to draw):
        a module built on the meta device and materialised with ``to_empty`` gets its tables
        here (they are computed on the CPU)."""
        with torch.device("cpu"):
            self.window.copy_(window(self.window_name, self.frame_length))
            self.filterbank.copy_(mel_filterbank(self.num_bands, self.n_fft, self.sample_rate,
                                                 self.fmin, self.fmax))

    @property
    def output_size(self) -> int:
        """Features per frame: ``num_bands * (delta_order + 1)``."""
        return self.num_bands * (self.delta_order + 1)

    def forward(self, waveform: Tensor) -> Tensor:
        x = _signal(waveform, "waveform")
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        frames = frame_signal(preemphasis(x.to(dtype), self.preemph), self.frame_length,
                              self.hop_length)
        if frames.shape[-2] == 0:
            return x.new_zeros((*frames.shape[:-1], self.output_size))
        spectrum = torch.fft.rfft(frames * self.window.to(dtype), n=self.n_fft)
        power = spectrum.real.square() + spectrum.imag.square()
        energies = power @ self.filterbank.to(dtype).T
        out = torch.log(torch.clamp(energies, min=self.floor))
        if self.delta_order:
            out = add_deltas(out, self.delta_order, self.delta_width)
        return out.to(x.dtype)

    def extra_repr(self) -> str:
        return (f"num_bands={self.num_bands}, frame_length={self.frame_length}, "
                f"hop_length={self.hop_length}, n_fft={self.n_fft}, "
                f"window={self.window_name!r}, delta_order={self.delta_order}")


# -------------------------------------------------------------------------- learnable front end
class CosineFrontEnd(nn.Module):
    """Learnable raw-waveform front end: log mel-band energies of a learnable cosine transform.

    For each frame of ``n`` samples (already pre-emphasised, as
    [`frame_signal`][freqnn.features.frame_signal] gives):
    multiply by the analysis window, analyse with [`freqnn.CosineTransform`][freqnn.CosineTransform]
    (``n -> m``
    coefficients, frequencies ``w_k`` learnable), square, pool the ``m`` powers into
    ``num_bands`` bands with mel triangles, take ``log(max(energy, floor))`` and standardise
    with stored statistics::

        X = CosineTransform(window * frame)              (m,)
        E_b = sum_k F[b, k] X_k^2                          F: mel triangles at f_k = w_k sr / 2 pi
        out_b = (log max(E_b, floor) - mean_b) / std_b

    With ``m = n`` and the default ``init="full-band"`` the transform starts as the orthonormal
    DCT-III, whose squared coefficients split the frame's energy over ``n`` frequencies
    ``(2k + 1) pi / 2n`` (Parseval): the module then computes a DCT-based log-mel filterbank,
    close to [`LogMel`][freqnn.features.LogMel]'s. Training moves each ``w_k``; the pooling matrix
    ``F`` stays
    tied to the coefficient index (coefficient k keeps feeding the bands of its initial
    frequency), so the bands are learned through what their coefficients measure.

    Parameters
    ----------
    n : int
        Frame length in samples (400: 25 ms at 16 kHz).
    num_bands : int
        Output features per frame (mel bands).
    m : int, optional
        Cosine coefficients (default ``n``); fewer coefficients cost less but must still put
        at least one frequency in every band.
    sample_rate : int
    window_name : {"hamming", "hann", "rectangular"}
    fmin, fmax : float
        Mel band edges in Hz.
    learn_frequencies, learn_amplitudes : bool
        Passed to [`freqnn.CosineTransform`][freqnn.CosineTransform] (only its analysis half is
        used: the
        synthesis amplitudes are frozen so that no parameter goes without a gradient).
    init : {"full-band", "lowpass"} or Tensor
        Initial frequencies of the transform.
    floor : float
        Energy floor before the log.

    Attributes
    ----------
    transform : CosineTransform
    pooling : Tensor [shape=(num_bands, m)]
        Mel triangles at the initial frequencies (float64).
    mean, std : Tensor [shape=(num_bands,)]
        Standardisation of the log energies (buffers; 0 and 1 until
        ``fit_normalization``).

    Notes
    -----
    ``forward(frames)``: (..., n) -> (..., num_bands).
    """

    def __init__(
        self,
        n: int = FRAME_LENGTH,
        num_bands: int = 40,
        m: int | None = None,
        *,
        sample_rate: int = SAMPLE_RATE,
        window_name: str = "hamming",
        fmin: float = 0.0,
        fmax: float | None = None,
        learn_frequencies: bool = True,
        learn_amplitudes: bool = False,
        init: str | Tensor = "full-band",
        floor: float = 1e-10,
    ) -> None:
        super().__init__()
        from .transform import CosineTransform

        self.n = _positive_int(n, "n")
        self.num_bands = _positive_int(num_bands, "num_bands")
        self.sample_rate = _positive_int(sample_rate, "sample_rate")
        self.floor = _nonneg_float(floor, "floor")
        if self.floor == 0.0:
            fail("floor", "a positive energy floor", describe(floor))
        self.window_name = window_name
        self.transform = CosineTransform(self.n, m, learn_frequencies=learn_frequencies,
                                         learn_amplitudes=learn_amplitudes, tied=True, init=init)
        for name in ("a3", "a4"):  # synthesis amplitudes: unused by an analysis-only front end
            getattr(self.transform, name).requires_grad_(False)
        self.m = self.transform.m
        # fixed float64 tables on the CPU, cast on use (not buffers: a float32 copy would lose
        # precision for float64 runs, and they are rebuilt from the configuration anyway)
        with torch.device("cpu"):
            self._window = window(window_name, self.n)
            hz = self.initial_frequencies_hz()
            self._pooling = mel_filterbank(self.num_bands, sample_rate=self.sample_rate,
                                           fmin=fmin, fmax=fmax, frequencies=hz)
        self.register_buffer("mean", torch.zeros(self.num_bands))
        self.register_buffer("std", torch.ones(self.num_bands))

    def reset_parameters(self) -> None:
        """Initial frequencies and amplitudes again (in the current dtype), no standardisation."""
        self.transform.reset_parameters()
        with torch.no_grad():
            self.mean.zero_()
            self.std.fill_(1.0)

    @property
    def output_size(self) -> int:
        """Features per frame (``num_bands``)."""
        return self.num_bands

    @property
    def frequencies_hz(self) -> Tensor:
        """The current analysis frequencies in Hz, folded into [0, sr / 2] (float64, (m,))."""
        return self.transform.analysis_frequencies * self.sample_rate / (2 * math.pi)

    @property
    def pooling(self) -> Tensor:
        """(num_bands, m) float64 mel triangles at the coefficients' initial frequencies."""
        return self._pooling.clone()

    def initial_frequencies_hz(self) -> Tensor:
        """The analysis frequencies at initialisation in Hz (float64, (m,))."""
        return self.transform.initial_frequencies() * self.sample_rate / (2 * math.pi)

    def log_energies(self, frames: Tensor) -> Tensor:
        """The log band energies before standardisation: (..., n) -> (..., num_bands)."""
        frames = _signal(frames, "frames")
        if frames.shape[-1] != self.n:
            fail("frames", f"a tensor of shape (..., {self.n}) (samples per frame)",
                 describe(frames))
        coeffs = self.transform(frames * self._window.to(frames.device, frames.dtype))
        energies = coeffs.square() @ self._pooling.to(coeffs.device, coeffs.dtype).T
        return torch.log(torch.clamp(energies, min=self.floor))

    def forward(self, frames: Tensor) -> Tensor:
        out = self.log_energies(frames)
        return (out - self.mean.to(out.dtype)) / self.std.to(out.dtype)

    @torch.no_grad()
    def fit_normalization(self, frames: Tensor, eps: float = 1e-5) -> None:
        """Set ``mean`` / ``std`` to the statistics of the current log energies of ``frames``
        (..., n), e.g. the training frames, so the outputs start standardised."""
        energies = self.log_energies(frames).reshape(-1, self.num_bands).to(torch.float64)
        if energies.shape[0] < 2:
            fail("frames", "at least 2 frames to estimate statistics", describe(frames))
        self.mean.copy_(energies.mean(0).to(self.mean.dtype))
        self.std.copy_(energies.std(0).clamp(min=eps).to(self.std.dtype))

    def extra_repr(self) -> str:
        return (f"n={self.n}, num_bands={self.num_bands}, m={self.m}, "
                f"sample_rate={self.sample_rate}, window={self.window_name!r}")
