"""Helpers shared by the kernel tests: modules with random parameters, inputs, states, and a
comparison of outputs, final states and gradients."""

from __future__ import annotations

import torch

import freqnn
from freqnn.sfm import kernels
from freqnn.sfm.state import zero_state

from ..reference import randomise_

N, M, D, K = 3, 4, 3, 5


class AuthorsASFM(freqnn.AdaptiveSFM):
    """A-SFM under the authors' phase rule (a class of its own: readable test ids)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, phase="authors", **kwargs)


class AuthorsASFMCell(freqnn.AdaptiveSFMCell):
    """An A-SFM cell under the authors' phase rule."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, phase="authors", **kwargs)


CLASSES = [freqnn.SFM, freqnn.AdaptiveSFM, AuthorsASFM]
CELLS = [freqnn.SFMCell, freqnn.AdaptiveSFMCell, AuthorsASFMCell]
FAST = ["compiled", "pytorch"]
TOL = {"atol": 1e-10, "rtol": 0}


def make(cls, dtype=torch.float64, **kw):
    module = cls(N, M, D, K, dtype=dtype, **kw)
    randomise_(module)
    return module


def irregular_times(T: int, B: int) -> torch.Tensor:
    return torch.cumsum(torch.rand(B, T, dtype=torch.float64) * 2.0 + 0.1, dim=1)


def random_state(module, B: int, dtype=torch.float64) -> freqnn.SFMState:
    L = module.num_layers
    state = zero_state(
        (L,), (B,), M, D, K, module.adaptive, dtype=dtype, device=torch.device("cpu")
    )
    return freqnn.SFMState(
        z=torch.randn_like(state.z),
        re=torch.randn_like(state.re),
        im=torch.randn_like(state.im),
        time=torch.rand(B, dtype=torch.float64) * 10,
        phase=None if state.phase is None else torch.rand_like(state.phase) * 6,
    )


def run(module, path, x, state, **kw):
    """Outputs, final state and the gradients of a loss touching all of them."""
    leaves = [x, *module.parameters()]
    if state is not None:
        state = freqnn.SFMState(
            *(
                None if v is None or name == "time" else v.detach().requires_grad_()
                for name, v in zip(freqnn.SFMState._fields, state, strict=True)
            )
        )._replace(time=state.time)
        leaves += [v for v in (state.z, state.re, state.im, state.phase) if v is not None]
    with kernels.use_path(path):
        out, final = module(x, state, **kw)
    gen = torch.Generator().manual_seed(7)
    loss = (out * torch.randn(out.shape, generator=gen, dtype=out.dtype)).sum()
    for v in (final.z, final.re, final.im, final.phase):
        if v is not None:
            loss = loss + (v * torch.randn(v.shape, generator=gen, dtype=v.dtype)).sum()
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    return out, final, grads


def assert_same(a, b):
    out_a, state_a, grads_a = a
    out_b, state_b, grads_b = b
    torch.testing.assert_close(out_a, out_b, **TOL)
    for u, v in zip(state_a, state_b, strict=True):
        assert (u is None) == (v is None)
        if u is not None:
            torch.testing.assert_close(u, v, **TOL)
    assert len(grads_a) == len(grads_b)
    for u, v in zip(grads_a, grads_b, strict=True):
        assert (u is None) == (v is None)
        if u is not None:
            torch.testing.assert_close(u, v, **TOL)


