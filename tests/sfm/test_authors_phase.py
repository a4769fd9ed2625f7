"""A-SFM under the authors' phase rule (``AdaptiveSFM(..., phase="authors")``).

The rule of the authors' released Theano code: the state carries omega, starting at the
frequency grid; step t uses cos(omega_{t-1} t) and sin(omega_{t-1} t), then computes
omega_t = W_omega_z z_{t-1} + W_omega_x x_t + b_omega for step t + 1; a padded step keeps the
carried omega. The transcription below is written from those equations (batched over sequences,
one step at a time, parameters read through ``paper_parameters()``), not from the library's
cell; the layer is compared with it on the reference path, the compiled CPU kernel and the
PyTorch algorithm, outputs, final states and gradients, in float64 to 1e-10. (Streaming in
chunks: ``test_layer.py``; every mode and layout: ``kernels/test_modes.py``.)
"""

from __future__ import annotations

import copy
import io
import math
import re

import pytest
import torch
from torch.func import functional_call

import freqnn
from freqnn.sfm import kernels

from .reference import randomise_

N, M, D, K = 3, 4, 3, 5
TOL = {"atol": 1e-10, "rtol": 0}
PATHS = ["reference", "compiled", "pytorch"]
#: the grids written out (rad per unit of time), k = 0..K-1
GRIDS = {
    "paper": [2 * math.pi * k / K for k in range(K)],
    "dct": [(2 * k + 1) * math.pi / (2 * K) for k in range(K)],
}


@pytest.fixture(scope="module")
def compiled() -> None:
    assert kernels.compiled_available(), kernels.compiled_status()


def make(num_layers: int = 2, frequencies: str = "paper", **kw) -> freqnn.AdaptiveSFM:
    """Random weights, random W_omega_*, and b_omega moved off the grid (so that a test would see
    omega_0 taken from b_omega instead of the grid)."""
    module = freqnn.AdaptiveSFM(N, M, D, K, num_layers, phase="authors", frequencies=frequencies,
                                learn_frequencies=True, dtype=torch.float64, **kw)  # fmt: skip
    randomise_(module)
    with torch.no_grad():
        for cell in module.cells:
            cell.b_omega.add_(torch.randn(K, dtype=torch.float64) * 0.5)
    return module


# --------------------------------------------------------------------------- transcription
def transcribe_layer(p, x, times, valid, z, re, im, omega):
    """One layer. ``p`` paper parameters; x (T, B, N); times (T, B) float64; valid (T, B) bool;
    the initial state z (B, M), re, im (B, D, K), omega (B, K). Returns the outputs (T, B, M)
    and the final z, re, im, omega."""

    def affine(gate: str) -> torch.Tensor:
        bias = p.get(f"b_{gate}", 0.0)
        return z @ p[f"W_{gate}"].T + x_t @ p[f"V_{gate}"].T + bias

    outputs = []
    for t in range(x.shape[0]):
        x_t = x[t]
        f_ste = torch.sigmoid(affine("ste"))  # (B, D)
        f_fre = torch.sigmoid(affine("fre"))  # (B, K)
        g = torch.sigmoid(affine("g"))
        i = torch.tanh(affine("i"))
        angle = omega * times[t].unsqueeze(1)  # omega_{t-1} * t, (B, K)
        f = f_ste.unsqueeze(2) * f_fre.unsqueeze(1)  # (B, D, K)
        write = (g * i).unsqueeze(2)
        re_new = f * re + write * torch.cos(angle).unsqueeze(1)
        im_new = f * im + write * torch.sin(angle).unsqueeze(1)
        A = torch.sqrt(re_new**2 + im_new**2)  # (B, D, K)
        o = torch.sigmoid(
            torch.einsum("kmd,bdk->bkm", p["U_o"], A)
            + torch.einsum("kmn,bn->bkm", p["W_o"], z)
            + torch.einsum("kmn,bn->bkm", p["V_o"], x_t)
            + p.get("b_o", 0.0)
        )
        c = torch.tanh(torch.einsum("kmd,bdk->bkm", p["W_z"], A) + p.get("b_z", 0.0))
        z_new = (o * c).sum(1)
        omega_new = z @ p["W_omega_z"].T + x_t @ p["W_omega_x"].T + p["b_omega"]  # for t + 1
        v = valid[t].unsqueeze(1)
        outputs.append(torch.where(v, z_new, torch.zeros_like(z_new)))
        z = torch.where(v, z_new, z)
        re = torch.where(v.unsqueeze(2), re_new, re)
        im = torch.where(v.unsqueeze(2), im_new, im)
        omega = torch.where(v, omega_new, omega)
    return torch.stack(outputs), (z, re, im, omega)


