"""The shared argument checks and their one wording."""

from __future__ import annotations

import pytest
import torch

from freqnn import checks


def test_wording_names_argument_expectation_and_value():
    with pytest.raises(ValueError, match=r"^lengths: expected values in \[0, 3\], got values in"):
        checks.check_range(torch.tensor([1, 4]), "lengths", 0, 3)
    with pytest.raises(TypeError, match=r"^x: expected a torch.Tensor, got list"):
        checks.check_floating([1.0], "x")
    with pytest.raises(TypeError, match=r"^n: expected an integer tensor, got .*bool"):
        checks.check_integer(torch.tensor([True]), "n")
    with pytest.raises(ValueError, match=r"^v: expected finite values, got 2 NaN"):
        checks.check_finite(torch.tensor([float("nan"), 1.0, float("inf")]), "v")
    with pytest.raises(ValueError, match=r"^w: expected shape \(2,\) \(one per row\)"):
        checks.check_shape(torch.ones(3), "w", (2,), "(one per row)")
    with pytest.raises(ValueError, match=r"^y: expected 2-D or 3-D input of shape"):
        checks.check_rank(torch.ones(2), "y", (2, 3), "of shape (T, B, N)")


def test_checks_pass_good_input():
    t = torch.ones(2, 3)
    assert checks.check_floating(t, "t", torch.float32) is t
    checks.check_finite(t, "t")
    checks.check_shape(t, "t", (2, 3))
    checks.check_range(torch.empty(0), "t", 0, 1)
    checks.check_rank(t, "t", (2,), "")


def test_step_times_layout_and_errors():
    cpu = torch.device("cpu")
    shared = checks.check_step_times(torch.arange(3), 3, 2, cpu)  # (T,): one row for the batch
    assert shared.dtype == torch.float64 and shared.shape == (3, 2)
    assert torch.equal(shared[:, 1], torch.arange(3, dtype=torch.float64))
    per_seq = torch.tensor([[0.0, 1.0, 2.0], [5.0, 6.0, 7.0]], dtype=torch.float32)
    assert torch.equal(checks.check_step_times(per_seq, 3, 2, cpu), per_seq.double().t())
    with pytest.raises(TypeError, match=r"^times: expected a real-valued tensor"):
        checks.check_step_times(torch.ones(3, dtype=torch.bool), 3, 2, cpu)
    with pytest.raises(ValueError, match=r"^times: expected shape \(3,\) or \(2, 3\)"):
        checks.check_step_times(torch.ones(3, 2), 3, 2, cpu)
    with pytest.raises(ValueError, match=r"^times: expected timestamps with \|t\| <= 2\*\*53"):
        checks.check_step_times(torch.tensor([0.0, 1.0, 2.0**54]), 3, 2, cpu)


def test_lengths_errors():
    cpu = torch.device("cpu")
    assert torch.equal(checks.check_lengths(torch.tensor([0, 3]), 3, 2, cpu), torch.tensor([0, 3]))
    with pytest.raises(TypeError, match=r"^lengths: expected an integer tensor"):
        checks.check_lengths(torch.tensor([1.0, 2.0]), 3, 2, cpu)
    with pytest.raises(ValueError, match=r"^lengths: expected shape \(2,\) \(one length"):
        checks.check_lengths(torch.tensor([1, 2, 3]), 3, 2, cpu)
    with pytest.raises(ValueError, match=r"^lengths: expected values in \[0, 3\]"):
        checks.check_lengths(torch.tensor([1, 4]), 3, 2, cpu)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_check_finite_large_finite_values_pass(dtype):
    # the sum overflows to inf although every element is finite: no error
    big = torch.full((4,), torch.finfo(dtype).max, dtype=dtype)
    checks.check_finite(torch.cat([big, -big, big]), "v")


@pytest.mark.parametrize(
    "values", [[1.0, float("inf"), -float("inf")], [float("nan")], [-float("inf"), 2.0]]
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_check_finite_catches_every_non_finite_pattern(values, dtype):
    with pytest.raises(ValueError, match=r"^v: expected finite values"):
        checks.check_finite(torch.tensor(values, dtype=dtype), "v")


def test_check_finite_integer_tensors_pass():
    checks.check_finite(torch.arange(5), "n")
