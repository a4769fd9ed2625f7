"""Bad input raises the project's one wording: the argument, what was expected, what came
(the messages of SFM, through freqnn.checks)."""

from __future__ import annotations

import math
import re

import pytest
import torch

from freqnn.baselines import ACTRNN, RHN, AssociativeLSTM, ClockworkRNN, PhasedLSTM

from .conftest import TINY, H, N, build

F64 = "dtype torch.float64"


def raises(error: type[Exception], message: str):
    return pytest.raises(error, match=f"^{re.escape(message)}$")


def x(T: int = 5, B: int = 2) -> torch.Tensor:
    return torch.randn(T, B, N, dtype=torch.float64)


def test_x_of_wrong_rank(name: str) -> None:
    with raises(ValueError, "x: expected 2-D or 3-D input of shape (time, batch, input_size) "
                f"or unbatched (time, input_size), got tensor of shape (5,) and {F64}"):
        build(name)(torch.randn(5, dtype=torch.float64))
    with raises(ValueError, "x: expected 2-D or 3-D input of shape (batch, time, input_size) "
                f"or unbatched (time, input_size), got tensor of shape (1, 5, 2, 3) and {F64}"):
        build(name, batch_first=True)(torch.randn(1, 5, 2, N, dtype=torch.float64))


def test_x_of_wrong_feature_size(name: str) -> None:
    with raises(ValueError, f"x: expected last dimension input_size={N}, got tensor of shape "
                f"(5, 2, 4) and {F64}"):
        build(name)(torch.randn(5, 2, 4, dtype=torch.float64))


def test_x_of_wrong_type_or_dtype(name: str) -> None:
    model = build(name)
    with raises(TypeError, "x: expected a torch.Tensor, got list [1.0, 2.0]"):
        model([1.0, 2.0])
    with raises(TypeError, "x: expected a floating-point tensor (float32 or float64), got "
                "tensor of shape (5, 2, 3) and dtype torch.int64"):
        model(torch.ones(5, 2, N, dtype=torch.long))
    with raises(TypeError, "x: expected dtype torch.float64 (the module's dtype), got tensor "
                "of shape (5, 2, 3) and dtype torch.float32"):
        model(torch.randn(5, 2, N))


def test_x_without_steps(name: str) -> None:
    with raises(ValueError, f"x: expected at least one time step, got tensor of shape (0, 2, 3) "
                f"and {F64}"):
        build(name)(x(T=0))


def test_x_with_an_empty_batch(name: str) -> None:
    # issue 27, Layer API: B = 0 is refused as for SFM (the SFM kernels failed on it)
    with raises(ValueError, "x: expected a batch of at least one sequence (B >= 1), got tensor "
                f"of shape (5, 0, {N}) and {F64}"):
        build(name)(x(B=0))


def test_state_as_a_dict_is_described_briefly(name: str) -> None:
    # issue 27, Layer API: the message dumped whole tensor reprs
    model = build(name)
    _, state = model(x())
    with pytest.raises(TypeError) as info:
        model(x(), state._asdict())
    assert "tensor([" not in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(TypeError) as info:
        model(x(), (*state, state[0]))
    assert "tensor([" not in str(info.value) and "\n" not in str(info.value)
    assert f"got tuple of {len(state) + 1} item(s) (" in str(info.value)


@pytest.mark.parametrize("bad", [math.nan, -math.inf])
def test_x_not_finite(name: str, bad: float) -> None:
    data = x()
    data[3, 1, 2] = bad
    with raises(ValueError, "x: expected finite values, got 1 NaN or infinite element(s) in "
                f"tensor of shape (5, 2, 3) and {F64}"):
        build(name)(data)