def transcribe(module, x, state, times, lengths, grid):
    """The whole stack; x (T, B, N); state an SFMState or None (zeros, omega = the grid, time
    0); times (B, T) or None (the steps time + 1, time + 2, ...); lengths (B,) or None."""
    T, B, _ = x.shape
    L = module.num_layers
    if state is None:
        zeros = torch.zeros(L, B, D, K, dtype=x.dtype)
        omega0 = torch.tensor(grid, dtype=x.dtype).expand(L, B, K)
        state = freqnn.SFMState(torch.zeros(L, B, M, dtype=x.dtype), zeros, zeros,
                                torch.zeros(B, dtype=torch.float64), omega0)  # fmt: skip
    if times is None:
        times = state.time.unsqueeze(0) + torch.arange(1, T + 1, dtype=torch.float64)[:, None]
    else:
        times = times.t()
    steps = torch.arange(T)[:, None]
    valid = steps < (torch.full((B,), T) if lengths is None else lengths)[None, :]
    finals, layer_input = [], x
    for layer in range(L):
        p = module.paper_parameters(layer)
        init = (state.z[layer], state.re[layer], state.im[layer], state.phase[layer])
        layer_input, final = transcribe_layer(p, layer_input, times, valid, *init)
        finals.append(final)
    count = valid.sum(0)
    last = times.gather(0, (count - 1).clamp(min=0)[None]).squeeze(0)
    final = freqnn.SFMState(
        *(torch.stack([f[j] for f in finals]) for j in range(3)),
        torch.where(count > 0, last, state.time),
        torch.stack([f[3] for f in finals]),
    )
    return layer_input, final


# --------------------------------------------------------------------------- comparison
def leaves_of(x, state):
    """x and the initial state as fresh leaves requiring gradients (time excluded)."""
    x = x.detach().requires_grad_()
    if state is None:
        return x, None, [x]
    fresh = state._replace(
        z=state.z.detach().requires_grad_(),
        re=state.re.detach().requires_grad_(),
        im=state.im.detach().requires_grad_(),
        phase=state.phase.detach().requires_grad_(),
    )
    return x, fresh, [x, fresh.z, fresh.re, fresh.im, fresh.phase]


def outcome(module, out, final, leaves):
    """Outputs, final state and the gradients of a loss that touches all of them."""
    gen = torch.Generator().manual_seed(7)
    loss = 0.0
    for v in (out, final.z, final.re, final.im, final.phase):
        loss = loss + (v * torch.randn(v.shape, generator=gen, dtype=v.dtype)).sum()
    params = [p for p in module.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, [*leaves, *params])
    return out.detach(), [v.detach() for v in final], grads


def assert_outcomes_equal(a, b):
    torch.testing.assert_close(a[0], b[0], **TOL)
    for u, v in zip(a[1], b[1], strict=True):
        torch.testing.assert_close(u, v, **TOL)
    for u, v in zip(a[2], b[2], strict=True):
        torch.testing.assert_close(u, v, **TOL)


