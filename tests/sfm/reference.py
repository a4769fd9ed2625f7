"""An independent, deliberately plain implementation of the sfm.md equations.

Written from the document, not from the library: complex memory, explicit loops over steps,
sequences and frequencies, parameters read through ``paper_parameters()``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def reference_sfm(
    p: dict[str, Tensor],
    x: Tensor,
    times: Tensor,
    *,
    adaptive: bool = False,
    omega: Tensor | None = None,
    normalised: bool = False,
    mean: bool = False,
) -> Tensor:
    """Outputs (T, B, M) of one layer from zero state; ``times`` (T, B) absolute timestamps;
    ``normalised``: the memory S = f S + (1 - f) g i e^{j angle}; ``mean``: z the mean of the
    K read-outs, not their sum."""
    T, B, _ = x.shape
    K, M, D = p["U_o"].shape
    zero = torch.zeros((), dtype=x.dtype)

    def bias(name: str, shape: tuple[int, ...]) -> Tensor:
        return p[name] if name in p else zero.expand(shape)

    out = torch.zeros(T, B, M, dtype=x.dtype)
    for b in range(B):
        z = torch.zeros(M, dtype=x.dtype)
        S = torch.zeros(D, K, dtype=torch.complex128)
        phi = torch.zeros(K, dtype=x.dtype)
        t_prev = 0.0
        for t in range(T):
            xt = x[t, b]
            f_ste = torch.sigmoid(p["W_ste"] @ z + p["V_ste"] @ xt + bias("b_ste", (D,)))
            f_fre = torch.sigmoid(p["W_fre"] @ z + p["V_fre"] @ xt + bias("b_fre", (K,)))
            g = torch.sigmoid(p["W_g"] @ z + p["V_g"] @ xt + bias("b_g", (D,)))
            i = torch.tanh(p["W_i"] @ z + p["V_i"] @ xt + bias("b_i", (D,)))
            if adaptive:
                w_t = p["W_omega_x"] @ xt + p["W_omega_z"] @ z + p["b_omega"]
                phi = phi + w_t * (float(times[t, b]) - t_prev)
                angle = phi
            else:
                angle = omega * float(times[t, b])
            t_prev = float(times[t, b])
            f = torch.outer(f_ste, f_fre)
            write = torch.outer(g * i, torch.exp(1j * angle.to(torch.complex128)))
            S = f * S + ((1 - f) * write if normalised else write)
            A = S.abs().to(x.dtype)
            z_new = torch.zeros(M, dtype=x.dtype)
            for k in range(K):
                o = torch.sigmoid(
                    p["U_o"][k] @ A[:, k] + p["W_o"][k] @ z + p["V_o"][k] @ xt
                    + bias("b_o", (K, M))[k]
                )
                z_new = z_new + o * torch.tanh(p["W_z"][k] @ A[:, k] + bias("b_z", (K, M))[k])
            z = z_new / K if mean else z_new
            out[t, b] = z
    return out


def randomise_(module: torch.nn.Module, scale: float = 0.5) -> None:
    """Give every parameter random values (A-SFM's omega weights included)."""
    with torch.no_grad():
        for name, param in module.named_parameters():
            if "omega" not in name:
                param.normal_(0.0, scale)
        for cell in getattr(module, "cells", [module]):
            if cell.adaptive:
                K = cell.num_freqs
                cell.weight_ih[-K:].normal_(0.0, 0.3)
                cell.weight_hh[-K:].normal_(0.0, 0.3)


