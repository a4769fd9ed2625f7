"""SFM / AdaptiveSFM against the sfm.md equations, streaming, phases, padding and gradients."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils._pytree import (
    tree_flatten,
    tree_map,
    tree_unflatten,
    treespec_dumps,
    treespec_loads,
)

import freqnn
from freqnn.frequencies import frequency_grid
from freqnn.sfm import kernels

from .kernels.common import AuthorsASFM, assert_float32_accurate, float64_twin
from .reference import randomise_, reference_sfm

N, M, D, K = 3, 4, 3, 5
CLASSES = [freqnn.SFM, freqnn.AdaptiveSFM]


def make(cls, *args, **kw):
    module = cls(N, M, D, K, *args, dtype=torch.float64, **kw)
    randomise_(module)
    return module


def irregular_times(T: int, B: int) -> torch.Tensor:
    return torch.cumsum(torch.rand(B, T, dtype=torch.float64) * 2.0 + 0.1, dim=1)


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"bias": False},
        {"frequencies": "half"},
        {"frequencies": "dct", "learn_frequencies": True},
        {"memory": "normalised"},
        {"readout": "mean", "forget_init": "chrono"},
    ],
)
@pytest.mark.parametrize("use_times", [False, True])
def test_matches_reference_equations(cls, options, use_times):
    module = make(cls, **options)
    T, B = 6, 3
    x = torch.randn(T, B, N, dtype=torch.float64)
    times = irregular_times(T, B) if use_times else None
    out, state = module(x, times=times)
    ref_times = times.t() if use_times else torch.arange(1.0, T + 1).double()[:, None].expand(T, B)
    p = module.paper_parameters()
    omega = None if module.adaptive else frequency_grid(options.get("frequencies", "paper"), K)
    expected = reference_sfm(p, x, ref_times, adaptive=module.adaptive, omega=omega,
                             normalised=options.get("memory") == "normalised",
                             mean=options.get("readout") == "mean")
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=0)
    torch.testing.assert_close(state.z[0], expected[-1], atol=1e-10, rtol=0)
    torch.testing.assert_close(state.time, ref_times[-1])


def test_learned_paper_grid_is_folded_without_changing_outputs():
    """Frequencies above pi are used as their alias in [0, pi]: same amplitudes, same output."""
    fixed = make(freqnn.SFM)
    learned = freqnn.SFM(N, M, D, K, learn_frequencies=True, dtype=torch.float64)
    learned.load_state_dict(fixed.state_dict())
    assert learned.cells[0].frequencies().max() <= math.pi
    x = torch.randn(8, 2, N, dtype=torch.float64)
    torch.testing.assert_close(learned(x)[0], fixed(x)[0], atol=1e-10, rtol=0)


def test_adaptive_at_init_equals_sfm():
    """W_omega_* start at zero and b_omega on the grid: A-SFM starts as the SFM."""
    sfm = freqnn.SFM(N, M, D, K, num_layers=2, dtype=torch.float64)
    asfm = freqnn.AdaptiveSFM(N, M, D, K, num_layers=2, dtype=torch.float64)
    with torch.no_grad():
        for layer in range(2):
            target = asfm.paper_parameters(layer)
            for name, value in sfm.paper_parameters(layer).items():
                if name != "omega":
                    target[name].copy_(value)
    x = torch.randn(9, 2, N, dtype=torch.float64)
    torch.testing.assert_close(asfm(x)[0], sfm(x)[0], atol=1e-10, rtol=0)


@pytest.mark.parametrize("path", ["fast", "pytorch", "reference"])
@pytest.mark.parametrize("cls", [*CLASSES, AuthorsASFM])
@pytest.mark.parametrize("use_times", [False, True])
def test_streaming_in_chunks_equals_whole_run(cls, use_times, path):
    module = make(cls, num_layers=2)
    T, B = 10, 2
    x = torch.randn(T, B, N, dtype=torch.float64)
    times = irregular_times(T, B) if use_times else None
    with kernels.use_path(path):
        whole, whole_state = module(x, times=times)
        state, outs = None, []
        for start, stop in ((0, 3), (3, 4), (4, 10)):
            chunk_times = None if times is None else times[:, start:stop]
            out, state = module(x[start:stop], state, times=chunk_times)
            outs.append(out)
    torch.testing.assert_close(torch.cat(outs), whole, atol=1e-10, rtol=0)
    for a, b in zip(state, whole_state, strict=True):
        if a is not None:
            torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


@pytest.mark.parametrize("cls", CLASSES)
def test_cell_stepped_by_hand_equals_layer(cls):
    module = make(cls)
    cell = module.cells[0]
    T, B = 7, 3
    x = torch.randn(T, B, N, dtype=torch.float64)
    times = irregular_times(T, B)
    out, final = module(x, times=times)
    state = None
    for t in range(T):
        z, state = cell(x[t], state, t=times[:, t])
        torch.testing.assert_close(z, out[t], atol=1e-10, rtol=0)
    torch.testing.assert_close(state.re, final.re[0], atol=1e-10, rtol=0)
    torch.testing.assert_close(state.time, final.time)


@pytest.mark.parametrize("cls", CLASSES)
def test_unbatched_and_batch_first_layouts(cls):
    module = make(cls, num_layers=2)
    x = torch.randn(5, 2, N, dtype=torch.float64)
    out, state = module(x)
    module.batch_first = True
    out_bf, state_bf = module(x.transpose(0, 1))
    torch.testing.assert_close(out_bf.transpose(0, 1), out)
    torch.testing.assert_close(state_bf.re, state.re)
    module.batch_first = False
    single, single_state = module(x[:, 1])
    torch.testing.assert_close(single, out[:, 1])
    assert single_state.z.shape == (2, M) and single_state.time.shape == ()
    torch.testing.assert_close(single_state.re, state.re[:, 1])
    # the unbatched state continues an unbatched stream
    more, _ = module(x[:, 1], single_state)
    whole, _ = module(torch.cat([x[:, 1], x[:, 1]]))
    torch.testing.assert_close(more, whole[5:])


@pytest.mark.numerics
@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("via_state", [False, True])
def test_phase_precision_at_large_times_float32(cls, via_state):
    """A global time shift leaves every output unchanged (sfm.md); t0 = 1e7 in float32: the
    shifted outputs are as close to the unshifted ones in float64 as the unshifted float32 are."""
    module = cls(N, M, D, K, frequencies="half")
    randomise_(module)
    T, B, t0 = 50, 2, 1e7
    x = torch.randn(T, B, N)
    early, _ = module(x)
    if via_state:
        start = freqnn.SFMState(*module(x[:1])[1])
        zero = start._replace(
            z=torch.zeros_like(start.z), re=torch.zeros_like(start.re),
            im=torch.zeros_like(start.im), time=torch.full((B,), t0, dtype=torch.float64),
            phase=None if start.phase is None else torch.zeros_like(start.phase),
        )
        late, state = module(x, zero)
        assert state.time[0].item() == t0 + T
    else:
        times = t0 + torch.arange(1, T + 1, dtype=torch.float32)
        late, _ = module(x, times=times)
    twin, x64, _ = float64_twin(module, x, None)
    assert_float32_accurate([late], [early], [twin(x64)[0]])


@pytest.mark.parametrize("cls", CLASSES)
def test_lengths_padded_batch_equals_each_sequence_alone(cls):
    module = make(cls, num_layers=2)
    T, lengths = 8, [8, 5, 1, 0]
    x = torch.randn(T, len(lengths), N, dtype=torch.float64)
    x_padded = x.clone()
    for b, n in enumerate(lengths):
        x_padded[n:, b] = 100.0  # garbage in the padding must not matter
    times = irregular_times(T, len(lengths))
    out, state = module(x_padded, times=times, lengths=torch.tensor(lengths))
    for b, n in enumerate(lengths):
        assert torch.all(out[n:, b] == 0)
        if n == 0:
            assert torch.all(state.z[:, b] == 0) and state.time[b] == 0
            continue
        alone, alone_state = module(x[:n, b : b + 1], times=times[b : b + 1, :n])
        torch.testing.assert_close(out[:n, b : b + 1], alone, atol=1e-12, rtol=0)
        for got, want in zip(state, alone_state, strict=True):
            if got is None:
                continue
            got_b = got[b] if got.dim() == 1 else got[:, b]
            want_b = want[0] if want.dim() == 1 else want[:, 0]
            torch.testing.assert_close(got_b, want_b, atol=1e-12, rtol=0)


@pytest.mark.parametrize("cls", CLASSES)
def test_gradcheck_including_learned_frequencies(cls):
    module = cls(2, 3, 2, 3, num_layers=2, learn_frequencies=True, frequencies="dct",
                 dtype=torch.float64)
    randomise_(module)
    x = torch.randn(4, 2, 2, dtype=torch.float64, requires_grad=True)
    times = irregular_times(4, 2).requires_grad_(False)
    params = list(module.parameters())
    names = [n for n, _ in module.named_parameters()]
    assert any("omega" in n for n in names)

    from torch.func import functional_call

    def call(x, *flat):
        return functional_call(module, dict(zip(names, flat, strict=True)), (x,),
                               {"times": times})[0]

    inputs = (x, *(p.detach().clone().requires_grad_(True) for p in params))
    assert torch.autograd.gradcheck(call, inputs, atol=1e-6, fast_mode=True)


@pytest.mark.parametrize("cls", CLASSES)
def test_gradients_finite_for_all_zero_input(cls):
    """bias=False and x = 0 gives S = 0 exactly: sqrt at zero must not produce NaN."""
    module = cls(N, M, D, K, bias=False, learn_frequencies=True)
    x = torch.zeros(6, 2, N, requires_grad=True)
    out, state = module(x)
    assert torch.all(state.re == 0)
    out.sum().backward()
    for p in module.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtypes_and_devices(cls, dtype, device):
    module = cls(N, M, D, K, num_layers=2, dropout=0.2, device=device, dtype=dtype)
    x = torch.randn(5, 2, N, dtype=dtype, device=device)
    out, state = module(x)
    assert out.dtype == dtype and out.device.type == device
    assert state.time.dtype == torch.float64
    out.sum().backward()


def test_dropout_between_layers_only_in_training():
    module = freqnn.SFM(N, M, D, K, num_layers=2, dropout=0.5, dtype=torch.float64)
    x = torch.randn(5, 2, N, dtype=torch.float64)
    module.eval()
    a, b = module(x)[0], module(x)[0]
    torch.testing.assert_close(a, b)
    module.train()
    torch.manual_seed(1)
    c = module(x)[0]
    torch.manual_seed(2)
    d = module(x)[0]
    assert not torch.allclose(c, d)


@pytest.mark.parametrize("cls", CLASSES)
def test_paper_parameters_names_shapes_and_shared_storage(cls):
    module = cls(N, M, D, K, num_layers=2)
    p = module.paper_parameters(1)
    expected = {
        "W_ste": (D, M), "W_g": (D, M), "W_i": (D, M), "V_ste": (D, M), "V_g": (D, M),
        "V_i": (D, M), "b_ste": (D,), "b_g": (D,), "b_i": (D,), "W_fre": (K, M),
        "V_fre": (K, M), "b_fre": (K,), "U_o": (K, M, D), "W_o": (K, M, M), "V_o": (K, M, M),
        "b_o": (K, M), "W_z": (K, M, D), "b_z": (K, M),
    }
    if cls is freqnn.AdaptiveSFM:
        expected.update({"W_omega_z": (K, M), "W_omega_x": (K, M), "b_omega": (K,)})
    else:
        expected["omega"] = (K,)
    assert {k: tuple(v.shape) for k, v in p.items()} == expected
    x = torch.randn(4, 1, N)
    before = module(x)[0]
    assert before.abs().max() > 0
    with torch.no_grad():  # W_z = b_z = 0 makes every z_t^k = o * tanh(0) = 0
        p["W_z"].zero_()
        p["b_z"].zero_()
    assert torch.all(module(x)[0] == 0)


def test_reset_parameters_restores_grid_and_repr():
    module = freqnn.AdaptiveSFM(N, M, D, K, frequencies="half", learn_frequencies=True)
    with torch.no_grad():
        module.cells[0].b_omega.add_(1.0)
        module.cells[0].weight_ih.fill_(3.0)
    module.reset_parameters()
    torch.testing.assert_close(module.cells[0].b_omega, frequency_grid("half", K).float())
    assert torch.all(module.paper_parameters()["W_omega_x"] == 0)
    assert module.cells[0].weight_ih.abs().max() <= 1 / math.sqrt(M)
    text = repr(freqnn.SFM(N, M, D, K, num_layers=3, batch_first=True, dropout=0.1))
    assert "state_size=3" in text and "num_layers=3" in text and "batch_first=True" in text


def test_memory_option_is_validated():
    with pytest.raises(ValueError, match=r"memory: expected one of \('paper', 'normalised'\), "
                       "got 'average'"):
        freqnn.SFM(N, M, D, K, memory="average")
    with pytest.raises(ValueError, match="memory: expected 'paper'"):
        freqnn.ParallelSFM(N, M, D, K, memory="normalised")
    with pytest.raises(ValueError, match=r"readout: expected one of \('sum', 'mean'\)"):
        freqnn.SFM(N, M, D, K, readout="max")
    with pytest.raises(ValueError, match="readout: expected 'sum'"):
        freqnn.ParallelSFM(N, M, D, K, readout="mean")
    assert "memory='normalised'" in repr(freqnn.AdaptiveSFM(N, M, D, K, memory="normalised"))


@pytest.mark.parametrize("memory", ["paper", "normalised"])
def test_the_amplitude_grows_with_the_window_only_in_the_paper_memory(memory):
    """With the forget gates near 1 (f = 0.99, a window of 100 steps) and a constant write,
    the paper's |S| at omega = 0 approaches g i / (1 - f) = 100 g i; the normalised memory's stays
    below g i <= 1 (docs/sfm.md, "Training SFM")."""
    sfm = freqnn.SFM(1, 2, 2, 2, memory=memory, frequencies=torch.tensor([0.0, 0.5]),
                     dtype=torch.float64)
    p = sfm.paper_parameters()
    with torch.no_grad():
        for v in p.values():
            v.zero_()
        # f_ste f_fre = sigmoid(b)^2 = 0.99, g = sigmoid(10), i = tanh(1)
        p["b_ste"].fill_(math.log(0.99 ** 0.5 / (1 - 0.99 ** 0.5)))
        p["b_fre"].copy_(p["b_ste"][:1].expand(2))
        p["b_g"].fill_(10.0)
        p["b_i"].fill_(math.atanh(0.5))
    _, state = sfm(torch.zeros(2000, 1, 1, dtype=torch.float64))
    amplitude = torch.hypot(state.re, state.im)[0, 0]  # (D, K) of the sequence
    gi = torch.sigmoid(torch.tensor(10.0, dtype=torch.float64)) * 0.5
    if memory == "paper":
        torch.testing.assert_close(amplitude[:, 0], (gi / 0.01).expand(2), rtol=1e-6, atol=0)
    else:
        assert bool((amplitude <= gi + 1e-12).all())
        torch.testing.assert_close(amplitude[:, 0], gi.expand(2), rtol=1e-6, atol=0)


def test_chrono_forget_init_follows_the_periods_of_the_grid():
    """b_fre^k = log(P_k - 1) (the window of frequency k is its period, clipped to [2, T_max]),
    b_ste = log(u), u ~ U(1, T_max - 1), T_max the grid's longest period."""
    grid = freqnn.frequency_grid("log", 4, min_period=10, max_period=100)
    for cls in (freqnn.SFM, freqnn.AdaptiveSFM):
        sfm = cls(2, 5, 6, 4, frequencies=grid, forget_init="chrono", learn_frequencies=True,
                  dtype=torch.float64)
        p = sfm.paper_parameters()
        periods = 2 * math.pi / grid.double()
        torch.testing.assert_close(p["b_fre"], torch.log(periods - 1), rtol=1e-6, atol=0)
        windows = torch.exp(p["b_ste"]) + 1  # 1 / (1 - f_ste)
        assert bool(((windows >= 2) & (windows <= 100 + 1e-9)).all())
        with torch.no_grad():
            sfm.cells[0].bias_ih.zero_()
        sfm.reset_parameters()
        torch.testing.assert_close(sfm.paper_parameters()["b_fre"], torch.log(periods - 1),
                                   rtol=1e-6, atol=0)
    # the paper grid (2 pi k / K, K = 4): periods inf, 4, 2, 4/3 -> T_max 4, windows 4, 4, 2, 2
    p = freqnn.SFM(2, 5, 6, 4, forget_init="chrono", dtype=torch.float64).paper_parameters()
    torch.testing.assert_close(p["b_fre"], torch.log(torch.tensor([3.0, 3.0, 1.0, 1.0],
                                                                  dtype=torch.float64)))
    uniform = freqnn.SFM(2, 5, 6, 4).paper_parameters()["b_fre"]
    assert float(uniform.abs().max()) <= 1 / math.sqrt(5)
    with pytest.raises(ValueError, match=r"forget_init: expected one of \('uniform', 'chrono'\)"):
        freqnn.SFM(2, 5, 6, 4, forget_init="unit")


