"""The op equals the reference in every mode: grad mode, ``no_grad`` and ``inference_mode``;
times as (T,), contiguous (B, T), non-contiguous (B, T) or absent; ``batch_first``; ``lengths``,
state passing, one and two layers, SFM and A-SFM; float64 (1e-10) and float32 (within the float32
reference's own error against float64, ``common.assert_float32_accurate``); the cells
with a scalar ``t`` and with ``t`` of shape (B,). A property-based test draws all of these at
random.

The no_grad case with contiguous (B, T) times is the regression of the use-after-free of
freqnn 0.1.0 (pointers taken from temporary ``.contiguous()`` copies): its outputs were off by
about 1e-2.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import freqnn
from freqnn.sfm import kernels

from ..reference import randomise_
from .common import (
    CELLS,
    CLASSES,
    AuthorsASFM,
    D,
    K,
    M,
    N,
    assert_float32_accurate,
    assert_same,
    float64_twin,
    make,
    random_state,
    run,
)

pytestmark = pytest.mark.numerics

MODES = {
    "grad": contextlib.nullcontext,
    "no_grad": torch.no_grad,
    "inference_mode": torch.inference_mode,
}
TIMES = ["absent", "T", "BT-contiguous", "BT-strided"]


def make_times(layout: str, T: int, B: int) -> torch.Tensor | None:
    steps = torch.rand(T, B, dtype=torch.float64) * 2.0 + 0.1
    if layout == "absent":
        return None
    if layout == "T":
        return steps[:, 0].cumsum(0)
    if layout == "BT-contiguous":
        return steps.t().cumsum(1).contiguous()
    # (B, T) view with an element stride of 2 (a transpose alone is contiguous when B = 1)
    strided = torch.stack([steps.t().cumsum(1), steps.t()], dim=-1)[..., 0]
    assert strided.numel() == 1 or not strided.is_contiguous()
    return strided


def results(cls, mode, times, batch_first, dtype, lengths, state, layers, T=7, B=3):
    """The fast path's and the reference's results (lists as ``run``'s) of one drawn case, and for
    float32 the reference's in float64 on the same values (else None)."""
    module = make(cls, dtype=dtype, num_layers=layers, batch_first=batch_first)
    x = torch.randn(B, T, N, dtype=dtype) if batch_first else torch.randn(T, B, N, dtype=dtype)
    kw = {"times": make_times(times, T, B)}
    if lengths:
        kw["lengths"] = torch.randint(0, T + 1, (B,))
    init = random_state(module, B, dtype) if state else None
    x.requires_grad_(mode == "grad")

    def evaluate(module, x, init, path):
        if mode == "grad":
            return run(module, path, x, init, **kw)
        with kernels.use_path(path), MODES[mode]():
            out, final = module(x, init, **kw)
        return [out, *final]

    fast, reference = evaluate(module, x, init, "fast"), evaluate(module, x, init, "reference")
    exact = None
    if dtype == torch.float32:
        exact = evaluate(*float64_twin(module, x, init), "reference")
    return fast, reference, exact


def compare(*case, **sizes):
    fast, reference, exact = results(*case, **sizes)
    if exact is None:
        assert_same(fast, reference)
    else:
        assert_float32_accurate(fast, reference, exact)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["TB", "BT"])
@pytest.mark.parametrize("times", TIMES)
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("extras", ["plain", "lengths+state+2-layers"])
def test_op_equals_reference_in_every_mode(cls, mode, times, batch_first, dtype, extras):
    full = extras != "plain"
    compare(cls, mode, times, batch_first, dtype, full, full, 2 if full else 1)


def test_use_after_free_regression():
    """The case of the report: float64, (B, T) contiguous times, no_grad."""
    torch.manual_seed(0)
    module = freqnn.SFM(2, 8, 4, 4, batch_first=True, dtype=torch.float64)
    x = torch.randn(3, 7, 2, dtype=torch.float64)
    times = torch.rand(3, 7, dtype=torch.float64).cumsum(1)
    with torch.no_grad():
        fast, _ = module(x, times=times)
        with kernels.use_reference():
            ref, _ = module(x, times=times)
    torch.testing.assert_close(fast, ref, atol=1e-10, rtol=0)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("t", ["default", "scalar", "per-sequence"])
@pytest.mark.parametrize("cls", CELLS)
def test_cell_steps_equal_reference(cls, t, mode):
    cell = cls(N, M, D, K, dtype=torch.float64)
    randomise_(cell)
    T, B = 4, 3
    x = torch.randn(T, B, N, dtype=torch.float64)
    stamps = torch.rand(T, B, dtype=torch.float64).cumsum(0) * 3
    outs = {}
    for path in ("fast", "reference"):
        state, zs = None, []
        with kernels.use_path(path), MODES[mode]():
            for step in range(T):
                kw = {}
                if t == "scalar":
                    kw["t"] = float(stamps[step, 0])
                elif t == "per-sequence":
                    kw["t"] = stamps[step]
                z, state = cell(x[step], state, **kw)
                zs.append(z)
        outs[path] = (torch.stack(zs), state)
    torch.testing.assert_close(outs["fast"][0], outs["reference"][0], atol=1e-10, rtol=0)
    for u, v in zip(outs["fast"][1], outs["reference"][1], strict=True):
        if u is not None:
            torch.testing.assert_close(u, v, atol=1e-10, rtol=0)


