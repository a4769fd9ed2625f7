"""The layers under PyTorch's tools: torch.compile(fullgraph=True), torch.export, ONNX export
(run in onnxruntime), autocast, torch.func, the meta device; and timestamps at their limits."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

import freqnn
from freqnn.checks import MAX_TIME
from freqnn.sfm import kernels

from ..reference import randomise_
from .common import AuthorsASFM, assert_float32_accurate, float64_twin

LAYERS = [freqnn.SFM, freqnn.AdaptiveSFM, AuthorsASFM]
#: the layers by name; "AdaptiveSFM-authors" is A-SFM under the authors' phase rule
BODIES = {"SFM": freqnn.SFM, "AdaptiveSFM": freqnn.AdaptiveSFM, "AdaptiveSFM-authors": AuthorsASFM}


class Net(torch.nn.Module):
    """A layer and a linear read-out, as a user's model holds them."""

    def __init__(self, layer: str, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if layer == "CosineTransform":
            self.body, width = freqnn.CosineTransform(8, dtype=dtype), 8
        else:
            self.body = BODIES[layer](8, 16, 6, 4, num_layers=2, batch_first=True, dtype=dtype)
            randomise_(self.body)
            width = 16
        self.head = torch.nn.Linear(width, 3, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return self.head(y[0] if isinstance(y, tuple) else y)


MODELS = ["SFM", "AdaptiveSFM", "AdaptiveSFM-authors", "CosineTransform"]


def grads(net: torch.nn.Module, out: torch.Tensor) -> list[torch.Tensor]:
    """Gradients of every parameter (zeros for those the forward does not use, such as the
    synthesis side of a CosineTransform)."""
    params = list(net.parameters())
    found = torch.autograd.grad(out.square().sum(), params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, found, strict=True)]


@pytest.mark.parametrize("layer", MODELS)
def test_compile_fullgraph_matches_eager(layer):
    torch._dynamo.reset()
    net = Net(layer)
    x = torch.randn(4, 10, 8)
    compiled = torch.compile(net, fullgraph=True)  # a graph break would raise
    eager = net(x)
    out = compiled(x)
    twin, x64, _ = float64_twin(net, x, None)
    exact = twin(x64)
    assert_float32_accurate(
        [out, *grads(net, out)], [eager, *grads(net, eager)], [exact, *grads(twin, exact)]
    )
    with torch.no_grad():
        assert_float32_accurate([compiled(x)], [eager], [exact])


@pytest.mark.parametrize("layer", MODELS)
def test_export_reproduces_eager(layer):
    net = Net(layer)
    x = torch.randn(3, 9, 8)
    program = torch.export.export(net, (x,))
    if layer != "CosineTransform":  # torch's scan, not an unrolled loop nor a freqnn op
        graph = str(program.graph)
        assert "torch.ops.higher_order.scan" in graph and "freqnn" not in graph
    twin, x64, _ = float64_twin(net, x, None)
    assert_float32_accurate([program.module()(x)], [net(x)], [twin(x64)])


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "legacy"])
@pytest.mark.parametrize("layer", MODELS)
def test_onnx_export_runs_in_onnxruntime(layer, dynamo, tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    net = Net(layer).eval()
    x = torch.randn(2, 10, 8)
    path = tmp_path / "model.onnx"
    torch.onnx.export(net, (x,), str(path), dynamo=dynamo)
    session = ort.InferenceSession(str(path))
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    twin, x64, _ = float64_twin(net, x, None)
    with torch.no_grad():
        assert_float32_accurate([torch.from_numpy(got)], [net(x)], [twin(x64)])


@pytest.mark.parametrize("layer", list(BODIES))
def test_autocast_bfloat16_forward_and_backward(layer):
    net = Net(layer)
    x = torch.randn(4, 20, 8)
    reference = net(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x)
    out.float().square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    if layer == "AdaptiveSFM-authors":
        # the authors' phase omega_{t-1} * t multiplies the bfloat16 rounding of omega (of x and
        # z_{t-1}) by t: close at the first steps, further apart later (docs/sfm.md)
        out, reference = out[:, :5], reference[:, :5]
    torch.testing.assert_close(out.float(), reference.detach(), atol=5e-2, rtol=0)


@pytest.mark.parametrize("layer", MODELS)
def test_func_grad_over_functional_call_equals_autograd(layer):
    net = Net(layer, torch.float64)
    x = torch.randn(3, 6, 8, dtype=torch.float64)
    params = {k: v.detach() for k, v in net.named_parameters()}

    def loss(p):
        return functional_call(net, p, (x,)).square().sum()

    got = torch.func.grad(loss)(params)
    want = dict(zip(params, grads(net, net(x)), strict=True))
    for name in params:
        torch.testing.assert_close(got[name], want[name], atol=1e-8, rtol=0)


@pytest.mark.parametrize("cls", LAYERS)
def test_meta_device_gives_shapes(cls):
    module = cls(8, 16, 6, 4, num_layers=2, device="meta")
    out, state = module(torch.empty(5, 2, 8, device="meta"))
    assert out.shape == (5, 2, 16) and out.device.type == "meta"
    assert state.re.shape == (2, 2, 6, 4)


# --------------------------------------------------------------------------- time limits
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("path", ["compiled", "pytorch", "reference"])
@pytest.mark.parametrize("cls", LAYERS)
def test_times_up_to_the_bound_give_finite_outputs(cls, path, dtype):
    module = cls(3, 5, 4, 3, dtype=dtype)
    randomise_(module)
    x = torch.randn(6, 2, 3, dtype=dtype)
    times = MAX_TIME - torch.arange(6.0, 0.0, -1.0, dtype=torch.float64)
    with kernels.use_path(path):
        out, state = module(x, times=times)
        more, _ = module(x, state)  # the default axis continues past the bound
    assert torch.isfinite(out).all() and torch.isfinite(more).all()


@pytest.mark.parametrize("cls", LAYERS)
def test_times_beyond_the_bound_are_refused(cls):
    module = cls(3, 5, 4, 3)
    x = torch.randn(4, 2, 3)
    with pytest.raises(ValueError, match=r"^times: expected timestamps with \|t\| <= 2\*\*53"):
        module(x, times=torch.tensor([1.0, 2.0, 3.0, 1e300], dtype=torch.float64))
    _, state = module(x)
    state = state._replace(time=torch.full((2,), 1e300, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^state.time: expected timestamps with \|t\| <= 2\*\*53"):
        module(x, state)
    cell = module.cells[0]
    with pytest.raises(ValueError, match=r"^t: expected timestamps with \|t\| <= 2\*\*53"):
        cell(x[0], t=-1e300)
