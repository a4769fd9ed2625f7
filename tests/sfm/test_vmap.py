"""torch.func.vmap (issue 28 item 7): the transform pair over a batch of blocks, and per-sample
gradients (``vmap(grad(f))`` over ``functional_call``) of SFM, A-SFM and ParallelSFM, against a
loop over the samples, in float64."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call, grad, vmap

import freqnn

TOL = {"rtol": 1e-10, "atol": 1e-12}
T, B, N = 6, 4, 3


def per_sample_by_loop(loss, params: dict, x: torch.Tensor, axis: int) -> dict:
    """The gradients of each sample's loss, one sample at a time (no vmap)."""
    grads = [grad(loss)(params, x.select(axis, i)) for i in range(x.shape[axis])]
    return {k: torch.stack([g[k] for g in grads]) for k in params}


@pytest.mark.parametrize("learn", [False, True])
def test_cosine_transform_pair_under_vmap(learn):
    ct = freqnn.CosineTransform(8, learn_frequencies=learn, dtype=torch.float64)
    x = torch.randn(5, 8, dtype=torch.float64)
    torch.testing.assert_close(vmap(ct)(x), ct(x), **TOL)
    X = ct(x)
    torch.testing.assert_close(vmap(ct.inverse)(X), ct.inverse(X), **TOL)
    params = dict(ct.named_parameters())

    def loss(p: dict, block: torch.Tensor) -> torch.Tensor:
        return functional_call(ct, p, (block,)).square().sum()

    got = vmap(grad(loss), in_dims=(None, 0))(params, x)
    want = per_sample_by_loop(loss, params, x, 0)
    for name in params:
        torch.testing.assert_close(got[name], want[name], **TOL, msg=name)


@pytest.mark.parametrize("kind", ["sfm", "asfm", "psfm"])
def test_per_sample_gradients_of_a_layer(kind):
    """vmap(grad(f)): SFM / A-SFM through the op (its vmap rule runs it per sample, forward and
    backward), ParallelSFM through its PyTorch algorithm; against a loop of grad on the
    reference path."""
    cls = {"sfm": freqnn.SFM, "asfm": freqnn.AdaptiveSFM, "psfm": freqnn.ParallelSFM}[kind]
    module = cls(N, 4, 3, 2, num_layers=2, dtype=torch.float64)
    x = torch.randn(T, B, N, dtype=torch.float64)
    params = {k: v.detach() for k, v in module.named_parameters()}

    def loss(p: dict, sample: torch.Tensor) -> torch.Tensor:  # sample (T, N): unbatched
        out, state = functional_call(module, p, (sample,))
        return out.square().sum() + state.re.sum()

    got = vmap(grad(loss), in_dims=(None, 1))(params, x)
    with freqnn.sfm.use_reference():
        want = per_sample_by_loop(loss, params, x, 1)
    for name in params:
        torch.testing.assert_close(got[name], want[name], **TOL, msg=name)


@pytest.mark.parametrize("kind", ["sfm", "psfm"])
def test_vmap_forward_without_gradients(kind):
    cls = freqnn.SFM if kind == "sfm" else freqnn.ParallelSFM
    module = cls(N, 4, 3, 2, dtype=torch.float64)
    x = torch.randn(T, B, N, dtype=torch.float64)
    with torch.no_grad():
        got = vmap(lambda sample: module(sample)[0], in_dims=1, out_dims=1)(x)
        torch.testing.assert_close(got, module(x)[0], **TOL)
