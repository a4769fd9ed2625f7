"""Bidirectional baselines and PackedSequence input, against one-directional layers run by hand
(tests/bidirectional.py), in float64, for each of the five."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..bidirectional import by_hand
from .conftest import TINY, H, N, build, random_state

T, B = 6, 4
LENGTHS = torch.tensor([6, 3, 0, 1])
#: the per-sequence field of each state (time, step counter); "" for none
CLOCK = {"cwrnn": "step", "plstm": "time"}


def _one(name: str, input_size: int) -> torch.nn.Module:
    cls, options = TINY[name]
    return cls(input_size, H, 1, dtype=torch.float64, **options)


@pytest.mark.parametrize("use_times", [False, True])
def test_bidirectional_equals_two_directions_by_hand(name, use_times):
    if use_times and name != "plstm":
        return  # only Phased LSTM takes times
    bi = build(name, num_layers=2, bidirectional=True)
    x = torch.randn(T, B, N, dtype=torch.float64)
    state = random_state(bi, B)
    kw = {}
    if use_times:
        kw["times"] = state.time[:, None] + torch.cumsum(torch.rand(B, T, dtype=torch.float64)
                                                         + 0.1, 1)
    out, final = bi(x, state, lengths=LENGTHS, **kw)
    expected, expected_state = by_hand(bi, lambda n: _one(name, n), x, state, LENGTHS,
                                       CLOCK.get(name, ""), kw.get("times"))
    assert out.shape == (T, B, 2 * H)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    for field, value, want in zip(final._fields, final, expected_state, strict=True):
        torch.testing.assert_close(value, want, rtol=1e-10, atol=1e-10, msg=field)


def test_bidirectional_parameters_and_repr(name):
    cls, options = TINY[name]
    bi = build(name, num_layers=2, bidirectional=True)
    assert "bidirectional=True" in repr(bi) and bi.num_directions == 2
    assert type(bi.cells_reverse[1]) is type(bi.cells[1])
    count = cls.parameter_count(N, H, 2, bidirectional=True, **options)
    assert count == sum(p.numel() for p in bi.parameters())


@pytest.mark.parametrize("batch_first", [False, True])
def test_packed_sequence_equals_padded_with_lengths(name, batch_first):
    lengths = torch.tensor([6, 3, 5, 1])
    model = build(name, num_layers=2, bidirectional=True, batch_first=batch_first)
    model.eval()  # ACT: one ponder graph; Phased LSTM: eval leak
    x = torch.randn(*((B, T) if batch_first else (T, B)), N, dtype=torch.float64)
    packed = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
    out, state = model(packed)
    padded_out, padded_state = model(x, lengths=lengths)
    assert isinstance(out, PackedSequence)
    torch.testing.assert_close(out.sorted_indices, packed.sorted_indices)
    unpacked, _ = pad_packed_sequence(out, batch_first=batch_first)
    torch.testing.assert_close(unpacked, padded_out, rtol=1e-12, atol=1e-12)
    for value, want in zip(state, padded_state, strict=True):
        torch.testing.assert_close(value, want, rtol=1e-12, atol=1e-12)


def test_errors(name):
    with pytest.raises(TypeError, match=r"bidirectional: expected a bool"):
        build(name, bidirectional="no")
    model = build(name)
    packed = pack_padded_sequence(torch.randn(T, B, N, dtype=torch.float64),
                                  torch.tensor([6, 3, 2, 1]))
    with pytest.raises(ValueError, match=r"lengths: expected None with a PackedSequence"):
        model(packed, lengths=torch.tensor([6, 3, 2, 1]))
    _, state = model(torch.randn(T, B, N, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"state\.h: expected shape \(2, 4, 6\)"):
        build(name, bidirectional=True)(torch.randn(T, B, N, dtype=torch.float64), state)
