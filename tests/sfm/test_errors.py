"""Bad input raises a clear error naming the argument, the expectation and what came."""

from __future__ import annotations

import math
import re

import pytest
import torch

import freqnn

N, M, D, K = 3, 4, 2, 3
CLASSES = [freqnn.SFM, freqnn.AdaptiveSFM]


@pytest.fixture(params=CLASSES)
def module(request):
    return request.param(N, M, D, K, num_layers=2)


def x(T=5, B=2):
    return torch.randn(T, B, N)


def test_wrong_rank(module):
    with pytest.raises(ValueError, match=r"x: expected 2-D or 3-D input .*shape \(5,\)"):
        module(torch.randn(5))


def test_wrong_feature_size(module):
    with pytest.raises(ValueError, match=r"x: expected last dimension input_size=3.*\(5, 2, 4\)"):
        module(torch.randn(5, 2, 4))


def test_integer_dtype(module):
    with pytest.raises(TypeError, match=r"x: expected a floating-point tensor.*torch.int64"):
        module(torch.ones(5, 2, N, dtype=torch.long))


def test_dtype_differs_from_module(module):
    with pytest.raises(TypeError, match=r"x: expected dtype torch.float32.*torch.float64"):
        module(torch.randn(5, 2, N, dtype=torch.float64))


def test_empty_sequence(module):
    with pytest.raises(ValueError, match=r"x: expected at least one time step"):
        module(torch.randn(0, 2, N))


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_x(module, bad):
    data = x()
    data[2, 1, 0] = bad
    with pytest.raises(ValueError, match=r"x: expected finite values, got 1 NaN or infinite"):
        module(data)


@pytest.mark.parametrize("bad", [math.nan, -math.inf])
def test_non_finite_times(module, bad):
    times = torch.arange(1.0, 6.0)
    times[3] = bad
    with pytest.raises(ValueError, match=r"times: expected finite values"):
        module(x(), times=times)


@pytest.mark.parametrize("shape", [(4,), (2, 4), (3, 5), (5, 2)])
def test_times_wrong_shape(module, shape):
    with pytest.raises(ValueError, match=r"times: expected shape \(5,\) or \(2, 5\)"):
        module(x(), times=torch.ones(shape))


def test_times_wrong_type(module):
    with pytest.raises(TypeError, match=r"times: expected a real-valued tensor"):
        module(x(), times=[1, 2, 3, 4, 5])


@pytest.mark.parametrize("lengths", [[6, 1], [-1, 3]])
def test_lengths_out_of_range(module, lengths):
    with pytest.raises(ValueError, match=r"lengths: expected values in \[0, 5\]"):
        module(x(), lengths=torch.tensor(lengths))


def test_lengths_wrong_shape(module):
    with pytest.raises(ValueError, match=r"lengths: expected shape \(2,\)"):
        module(x(), lengths=torch.tensor([5, 5, 5]))


def test_lengths_float_dtype(module):
    with pytest.raises(TypeError, match=r"lengths: expected an integer tensor"):
        module(x(), lengths=torch.tensor([5.0, 3.0]))


def test_state_wrong_shape(module):
    _, state = module(x())
    bad = state._replace(re=state.re[:, :, :, :-1])
    with pytest.raises(ValueError, match=r"state.re: expected shape \(2, 2, 2, 3\)"):
        module(x(), bad)


def test_state_wrong_batch(module):
    _, state = module(x(B=3))
    with pytest.raises(ValueError, match=r"state.z: expected shape \(2, 2, 4\)"):
        module(x(B=2), state)


def test_state_wrong_type(module):
    with pytest.raises(TypeError, match=r"state: expected an SFMState"):
        module(x(), torch.zeros(2, 2, M))


def test_state_phase_mismatch(module):
    _, state = module(x())
    if module.adaptive:
        with pytest.raises(ValueError, match=r"state.phase: expected a tensor"):
            module(x(), state._replace(phase=None))
    else:
        with pytest.raises(ValueError, match=r"state.phase: expected None for SFM"):
            module(x(), state._replace(phase=torch.zeros(2, 2, K)))


@pytest.mark.parametrize("field", ["z", "re", "im", "time"])
@pytest.mark.parametrize("bad", [math.nan, -math.inf])
def test_state_non_finite(module, field, bad):
    _, state = module(x())
    value = getattr(state, field).clone()
    value.view(-1)[1] = bad
    with pytest.raises(ValueError, match=rf"state.{field}: expected finite values, got 1 NaN"):
        module(x(), state._replace(**{field: value}))


@pytest.mark.parametrize(
    ("cls", "field"),
    [(freqnn.SFMCell, f) for f in ("z", "re", "im", "time")]
    + [(freqnn.AdaptiveSFMCell, f) for f in ("z", "re", "im", "time", "phase")],
)
def test_cell_state_non_finite(cls, field):
    cell = cls(N, M, D, K)
    _, state = cell(torch.randn(2, N))
    value = getattr(state, field).clone()
    value.view(-1)[0] = math.inf
    with pytest.raises(ValueError, match=rf"state.{field}: expected finite values, got 1 NaN"):
        cell(torch.randn(2, N), state._replace(**{field: value}))


