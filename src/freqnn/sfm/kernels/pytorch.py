"""The SFM / A-SFM recurrence of one layer in PyTorch operations, with a hand-written backward.

This is the algorithm of the compiled CPU kernel (``cpu/sfm_scan.cpp``) written with PyTorch
operations: it runs on any device and dtype and serves where the kernel does not (other
devices, bfloat16, CPUs without a usable compiler). Both implement the op
``freqnn::sfm_scan`` (:mod:`freqnn.sfm.kernels.op`) and are tested against the reference step
equations of :mod:`freqnn.sfm.step`.

Saved activations (per step and sequence; float count): the memory ``Re S_t``, ``Im S_t``
(2 D K), the read-out gates ``o`` and ``tanh(W_z A + b_z)`` (2 K M), the four gate activations
(3 D + K) and the output ``z`` (M); A-SFM adds the phase (K), or under the authors' rule the
carried omega_t (K). The amplitudes and the cos / sin of A-SFM's phase are recomputed in the
backward.

A-SFM's two phase rules (``Inputs.authors``), with omega_t the last K rows of the step's
pre-activations:

* accumulated (default): phi_t = wrap(phi_{t-1} + omega_t (t - t_{t-1})); the slot carries phi_t;
* authors': phase_t = wrap(omega_{t-1} t) in float64 (as :func:`freqnn.frequencies.phase`), cast
  to the model's dtype; the slot carries omega_t, kept at padded steps. Its backward:
  d omega_t = d(carried omega_t), d omega_{t-1} = t (dsin cos - dcos sin) (+ the carry at a
  padded step), the product in float64.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from ...frequencies import phase, wrap_phase

__all__ = [
    "Grads",
    "Inputs",
    "Saved",
    "backward_torch",
    "forward_torch",
    "history_layout",
    "phases",
    "sizes",
]


class Inputs(NamedTuple):
    """One layer's recurrence inputs, in the order of the op ``freqnn::sfm_scan``.

    Shapes: gx (T, B, G); z0 (B, M); re0, im0 (B, D, K); phi0 (B, K) (A-SFM) or None;
    cos, sin (T, B, K) (SFM, given) or None; omega (K,) (SFM, phases derived from ``times``) or
    None; times (T, B) float64; time0 (B,) float64, the time of the initial state; mask (T, B)
    bool or None; weight_hh (G, M); weight_a (K, 2M, D); b_z (K, M) or None; authors: A-SFM's
    phase rule is the authors' (``phi0`` then holds omega_0, the slot carries omega_t);
    normalised: the normalised memory, whose write is weighted by 1 - f_t
    (:func:`freqnn.sfm.step.memory_update`); mean_readout: z_t is the mean of the K read-outs,
    not their sum (:func:`freqnn.sfm.step.output`).
    """

    gx: Tensor
    z0: Tensor
    re0: Tensor
    im0: Tensor
    phi0: Tensor | None
    cos: Tensor | None
    sin: Tensor | None
    omega: Tensor | None
    times: Tensor
    time0: Tensor
    mask: Tensor | None
    weight_hh: Tensor
    weight_a: Tensor
    b_z: Tensor | None
    authors: bool = False
    normalised: bool = False
    mean_readout: bool = False

    @property
    def adaptive(self) -> bool:
        return self.phi0 is not None


def history_layout(
    T: int, B: int, D: int, K: int, M: int, adaptive: bool, keep: bool
) -> tuple[int, dict[str, tuple[int, tuple[int, ...]]]]:
    """Size and regions (offset, shape) of the buffer holding the histories, one after the
    other: with ``keep`` T + 1 state slots and T step slots, else 2 and 1 (inference)."""
    nstate, nstep = (T + 1, T) if keep else (2, 1)
    shapes = {
        "zs": (nstate, B, M),
        "act": (nstep, B, 3 * D + K),
        "o": (nstep, B, K, M),
        "c": (nstep, B, K, M),
        "re": (nstate, B, K, D),
        "im": (nstate, B, K, D),
    }
    if adaptive:
        shapes["phi"] = (nstate, B, K)
    regions, start = {}, 0
    for name, shape in shapes.items():
        regions[name] = (start, shape)
        start += math.prod(shape)
    return start, regions


class Saved(NamedTuple):
    """The histories, views of one flat ``buffer`` (:func:`history_layout`; the op returns
    that buffer, the backward takes it back). ``zs`` (., B, M); ``act`` (., B, 3D + K) =
    sigmoid(ste) | sigmoid(g) | tanh(i) | sigmoid(fre); ``o``, ``c`` (., B, K, M) read-out gate
    and candidate; ``re``, ``im`` (., B, K, D); ``phi`` (., B, K) or None. ``last``: index of
    the final state slot."""

    buffer: Tensor
    zs: Tensor
    act: Tensor
    o: Tensor
    c: Tensor
    re: Tensor
    im: Tensor
    phi: Tensor | None
    last: int

    @classmethod
    def carve(
        cls, buffer: Tensor, T: int, B: int, D: int, K: int, M: int, adaptive: bool, keep: bool
    ) -> Saved:
        _, regions = history_layout(T, B, D, K, M, adaptive, keep)
        views = {
            name: buffer[start : start + math.prod(shape)].view(shape)
            for name, (start, shape) in regions.items()
        }
        views.setdefault("phi", None)
        return cls(buffer, **views, last=T if keep else T & 1)

    def final(self) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """The final z, re, im (B, D, K) and phi, as fresh contiguous tensors."""
        z, re, im = self.zs[self.last], self.re[self.last], self.im[self.last]
        phi = None if self.phi is None else self.phi[self.last].clone()
        return z.clone(), re.transpose(-1, -2).contiguous(), im.transpose(-1, -2).contiguous(), phi


class Grads(NamedTuple):
    """Gradients of the differentiable inputs (None where absent); re0, im0 (B, D, K)."""

    gx: Tensor
    z0: Tensor
    re0: Tensor
    im0: Tensor
    phi0: Tensor | None
    cos: Tensor | None
    sin: Tensor | None
    weight_hh: Tensor
    weight_a: Tensor
    b_z: Tensor | None


def sizes(p: Inputs) -> tuple[int, int, int, int, int, int]:
    """T, B, D, K, M, G of the inputs."""
    T, B, G = p.gx.shape
    D, K = p.re0.shape[-2:]
    return T, B, D, K, p.z0.shape[-1], G


def authors_phase(omega: Tensor, times: Tensor) -> Tensor:
    """The authors' A-SFM phase of one step, wrap(omega_{t-1} t) computed in float64 and cast to
    omega's dtype (:func:`freqnn.frequencies.phase`): ``omega`` (B, K), ``times`` (B,)."""
    return phase(omega, times)


