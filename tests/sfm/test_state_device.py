"""A state (or an operator argument) on another device, or not strided, is refused before any
kernel reads it: one line naming the field. Before, a state on the meta device crashed the
process (SIGSEGV) under no_grad and returned values read from uninitialised memory in grad mode.
"""

from __future__ import annotations

import pytest
import torch

import freqnn
from freqnn.sfm.kernels import abi, compiled_available
from freqnn.sfm.kernels.pytorch import Inputs

N, M, D, K = 3, 4, 2, 3

LAYERS = {
    "SFM": lambda: freqnn.SFM(N, M, D, K),
    "SFM 2 layers": lambda: freqnn.SFM(N, M, D, K, num_layers=2),
    "A-SFM accumulate": lambda: freqnn.AdaptiveSFM(N, M, D, K),
    "A-SFM authors": lambda: freqnn.AdaptiveSFM(N, M, D, K, phase="authors"),
    "ParallelSFM": lambda: freqnn.ParallelSFM(N, M, D, K),
    "ParallelSFM 2 layers": lambda: freqnn.ParallelSFM(N, M, D, K, num_layers=2),
}
CELLS = {
    "SFMCell": lambda: freqnn.SFMCell(N, M, D, K),
    "A-SFM cell accumulate": lambda: freqnn.AdaptiveSFMCell(N, M, D, K),
    "A-SFM cell authors": lambda: freqnn.AdaptiveSFMCell(N, M, D, K, phase="authors"),
    "ParallelSFMCell": lambda: freqnn.ParallelSFMCell(N, M, D, K),
}
ADAPTIVE = ("A-SFM accumulate", "A-SFM authors", "A-SFM cell accumulate", "A-SFM cell authors")


def cases():
    for name in (*LAYERS, *CELLS):
        for field in ("z", "re", "im", "time", "phase"):
            if field != "phase" or name in ADAPTIVE:
                yield name, field


def run(name, field, grad, move):
    """A first call, then a second from its state with ``field`` moved by ``move``."""
    layer = name in LAYERS
    module = (LAYERS if layer else CELLS)[name]()
    x = torch.randn(5, 2, N) if layer else torch.randn(2, N)
    _, state = module(x)
    state = state._replace(**{field: move(getattr(state, field).detach())})
    with torch.set_grad_enabled(grad):
        return module(x, state)


@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
@pytest.mark.parametrize(("name", "field"), list(cases()))
def test_state_on_the_meta_device(name, field, grad):
    with pytest.raises(ValueError, match=rf"^state\.{field}: expected a strided tensor on cpu "
                                         rf"\(the device of the input it goes with\), got tensor "
                                         rf"of shape .* on meta \(torch\.strided\)$"):
        run(name, field, grad, lambda t: t.to("meta"))


@pytest.mark.parametrize("name", [*LAYERS, *CELLS])
def test_sparse_state(name):
    with pytest.raises(ValueError, match=r"^state\.z: expected a strided tensor on cpu .* "
                                         r"\(torch\.sparse_coo\)$"):
        run(name, "z", False, lambda t: t.to_sparse())