@pytest.mark.parametrize(
    "module",
    [freqnn.SFM(N, M, D, K, num_layers=2), freqnn.AdaptiveSFM(N, M, D, K),
     freqnn.AdaptiveSFM(N, M, D, K, phase="authors"), freqnn.StockSFM(N, M, K),
     freqnn.SFMCell(N, M, D, K)],
    ids=["SFM", "AdaptiveSFM", "AdaptiveSFM-authors", "StockSFM", "SFMCell"],
)
def test_state_is_a_pytree_of_its_tensors(module):
    """``tree_map(Tensor.detach, state)`` works with SFM's ``phase=None`` (issue 28, item 8):
    None is no leaf, the result is an SFMState, and its spec round-trips."""
    x = torch.randn(6, 2, N) if isinstance(module, freqnn.SFM) else torch.randn(2, N)
    _, state = module(x)
    detached = tree_map(torch.Tensor.detach, state)
    assert isinstance(detached, freqnn.SFMState)
    assert (detached.phase is None) == (state.phase is None) == (not module.adaptive)
    leaves, spec = tree_flatten(state)
    assert len(leaves) == (5 if module.adaptive else 4)
    assert all(isinstance(leaf, torch.Tensor) and not d.requires_grad
               for leaf, d in zip(leaves, tree_flatten(detached)[0], strict=True))
    assert treespec_loads(treespec_dumps(spec)) == spec
    rebuilt = tree_unflatten(leaves, spec)
    assert type(rebuilt) is freqnn.SFMState and rebuilt._asdict().keys() == state._asdict().keys()