def phases(p: Inputs) -> tuple[Tensor | None, Tensor | None]:
    """SFM: cos and sin of the phases (given, or from omega and the float64 times exactly as
    :func:`freqnn.frequencies.phase`); A-SFM: None, None."""
    if p.adaptive or p.cos is not None:
        return p.cos, p.sin
    ph = phase(p.omega, p.times)
    return torch.cos(ph), torch.sin(ph)


def time_steps(p: Inputs) -> Tensor | None:
    """A-SFM (accumulated phase): the time since the previous step (T, B) in gx's dtype; SFM and
    the authors' rule (which use t itself): None."""
    if not p.adaptive or p.authors:
        return None
    prev = torch.cat([p.time0.unsqueeze(0), p.times[:-1]])
    return (p.times - prev).to(p.gx.dtype)


def forward_torch(p: Inputs, keep: bool) -> tuple[Tensor, Saved]:
    """The recurrence forward: the outputs (T, B, M) and the histories (with ``keep`` every
    step's values, kept for the backward)."""
    T, B, D, K, M, _ = sizes(p)
    cos, sin = phases(p)
    dt = time_steps(p)
    new = p.gx.new_empty
    total, _ = history_layout(T, B, D, K, M, p.adaptive, keep)
    saved = Saved.carve(new(total), T, B, D, K, M, p.adaptive, keep)
    zs, act, O, C, phi = saved.zs, saved.act, saved.o, saved.c, saved.phi
    # the memory histories are stored (., B, K, D), as the compiled kernel stores them; the loop
    # works on (., B, D, K) views of them
    re, im = saved.re.transpose(2, 3), saved.im.transpose(2, 3)
    out = new(T, B, M)
    zs[0], re[0], im[0] = p.z0, p.re0, p.im0
    if phi is not None:
        phi[0] = p.phi0
    whh_t, wa_t = p.weight_hh.t(), p.weight_a.transpose(1, 2)
    mask = None if p.mask is None else p.mask.to(p.gx.dtype)
    ob, wb = 3 * D + K, 3 * D + K + K * M
    for t in range(T):
        sp, sn, sa = (t, t + 1, t) if keep else (t & 1, (t + 1) & 1, 0)
        pre = torch.addmm(p.gx[t], zs[sp], whh_t)
        a = act[sa]
        torch.sigmoid(pre[:, : 2 * D], out=a[:, : 2 * D])
        torch.tanh(pre[:, 2 * D : 3 * D], out=a[:, 2 * D : 3 * D])
        torch.sigmoid(pre[:, 3 * D : ob], out=a[:, 3 * D :])
        fs, g, i, ff = a.split([D, D, D, K], dim=1)
        if p.authors:  # phase of omega_{t-1}; omega_t is carried to the next step
            angle = authors_phase(phi[sp], p.times[t])
            cos_t, sin_t = torch.cos(angle), torch.sin(angle)
            new_phi = pre[:, wb:]
        elif phi is not None:
            new_phi = pre[:, wb:] * dt[t].unsqueeze(1) + phi[sp]
            new_phi = wrap_phase(new_phi)
            cos_t, sin_t = torch.cos(new_phi), torch.sin(new_phi)
        else:
            cos_t, sin_t = cos[t], sin[t]
        f = fs.unsqueeze(2) * ff.unsqueeze(1)
        w = (g * i).unsqueeze(2)
        if p.normalised:
            w = w * (1 - f)
        r = torch.addcmul(f * re[sp], w, cos_t.unsqueeze(1))
        s = torch.addcmul(f * im[sp], w, sin_t.unsqueeze(1))
        sq = r * r + s * s
        amp = torch.where(sq > 0, sq, 1.0).sqrt_().mul_(sq > 0)
        proj = torch.bmm(amp.permute(2, 0, 1), p.weight_a.transpose(1, 2))  # (K, B, 2M)
        o = torch.sigmoid(proj[..., :M].transpose(0, 1) + pre[:, ob:wb].unflatten(1, (K, M)))
        cand = proj[..., M:].transpose(0, 1)
        c = torch.tanh(cand if p.b_z is None else cand + p.b_z)
        O[sa], C[sa] = o, c
        z = (o * c).sum(1)
        if p.mean_readout:
            z = z / K
        if mask is None:
            zs[sn], re[sn], im[sn], out[t] = z, r, s, z
            if phi is not None:
                phi[sn] = new_phi
        else:
            on = p.mask[t]
            zs[sn] = torch.where(on[:, None], z, zs[sp])
            re[sn] = torch.where(on[:, None, None], r, re[sp])
            im[sn] = torch.where(on[:, None, None], s, im[sp])
            out[t] = z * mask[t, :, None]
            if phi is not None:
                phi[sn] = torch.where(on[:, None], new_phi, phi[sp])
    del whh_t, wa_t
    return out, saved


