"""The op equals the reference in every mode: grad mode, ``no_grad`` and ``inference_mode``;
times as (T,), contiguous (B, T), non-contiguous (B, T) or absent; ``batch_first``; ``lengths``,
state passing, one and two layers, SFM and A-SFM; float64 (1e-10) and float32 (1e-5); the cells
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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import freqnn
from freqnn.sfm import kernels

from ..reference import randomise_
from .common import CELLS, CLASSES, D, K, M, N, assert_same, make, random_state, run

MODES = {
    "grad": contextlib.nullcontext,
    "no_grad": torch.no_grad,
    "inference_mode": torch.inference_mode,
}
TIMES = ["absent", "T", "BT-contiguous", "BT-strided"]
TOLERANCE = {torch.float64: {"atol": 1e-10, "rtol": 0}, torch.float32: {"atol": 1e-5, "rtol": 1e-5}}


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


def compare(cls, mode, times, batch_first, dtype, lengths, state, layers, T=7, B=3):
    module = make(cls, dtype=dtype, num_layers=layers, batch_first=batch_first)
    x = torch.randn(B, T, N, dtype=dtype) if batch_first else torch.randn(T, B, N, dtype=dtype)
    kw = {"times": make_times(times, T, B)}
    if lengths:
        kw["lengths"] = torch.randint(0, T + 1, (B,))
    init = random_state(module, B, dtype) if state else None
    tol = TOLERANCE[dtype]
    if mode == "grad":
        x.requires_grad_()
        a, b = run(module, "fast", x, init, **kw), run(module, "reference", x, init, **kw)
        if dtype == torch.float64:
            assert_same(a, b)
        else:
            torch.testing.assert_close(a[0], b[0], **tol)
            for u, v in zip(a[2], b[2], strict=True):
                torch.testing.assert_close(u, v, atol=1e-4, rtol=1e-4)
        return
    results = []
    for path in ("fast", "reference"):
        with kernels.use_path(path), MODES[mode]():
            results.append(module(x, init, **kw))
    (out_a, state_a), (out_b, state_b) = results
    torch.testing.assert_close(out_a, out_b, **tol)
    for u, v in zip(state_a, state_b, strict=True):
        assert (u is None) == (v is None)
        if u is not None:
            torch.testing.assert_close(u, v, **tol)


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


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
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