@settings(suppress_health_check=[HealthCheck.too_slow])
@example(  # issue 23: a gradient 1.97e-4 from the reference's, allowed 1e-4 by a fixed tolerance
    cls=AuthorsASFM, mode="grad", times="absent", batch_first=False, dtype=torch.float32,
    lengths=False, state=True, layers=1, T=9, B=4, seed=2,
)
@given(
    cls=st.sampled_from(CLASSES),
    mode=st.sampled_from(list(MODES)),
    times=st.sampled_from(TIMES),
    batch_first=st.booleans(),
    dtype=st.sampled_from([torch.float64, torch.float32]),
    lengths=st.booleans(),
    state=st.booleans(),
    layers=st.integers(1, 2),
    T=st.integers(1, 9),
    B=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_property_op_equals_reference(
    cls, mode, times, batch_first, dtype, lengths, state, layers, T, B, seed
):
    torch.manual_seed(seed)
    compare(cls, mode, times, batch_first, dtype, lengths, state, layers, T=T, B=B)


@pytest.mark.parametrize("cls", CELLS)
def test_streaming_step_runs_in_one_kernel_call(cls, monkeypatch):
    """Eager CPU inference takes kernels.step (projection and checks in the kernel), and its
    result is the general path's."""
    cell = cls(N, M, D, K, dtype=torch.float64)
    randomise_(cell)
    x = torch.randn(2, N, dtype=torch.float64)
    calls = []
    real = kernels.step

    def counted(*args):
        result = real(*args)
        calls.append(result is not None)  # None: the general path takes over
        return result

    monkeypatch.setattr(kernels, "step", counted)
    with torch.no_grad():
        _, state = cell(x)
        z2, state2 = cell(x, state, t=5.5)
        z1, state1 = cell(x[0])  # unbatched
    assert calls == [True, True, True]
    with kernels.use_reference(), torch.no_grad():
        zr, sr = cell(x)
        zr2, sr2 = cell(x, sr, t=5.5)
    torch.testing.assert_close(z2, zr2, atol=1e-10, rtol=0)
    torch.testing.assert_close(state2.re, sr2.re, atol=1e-10, rtol=0)
    torch.testing.assert_close(z1, zr[0], atol=1e-10, rtol=0)
    assert state1.re.shape == (D, K) and state1.time.shape == ()


@pytest.mark.parametrize("cls", CELLS)
def test_streaming_step_refuses_bad_values_with_the_general_errors(cls):
    """The kernel checks values; a bad one sends the step to the general path, which names it."""
    cell = cls(N, M, D, K)
    x = torch.randn(2, N)
    with torch.no_grad():
        _, state = cell(x)
        bad_x = x.clone()
        bad_x[1, 0] = float("nan")
        with pytest.raises(ValueError, match=r"^x: expected finite values"):
            cell(bad_x, state)
        with pytest.raises(ValueError, match=r"^state.re: expected finite values"):
            cell(x, state._replace(re=state.re.clone().fill_(float("inf"))))
        with pytest.raises(ValueError, match=r"^state.time: expected timestamps"):
            cell(x, state._replace(time=torch.full((2,), 1e300, dtype=torch.float64)))
        with pytest.raises(ValueError, match=r"^t: expected timestamps"):
            cell(x, state, t=1e300)
        with pytest.raises(ValueError, match=r"^state.z: expected shape"):
            cell(x, state._replace(z=state.z[:1]))


def test_float32_rule_catches_a_perturbed_gradient():
    """Issue 23's case passes the float32 rule because the float32 reference is as far from
    float64 as the fast path is; the same results with the largest element of any one tensor
    (output, final state, every gradient) off by 1e-3 of itself fail it."""
    torch.manual_seed(2)
    fast, reference, exact = results(AuthorsASFM, "grad", "absent", False, torch.float32,
                                     False, True, 1, T=9, B=4)  # fmt: skip
    assert_float32_accurate(fast, reference, exact)
    perturbed = [i for i, v in enumerate(fast) if v is not None]
    assert len(perturbed) == 16  # out; z, re, im, time, phase; x, 5 parameters, z, re, im, phase
    for i in perturbed:
        wrong = list(fast)
        wrong[i] = fast[i].detach().clone()
        flat = wrong[i].view(-1)
        flat[flat.abs().argmax()] *= 1 + 1e-3
        with pytest.raises(AssertionError, match=f"^tensor {i} "):
            assert_float32_accurate(wrong, reference, exact)
