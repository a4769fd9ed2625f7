"""The learnable cosine transform and framing for long signals (``docs/transform.md``).

[`CosineTransform`][freqnn.transform.CosineTransform] analyses blocks of N samples into M <= N
coefficients with trainable
frequencies and amplitudes; at initialisation with M = N it is the orthonormal DCT-III / DCT-II
pair (exact reconstruction). [`FramedTransform`][freqnn.transform.FramedTransform] applies it to
long signals in blocks
(hop N) or half-overlapping frames (hop N/2, power-complementary sqrt-Hann window) with
overlap-add; ``frame``, ``overlap_add`` and ``sqrt_hann_window`` are its parts.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from . import functional as Fn
from .checks import check_finite, check_floating, describe, fail, vmapping
from .frequencies import fold_frequency

__all__ = [
    "CosineTransform",
    "FramedTransform",
    "frame",
    "overlap_add",
    "sqrt_hann_window",
]

_INITS = ("full-band", "lowpass")
_AMPLITUDES = ("scalar", "per-coefficient")
_MODES = ("block", "half")


def _check_int(value: object, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        fail(name, f"an int >= {minimum}", describe(value), TypeError)
    if value < minimum:  # type: ignore[operator]
        fail(name, f"an int >= {minimum}", describe(value))
    return int(value)  # type: ignore[arg-type]


def _check_bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        fail(name, "a bool", describe(value), TypeError)
    return bool(value)


class CosineTransform(nn.Module):
    r"""Learnable cosine transform: N samples -> M coefficients, and back.

    Analysis and synthesis (``docs/transform.md``)::

        X_k = (1/sqrt(N)) (a1 x_0 + a2 sum_{t=1}^{N-1} x_t cos(w_k t)),         k = 0..M-1
        y_t = (1/sqrt(N)) sum_{k=0}^{M-1} c_t cos(v_k t) X_k,  c_0 = a3, c_t = a4 (t >= 1)

    initialised at ``a1 = a3 = 1``, ``a2 = a4 = sqrt(2)`` and ``w_k = v_k = (2k + 1) pi / (2P)``,
    with ``P = M`` for ``init="full-band"`` (M points spanning [0, pi]) and ``P = N`` for
    ``init="lowpass"`` (the M lowest frequencies of the N-point grid). With M = N both inits
    are the orthonormal DCT-III (analysis, ``scipy.fft.dct(x, type=3, norm="ortho")``) and
    DCT-II (synthesis), so ``inverse(forward(x)) == x``.

    Parameters
    ----------
    n : int
        Block length N >= 1 (samples per transform).
    m : int, optional
        Number of coefficients M, 1 <= M <= N (default N).
    learn_frequencies : bool
        Whether w (and v) are trainable parameters (else buffers).
    learn_amplitudes : bool
        Whether a1..a4 are trainable parameters (else buffers).
    tied : bool
        Share the frequencies: v = w (a single ``w_offset``). Amplitudes stay separate.
    init : {"full-band", "lowpass"} or Tensor [shape=(M,)]
        Initial frequency grid, or explicit initial frequencies in radians per sample.
    amplitudes : {"scalar", "per-coefficient"}
        ``"scalar"``: a1..a4 are scalars as in the contract. ``"per-coefficient"``: each is a
        vector of M values, amplitude ``a_i[k]`` weighting coefficient k (same initial values).
    device, dtype
        Of the parameters (default float32 / the default device).

    Attributes
    ----------
    w_offset, v_offset : Tensor [shape=(M,)]
        The stored frequency parameters: offsets from the initial DCT grid,
        ``w_k = (2k + 1) pi / (2P) + w_offset[k]``; with a tensor ``init`` (no grid) they are
        the frequencies themselves. Storing offsets keeps full precision in float32 modules:
        the grid part of every phase is computed exactly, and only the (small) learned
        departure is rounded to the parameter dtype. ``v_offset`` is absent when ``tied``.
    a1, a2, a3, a4 : Tensor [shape=() or (M,)]
        Amplitudes.
    grid : int or None
        The grid size P the offsets refer to.

    Notes
    -----
    **Range of the frequencies.** For integer t, ``cos(w t)`` is even and 2 pi-periodic in w,
    so every real w is an alias of exactly one frequency in [0, pi] and gives the same
    transform. The parameters are therefore left unconstrained (no clipping that would stop
    gradients); [`analysis_frequencies`][freqnn.CosineTransform.analysis_frequencies] /
    [`synthesis_frequencies`][freqnn.CosineTransform.synthesis_frequencies] return the
    learned frequencies folded into [0, pi], which is what a user should read and plot.

    **Paths.** When the frequencies sit exactly on the DCT grid (offsets all zero) and are not
    being trained in this call (buffers, ``requires_grad=False``, or autograd disabled), the
    transform uses the O(N log N) FFT path; otherwise an O(N M) matrix product with a basis
    built vectorised in float64 and cast. The basis is cached per (direction, dtype, device)
    and reused while the offsets are unchanged: the cache compares the current offset values
    with those it was built from, so optimizer steps, ``torch.no_grad()`` edits and even
    ``.data`` edits invalidate it. A cached basis stays differentiable with respect to the
    offsets (a custom autograd function computes the gradient in float64).

    Inputs in float64 are computed in float64; every other floating dtype in float32 and
    returned in the input's dtype.
    """

    def __init__(
        self,
        n: int,
        m: int | None = None,
        *,
        learn_frequencies: bool = True,
        learn_amplitudes: bool = True,
        tied: bool = False,
        init: str | Tensor = "full-band",
        amplitudes: str = "scalar",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.n = _check_int(n, "n")
        self.m = self.n if m is None else _check_int(m, "m")
        if self.m > self.n:
            fail("m", f"an int <= n = {self.n}", describe(m))
        self.learn_frequencies = _check_bool(learn_frequencies, "learn_frequencies")
        self.learn_amplitudes = _check_bool(learn_amplitudes, "learn_amplitudes")
        self.tied = _check_bool(tied, "tied")
        if amplitudes not in _AMPLITUDES:
            fail("amplitudes", f"one of {_AMPLITUDES}", repr(amplitudes))
        self.amplitudes = amplitudes
        dtype = torch.get_default_dtype() if dtype is None else dtype
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            fail("dtype", "a floating-point torch.dtype", repr(dtype), TypeError)
        factory = {"device": device, "dtype": dtype}

        self._init_frequencies: Tensor | None = None
        if isinstance(init, Tensor):
            check_floating(init, "init")
            if tuple(init.shape) != (self.m,):
                fail("init", f"a tensor of shape ({self.m},) (one frequency per coefficient)",
                     describe(init))
            check_finite(init, "init")
            self.init = "custom"
            self.grid: int | None = None
            self._init_frequencies = init.detach().to(torch.float64).cpu().clone()
        elif init in _INITS:
            self.init = init
            self.grid = self.m if init == "full-band" else self.n
        else:
            fail("init", f"one of {_INITS} or a tensor of shape ({self.m},)", repr(init))

        names = ("w_offset",) if self.tied else ("w_offset", "v_offset")
        for name in names:
            self._register(name, torch.empty(self.m, **factory), self.learn_frequencies)
        shape = (self.m,) if amplitudes == "per-coefficient" else ()
        for name in ("a1", "a2", "a3", "a4"):
            self._register(name, torch.empty(shape, **factory), self.learn_amplitudes)
        self._cache: dict[tuple, tuple[tuple[Tensor, ...], Tensor]] = {}
        self.reset_parameters()

    def _register(self, name: str, value: Tensor, learnable: bool) -> None:
        if learnable:
            self.register_parameter(name, nn.Parameter(value))
        else:
            self.register_buffer(name, value)

    # -- parameters ---------------------------------------------------------------------------
    def reset_parameters(self) -> None:
        """Back to the initial grid (or the given initial frequencies) and amplitudes."""
        with torch.no_grad():
            for offset in self._offsets():
                if self._init_frequencies is None:
                    offset.zero_()
                else:
                    offset.copy_(self._init_frequencies)
            self.a1.fill_(1.0)
            self.a2.fill_(math.sqrt(2.0))
            self.a3.fill_(1.0)
            self.a4.fill_(math.sqrt(2.0))
        self._cache.clear()

    def _offsets(self) -> tuple[Tensor, ...]:
        return (self.w_offset,) if self.tied else (self.w_offset, self.v_offset)

    def _synthesis_offset(self) -> Tensor:
        return self.w_offset if self.tied else self.v_offset

    def _absolute(self, offset: Tensor) -> Tensor:
        base = offset.to(torch.float64)
        if self.grid is None:
            return base
        return Fn.dct_grid(self.m, self.grid, device=offset.device) + base

    @property
    def analysis_frequencies(self) -> Tensor:
        """Analysis frequencies w, folded into [0, pi] (float64, differentiable), shape (M,)."""
        return fold_frequency(self._absolute(self.w_offset))

    @property
    def synthesis_frequencies(self) -> Tensor:
        """Synthesis frequencies v, folded into [0, pi] (float64, differentiable), shape (M,)."""
        return fold_frequency(self._absolute(self._synthesis_offset()))

    def initial_frequencies(self) -> Tensor:
        """The frequencies at initialisation (float64, shape (M,)): the grid or the given init."""
        if self._init_frequencies is not None:
            return self._init_frequencies.clone()
        return Fn.dct_grid(self.m, self.grid)

    @torch.no_grad()
    def set_frequencies(self, analysis: Tensor | None = None,
                        synthesis: Tensor | None = None) -> None:
        """Overwrite the frequencies (radians per sample, shape (M,)); synthesis ignored if tied."""
        for name, value, offset in (("analysis", analysis, self.w_offset),
                                    ("synthesis", synthesis, self._synthesis_offset())):
            if value is None or (name == "synthesis" and self.tied):
                continue
            check_floating(value, name)
            if tuple(value.shape) != (self.m,):
                fail(name, f"a tensor of shape ({self.m},)", describe(value))
            check_finite(value, name)
            target = value.detach().to(device=offset.device, dtype=torch.float64)
            offset.copy_(target - (self._absolute(torch.zeros_like(target))))

    def analysis_matrix(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """The (M, N) matrix A of the analysis, X = A x (amplitudes and 1/sqrt(N) included)."""
        basis = self._basis("analysis", self.w_offset, dtype)
        amp = self._column_amplitudes(self.a1, self.a2, dtype)
        return basis * amp / math.sqrt(self.n)

    def synthesis_matrix(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """The (N, M) matrix S of the synthesis, y = S X."""
        basis = self._basis("synthesis", self._synthesis_offset(), dtype)
        amp = self._column_amplitudes(self.a3, self.a4, dtype)
        return (basis * amp / math.sqrt(self.n)).T

    def _column_amplitudes(self, first: Tensor, rest: Tensor, dtype: torch.dtype) -> Tensor:
        """(M, N) or broadcastable amplitude pattern: ``first`` on column 0, ``rest`` elsewhere."""
        first = first.to(dtype).reshape(-1, 1)
        rest = rest.to(dtype).reshape(-1, 1)
        # built without in-place writes, which the TorchScript-based ONNX exporter mistraces
        is_first = (torch.arange(self.n, device=first.device) == 0).to(dtype)
        return first * is_first + rest * (1 - is_first)

    # -- paths and cache ----------------------------------------------------------------------
    def _trained_now(self, offset: Tensor) -> bool:
        return torch.is_grad_enabled() and offset.requires_grad

    def uses_fft(self, direction: str = "analysis") -> bool:
        """Whether ``forward`` (``"analysis"``) or ``inverse`` (``"synthesis"``) takes the FFT
        path right now (frequencies exactly on the DCT grid and not being trained)."""
        if direction not in ("analysis", "synthesis"):
            fail("direction", "'analysis' or 'synthesis'", repr(direction))
        offset = self.w_offset if direction == "analysis" else self._synthesis_offset()
        tracing = torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()
        if self.grid is None or self._trained_now(offset) or tracing or vmapping():
            # while torch.compile / torch.export / ONNX export trace, the choice may not depend
            # on the parameters' values (and ONNX has no DCT through the FFT), nor under vmap
            # (the parameters may be batched): the matrix path serves every case
            return False
        return not bool(torch.count_nonzero(offset.detach()))

    def _cached(self, key: tuple, inputs: tuple[Tensor, ...]) -> Tensor | None:
        # no cache while tracing: its validity test compares values, and a traced graph must
        # not hold tensors of one call for the next
        entry = None if torch.compiler.is_compiling() else self._cache.get(key)
        if entry is None:
            return None
        saved, value = entry
        if len(saved) == len(inputs) and all(
            a.shape == b.shape and a.dtype == b.dtype and a.device == b.device and torch.equal(a, b)
            for a, b in zip(saved, inputs, strict=True)
        ):
            return value
        return None

    def _store(self, key: tuple, inputs: tuple[Tensor, ...], value: Tensor) -> None:
        if not torch.compiler.is_compiling():
            self._cache[key] = (tuple(t.detach().clone() for t in inputs), value.detach())

    def _basis(self, direction: str, offset: Tensor, dtype: torch.dtype) -> Tensor:
        """Cosine basis (M, N) of ``offset`` in ``dtype``, cached while ``offset`` is unchanged."""
        if vmapping():
            # torch.func.vmap: plain operations (vmap has a rule for each), not the basis's
            # autograd.Function (it has none) nor the cache (its test reads values)
            rows = Fn._row_chunks(offset.shape[0], self.n)
            return torch.cat([Fn._cos_sin(offset, r, self.n, self.grid, "cos") for r in rows]
                             ).to(dtype)
        name = "w" if (direction == "analysis" or self.tied) else "v"
        key = ("basis", name, dtype, offset.device)
        cached = self._cached(key, (offset.detach(),))
        basis = Fn.cosine_basis(offset, self.n, grid=self.grid, dtype=dtype, cached=cached)
        if cached is None:
            self._store(key, (offset.detach(),), basis)
        return basis

    def clear_cache(self) -> None:
        """Drop cached bases and factorisations (they are rebuilt on demand)."""
        self._cache.clear()

    def _apply(self, fn, recurse: bool = True):  # type: ignore[override]
        # .to() / .cuda() / .double(): cached tensors belong to the old device / dtype
        self._cache.clear()
        return super()._apply(fn, recurse)

    # -- transforms ---------------------------------------------------------------------------
    def _check_input(self, x: object, name: str, size: int, meaning: str) -> Tensor:
        x = check_floating(x, name)
        if x.dim() == 0 or x.shape[-1] != size:
            fail(name, f"a tensor of shape (..., {size}) ({meaning})", describe(x))
        check_finite(x, name)  # NaN and inf passed through (issue 27 item 12)
        return x

    def forward(self, x: Tensor) -> Tensor:
        """Analyse the last dimension.

        Parameters
        ----------
        x : Tensor [shape=(..., N)]

        Returns
        -------
        Tensor [shape=(..., M)], dtype of ``x``.
        """
        x = self._check_input(x, "x", self.n, "N samples per block")
        if x.numel() == 0:  # an empty batch (MKL's FFT refuses it)
            return Fn._empty(x, self.m)
        fft = self.uses_fft("analysis")
        basis = None if fft else self._basis("analysis", self.w_offset, Fn._compute_dtype(x))
        return Fn.cosine_analysis(x, self.w_offset, self.a1, self.a2, grid=self.grid, fft=fft,
                                  basis=basis)

    def inverse(self, X: Tensor, exact: bool = False) -> Tensor:
        """Synthesise the last dimension.

        Parameters
        ----------
        X : Tensor [shape=(..., M)]
        exact : bool
            If True (requires M = N), invert the current analysis matrix (an LU solve in
            float64, cached while the analysis parameters are unchanged) instead of using the
            synthesis parameters, so ``inverse(forward(x), exact=True) == x`` after training too.

        Returns
        -------
        Tensor [shape=(..., N)], dtype of ``X``.
        """
        X = self._check_input(X, "X", self.m, "M coefficients")
        _check_bool(exact, "exact")
        if X.numel() == 0:  # an empty batch
            return Fn._empty(X, self.n)
        if exact:
            return self._exact_inverse(X)
        offset = self._synthesis_offset()
        fft = self.uses_fft("synthesis")
        basis = None if fft else self._basis("synthesis", offset, Fn._compute_dtype(X))
        return Fn.cosine_synthesis(X, offset, self.n, self.a3, self.a4, grid=self.grid, fft=fft,
                                   basis=basis)

    def _exact_inverse(self, X: Tensor) -> Tensor:
        if self.m != self.n:
            fail("exact", f"False when m < n (an exact inverse needs m == n = {self.n})",
                 f"True with m = {self.m}")
        rhs = X.to(torch.float64).reshape(-1, self.m).T  # (M, B)
        inputs = (self.w_offset, self.a1, self.a2)
        if torch.is_grad_enabled() and any(t.requires_grad for t in (*inputs, X)):
            solution = torch.linalg.solve(self.analysis_matrix(torch.float64), rhs)
        else:
            key = ("lu", X.device)
            factors = self._cached(key, tuple(t.detach() for t in inputs))
            if factors is None:
                lu, pivots = torch.linalg.lu_factor(self.analysis_matrix(torch.float64).detach())
                factors = torch.cat([lu, pivots.to(torch.float64)[None]], dim=0)
                self._store(key, tuple(t.detach() for t in inputs), factors)
            lu, pivots = factors[:-1], factors[-1].to(torch.int32)
            solution = torch.linalg.lu_solve(lu, pivots, rhs)
        return solution.T.reshape(X.shape).to(X.dtype)

    def extra_repr(self) -> str:
        return (f"n={self.n}, m={self.m}, init={self.init!r}, tied={self.tied}, "
                f"learn_frequencies={self.learn_frequencies}, "
                f"learn_amplitudes={self.learn_amplitudes}, amplitudes={self.amplitudes!r}")


# ---------------------------------------------------------------------------------------------
# Framing
# ---------------------------------------------------------------------------------------------
def sqrt_hann_window(n: int, *, dtype: torch.dtype | None = None,
                     device: torch.device | str | None = None) -> Tensor:
    """Power-complementary window ``w[t] = sin(pi (t + 1/2) / n)``, t = 0..n-1.

    The square root of a Hann window sampled half a sample off its zeros (also called the sine
    window). For even n, ``w[t]^2 + w[t + n/2]^2 = 1``, so analysis and synthesis with ``w`` at
    hop n/2 overlap-add to the identity. Computed in float64, returned in ``dtype``.

    Returns
    -------
    Tensor [shape=(n,)]
    """
    n = _check_int(n, "n")
    t = torch.arange(n, dtype=torch.float64, device=device)
    return torch.sin(math.pi * (t + 0.5) / n).to(dtype or torch.get_default_dtype())


def frame(x: Tensor, size: int, hop: int) -> Tensor:
    """Frames of ``size`` samples every ``hop`` samples (a strided view, no copy, no padding).

    Parameters
    ----------
    x : Tensor [shape=(..., T)], T >= size
    size, hop : int

    Returns
    -------
    Tensor [shape=(..., F, size)] with F = 1 + (T - size) // hop.
    """
    if not isinstance(x, Tensor):
        fail("x", "a torch.Tensor", describe(x), TypeError)
    size, hop = _check_int(size, "size"), _check_int(hop, "hop")
    if x.dim() == 0 or x.shape[-1] < size:
        fail("x", f"a tensor of shape (..., T) with T >= size = {size}", describe(x))
    return x.unfold(-1, size, hop)


def overlap_add(frames: Tensor, hop: int) -> Tensor:
    """Sum frames placed every ``hop`` samples (the adjoint of ``frame``).

    Parameters
    ----------
    frames : Tensor [shape=(..., F, size)]
    hop : int

    Returns
    -------
    Tensor [shape=(..., (F - 1) * hop + size)]
    """
    frames = check_floating(frames, "frames")
    hop = _check_int(hop, "hop")
    if frames.dim() < 2 or frames.shape[-1] == 0 or frames.shape[-2] == 0:
        fail("frames", "a tensor of shape (..., F, size) with F, size >= 1", describe(frames))
    *lead, count, size = frames.shape
    length = (count - 1) * hop + size
    flat = frames.reshape(-1, count, size).transpose(1, 2)  # (B, size, F) as fold expects
    out = torch.nn.functional.fold(flat, output_size=(1, length), kernel_size=(1, size),
                                   stride=(1, hop))
    return out.reshape(*lead, length)


class FramedTransform(nn.Module):
    """A [`CosineTransform`][freqnn.transform.CosineTransform] applied to long signals frame by
    frame, with overlap-add.

    Modes
    -----
    ``"block"``: frames of N samples with hop N and no window (a block transform); the signal is
    zero-padded at the end to a whole number of blocks.
    ``"half"``: frames of N samples with hop N/2 (N even), windowed by ``window`` before the
    analysis and again after the synthesis; the default window ``sqrt_hann_window``
    satisfies ``w[t]^2 + w[t + N/2]^2 = 1``. The signal is padded with N/2 zeros in front and
    enough at the end that every sample lies in exactly two frames, so the edges reconstruct
    exactly too.

    At initialisation with M = N (analysis then synthesis is the identity), ``inverse(forward(x),
    length=T)`` equals ``x`` in both modes.

    Parameters
    ----------
    transform : CosineTransform
        Registered as a submodule (its parameters are trained through this module).
    mode : {"block", "half"}
    window : Tensor [shape=(N,)], optional
        Analysis and synthesis window for ``"half"`` (default ``sqrt_hann_window``); must be
        None for ``"block"``.
    device, dtype
        Of the ``window`` buffer (default: the given window's device and dtype; the default
        device and float64 for the default window), as ``nn.Linear``'s arguments.
    """

    def __init__(self, transform: CosineTransform, mode: str = "half",
                 window: Tensor | None = None, *, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if not isinstance(transform, CosineTransform):
            fail("transform", "a CosineTransform", describe(transform), TypeError)
        if mode not in _MODES:
            fail("mode", f"one of {_MODES}", repr(mode))
        self.transform = transform
        self.mode = mode
        n = transform.n
        if mode == "half":
            if n % 2:
                fail("transform", "an even block length n for mode 'half' (hop n/2)",
                     f"n = {n}")
            self.hop = n // 2
            if window is None:
                with torch.device("cpu"):
                    window = sqrt_hann_window(n, dtype=torch.float64)
            elif device is None:
                device = window.device
            check_floating(window, "window")
            if tuple(window.shape) != (n,):
                fail("window", f"a tensor of shape ({n},)", describe(window))
            check_finite(window, "window")
            # kept on the CPU for reset_parameters (a module built on the meta device has no
            # window values until then)
            self._initial_window = window.detach().to("cpu", copy=True)
            self.register_buffer(
                "window", torch.empty(n, device=device, dtype=dtype or window.dtype)
            )
            self.fill_buffers()  # not reset_parameters: the transform given keeps its weights
        else:
            if window is not None:
                fail("window", "None in mode 'block' (blocks are not windowed)", describe(window))
            self.hop = n
            self.window = None

    def reset_parameters(self) -> None:
        """Re-initialise the transform
        ([`CosineTransform.reset_parameters`][freqnn.transform.CosineTransform.reset_parameters])
        and write the
        window given at construction into the ``window`` buffer."""
        self.transform.reset_parameters()
        self.fill_buffers()

    @torch.no_grad()
    def fill_buffers(self) -> None:
        """The window given at construction into the ``window`` buffer (mode ``"half"``)."""
        if self.window is not None:
            self.window.copy_(self._initial_window)

    def num_frames(self, length: int) -> int:
        """Frames produced for a signal of ``length`` samples."""
        length = _check_int(length, "length")
        if self.mode == "block":
            return -(-length // self.hop)
        return -(-length // self.hop) + 1

    def _left(self) -> int:
        return self.hop if self.mode == "half" else 0

    def forward(self, x: Tensor) -> Tensor:
        """Frame, window and analyse.

        Parameters
        ----------
        x : Tensor [shape=(..., T)], T >= 1

        Returns
        -------
        Tensor [shape=(..., F, M)] with F = [`num_frames`][freqnn.FramedTransform.num_frames] (T).
        """
        x = check_floating(x, "x")
        if x.dim() == 0 or x.shape[-1] == 0:
            fail("x", "a tensor of shape (..., T) with T >= 1", describe(x))
        check_finite(x, "x")
        length = x.shape[-1]
        count = self.num_frames(length)
        total = (count - 1) * self.hop + self.transform.n
        padded = torch.nn.functional.pad(x, (self._left(), total - self._left() - length))
        frames = frame(padded, self.transform.n, self.hop)
        if self.window is not None:
            frames = frames * self.window.to(frames.dtype)
        return self.transform(frames)

    def inverse(self, X: Tensor, length: int | None = None) -> Tensor:
        """Synthesise, window and overlap-add back to ``length`` samples.

        Parameters
        ----------
        X : Tensor [shape=(..., F, M)]
        length : int, optional
            Samples of the original signal T (default: the longest T giving F frames).

        Returns
        -------
        Tensor [shape=(..., T)]
        """
        X = check_floating(X, "X")
        if X.dim() < 2:
            fail("X", "a tensor of shape (..., F, M)", describe(X))
        check_finite(X, "X")
        count = X.shape[-2]
        longest = count * self.hop if self.mode == "block" else (count - 1) * self.hop
        if length is None:
            length = longest
        length = _check_int(length, "length")
        if self.num_frames(length) != count:
            fail("length", f"a length that gives {count} frames (at most {longest})",
                 describe(length))
        frames = self.transform.inverse(X)
        if self.window is not None:
            frames = frames * self.window.to(frames.dtype)
        signal = overlap_add(frames, self.hop)
        return signal[..., self._left() : self._left() + length]

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, hop={self.hop}"
