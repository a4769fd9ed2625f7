"""Large timestamps: every path computes the phases one way (omega * t rounded once in float64,
then reduced exactly modulo 2*pi), so fast and reference agree up to |t| = 2**53. Before, the
no_grad kernel reduced with a fused multiply-add and the PyTorch side with a rounded product:
SFM float64 differed by 2e-9 at t = 1e9 and 5e-2 at 2**53 (issue 27, item 10)."""

from __future__ import annotations

import contextlib
import math
import random
import re
import warnings

import pytest
import torch

import freqnn
from freqnn.frequencies import TWO_PI, wrap_phase
from freqnn.sfm import kernels

T, B, N, M, D, K = 12, 2, 3, 6, 3, 4
STARTS = [1e5, 1e7, 1e9, 1e12, 1e15, 2.0**53 - T]
MODELS = {
    "SFM": lambda dtype: freqnn.SFM(N, M, D, K, dtype=dtype),
    "SFM 2 layers": lambda dtype: freqnn.SFM(N, M, D, K, num_layers=2, dtype=dtype),
    "A-SFM accumulate": lambda dtype: freqnn.AdaptiveSFM(N, M, D, K, dtype=dtype),
    # as initialised, W_omega = 0: omega_t is b_omega on every path, so the authors' phase
    # omega_{t-1} * t is well defined at any t (see test_authors_rule_warns_beyond_its_bound)
    "A-SFM authors": lambda dtype: freqnn.AdaptiveSFM(N, M, D, K, phase="authors", dtype=dtype),
    "SFMCell": lambda dtype: freqnn.SFMCell(N, M, D, K, dtype=dtype),
}
TOLERANCE = {torch.float32: 2e-6, torch.float64: 1e-13}


def run(module, x, times):
    if isinstance(module, freqnn.SFMCell):
        state, outs = None, []
        for i in range(T):
            out, state = module(x[i], state, times[i])
            outs.append(out)
        return torch.stack(outs)
    return module(x, times=times)[0]


@contextlib.contextmanager
def warnings_as_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


@pytest.fixture(autouse=True)
def _quiet_authors_warning(monkeypatch):
    monkeypatch.setattr(kernels, "_authors_warned", {torch.float32, torch.float64})


@pytest.mark.parametrize("t0", STARTS, ids=lambda t: f"{t:.0e}")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", list(MODELS))
def test_fast_paths_equal_the_reference_at_large_times(name, dtype, t0):
    torch.manual_seed(0)
    module = MODELS[name](dtype)
    x = torch.randn(T, B, N, dtype=dtype)
    times = t0 + torch.rand(T, dtype=torch.float64).cumsum(0)  # irregular steps
    with freqnn.sfm.use_reference(), torch.no_grad():
        want = run(module, x, times)
    with torch.no_grad():
        inference = run(module, x, times)  # SFM: the kernel computes the phases itself
    training = run(module, x, times)  # SFM: phases from frequencies.phase, given to the kernel
    with freqnn.sfm.use_path("pytorch"), torch.no_grad():
        algorithm = run(module, x, times)
    for got in (inference, training.detach(), algorithm):
        torch.testing.assert_close(got, want, rtol=0, atol=TOLERANCE[dtype])


def test_wrap_phase_is_the_exact_remainder_with_a_unit_gradient():
    rng = random.Random(0)
    values = [rng.uniform(-1, 1) * 10 ** rng.uniform(0, 15.9) for _ in range(2000)]
    phi = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    wrapped = wrap_phase(phi)
    want = [math.fmod(v, TWO_PI) % TWO_PI for v in values]
    assert wrapped.tolist() == want
    assert bool(((wrapped >= 0) & (wrapped < TWO_PI)).all())
    wrapped.sum().backward()
    assert phi.grad.tolist() == [1.0] * len(values)


@pytest.mark.parametrize(("dtype", "bound"), [(torch.float32, 8.39e3), (torch.float64, 4.5e12)])
def test_authors_rule_warns_beyond_its_bound(monkeypatch, dtype, bound):
    """With trained W_omega the authors' phase omega_{t-1} * t amplifies a rounding of omega by
    |t|: beyond the bound paths disagree, and freqnn says so once."""
    monkeypatch.setattr(kernels, "_authors_warned", set())
    assert kernels.authors_time_bound(dtype) == pytest.approx(bound, rel=1e-3)
    module = freqnn.AdaptiveSFM(N, M, D, K, phase="authors", dtype=dtype)
    x = torch.randn(T, B, N, dtype=dtype)
    inside = bound / 2 + torch.arange(T, dtype=torch.float64)
    with warnings_as_errors():
        module(x, times=inside)
        freqnn.AdaptiveSFM(N, M, D, K, dtype=dtype)(x, times=inside * 1e3)  # accumulate: fine
    for path in ("fast", "reference"):
        monkeypatch.setattr(kernels, "_authors_warned", set())
        with freqnn.sfm.use_path(path), pytest.warns(
                RuntimeWarning, match=re.escape(f"phase='authors' at timestamps beyond |t| = "
                                                f"{kernels.authors_time_bound(dtype):.3g} in "
                                                f"{dtype}")):
            module(x, times=2 * bound + torch.arange(T, dtype=torch.float64))
    cell = freqnn.AdaptiveSFMCell(N, M, D, K, phase="authors", dtype=dtype)
    monkeypatch.setattr(kernels, "_authors_warned", set())
    with pytest.warns(RuntimeWarning, match="phase='authors' at timestamps beyond"):
        with torch.no_grad():
            cell(x[0], t=2 * bound)  # the streaming step's one-call kernel
    with warnings_as_errors():  # once per dtype and process
        cell(x[0], t=3 * bound)
