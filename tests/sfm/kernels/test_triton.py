"""The Triton SFM kernels (``freqnn.sfm.kernels.triton_scan``) on a CPU, in Triton's interpreter.

The interpreter must be chosen before triton is first imported (its own library functions, such
as ``tl.sigmoid``, are kernels too), so the tests that run kernels run in a subprocess of their
own with ``TRITON_INTERPRET=1``: ``test_interpreter_subprocess`` runs this file there, and in the
suite's process those tests are skipped; the rest of the suite never sees the variable. The
layers reach the kernels through the op's PyTorch algorithm, which the tests route to them
(``monkeypatch`` of the two functions the op calls), and are compared with the reference path in
float32: outputs to 1e-5, final states and gradients to 1e-4 of each tensor's largest
magnitude. Sizes are not multiples of 16 (N=5, M=6, D=7, K=3), so every padded lane is
exercised.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton")

import freqnn
from freqnn.sfm import kernels
from freqnn.sfm.kernels import pytorch

from ..reference import randomise_
from .common import AuthorsASFM, NormalisedMeanSFM, irregular_times, run

N, M, D, K = 5, 6, 7, 3
T, B = 6, 3
OUT_TOL = 1e-5
GRAD_RTOL = 1e-4
CLASSES = [freqnn.SFM, freqnn.AdaptiveSFM, AuthorsASFM, NormalisedMeanSFM]
MODULE = "freqnn.sfm.kernels.triton_scan"
ROUTED = "triton"
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
#: the tests that run kernels: only in the interpreter's process
interpreter = pytest.mark.skipif(not INTERPRETED, reason="run by test_interpreter_subprocess")
#: the others: only in the suite's process
outside = pytest.mark.skipif(INTERPRETED, reason="run in the suite's process")
ROOT = Path(__file__).resolve().parents[3]


@outside
def test_interpreter_subprocess():
    """This file's kernel tests, in a process with TRITON_INTERPRET=1 from its start."""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def ts():
    """``triton_scan``, its kernels in the interpreter."""
    module = importlib.import_module(MODULE)
    assert module.interpreted()
    return module


@pytest.fixture
def on_triton(ts, monkeypatch):
    """``ROUTED`` ("triton") the process default path (the backward runs after the ``use_path``
    block), the kernels counted; yields the count of each kernel's calls, and the test must
    have run the forward."""
    calls = {"forward": 0, "backward": 0}

    def counted(name, fn):
        def call(*args):
            calls[name] += 1
            return fn(*args)

        return call

    monkeypatch.setattr(ts, "forward_triton", counted("forward", ts.forward_triton))
    monkeypatch.setattr(ts, "backward_triton", counted("backward", ts.backward_triton))
    before = kernels.get_path()
    kernels.set_path(ROUTED)
    try:
        yield calls
    finally:
        kernels.set_path(before)
    assert calls["forward"] > 0, calls


def assert_close(got, want):
    """Lists as ``common.run``'s: the output (first) to OUT_TOL, the rest (final state and
    gradients) to GRAD_RTOL of each tensor's largest magnitude."""
    for i, (u, v) in enumerate(zip(got, want, strict=True)):
        assert (u is None) == (v is None), i
        if u is None:
            continue
        error = (u - v).abs().max().item()
        bound = OUT_TOL if i == 0 else GRAD_RTOL * max(v.abs().max().item(), 1e-6)
        assert error <= bound, f"tensor {i} of shape {tuple(u.shape)}: {error:.3g} > {bound:.3g}"


def make(cls, layers: int = 1):
    module = cls(N, M, D, K, num_layers=layers)
    randomise_(module)
    return module


def random_state(module) -> freqnn.SFMState:
    L, adaptive = module.num_layers, module.adaptive
    return freqnn.SFMState(
        z=torch.randn(L, B, M),
        re=torch.randn(L, B, D, K),
        im=torch.randn(L, B, D, K),
        time=torch.rand(B, dtype=torch.float64) * 5,
        phase=torch.rand(L, B, K) * 3 if adaptive else None,
    )


@interpreter
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_two_layers_lengths_state_irregular_times(cls, on_triton):
    """2 layers, a passed state, lengths, irregular (B, T) times: outputs, final state and every
    gradient (input, parameters, state) equal the reference path's."""
    module = make(cls, layers=2)
    x = torch.randn(T, B, N, requires_grad=True)
    state = random_state(module)
    kw = {"times": state.time[:, None] + irregular_times(T, B), "lengths": torch.tensor([6, 4, 1])}
    assert_close(run(module, ROUTED, x, state, **kw), run(module, "reference", x, state, **kw))
    assert on_triton["backward"] == 2  # one per layer


@interpreter
@pytest.mark.parametrize("times", ["absent", "(T,)"])
@pytest.mark.parametrize("cls", [freqnn.SFM, freqnn.AdaptiveSFM], ids=lambda c: c.__name__)
def test_time_axes(cls, times, on_triton):
    """``times`` absent (the default axis) or (T,) (expanded over the batch, read in place)."""
    module = make(cls)
    x = torch.randn(T, B, N, requires_grad=True)
    kw = {} if times == "absent" else {"times": torch.rand(T, dtype=torch.float64).cumsum(0)}
    assert_close(run(module, ROUTED, x, None, **kw), run(module, "reference", x, None, **kw))
    assert on_triton["backward"] == 1