def test_lengths(name: str) -> None:
    model = build(name)
    with raises(ValueError, "lengths: expected values in [0, 5], got values in [-1, 3] "
                "(tensor of shape (2,) and dtype torch.int64)"):
        model(x(), lengths=torch.tensor([-1, 3]))
    with raises(ValueError, "lengths: expected values in [0, 5], got values in [2, 6] "
                "(tensor of shape (2,) and dtype torch.int64)"):
        model(x(), lengths=torch.tensor([6, 2]))
    with raises(ValueError, "lengths: expected shape (2,) (one length per sequence), got "
                "tensor of shape (3,) and dtype torch.int64"):
        model(x(), lengths=torch.tensor([5, 5, 5]))
    with raises(TypeError, "lengths: expected an integer tensor, got tensor of shape (2,) and "
                "dtype torch.float32"):
        model(x(), lengths=torch.tensor([5.0, 3.0]))


def test_state_of_wrong_type(name: str) -> None:
    model = build(name)
    fields = ", ".join(model.state_type._fields)
    cls = model.state_type.__name__
    article = "an" if cls[0] in "AEIOU" else "a"
    with raises(TypeError, f"state: expected {article} {cls} ({fields}) or None, got tensor "
                f"of shape (1, 2, {H}) and {F64}"):
        model(x(), torch.zeros(1, 2, H, dtype=torch.float64))


def test_state_fields_checked(name: str) -> None:
    model = build(name, num_layers=2)
    _, state = model(x(B=3))
    with raises(ValueError, f"state.h: expected shape (2, 2, {H}) (layers, batch, ...), got "
                f"tensor of shape (2, 3, {H}) and {F64}"):
        model(x(B=2), state)
    _, state = model(x())
    with raises(TypeError, "state.h: expected dtype torch.float64 (the module's dtype), got "
                f"tensor of shape (2, 2, {H}) and dtype torch.float32"):
        model(x(), state._replace(h=state.h.float()))
    bad = state.h.clone()
    bad[1, 0, 0] = math.nan
    with raises(ValueError, "state.h: expected finite values, got 1 NaN or infinite element(s) "
                f"in tensor of shape (2, 2, {H}) and {F64}"):
        model(x(), state._replace(h=bad))
    # a plain tuple of the right fields is accepted, as for SFM
    data = x()
    torch.testing.assert_close(model(data, tuple(state))[0], model(data, state)[0])


def test_clockwork_step_counter() -> None:
    model = build("cwrnn")
    _, state = model(x())
    with raises(TypeError, "state.step: expected an integer tensor, got tensor of shape (2,) "
                "and dtype torch.float32"):
        model(x(), state._replace(step=state.step.float()))
    with raises(ValueError, "state.step: expected values in [0, inf], got values in [-1, 5] "
                "(tensor of shape (2,) and dtype torch.int64)"):
        model(x(), state._replace(step=torch.tensor([-1, 5])))
    with raises(ValueError, "state.step: expected shape (2,) (one value per sequence), got "
                "tensor of shape (3,) and dtype torch.int64"):
        model(x(), state._replace(step=torch.tensor([1, 2, 3])))


def test_phased_times_and_state_time() -> None:
    model = build("plstm")
    with raises(ValueError, "times: expected shape (5,) or (2, 5) (T=5, B=2), got tensor of "
                "shape (5, 2) and dtype torch.float32"):
        model(x(), times=torch.ones(5, 2))
    with raises(TypeError, "times: expected a real-valued tensor of shape (T,) or (B, T), got "
                "list [1, 2, 3, 4, 5]"):
        model(x(), times=[1, 2, 3, 4, 5])
    times = torch.arange(1.0, 6.0)
    times[2] = math.inf
    with raises(ValueError, "times: expected finite values, got 1 NaN or infinite element(s) in "
                "tensor of shape (5,) and dtype torch.float64"):
        model(x(), times=times)
    _, state = model(x())
    with raises(TypeError, "state.time: expected a floating-point tensor (float32 or float64), "
                "got tensor of shape (2,) and dtype torch.int64"):
        model(x(), state._replace(time=torch.tensor([1, 2])))
    with raises(ValueError, "state.time: expected timestamps with |t| <= 2**53 = 9.007e+15, got "
                "|t| up to 1e+16"):
        model(x(), state._replace(time=torch.tensor([1.0, 1e16], dtype=torch.float64)))


