"""Meta-device initialisation (issue 28, item 6): a module built on the meta device, materialised
with ``to_empty`` and then reset (same seed) or loaded from a state dict equals the module built
eagerly: parameters, every buffer (non-persistent ones too) and the output of a forward pass."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_leaves

import freqnn
from freqnn import baselines, features

SEED = 7
# tensor arguments are made outside the meta context: a module keeps their values to reset from
GRID = torch.tensor([0.1, 0.5, 1.0, 3.0])
COSINE_INIT = torch.tensor([0.2, 1.0, 2.5])


def _sequence() -> Tensor:
    return torch.randn(6, 2, 3)


def _step() -> Tensor:
    return torch.randn(2, 3)


#: name -> (constructor taking device= / dtype= keywords, input of a forward pass)
CASES: dict[str, tuple[Callable[..., nn.Module], Callable[[], Tensor]]] = {
    "SFMCell": (lambda **kw: freqnn.SFMCell(3, 5, 2, 4, **kw), _step),
    "SFMCell-learned-chrono": (
        lambda **kw: freqnn.SFMCell(3, 5, 2, 4, learn_frequencies=True, forget_init="chrono",
                                    frequencies="half", **kw), _step),
    "SFM": (lambda **kw: freqnn.SFM(3, 5, 2, 4, num_layers=2, **kw), _sequence),
    "SFM-learned-chrono": (
        lambda **kw: freqnn.SFM(3, 5, 2, 4, learn_frequencies=True, forget_init="chrono",
                                frequencies=GRID, **kw),
        _sequence),
    "AdaptiveSFMCell-authors": (
        lambda **kw: freqnn.AdaptiveSFMCell(3, 5, 2, 4, phase="authors", **kw), _step),
    "AdaptiveSFM": (lambda **kw: freqnn.AdaptiveSFM(3, 5, 2, 4, num_layers=2, **kw), _sequence),
    "AdaptiveSFM-authors": (
        lambda **kw: freqnn.AdaptiveSFM(3, 5, 2, 4, phase="authors", **kw), _sequence),
    "AdaptiveSFM-learned": (
        lambda **kw: freqnn.AdaptiveSFM(3, 5, 2, 4, learn_frequencies=True, **kw), _sequence),
    "StockSFMCell": (lambda **kw: freqnn.StockSFMCell(3, 4, 4, 3, **kw), _step),
    "StockSFM": (lambda **kw: freqnn.StockSFM(3, 4, 3, num_layers=2, **kw), _sequence),
    "ParallelSFMCell": (lambda **kw: freqnn.ParallelSFMCell(3, 5, 2, 4, **kw), _step),
    "ParallelSFM": (lambda **kw: freqnn.ParallelSFM(3, 5, 2, 4, num_layers=2, **kw), _sequence),
    "ClockworkRNN": (lambda **kw: freqnn.ClockworkRNN(3, 8, num_layers=2, **kw), _sequence),
    "PhasedLSTM": (lambda **kw: freqnn.PhasedLSTM(3, 4, **kw), _sequence),
    "RHN": (lambda **kw: freqnn.RHN(3, 4, **kw), _sequence),
    "AssociativeLSTM": (lambda **kw: freqnn.AssociativeLSTM(3, 4, num_layers=2, **kw),
                        _sequence),
    "ACTRNN": (lambda **kw: freqnn.ACTRNN(3, 4, **kw), _sequence),
    "CosineTransform": (lambda **kw: freqnn.CosineTransform(8, 5, **kw),
                        lambda: torch.randn(2, 8)),
    "CosineTransform-custom": (
        lambda **kw: freqnn.CosineTransform(8, 3, init=COSINE_INIT,
                                            amplitudes="per-coefficient", **kw),
        lambda: torch.randn(2, 8)),
    "FramedTransform": (
        lambda **kw: freqnn.FramedTransform(freqnn.CosineTransform(8, **kw), **kw),
        lambda: torch.randn(2, 30)),
    "LogMel": (lambda **kw: features.LogMel(sample_rate=8000, frame_length=64, hop_length=32,
                                            n_fft=64, num_bands=8, delta_order=1, **kw),
               lambda: torch.randn(2, 300)),
    "CosineFrontEnd": (lambda **kw: features.CosineFrontEnd(64, 8, sample_rate=8000, **kw),
                       lambda: torch.randn(2, 5, 64)),
}


def _takes_device(build: Callable[..., nn.Module]) -> bool:
    try:
        build(device="meta")
    except TypeError:
        return False
    return True


def _build_meta(build: Callable[..., nn.Module], how: str) -> nn.Module:
    if how == "argument":
        if not _takes_device(build):
            pytest.skip("no device argument")
        return build(device="meta")
    with torch.device("meta"):
        return build()


def _tensors(module: nn.Module) -> dict[str, Tensor]:
    """The state dict and every buffer, the non-persistent ones included."""
    return {**module.state_dict(), **dict(module.named_buffers())}


def _assert_same(meta: nn.Module, eager: nn.Module, make_input: Callable[[], Tensor]) -> None:
    expected, got = _tensors(eager), _tensors(meta)
    assert expected.keys() == got.keys()
    for name, value in expected.items():
        assert got[name].device.type == "cpu", name
        assert got[name].dtype == value.dtype and torch.equal(got[name], value), name
    x = make_input()
    leaves = [tree_leaves(module(x)) for module in (eager, meta)]
    assert len(leaves[0]) == len(leaves[1])
    for a, b in zip(*leaves, strict=True):
        assert (a is None and b is None) or torch.equal(a, b)


@pytest.mark.parametrize("how", ["context", "argument"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_meta_then_reset_parameters_equals_eager(name: str, how: str) -> None:
    build, make_input = CASES[name]
    torch.manual_seed(SEED)
    eager = build()
    meta = _build_meta(build, how)
    assert all(t.is_meta for t in _tensors(meta).values())
    meta.to_empty(device="cpu")
    torch.manual_seed(SEED)
    meta.reset_parameters()
    _assert_same(meta, eager, make_input)


@pytest.mark.parametrize("name", sorted(CASES))
def test_meta_then_load_state_dict_equals_eager(name: str) -> None:
    build, make_input = CASES[name]
    torch.manual_seed(SEED)
    eager = build()
    meta = _build_meta(build, "context")
    meta.to_empty(device="cpu")
    meta.load_state_dict(eager.state_dict())
    _assert_same(meta, eager, make_input)


def public_modules() -> set[type[nn.Module]]:
    """Every public ``nn.Module`` class of the package (freqnn, freqnn.baselines,
    freqnn.features), less ``RecurrentLayer``, the baselines' abstract base."""
    return {
        obj
        for package in (freqnn, baselines, features)
        for name in package.__all__
        if inspect.isclass(obj := getattr(package, name)) and issubclass(obj, nn.Module)
    } - {baselines.RecurrentLayer}


def test_every_public_module_is_covered() -> None:
    covered = {type(build()) for build, _ in CASES.values()}
    missing = public_modules() - covered
    assert not missing, sorted(cls.__name__ for cls in missing)


def test_meta_forward_runs_without_values() -> None:
    """ACT-RNN stops pondering once every sequence halted, and the baselines skip the mask of an
    unpadded batch: both read data, which a meta run has not, so on meta they do neither."""
    with torch.device("meta"):
        model = freqnn.ACTRNN(3, 4)
        out, _ = model(torch.randn(6, 2, 3), lengths=torch.tensor([6, 4]))
    assert out.is_meta and out.shape == (6, 2, 4) and model.ponder_cost.is_meta
