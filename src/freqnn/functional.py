"""Stateless math shared by the modules: cosine transforms and the cosine bases behind them.

Everything here transforms the last dimension and accepts any leading batch shape. Two families:

* the fixed orthonormal DCT pair, [`dct`][freqnn.functional.dct] (DCT-II) and
  [`idct`][freqnn.functional.idct] (DCT-III, its inverse),
  computed with ``torch.fft`` in O(N log N) (the same conventions as ``scipy.fft.dct`` /
  ``scipy.fft.idct`` with ``type=2``);
* the learnable cosine transform of [`freqnn.CosineTransform`][freqnn.CosineTransform]
  (``docs/transform.md``): [`cosine_analysis`][freqnn.functional.cosine_analysis] and
  [`cosine_synthesis`][freqnn.functional.cosine_synthesis], computed either
  by a matrix product with a cosine basis ([`cosine_basis`][freqnn.functional.cosine_basis], built
  vectorised in float64) or,
  when the frequencies sit exactly on a DCT grid, by folding the signal and one FFT
  ([`grid_cosine_sums`][freqnn.functional.grid_cosine_sums],
  [`grid_cosine_expansion`][freqnn.functional.grid_cosine_expansion]). The module calls these same
  functions, so the functional and module forms share one code path.

Frequencies are angular, in radians per sample. Frequencies on a DCT grid are described exactly
by an integer grid size ``p`` (``omega_k = (2k + 1) pi / (2p)``) plus float offsets: phases of the
grid part are reduced with integer arithmetic, which keeps the basis exact to float64 rounding at
N = 16384 (a float64 product ``omega * t`` alone would lose about 1e-11 there).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .checks import check_finite, check_floating, describe, fail

__all__ = [
    "cosine_analysis",
    "cosine_basis",
    "cosine_synthesis",
    "dct",
    "dct_grid",
    "grid_cosine_expansion",
    "grid_cosine_sums",
    "idct",
]

_NORMS = ("ortho", "backward")
SQRT2 = math.sqrt(2.0)
# float64 elements per chunk when a basis is built or differentiated (bounds temporary memory)
_CHUNK_ELEMENTS = 1 << 18  # 2 MiB of float64: temporaries stay in cache


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _check_size(value: object, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        fail(name, f"an int >= {minimum}", describe(value), TypeError)
    if value < minimum:  # type: ignore[operator]
        fail(name, f"an int >= {minimum}", describe(value))
    return int(value)  # type: ignore[arg-type]


def _compute_dtype(x: Tensor) -> torch.dtype:
    """FFTs and bases run in float64 for float64 input, else float32 (bfloat16/half upcast)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _check_signal(x: object, name: str) -> Tensor:
    x = check_floating(x, name)
    if x.dim() == 0:
        fail(name, "a tensor with at least 1 dimension (..., N)", describe(x))
    if x.shape[-1] == 0:
        fail(name, "a non-empty last dimension (..., N) with N >= 1", describe(x))
    check_finite(x, name)  # NaN and inf passed through (issue 27 item 12)
    return x


def _empty(x: Tensor, size: int) -> Tensor:
    """The (..., size) result of a transform of an empty batch ``x`` (MKL's FFT refuses it),
    still attached to ``x``'s graph."""
    return x.new_zeros((*x.shape[:-1], size)) + x.sum() * 0


def _check_norm(norm: str) -> None:
    if norm not in _NORMS:
        fail("norm", f"one of {_NORMS}", repr(norm))


# ---------------------------------------------------------------------------------------------
# DCT-II sums and their inverse (the FFT kernels everything else is built from)
# ---------------------------------------------------------------------------------------------
_TABLES: dict[tuple, Tensor] = {}


