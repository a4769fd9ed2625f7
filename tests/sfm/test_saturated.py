"""Saturated inputs: with x = 3e38 every gate saturates and its derivative is 0, so the weights'
gradients are 0 on every path. Before, the compiled kernel's sigmoid stopped at about 1e-38
below its exp clamp (torch's is 0 there), and x = 3e38 turned that into weight gradients of
order 1 to 10 on the fast path only, with equal outputs (issue 27, item 11)."""

from __future__ import annotations

import pytest
import torch

import freqnn

N, M, D, K, T, B = 3, 4, 2, 3, 5, 2
MODELS = {
    "SFM": lambda dtype: freqnn.SFM(N, M, D, K, dtype=dtype),
    "SFM 2 layers": lambda dtype: freqnn.SFM(N, M, D, K, num_layers=2, dtype=dtype),
    "SFM normalised, mean read-out": lambda dtype: freqnn.SFM(
        N, M, D, K, memory="normalised", readout="mean", dtype=dtype),
    "ParallelSFM": lambda dtype: freqnn.ParallelSFM(N, M, D, K, dtype=dtype),
}
HUGE = {torch.float32: 3e38, torch.float64: 1e300}
ATOL = {torch.float32: 1e-6, torch.float64: 1e-12}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", list(MODELS))
def test_saturated_input_gives_the_reference_gradients(name, dtype):
    torch.manual_seed(0)
    module = MODELS[name](dtype)
    x = torch.full((T, B, N), HUGE[dtype], dtype=dtype)
    results = {}
    for path in ("fast", "pytorch", "reference"):
        module.zero_grad()
        with freqnn.sfm.use_path(path):
            out, _ = module(x)
            out.sum().backward()
        results[path] = (out.detach(), {n: p.grad.clone() for n, p in module.named_parameters()})
    want_out, want_grads = results["reference"]
    assert bool((want_grads["cells.0.weight_ih"] == 0).all())  # saturated: no gradient
    for path in ("fast", "pytorch"):
        out, grads = results[path]
        torch.testing.assert_close(out, want_out, rtol=0, atol=ATOL[dtype])
        for n, g in grads.items():
            torch.testing.assert_close(g, want_grads[n], rtol=1e-5, atol=ATOL[dtype],
                                       msg=f"{path} {n}")