def backward_torch(
    p: Inputs,
    shape: tuple[int, ...],
    s: Saved,
    gout: Tensor,
    gz: Tensor,
    gre: Tensor,
    gim: Tensor,
    gphi: Tensor | None,
) -> Grads:
    """Backward-through-time; ``p`` needs only cos, sin (SFM), times, time0 (A-SFM), mask,
    the weights and ``authors``; gre, gim (B, D, K)."""
    T, B, D, K, M, G = shape
    dt = time_steps(p)
    sre, sim = s.re.transpose(2, 3), s.im.transpose(2, 3)  # (., B, D, K) views
    ob, wb = 3 * D + K, 3 * D + K + K * M
    new = s.zs.new_empty
    dgx = new(T, B, G)
    dproj = new(T, K, B, 2 * M)
    amps = new(T, K, B, D)
    dcos = new(T, B, K) if not p.adaptive else None
    dsin = new(T, B, K) if not p.adaptive else None
    dz, dre, dim, dphi = gz.clone(), gre.clone(), gim.clone(), None
    if p.adaptive:
        dphi = gphi.clone()
    mask = None if p.mask is None else p.mask.to(s.zs.dtype)
    for t in range(T - 1, -1, -1):
        fs, g, i, ff = s.act[t].split([D, D, D, K], dim=1)
        o, c = s.o[t], s.c[t]
        if mask is None:
            dzn = gout[t] + dz
        else:
            m = mask[t].unsqueeze(1)
            dzn = (gout[t] + dz) * m
            dz = dz * (1 - m)
        if p.mean_readout:  # z = (1 / K) sum_k o c
            dzn = dzn / K
        dpo = dzn.unsqueeze(1) * c * o * (1 - o)
        dcand = dzn.unsqueeze(1) * o * (1 - c * c)
        dpj = dproj[t]
        dpj[..., :M] = dpo.transpose(0, 1)
        dpj[..., M:] = dcand.transpose(0, 1)
        dA = torch.bmm(dpj, p.weight_a).permute(1, 2, 0)  # (B, D, K)
        r, q = sre[t + 1], sim[t + 1]
        sq = r * r + q * q
        pos = sq > 0
        amp = torch.where(pos, sq, 1.0).sqrt_()
        scale = torch.where(pos, dA / amp, 0.0)
        amps[t] = (amp * pos).permute(2, 0, 1)
        if mask is None:
            dr, di = dre + scale * r, dim + scale * q
            dre_keep = dim_keep = None
        else:
            m3 = m.unsqueeze(2)
            dr, di = dre * m3 + scale * r, dim * m3 + scale * q
            dre_keep, dim_keep = dre * (1 - m3), dim * (1 - m3)
        if p.adaptive:
            ph = authors_phase(s.phi[t], p.times[t]) if p.authors else s.phi[t + 1]
            cos_t, sin_t = torch.cos(ph), torch.sin(ph)
        else:
            cos_t, sin_t = p.cos[t], p.sin[t]
        f = fs.unsqueeze(2) * ff.unsqueeze(1)
        df = dr * sre[t] + di * sim[t]
        w = (g * i).unsqueeze(2)
        dwrite = dr * cos_t.unsqueeze(1) + di * sin_t.unsqueeze(1)  # d / d(the write term)
        if p.normalised:  # S_t = f S_{t-1} + (1 - f) w e^{j phase}
            df = df - w * dwrite
            dwrite = dwrite * (1 - f)
            w = w * (1 - f)
        dw = dwrite.sum(2)
        dcs = (dr * w).sum(1)
        dsn = (di * w).sum(1)
        dp = dgx[t]
        dp[:, :D] = (df * ff.unsqueeze(1)).sum(2) * fs * (1 - fs)
        dp[:, D : 2 * D] = dw * i * g * (1 - g)
        dp[:, 2 * D : 3 * D] = dw * g * (1 - i * i)
        dp[:, 3 * D : ob] = (df * fs.unsqueeze(2)).sum(1) * ff * (1 - ff)
        dp[:, ob:wb] = dpo.flatten(1)
        if p.authors:
            # phase_t = wrap(omega_{t-1} t) (slope t, in float64); the slot carries
            # where(m, omega_t, omega_{t-1}). At a padded step dcs = dsn = 0.
            dp[:, wb:] = dphi if mask is None else dphi * m
            back = ((dsn * cos_t - dcs * sin_t).double() * p.times[t].unsqueeze(1)).to(dphi.dtype)
            dphi = back if mask is None else back + dphi * (1 - m)
        elif p.adaptive:
            # phi_t = where(m, wrap(phi_{t-1} + omega_t dt), phi_{t-1}); wrap has slope 1
            gnew = dsn * cos_t - dcs * sin_t + (dphi if mask is None else dphi * m)
            dp[:, wb:] = gnew * dt[t].unsqueeze(1)
            dphi = gnew if mask is None else gnew + dphi * (1 - m)
        else:
            dcos[t], dsin[t] = dcs, dsn
        dz = dp @ p.weight_hh if mask is None else torch.addmm(dz, dp, p.weight_hh)
        if mask is None:
            dre, dim = dr * f, di * f
        else:
            dre, dim = torch.addcmul(dre_keep, dr, f), torch.addcmul(dim_keep, di, f)
    gwhh = dgx.flatten(0, 1).t() @ s.zs[:T].flatten(0, 1)
    gwa = torch.bmm(
        dproj.transpose(0, 1).flatten(1, 2).transpose(1, 2), amps.transpose(0, 1).flatten(1, 2)
    )
    gbz = None if p.b_z is None else dproj[..., M:].sum((0, 2))
    return Grads(dgx, dz, dre, dim, dphi, dcos, dsin, gwhh, gwa, gbz)