def test_cell_wrong_t_shape():
    cell = freqnn.SFMCell(N, M, D, K)
    with pytest.raises(ValueError, match=r"t: expected shape \(2,\)"):
        cell(torch.randn(2, N), t=torch.ones(3))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_freqs": 0}, r"num_freqs: expected a positive int, got 0"),
        ({"state_size": 2.5}, r"state_size: expected a positive int, got 2.5"),
        ({"num_layers": 0}, r"num_layers: expected a positive int, got 0"),
        ({"dropout": 1.5}, r"dropout: expected a float in \[0, 1\], got 1.5"),
        ({"frequencies": "fourier"}, r"frequencies: expected one of \('paper', 'half', 'dct'"),
        ({"frequencies": torch.ones(2)}, r"frequencies: expected shape \(3,\)"),
        # issue 27, Layer API: dropout=True became 1.0
        ({"dropout": True}, r"dropout: expected a float in \[0, 1\], got True"),
        ({"dropout": math.nan}, r"dropout: expected a float in \[0, 1\], got nan"),
    ],
)
def test_constructor_arguments(kwargs, message):
    args = {"input_size": N, "hidden_size": M, "state_size": D, "num_freqs": K, **kwargs}
    with pytest.raises((ValueError, TypeError), match=message):
        freqnn.SFM(**args)


def test_paper_parameters_layer_out_of_range(module):
    with pytest.raises(ValueError, match=r"layer: expected an int in \[0, 1\], got 2"):
        module.paper_parameters(2)


# issue 27, Layer API: B = 0 failed in the custom op's autograd (pytorch path, grad mode) and in
# the cells' reshapes; it is refused on every path
LAYERS = [freqnn.SFM, freqnn.AdaptiveSFM, freqnn.ParallelSFM]
CELLS = [freqnn.SFMCell, freqnn.AdaptiveSFMCell, freqnn.sfm.ParallelSFMCell]
PATHS = ["fast", "pytorch", "compiled", "reference"]


@pytest.mark.parametrize("grad", [True, False], ids=["grad", "no_grad"])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("cls", "shape"), [(c, (5, 0, N)) for c in LAYERS]
                         + [(c, (0, N)) for c in CELLS])
def test_empty_batch_is_refused(cls, shape, path, grad):
    from freqnn.sfm.kernels.path import use_path

    module = cls(N, M, D, K)
    with use_path(path), torch.set_grad_enabled(grad), pytest.raises(
            ValueError, match=r"^x: expected a batch of at least one sequence \(B >= 1\), got "
            r"tensor of shape " + re.escape(str(shape))):
        module(torch.randn(*shape))


# issue 27, Layer API: a complex t lost its imaginary part, a bool was a time, a str or a meta
# tensor gave torch's errors
@pytest.mark.parametrize("grad", [True, False], ids=["grad", "no_grad"])
@pytest.mark.parametrize(("t", "error", "message"), [
    (torch.tensor(1 + 2j), TypeError, r"t: expected a real number or a real-valued tensor of "
     r"shape \(\) or \(batch,\), got tensor of shape \(\) and dtype torch.complex64"),
    ("1", TypeError, r"t: expected a real number .*, got str '1'"),
    (True, TypeError, r"t: expected a real number .*, got bool True"),
    (torch.tensor([True, False]), TypeError, r"t: expected a real number .*dtype torch.bool"),
    (torch.ones((), device="meta"), ValueError,
     r"t: expected a strided tensor on cpu .* on meta"),
    (torch.ones(2, device="meta"), ValueError, r"t: expected a strided tensor on cpu .* on meta"),
], ids=["complex", "str", "bool", "bool_tensor", "meta", "meta_batch"])
@pytest.mark.parametrize("cls", [freqnn.SFMCell, freqnn.AdaptiveSFMCell])
def test_cell_t_of_wrong_kind(cls, t, error, message, grad):
    cell = cls(N, M, D, K)
    with torch.set_grad_enabled(grad), pytest.raises(error, match=f"^{message}"):
        cell(torch.randn(2, N), None, t)


# issue 27, Layer API: a state of the wrong kind was described by whole tensor reprs
@pytest.mark.parametrize("kind", ["dict", "extra", "short"])
@pytest.mark.parametrize("cls", [freqnn.SFM, freqnn.SFMCell])
def test_state_of_the_wrong_kind_is_described_briefly(cls, kind):
    layer = cls(N, M, D, K)
    data = x() if cls is freqnn.SFM else torch.randn(2, N)
    _, state = layer(data)
    bad = {"dict": state._asdict(), "extra": (*state, state.z), "short": tuple(state)[:4]}[kind]
    with pytest.raises(TypeError) as info:
        layer(data, bad)
    message = str(info.value)
    assert message.startswith("state: expected an SFMState (z, re, im, time, phase) or None, "
                              "got ")
    assert "\n" not in message and "tensor([" not in message and len(message) < 400, message
    lead = (1,) if cls is freqnn.SFM else ()
    assert f"tensor of shape {(*lead, 2, M)}" in message


# issue 27, Layer API: ParallelSFM.cells[0].chunk_size = 0 raised ZeroDivisionError
@pytest.mark.parametrize("grad", [True, False], ids=["grad", "no_grad"])
@pytest.mark.parametrize(("key", "value"), [("chunk_size", 0), ("chunk_size", -1),
                                            ("chunk_size", 2.0), ("block_size", 0)])
def test_parallel_chunk_sizes_are_checked(key, value, grad):
    layer = freqnn.ParallelSFM(N, M, D, K)
    setattr(layer.cells[0], key, value)
    with torch.set_grad_enabled(grad), pytest.raises(
            ValueError, match=rf"^{key}: expected an int >= 1, got {value}$"):
        layer(x())