@pytest.mark.parametrize("path", ["pytorch", "reference"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_layers_check_the_state_on_every_path(name, path):
    with freqnn.sfm.use_path(path), pytest.raises(ValueError, match=r"^state\.re: .* on meta"):
        run(name, "re", False, lambda t: t.to("meta"))


# ---- the operators, called directly (past the layers' checks) -----------------------------------

def scan_inputs(adaptive):
    T, B, G = 3, 2, 3 * D + K + K * M + (K if adaptive else 0)
    return Inputs(
        gx=torch.randn(T, B, G, dtype=torch.float64),
        z0=torch.randn(B, M, dtype=torch.float64),
        re0=torch.randn(B, D, K, dtype=torch.float64),
        im0=torch.randn(B, D, K, dtype=torch.float64),
        phi0=torch.rand(B, K, dtype=torch.float64) if adaptive else None,
        cos=None,
        sin=None,
        omega=None if adaptive else torch.rand(K, dtype=torch.float64),
        times=torch.arange(1.0, T + 1, dtype=torch.float64)[:, None].expand(T, B),
        time0=torch.zeros(B, dtype=torch.float64),
        mask=torch.ones(T, B, dtype=torch.bool),
        weight_hh=torch.randn(G, M, dtype=torch.float64),
        weight_a=torch.randn(K, 2 * M, D, dtype=torch.float64),
        b_z=torch.randn(K, M, dtype=torch.float64),
    )


SCAN_ARGS = [(adaptive, name) for adaptive in (False, True) for name in Inputs._fields[1:]
             if isinstance(getattr(scan_inputs(adaptive), name), torch.Tensor)]


@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
@pytest.mark.parametrize("path", ["fast", "pytorch"])
@pytest.mark.parametrize(("adaptive", "name"), SCAN_ARGS)
def test_sfm_scan_argument_on_the_meta_device(adaptive, name, path, grad):
    p = scan_inputs(adaptive)
    p = p._replace(**{name: getattr(p, name).to("meta")})
    if grad:
        p = p._replace(gx=p.gx.requires_grad_())
    with freqnn.sfm.use_path(path), pytest.raises(
            ValueError, match=rf"^{name}: expected a strided tensor on cpu .* on meta"):
        torch.ops.freqnn.sfm_scan(*p, grad)


def test_sfm_scan_backward_argument_on_the_meta_device():
    p = scan_inputs(False)  # an SFM in training: phases given as cos / sin
    phases = p.times[..., None] * p.omega
    p = p._replace(cos=phases.cos(), sin=phases.sin(), omega=None)
    out = torch.ops.freqnn.sfm_scan(*p, True)
    given = {**p._asdict(), "gout": torch.ones_like(out[0]), "gz": torch.ones_like(out[1]),
             "gre": torch.ones_like(out[2]), "gim": torch.ones_like(out[3]), "gphi": None,
             "saved": out[5]}
    schema = torch.ops.freqnn.sfm_scan_backward.default._schema
    args = {a.name: given[a.name] for a in schema.arguments}  # the op's order and flags
    torch.ops.freqnn.sfm_scan_backward(*args.values())  # as given, it runs
    for name in ("gz", "saved", "weight_a"):
        bad = {**args, name: args[name].to("meta")}
        with pytest.raises(ValueError, match=rf"^{name}: expected a strided tensor on cpu"):
            torch.ops.freqnn.sfm_scan_backward(*bad.values())


def block_args():
    L, B, G = 4, 2, 3 * D + K + K * M
    return dict(gx=torch.randn(L, B, G), cos=torch.randn(L, B, K), sin=torch.randn(L, B, K),
                mask=torch.ones(L, B, dtype=torch.bool), re0=torch.randn(B, D, K),
                im0=torch.randn(B, D, K), weight_a=torch.randn(K, 2 * M, D),
                b_z=torch.randn(K, M))


@pytest.mark.parametrize("name", list(block_args())[1:])
def test_psfm_block_argument_on_the_meta_device(name):
    args = block_args()
    args[name] = args[name].to("meta")
    with pytest.raises(ValueError, match=rf"^{name}: expected a strided tensor on cpu"):
        torch.ops.freqnn.psfm_block(*args.values(), 2, False)


def test_psfm_block_backward_argument_on_the_meta_device():
    args = block_args()
    out, re, im, saved = torch.ops.freqnn.psfm_block(*args.values(), 2, True)
    back = dict(gout=torch.ones_like(out), gre=torch.ones_like(re), gim=torch.ones_like(im),
                **args, saved=saved, chunk=2)
    if compiled_available():
        torch.ops.freqnn.psfm_block_backward(*back.values())  # as given, it runs
    for name in ("gre", "re0", "saved"):
        bad = {**back, name: back[name].to("meta")}
        with pytest.raises(ValueError, match=rf"^{name}: expected a strided tensor on cpu"):
            torch.ops.freqnn.psfm_block_backward(*bad.values())


@pytest.mark.parametrize("make", [lambda: torch.zeros(4, device="meta"),
                                  lambda: torch.zeros(4).to_sparse(),
                                  lambda: torch.zeros(4, 2).t()],
                         ids=["meta", "sparse", "not contiguous"])
def test_the_kernel_gate_refuses_what_it_cannot_read(make):
    def kernel(*args):
        raise AssertionError("the kernel ran")

    with pytest.raises(ValueError, match=r"^z0: expected a contiguous strided CPU tensor"):
        abi.call(kernel, (1,) * len(abi.DIMS), abi.FORWARD, {"z0": make()})