@interpreter
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_inference(cls, on_triton):
    """Without gradients (the histories not kept; an SFM's phases computed from omega)."""
    module = make(cls)
    x = torch.randn(T, B, N)
    state = random_state(module)
    lengths = torch.tensor([6, 2, 5])
    with torch.no_grad():
        with freqnn.sfm.use_path(ROUTED):
            got = module(x, state, lengths=lengths)
        with freqnn.sfm.use_reference():
            want = module(x, state, lengths=lengths)
    assert_close([got[0], *got[1]], [want[0], *want[1]])


def random_inputs(adaptive: bool, authors: bool, masked: bool, normalised: bool):
    G = 3 * D + K + K * M + (K if adaptive else 0)
    phases = torch.rand(T, B, K) * 6
    mask = torch.ones(T, B, dtype=torch.bool)
    mask[3:, 1] = mask[1:, 2] = False
    return pytorch.Inputs(
        gx=torch.randn(T, B, G) * 0.5,
        z0=torch.randn(B, M) * 0.5,
        re0=torch.randn(B, D, K) * 0.5,
        im0=torch.randn(B, D, K) * 0.5,
        phi0=torch.rand(B, K) * 3 if adaptive else None,
        cos=None if adaptive else phases.cos(),
        sin=None if adaptive else phases.sin(),
        omega=None,
        times=irregular_times(T, B).t().contiguous(),
        time0=torch.zeros(B, dtype=torch.float64),
        mask=mask if masked else None,
        weight_hh=torch.randn(G, M) * 0.5,
        weight_a=torch.randn(K, 2 * M, D) * 0.5,
        b_z=torch.randn(K, M) * 0.5,
        authors=authors,
        normalised=normalised,
        mean_readout=normalised,
    )


@interpreter
@pytest.mark.parametrize(
    "adaptive, authors, masked, normalised",
    [(False, False, True, False), (False, False, False, True), (True, False, True, True),
     (True, True, True, False)],
    ids=["sfm-masked", "sfm-normalised-mean", "asfm-masked-normalised", "authors-masked"],
)
def test_histories_shared_with_pytorch_algorithm(ts, adaptive, authors, masked, normalised):
    """The forward writes the PyTorch algorithm's history buffer (to 1e-5), and the backward
    run on that algorithm's buffer gives its gradients: either kernel's backward can follow
    either forward."""
    p = random_inputs(adaptive, authors, masked, normalised)
    out, saved = ts.forward_triton(p, keep=True)
    want_out, want_saved = pytorch.forward_torch(p, keep=True)
    torch.testing.assert_close(out, want_out, atol=OUT_TOL, rtol=0)
    torch.testing.assert_close(saved.buffer, want_saved.buffer, atol=OUT_TOL, rtol=0)
    shape = (T, B, D, K, M, p.gx.shape[2])
    grads = (torch.randn(T, B, M), torch.randn(B, M), torch.randn(B, D, K), torch.randn(B, D, K),
             torch.randn(B, K) if adaptive else None)  # fmt: skip
    got = ts.backward_triton(p, shape, want_saved, *grads)
    want = pytorch.backward_torch(p, shape, want_saved, *grads)
    assert_close([out, *got], [want_out, *want])


@outside
def test_launch_parameters():
    """Every block is a power of two >= 16 (``tl.dot`` operands on a GPU) and the shared-memory
    estimate is within SHARED_LIMIT, at the tests' sizes and at the benchmarks'; a layer too
    wide for the kernel is refused."""
    ts = importlib.import_module(MODULE)
    assert ts.SHARED_LIMIT <= 96 * 1024
    for b, d, k, m in [(B, D, K, M), (1, 1, 1, 1), (64, 16, 4, 16), (16, 32, 4, 32)]:
        launch = ts.plan(b, d, k, m)
        for block, size in [(launch.BB, 1), (launch.DP, d), (launch.KP, k), (launch.MP, m)]:
            assert block >= max(ts.MIN_BLOCK, size) and block & (block - 1) == 0
        assert launch.grid * launch.BB >= b
        assert 0 < launch.shared_bytes <= ts.SHARED_LIMIT
    with pytest.raises(ValueError, match="shared-memory"):
        ts.plan(64, 128, 16, 128)


@outside
def test_no_data_dependent_control_flow():
    """Inside the kernels every ``if`` tests constexpr flags only and every loop is a ``range``
    over a size: the control flow does not depend on data (the interpreter would run anything)."""
    ts = importlib.import_module(MODULE)
    for kernel in (ts._forward_kernel, ts._backward_kernel):
        tree = ast.parse(textwrap.dedent(inspect.getsource(kernel.fn)))
        args = tree.body[0].args.args
        constexpr = {a.arg for a in args if a.annotation is not None}
        assert {"ADAPTIVE", "MEAN", "BB"} <= constexpr
        for node in ast.walk(tree):
            if isinstance(node, ast.If):
                names = {n.id for n in ast.walk(node.test) if isinstance(n, ast.Name)}
                assert names <= constexpr, ast.unparse(node.test)
            elif isinstance(node, (ast.For, ast.While)):
                assert isinstance(node, ast.For), "while loop"
                assert ast.unparse(node.iter) == "range(T)", ast.unparse(node.iter)


@outside
def test_cpu_tensors_need_the_interpreter():
    """Outside the interpreter, CPU tensors are refused with a message naming the variable."""
    real = importlib.import_module(MODULE)
    p = random_inputs(False, False, False, False)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        real.forward_triton(p, keep=False)