def _table(kind: str, n: int, dtype: torch.dtype, device: torch.device,
           overall: float = 1.0, first: float = 1.0) -> Tensor:
    """Small per-size constants of the FFT kernels (twiddles, reorderings), built once.

    ``overall`` and ``first`` scale the output (``"gather_sign"``) or input (``"untwiddle"``)
    of a kernel, the coefficient k = 0 by ``overall * first``: normalisations cost no pass.
    """
    key = (kind, n, dtype, device, overall, first)
    table = _TABLES.get(key)
    if table is not None:
        return table
    half = n // 2 + 1
    if kind == "order":  # v = x[order]: even samples, then odd ones reversed
        table = torch.cat([torch.arange(0, n, 2), torch.arange(1, n, 2).flip(0)])
    elif kind == "unorder":  # x = v[unorder]
        table = torch.argsort(_table("order", n, dtype, torch.device("cpu")))
    elif kind in ("twiddle", "untwiddle"):
        k = torch.arange(half, dtype=torch.float64)
        sign = -1.0 if kind == "twiddle" else 1.0
        table = torch.polar(torch.ones_like(k), sign * math.pi * k / (2 * n))
        if kind == "untwiddle":
            table = table * overall
            table[0] *= first
        table = table.to(torch.complex128 if dtype == torch.float64 else torch.complex64)
    elif kind == "gather":  # S from (Re z_0, Im z_0, Re z_1, Im z_1, ...): S_k, then S_{N-k}
        tail = torch.arange((n - 1) // 2, 0, -1)
        table = torch.cat([2 * torch.arange(half), 2 * tail + 1])
    elif kind == "gather_sign":
        table = torch.full((n,), overall, dtype=torch.float64)
        table[half:] *= -1.0
        table[0] *= first
        table = table.to(dtype)
    elif kind == "mirror":  # S_{N-k} for k = 0..N//2, index n reading a padded zero
        table = torch.cat([torch.tensor([n]), torch.arange(n - 1, n - half, -1)])
    else:  # pragma: no cover - internal
        raise KeyError(kind)
    table = table.to(device)
    if len(_TABLES) > 256:  # many sizes: keep memory bounded
        _TABLES.clear()
    _TABLES[key] = table
    return table


def _dct2_sums(x: Tensor, overall: float = 1.0, first: float = 1.0) -> Tensor:
    """S_k = sum_n x_n cos(pi k (2n + 1) / (2N)), k = 0..N-1, in O(N log N).

    Reorder v = (x_0, x_2, x_4, ..., x_5, x_3, x_1); with V = FFT(v) and W = exp(-i pi / (2N)),
    S_k = Re(W^k V_k) and S_{N-k} = -Im(W^k V_k), so the half spectrum of a real FFT suffices.
    The result is scaled by ``overall`` (and S_0 once more by ``first``).
    """
    n, dtype, device = x.shape[-1], x.dtype, x.device
    v = x.index_select(-1, _table("order", n, dtype, device))
    z = torch.fft.rfft(v, dim=-1) * _table("twiddle", n, dtype, device)
    flat = torch.view_as_real(z).flatten(-2)
    return flat.index_select(-1, _table("gather", n, dtype, device)) * _table(
        "gather_sign", n, dtype, device, overall, first)


def _dct2_sums_inverse(s: Tensor, overall: float = 1.0, first: float = 1.0) -> Tensor:
    """The x with ``_dct2_sums(x) == s * scale`` (an inverse real FFT and a reordering), where
    ``scale`` is ``overall`` and ``overall * first`` for s_0 (a scaling of the input)."""
    n, dtype, device = s.shape[-1], s.dtype, s.device
    half = n // 2 + 1
    # Z_k = S_k - i S_{N-k} (S_N = 0), then V_k = Z_k / W^k, then v = irfft(V)
    padded = torch.nn.functional.pad(s, (0, 1))
    mirrored = padded.index_select(-1, _table("mirror", n, dtype, device))
    untwiddle = _table("untwiddle", n, dtype, device, overall, first)
    spectrum = torch.complex(s[..., :half], -mirrored) * untwiddle
    v = torch.fft.irfft(spectrum, n=n, dim=-1)
    return v.index_select(-1, _table("unorder", n, dtype, device))


def _dct3_sums(c: Tensor) -> Tensor:
    """T_n = sum_k c_k cos(pi k (2n + 1) / (2N)), n = 0..N-1 (a plain sum, k = 0 included)."""
    # x = _dct2_sums_inverse(S) satisfies x_n = (1/N) (S_0 + 2 sum_{k>=1} S_k cos(...)), so
    # T(c) = (N/2) x(S) with S_0 = 2 c_0 and S_k = c_k.
    return _dct2_sums_inverse(c, c.shape[-1] / 2, 2.0)


def dct(x: Tensor, norm: str = "ortho") -> Tensor:
    """DCT-II of the last dimension, computed with ``torch.fft`` in O(N log N).

    ``X_k = s_k sum_{n=0}^{N-1} x_n cos(pi k (2n + 1) / (2N))`` with ``s_0 = sqrt(1/N)``,
    ``s_k = sqrt(2/N)`` for ``norm="ortho"`` (an orthonormal transform) and ``s_k = 2`` for
    ``norm="backward"``; equals ``scipy.fft.dct(x, type=2, norm=norm)``.

    Parameters
    ----------
    x : Tensor [shape=(..., N)]
        Real floating-point input, N >= 1. bfloat16/float16 are computed in float32.
    norm : {"ortho", "backward"}

    Returns
    -------
    Tensor [shape=(..., N)], same dtype as ``x``.
    """
    x = _check_signal(x, "x")
    _check_norm(norm)
    if x.numel() == 0:
        return _empty(x, x.shape[-1])
    work = x.to(_compute_dtype(x))
    n = x.shape[-1]
    if norm == "ortho":
        out = _dct2_sums(work, math.sqrt(2.0 / n), math.sqrt(0.5))
    else:
        out = _dct2_sums(work, 2.0)
    return out.to(x.dtype)


def idct(X: Tensor, norm: str = "ortho") -> Tensor:
    """DCT-III of the last dimension: the inverse of [`dct`][freqnn.functional.dct] with the same
    ``norm``.

    ``x_n = sum_{k=0}^{N-1} s_k X_k cos(pi k (2n + 1) / (2N))`` with ``s_0 = sqrt(1/N)``,
    ``s_k = sqrt(2/N)`` (``norm="ortho"``), or ``s_0 = 1/(2N)``, ``s_k = 1/N``
    (``norm="backward"``); equals ``scipy.fft.idct(X, type=2, norm=norm)``, i.e.
    ``scipy.fft.dct(X, type=3, norm=norm)`` up to that scaling.

    Parameters
    ----------
    X : Tensor [shape=(..., N)]
    norm : {"ortho", "backward"}

    Returns
    -------
    Tensor [shape=(..., N)], same dtype as ``X``.
    """
    X = _check_signal(X, "X")
    _check_norm(norm)
    if X.numel() == 0:
        return _empty(X, X.shape[-1])
    work = X.to(_compute_dtype(X))
    n = X.shape[-1]
    if norm == "ortho":  # S_k = X_k / s_k
        out = _dct2_sums_inverse(work, math.sqrt(n / 2.0), math.sqrt(2.0))
    else:
        out = _dct2_sums_inverse(work, 0.5)
    return out.to(X.dtype)


# ---------------------------------------------------------------------------------------------
# Frequencies on a DCT grid, and the FFT path of the learnable transform
# ---------------------------------------------------------------------------------------------
def dct_grid(m: int, p: int | None = None, *, dtype: torch.dtype = torch.float64,
             device: torch.device | str | None = None) -> Tensor:
    """The first ``m`` frequencies of the ``p``-point DCT grid, ``(2k + 1) pi / (2p)``.

    ``p = m`` (the default) spans the whole band [0, pi] with m points ("full-band");
    ``p = N > m`` gives the m lowest frequencies of the N-point grid ("lowpass").

    Returns
    -------
    Tensor [shape=(m,)]
    """
    m = _check_size(m, "m")
    p = m if p is None else _check_size(p, "p")
    if p < m:
        fail("p", f"an int >= m = {m}", describe(p))
    k = torch.arange(m, dtype=torch.float64, device=device)
    return ((2 * k + 1) * (math.pi / (2 * p))).to(dtype)


def _fold_indices(n: int, p: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Where sample t lands when cos((2k+1) pi t / (2p)) is reduced to t' in [0, p), and the sign.

    The grid cosines have period 4p in t and satisfy, with r = t mod 4p:
    r in [0, p): +cos(. r); r = p or 3p: 0; r in (p, 2p]: -cos(. (2p - r));
    r in (2p, 3p): -cos(. (r - 2p)); r in (3p, 4p): +cos(. (4p - r)).
    Zeros are mapped to index p (a slot that is dropped or reads 0).
    """
    r = torch.arange(n, device=device) % (4 * p)
    index = torch.full_like(r, p)
    sign = torch.zeros(n, device=device)
    for low, high, idx, sgn in (
        (0, p, r, 1.0),
        (p + 1, 2 * p + 1, 2 * p - r, -1.0),
        (2 * p + 1, 3 * p, r - 2 * p, -1.0),
        (3 * p + 1, 4 * p, 4 * p - r, 1.0),
    ):
        mask = (r >= low) & (r < high)
        index = torch.where(mask, idx, index)
        sign = torch.where(mask, torch.tensor(sgn, device=device), sign)
    return index, sign


def grid_cosine_sums(x: Tensor, m: int, p: int) -> Tensor:
    """``F_k = sum_{t=0}^{N-1} x_t cos((2k + 1) pi t / (2p))`` for k < m, in O(N + p log p).

    The signal is folded onto p samples with the symmetries of the grid cosines (exact, no
    approximation), then one DCT-III of length p gives every k.

    Parameters
    ----------
    x : Tensor [shape=(..., N)], float32 or float64
    m, p : int, 1 <= m <= p

    Returns
    -------
    Tensor [shape=(..., m)]
    """
    n = x.shape[-1]
    if n <= p:
        folded = torch.nn.functional.pad(x, (0, p - n))
    else:
        index, sign = _fold_indices(n, p, x.device)
        folded = x.new_zeros((*x.shape[:-1], p + 1))
        folded.index_add_(-1, index, x * sign.to(x.dtype))
        folded = folded[..., :p]
    return _dct3_sums(folded)[..., :m]


def grid_cosine_expansion(X: Tensor, n: int, p: int) -> Tensor:
    """``y_t = sum_{k=0}^{m-1} X_k cos((2k + 1) pi t / (2p))`` for t < n, in O(n + p log p).

    The transpose of [`grid_cosine_sums`][freqnn.functional.grid_cosine_sums]: one DCT-II of length
    p, then unfolded to n samples.

    Parameters
    ----------
    X : Tensor [shape=(..., m)], float32 or float64, m <= p
    n, p : int

    Returns
    -------
    Tensor [shape=(..., n)]
    """
    m = X.shape[-1]
    z = _dct2_sums(torch.nn.functional.pad(X, (0, p - m)))  # (..., p)
    if n <= p:
        return z[..., :n]
    index, sign = _fold_indices(n, p, X.device)
    z = torch.nn.functional.pad(z, (0, 1))  # slot p reads 0
    return z[..., index] * sign.to(z.dtype)


# ---------------------------------------------------------------------------------------------
# Cosine basis built in float64
# ---------------------------------------------------------------------------------------------
def _phases(offsets: Tensor, k: Tensor, t: Tensor, p: int | None) -> Tensor:
    """float64 phases omega_k t, shape (len(k), len(t)); the grid part is reduced exactly."""
    phase = offsets.to(torch.float64)[:, None] * t.to(torch.float64)
    if p is not None:
        residue = ((2 * k[:, None] + 1) * t) % (4 * p)  # exact integer reduction
        phase = phase + residue.to(torch.float64) * (math.pi / (2 * p))
    return phase


def _cos_sin(offsets: Tensor, rows: slice, n: int, p: int | None,
             want: str) -> Tensor:
    """cos (``want="cos"``) or sin of omega_k t for the given rows and t = 0..n-1, in float64.

    Splitting t = L t1 + t0 with L = ceil(sqrt(n)) needs sines and cosines of only
    2 sqrt(n) phases per row; the angle-addition formulas then cost one complex product per
    element (no transcendental, no integer modulo), each factor accurate to float64 rounding.
    """
    device = offsets.device
    fine = math.isqrt(n - 1) + 1 if n > 1 else 1
    coarse = -(-n // fine)
    k = torch.arange(rows.start, rows.stop, device=device)
    delta = offsets[rows]
    a = _phases(delta, k, torch.arange(coarse, device=device) * fine, p)  # (mc, coarse)
    b = _phases(delta, k, torch.arange(fine, device=device), p)  # (mc, fine)
    ca, sa = torch.cos(a)[:, :, None], torch.sin(a)[:, :, None]
    cb, sb = torch.cos(b)[:, None, :], torch.sin(b)[:, None, :]
    if want == "cos":  # cos(a + b) = cos a cos b - sin a sin b
        out = ca * cb
        out.sub_(sa * sb)
    else:  # sin(a + b) = sin a cos b + cos a sin b
        out = sa * cb
        out.add_(ca * sb)
    return out.reshape(out.shape[0], coarse * fine)[:, :n]


def _row_chunks(m: int, n: int) -> list[slice]:
    step = max(1, _CHUNK_ELEMENTS // max(n, 1))
    return [slice(i, min(i + step, m)) for i in range(0, m, step)]


class _CosineBasis(torch.autograd.Function):
    """C[k, t] = cos(omega_k t) with omega = grid(p) + offsets; built and differentiated in float64
    by row chunks, so neither direction keeps an (m, n) float64 tensor alive."""

    @staticmethod
    def forward(  # type: ignore[override]
        offsets: Tensor, n: int, p: int | None, dtype: torch.dtype, cached: Tensor | None
    ) -> Tensor:
        if cached is not None:
            return cached.view_as(cached)
        # chunks concatenated, not written into an empty tensor: the TorchScript-based ONNX
        # exporter loses in-place writes into a fresh tensor (it exported zeros)
        chunks = _row_chunks(offsets.shape[0], n)
        return torch.cat([_cos_sin(offsets, rows, n, p, "cos").to(dtype) for rows in chunks])

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[no-untyped-def]
        # apart from forward, as torch.func transforms (torch.func.grad) require
        offsets, n, p, _, _ = inputs
        ctx.save_for_backward(offsets)
        ctx.n, ctx.p = n, p

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (offsets,) = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        n, p = ctx.n, ctx.p
        t = torch.arange(n, device=offsets.device, dtype=torch.float64)
        parts = []
        for rows in _row_chunks(offsets.shape[0], n):
            # d cos(omega t) / d omega = -t sin(omega t)
            sin = _cos_sin(offsets.detach(), rows, n, p, "sin")
            sin.mul_(grad[rows].to(torch.float64))
            parts.append(-(sin @ t))
        return torch.cat(parts).to(offsets.dtype), None, None, None, None


def cosine_basis(
    frequencies: Tensor,
    n: int,
    *,
    grid: int | None = None,
    dtype: torch.dtype | None = None,
    cached: Tensor | None = None,
) -> Tensor:
    """The cosine basis ``C[k, t] = cos(omega_k t)``, t = 0..n-1, built vectorised in float64.

    Parameters
    ----------
    frequencies : Tensor [shape=(m,)]
        Frequencies in radians per sample; with ``grid=p`` they are offsets from the p-point DCT
        grid, ``omega_k = (2k + 1) pi / (2p) + frequencies_k`` (the grid part of the phase is
        then reduced with exact integer arithmetic). Differentiable (the backward is computed
        in float64 by row chunks too).
    n : int
        Number of samples.
    grid : int, optional
        Grid size p >= m.
    dtype : torch.dtype, optional
        Dtype of the result (default: that of ``frequencies``); the float64 build is cast.
    cached : Tensor [shape=(m, n)], optional
        A basis already built for these frequencies (a module's cache): returned as is, still
        connected to ``frequencies`` for autograd.

    Returns
    -------
    Tensor [shape=(m, n)]
    """
    frequencies = check_floating(frequencies, "frequencies")
    if frequencies.dim() != 1 or frequencies.shape[0] == 0:
        fail("frequencies", "a 1-D tensor of shape (m,) with m >= 1", describe(frequencies))
    n = _check_size(n, "n")
    m = frequencies.shape[0]
    if grid is not None and _check_size(grid, "grid") < m:
        fail("grid", f"an int >= m = {m}", describe(grid))
    dtype = frequencies.dtype if dtype is None else dtype
    if cached is not None and (tuple(cached.shape) != (m, n) or cached.dtype != dtype):
        fail("cached", f"a ({m}, {n}) tensor of dtype {dtype}", describe(cached))
    return _CosineBasis.apply(frequencies, n, grid, dtype, cached)


# ---------------------------------------------------------------------------------------------
# The learnable transform's analysis and synthesis (docs/transform.md)
# ---------------------------------------------------------------------------------------------
def _amplitude(value: Tensor | float, m: int, name: str, like: Tensor) -> Tensor:
    a = torch.as_tensor(value, device=like.device)
    if a.dim() > 1 or (a.dim() == 1 and a.shape[0] != m):
        fail(name, f"a scalar or a tensor of shape ({m},)", describe(value))
    return a.to(like.dtype)


def _check_grid_args(frequencies: Tensor, grid: int | None, n: int, basis: Tensor | None,
                     fft: bool) -> int:
    frequencies = check_floating(frequencies, "frequencies")
    if frequencies.dim() != 1 or frequencies.shape[0] == 0:
        fail("frequencies", "a 1-D tensor of shape (m,) with m >= 1", describe(frequencies))
    m = frequencies.shape[0]
    if m > n:
        fail("frequencies", f"at most n = {n} frequencies (m <= n)", describe(frequencies))
    if grid is not None and (isinstance(grid, bool) or not isinstance(grid, int) or grid < m):
        fail("grid", f"None or an int >= m = {m}", describe(grid))
    if fft and grid is None:
        fail("fft", "False unless grid is given (the FFT path needs a DCT grid)", "True")
    if basis is not None and tuple(basis.shape) != (m, n):
        fail("basis", f"a tensor of shape ({m}, {n})", describe(basis))
    return m


def cosine_analysis(
    x: Tensor,
    frequencies: Tensor,
    a1: Tensor | float = 1.0,
    a2: Tensor | float = SQRT2,
    *,
    grid: int | None = None,
    fft: bool = False,
    basis: Tensor | None = None,
) -> Tensor:
    """Analysis of the learnable cosine transform (``docs/transform.md``).

    ``X_k = (1/sqrt(N)) (a1 x_0 + a2 sum_{t=1}^{N-1} x_t cos(omega_k t))``, k = 0..m-1.

    Parameters
    ----------
    x : Tensor [shape=(..., N)]
    frequencies : Tensor [shape=(m,)]
        The frequencies omega (radians per sample), or with ``grid=p`` their offsets from the
        p-point DCT grid (see [`cosine_basis`][freqnn.functional.cosine_basis]). m <= N.
    a1, a2 : Tensor [shape=() or (m,)] or float
        Amplitudes (per coefficient when of shape (m,)). Initial values 1 and sqrt(2).
    grid : int, optional
        DCT grid size p the frequencies are offsets from.
    fft : bool
        Use the O(N log N) FFT path; requires ``grid`` and offsets that are exactly zero (the
        offsets are then not read and receive no gradient).
    basis : Tensor [shape=(m, N)], optional
        A precomputed ``cosine_basis`` (matrix path); built here when omitted.

    Returns
    -------
    Tensor [shape=(..., m)], dtype of ``x`` (bfloat16/float16 are computed in float32).
    """
    x = _check_signal(x, "x")
    n = x.shape[-1]
    m = _check_grid_args(frequencies, grid, n, basis, fft)
    work = x.to(_compute_dtype(x))
    if fft:
        sums = grid_cosine_sums(work, m, grid)  # type: ignore[arg-type]
    else:
        if basis is None:
            basis = cosine_basis(frequencies, n, grid=grid, dtype=work.dtype)
        sums = work @ basis.to(work.dtype).T
    # sums includes t = 0 with weight 1: swap a2 for a1 on that sample (one fused pass)
    root = math.sqrt(n)
    a1t, a2t = _amplitude(a1, m, "a1", work), _amplitude(a2, m, "a2", work)
    out = torch.addcmul(work[..., :1] * ((a1t - a2t) / root), sums, a2t / root)
    return out.to(x.dtype)


def cosine_synthesis(
    X: Tensor,
    frequencies: Tensor,
    n: int,
    a3: Tensor | float = 1.0,
    a4: Tensor | float = SQRT2,
    *,
    grid: int | None = None,
    fft: bool = False,
    basis: Tensor | None = None,
) -> Tensor:
    """Synthesis of the learnable cosine transform (``docs/transform.md``).

    ``y_t = (1/sqrt(N)) sum_{k=0}^{m-1} c_{t,k} cos(nu_k t) X_k`` with ``c_{0,k} = a3``,
    ``c_{t,k} = a4`` for t >= 1 (per coefficient k when the amplitudes have shape (m,)).

    Parameters
    ----------
    X : Tensor [shape=(..., m)]
    frequencies : Tensor [shape=(m,)]
        Synthesis frequencies nu (or offsets from the ``grid``, see
        [`cosine_analysis`][freqnn.functional.cosine_analysis]).
    n : int
        Number of output samples N >= m.
    a3, a4 : Tensor [shape=() or (m,)] or float
        Amplitudes; initial values 1 and sqrt(2).
    grid, fft, basis
        As in [`cosine_analysis`][freqnn.functional.cosine_analysis].

    Returns
    -------
    Tensor [shape=(..., N)], dtype of ``X``.
    """
    X = _check_signal(X, "X")
    n = _check_size(n, "n")
    m = _check_grid_args(frequencies, grid, n, basis, fft)
    if X.shape[-1] != m:
        fail("X", f"a last dimension of m = {m} coefficients (..., {m})", describe(X))
    work = X.to(_compute_dtype(X))
    root = math.sqrt(n)
    a3t, a4t = _amplitude(a3, m, "a3", work), _amplitude(a4, m, "a4", work)
    weighted = work * (a4t / root)
    if fft:
        body = grid_cosine_expansion(weighted, n, grid)  # type: ignore[arg-type]
    else:
        if basis is None:
            basis = cosine_basis(frequencies, n, grid=grid, dtype=work.dtype)
        body = weighted @ basis.to(work.dtype)
    first = (work * (a3t / root)).sum(-1, keepdim=True)  # cos(nu_k 0) = 1, amplitude a3
    out = torch.cat([first, body[..., 1:]], dim=-1)
    return out.to(X.dtype)