@pytest.mark.parametrize(("cls", "kwargs", "error", "message"), [
    (RHN, {"hidden_size": 0}, ValueError, "hidden_size: expected a positive int, got 0"),
    (RHN, {"input_size": 2.0}, ValueError, "input_size: expected a positive int, got 2.0"),
    (RHN, {"num_layers": True}, ValueError, "num_layers: expected a positive int, got True"),
    (RHN, {"dropout": 1.5}, ValueError, "dropout: expected a float in [0, 1], got 1.5"),
    (RHN, {"depth": 0}, ValueError, "depth: expected a positive int, got 0"),
    (ClockworkRNN, {"hidden_size": 7}, ValueError,
     "hidden_size: expected a multiple of the number of modules g=3, got 7"),
    (ClockworkRNN, {"periods": (2, 1, 4)}, ValueError, "periods: expected a positive int g or "
     "a strictly increasing sequence of positive ints, got (2, 1, 4)"),
    (ClockworkRNN, {"periods": 0}, ValueError, "periods: expected a positive int g or a "
     "strictly increasing sequence of positive ints, got 0"),
    (AssociativeLSTM, {"hidden_size": 5}, ValueError,
     "hidden_size: expected an even int (H / 2 complex units), got 5"),
    (AssociativeLSTM, {"copies": 0}, ValueError, "copies: expected a positive int, got 0"),
    (ACTRNN, {"max_ponder": 0}, ValueError, "max_ponder: expected a positive int, got 0"),
    (ACTRNN, {"time_penalty": -0.1}, ValueError,
     "time_penalty: expected a finite non-negative float, got -0.1"),
    (PhasedLSTM, {"r_on": 0.0}, ValueError, "r_on: expected a float in (0, 1], got 0.0"),
    (PhasedLSTM, {"alpha": -1e-3}, ValueError,
     "alpha: expected a finite non-negative float, got -0.001"),
    (PhasedLSTM, {"period_range": (5.0, 1.0)}, ValueError,
     "period_range: expected (low, high) with 2**-53 <= low <= high <= 2**53, got (5.0, 1.0)"),
    # issue 27: non-finite or overflowing values were accepted
    (PhasedLSTM, {"period_range": (1, 1e308)}, ValueError,
     "period_range: expected (low, high) with 2**-53 <= low <= high <= 2**53, got (1, 1e+308)"),
    (PhasedLSTM, {"period_range": (1e-320, 1)}, ValueError,
     "period_range: expected (low, high) with 2**-53 <= low <= high <= 2**53, got (1e-320, 1)"),
    (PhasedLSTM, {"alpha": math.nan}, ValueError,
     "alpha: expected a finite non-negative float, got nan"),
    (PhasedLSTM, {"alpha": math.inf}, ValueError,
     "alpha: expected a finite non-negative float, got inf"),
    (PhasedLSTM, {"eval_alpha": math.nan}, ValueError,
     "eval_alpha: expected a finite non-negative float, got nan"),
    (ACTRNN, {"time_penalty": math.inf}, ValueError,
     "time_penalty: expected a finite non-negative float, got inf"),
    (ACTRNN, {"time_penalty": math.nan}, ValueError,
     "time_penalty: expected a finite non-negative float, got nan"),
    (ClockworkRNN, {"periods": 64, "hidden_size": 64}, ValueError, "periods: expected module "
     "periods at most 2**62 (int64 step counters; an int g <= 63), got 64"),
    (ClockworkRNN, {"periods": (1, 2**63)}, ValueError, "periods: expected module "
     "periods at most 2**62 (int64 step counters; an int g <= 63), got (1, 9223372036854775808)"),
])
def test_constructor_arguments(cls: type, kwargs: dict, error: type, message: str) -> None:
    name = next(key for key, (c, _) in TINY.items() if c is cls)
    args = {"input_size": N, "hidden_size": H, "num_layers": 1, **TINY[name][1], **kwargs}
    with raises(error, message):
        cls(**args)


def test_phased_alpha_attribute_is_checked() -> None:
    model = build("plstm", num_layers=2)
    model.alpha = 0
    assert model.alpha == 0.0 and all(cell.alpha == 0.0 for cell in model.cells)
    with raises(ValueError, "alpha: expected a finite non-negative float, got -1"):
        model.alpha = -1