def random_state(B: int, L: int = 2) -> freqnn.SFMState:
    return freqnn.SFMState(
        z=torch.randn(L, B, M, dtype=torch.float64) * 0.5,
        re=torch.randn(L, B, D, K, dtype=torch.float64),
        im=torch.randn(L, B, D, K, dtype=torch.float64),
        time=torch.rand(B, dtype=torch.float64) * 10,
        phase=torch.rand(L, B, K, dtype=torch.float64) * 3,  # omega_0 of each sequence
    )


CASES = {
    "zero-state": {},
    "times+lengths": {"times": True, "lengths": [7, 4, 1, 0]},
    "state+default-times": {"state": True},
    "state+times+lengths": {"state": True, "times": True, "lengths": [3, 7, 0, 5]},
}


@pytest.mark.parametrize("frequencies", ["paper", "dct"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("path", PATHS)
def test_layer_equals_transcription(compiled, path, case, frequencies):
    """Outputs, final state and the gradients of x, every parameter and the initial state."""
    spec = CASES[case]
    module = make(frequencies=frequencies)
    T, B = 7, 4
    x = torch.randn(T, B, N, dtype=torch.float64)
    times = torch.cumsum(torch.rand(B, T, dtype=torch.float64) * 2 + 0.1, 1) if spec.get(
        "times") else None  # fmt: skip
    lengths = torch.tensor(spec["lengths"]) if "lengths" in spec else None
    state = random_state(B) if spec.get("state") else None

    x1, state1, leaves1 = leaves_of(x, state)
    out, final = transcribe(module, x1, state1, times, lengths, GRIDS[frequencies])
    want = outcome(module, out, final, leaves1)

    x2, state2, leaves2 = leaves_of(x, state)
    with kernels.use_path(path):
        out, final = module(x2, state2, times=times, lengths=lengths)
    got = outcome(module, out, final, leaves2)
    assert_outcomes_equal(got, want)
    if lengths is not None:  # a sequence without steps keeps omega_0
        b = spec["lengths"].index(0)
        expected = GRIDS[frequencies] if state is None else state.phase[:, b]
        want_omega = torch.as_tensor(expected, dtype=torch.float64).expand(2, K)
        torch.testing.assert_close(got[1][4][:, b], want_omega, **TOL)


@pytest.mark.parametrize("path", PATHS)
def test_gradcheck(compiled, path):
    module = freqnn.AdaptiveSFM(2, 3, 2, 3, num_layers=2, phase="authors", learn_frequencies=True,
                                frequencies="dct", dtype=torch.float64)  # fmt: skip
    randomise_(module)
    x = torch.randn(4, 2, 2, dtype=torch.float64, requires_grad=True)
    times = torch.cumsum(torch.rand(2, 4, dtype=torch.float64) + 0.5, 1)
    lengths = torch.tensor([4, 2])
    names = [n for n, _ in module.named_parameters()]
    assert any("omega" in n for n in names)

    def call(x, *flat):
        params = dict(zip(names, flat, strict=True))
        out, state = functional_call(module, params, (x,), {"times": times, "lengths": lengths})
        return out, state.phase, state.re

    inputs = (x, *(p.detach().clone().requires_grad_() for p in module.parameters()))
    with kernels.use_path(path):
        assert torch.autograd.gradcheck(call, inputs, atol=1e-7)


@pytest.mark.parametrize("mode", ["grad", "no_grad"])
@pytest.mark.parametrize("path", PATHS)
def test_cell_steps_equal_layer(compiled, path, mode):
    """Streaming one step at a time through the cell (no_grad: the kernel's streaming step)."""
    module = make(num_layers=1)
    cell = module.cells[0]
    T, B = 6, 3
    x = torch.randn(T, B, N, dtype=torch.float64)
    times = torch.cumsum(torch.rand(B, T, dtype=torch.float64) * 3, 1)
    with torch.no_grad():
        whole, final = module(x, times=times)
    state = None
    context = torch.no_grad() if mode == "no_grad" else torch.enable_grad()
    with kernels.use_path(path), context:
        for t in range(T):
            z, state = cell(x[t], state, t=times[:, t])
            torch.testing.assert_close(z.detach(), whole[t], **TOL)
    torch.testing.assert_close(state.phase.detach(), final.phase[0], **TOL)
    unbatched, _ = cell(x[0, 0])  # zero state without a batch axis: the grid
    torch.testing.assert_close(unbatched.detach(), module(x[:1, :1])[0][0, 0].detach(), **TOL)


# --------------------------------------------------------------------------- special cases
def copy_sfm_weights(sfm: freqnn.SFM, asfm: freqnn.AdaptiveSFM) -> None:
    with torch.no_grad():
        for layer in range(sfm.num_layers):
            target = asfm.paper_parameters(layer)
            for name, value in sfm.paper_parameters(layer).items():
                if name != "omega":
                    target[name].copy_(value)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "options", [{}, {"frequencies": "dct", "learn_frequencies": True}], ids=["paper", "dct-learned"]
)
def test_at_initialisation_equals_sfm_and_the_accumulated_rule(compiled, path, options):
    """W_omega_* = 0 and b_omega = the grid: omega_t is the grid at every step, so the authors'
    rule gives cos(grid * t) as SFM and as the accumulated phase."""
    sfm = freqnn.SFM(N, M, D, K, num_layers=2, dtype=torch.float64, **options)
    randomise_(sfm)
    authors = freqnn.AdaptiveSFM(N, M, D, K, num_layers=2, phase="authors", dtype=torch.float64,
                                 **options)  # fmt: skip
    accumulate = freqnn.AdaptiveSFM(N, M, D, K, num_layers=2, dtype=torch.float64, **options)
    copy_sfm_weights(sfm, authors)
    copy_sfm_weights(sfm, accumulate)
    T, B = 9, 3
    x = torch.randn(T, B, N, dtype=torch.float64)
    kw = {"times": torch.cumsum(torch.rand(B, T, dtype=torch.float64) * 2, 1),
          "lengths": torch.tensor([9, 5, 0])}  # fmt: skip
    with kernels.use_path(path):
        want, want_state = sfm(x, **kw)
        got, state = authors(x, **kw)
        other, _ = accumulate(x, **kw)
    torch.testing.assert_close(got, want, **TOL)
    torch.testing.assert_close(other, want, **TOL)
    torch.testing.assert_close(state.re, want_state.re, **TOL)
    grid = authors.cells[0].b_omega.detach()
    torch.testing.assert_close(state.phase, grid.expand(2, B, K), **TOL)  # omega_t = the grid


def test_omega_0_is_the_grid_not_b_omega():
    """The zero state's omega is the construction grid; it stays when b_omega is trained."""
    module = freqnn.AdaptiveSFM(N, M, D, K, phase="authors", learn_frequencies=True,
                                dtype=torch.float64)  # fmt: skip
    grid = torch.tensor(GRIDS["paper"], dtype=torch.float64)
    with torch.no_grad():
        module.cells[0].b_omega.add_(1.0)
        module.cells[0].weight_ih[-K:].normal_()
    x = torch.randn(1, 2, N, dtype=torch.float64)
    _, untouched = module(x, lengths=torch.tensor([0, 0]))
    torch.testing.assert_close(untouched.phase[0], grid.expand(2, K), **TOL)
    _, stepped = module(x)  # omega_1 = W_omega_x x_1 + W_omega_z 0 + b_omega
    p = module.paper_parameters()
    torch.testing.assert_close(stepped.phase[0], x[0] @ p["W_omega_x"].T + p["b_omega"], **TOL)
    module.reset_parameters()
    torch.testing.assert_close(module.cells[0].b_omega.detach(), grid, **TOL)


def test_times_gradient_is_omega_of_the_previous_step():
    """d phase_t / d t = omega_{t-1}: the gradient of ``times`` (reference path, which the fast
    path defers to for it) against the transcription's."""
    module = make(num_layers=1)
    x = torch.randn(5, 2, N, dtype=torch.float64)
    base = torch.cumsum(torch.rand(2, 5, dtype=torch.float64) + 0.5, 1)
    grads = []
    for run in ("layer", "transcription"):
        times = base.clone().requires_grad_()
        if run == "layer":
            out, _ = module(x, times=times)
        else:
            out, _ = transcribe(module, x, None, times, None, GRIDS["paper"])
        grads.append(torch.autograd.grad(out.square().sum(), times)[0])
    torch.testing.assert_close(grads[0], grads[1], **TOL)


def test_attribute_repr_state_dict_and_pickle():
    module = make()
    assert module.phase == "authors" and all(c.phase == "authors" for c in module.cells)
    assert "phase='authors'" in repr(module) and "phase='authors'" in module.cells[0].extra_repr()
    assert "phase='accumulate'" in repr(freqnn.AdaptiveSFM(N, M, D, K))
    assert "phase" not in repr(freqnn.SFM(N, M, D, K))
    x = torch.randn(6, 2, N, dtype=torch.float64)
    want, _ = module(x)
    loaded = freqnn.AdaptiveSFM(N, M, D, K, 2, phase="authors", learn_frequencies=True,
                                dtype=torch.float64)  # fmt: skip
    loaded.load_state_dict(module.state_dict())
    torch.testing.assert_close(loaded(x)[0], want, **TOL)
    buffer = io.BytesIO()
    torch.save(module, buffer)
    buffer.seek(0)
    for other in (torch.load(buffer, weights_only=False), copy.deepcopy(module)):
        assert other.phase == "authors"
        torch.testing.assert_close(other(x)[0], want, **TOL)
    # the attribute switches every layer's rule
    module.phase = "accumulate"
    assert [c.phase for c in module.cells] == ["accumulate", "accumulate"]
    assert not torch.allclose(module(x)[0], want)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("bad", ["author", "Authors", None, 1, ""])
@pytest.mark.parametrize("where", ["layer", "cell", "attribute"])
def test_phase_is_validated(where, bad):
    message = rf"^phase: expected one of \('accumulate', 'authors'\), got {re.escape(repr(bad))}$"
    with pytest.raises(ValueError, match=message):
        if where == "layer":
            freqnn.AdaptiveSFM(N, M, D, K, phase=bad)
        elif where == "cell":
            freqnn.AdaptiveSFMCell(N, M, D, K, phase=bad)
        else:
            module = freqnn.AdaptiveSFM(N, M, D, K, 2, phase="authors")
            try:
                module.phase = bad
            finally:
                assert [c.phase for c in module.cells] == ["authors", "authors"]


@pytest.mark.parametrize(
    "make_other",
    [
        lambda: freqnn.SFM(N, M, D, K, phase="authors"),
        lambda: freqnn.SFMCell(N, M, D, K, phase="authors"),
        lambda: freqnn.ParallelSFM(N, M, D, K, phase="authors"),
        lambda: freqnn.StockSFM(N, M, K, phase="authors"),
    ],
    ids=["SFM", "SFMCell", "ParallelSFM", "StockSFM"],
)
def test_models_without_a_phase_rule_have_no_phase_argument(make_other):
    """SFM's phase is omega * t under both rules: it takes no ``phase``."""
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'phase'"):
        make_other()


def test_state_phase_required_and_checked():
    module = freqnn.AdaptiveSFM(N, M, D, K, 2, phase="authors")
    x = torch.randn(3, 2, N)
    _, state = module(x)
    with pytest.raises(ValueError, match=r"^state.phase: expected a tensor .*omega_t under "):
        module(x, state._replace(phase=None))
    with pytest.raises(ValueError, match=r"^state.phase: expected shape \(2, 2, 5\)"):
        module(x, state._replace(phase=state.phase[..., :-1]))
    bad = state.phase.clone()
    bad[1, 0, 2] = math.nan
    with pytest.raises(ValueError, match=r"^state.phase: expected finite values"):
        module(x, state._replace(phase=bad))
