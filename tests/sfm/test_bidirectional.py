"""Bidirectional SFM / A-SFM / StockSFM / ParallelSFM and PackedSequence input, against
one-directional layers run by hand (tests/bidirectional.py), in float64."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

import freqnn

from ..bidirectional import by_hand
from .reference import randomise_

N, M, D, K = 3, 4, 3, 2
T, B = 6, 4
LENGTHS = torch.tensor([6, 3, 0, 1])

#: name -> (class, options); StockSFM has no state_size
KINDS = {
    "sfm": (freqnn.SFM, {"frequencies": "half"}),
    "asfm": (freqnn.AdaptiveSFM, {}),
    "asfm-authors": (freqnn.AdaptiveSFM, {"phase": "authors"}),
    "stock": (freqnn.StockSFM, {}),
    "psfm": (freqnn.ParallelSFM, {"frequencies": "dct"}),
}


def build(kind: str, input_size: int = N, num_layers: int = 2, **kw) -> torch.nn.Module:
    cls, options = KINDS[kind]
    sizes = (input_size, M, K) if cls is freqnn.StockSFM else (input_size, M, D, K)
    return cls(*sizes, num_layers, dtype=torch.float64, **options, **kw)


def random_state(module: torch.nn.Module, batch: int) -> freqnn.SFMState:
    _, zero = module(torch.zeros(1, batch, module.input_size, dtype=torch.float64))
    return freqnn.SFMState(*(None if f is None else 0.3 * torch.randn_like(f) for f in zero[:3]),
                           torch.rand(batch, dtype=torch.float64) * 5,
                           None if zero.phase is None else torch.rand_like(zero.phase))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("use_times", [False, True])
def test_bidirectional_equals_two_directions_by_hand(kind, use_times):
    torch.manual_seed(3)
    bi = build(kind, bidirectional=True)
    randomise_(bi)
    x = torch.randn(T, B, N, dtype=torch.float64)
    state = random_state(bi, B)
    times = None
    if use_times:
        times = state.time[:, None] + torch.cumsum(torch.rand(B, T, dtype=torch.float64) + 0.1, 1)
    out, final = bi(x, state, times=times, lengths=LENGTHS)
    expected, expected_state = by_hand(
        bi, lambda n: build(kind, n, num_layers=1), x, state, LENGTHS, "time", times
    )
    assert out.shape == (T, B, 2 * M)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    for name, value, want in zip(final._fields, final, expected_state, strict=True):
        if want is None:
            assert value is None, name
        else:
            torch.testing.assert_close(value, want, rtol=1e-10, atol=1e-10, msg=name)


@pytest.mark.parametrize("kind", ["sfm", "asfm", "psfm"])
def test_bidirectional_without_padding_and_batch_first(kind):
    """No lengths: each direction reads all T steps; batch_first only transposes."""
    bi = build(kind, bidirectional=True, batch_first=True)
    randomise_(bi)
    x = torch.randn(B, T, N, dtype=torch.float64)
    out, state = bi(x)
    zero = build(kind, bidirectional=True)(x[:, :1].transpose(0, 1))[1]
    zero = zero._replace(**{f: torch.zeros_like(v) for f, v in zero._asdict().items()
                            if v is not None and f != "phase"})
    if zero.phase is not None:
        zero = zero._replace(phase=torch.zeros_like(zero.phase))
    expected, expected_state = by_hand(bi, lambda n: build(kind, n, num_layers=1),
                                       x.transpose(0, 1), zero, torch.full((B,), T), "time")
    torch.testing.assert_close(out, expected.transpose(0, 1), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(state.re, expected_state.re, rtol=1e-10, atol=1e-10)


def test_bidirectional_unbatched_and_gradients():
    bi = build("sfm", bidirectional=True)
    x = torch.randn(T, N, dtype=torch.float64, requires_grad=True)
    out, state = bi(x)
    assert out.shape == (T, 2 * M) and state.z.shape == (4, M) and state.time.shape == ()
    out.sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in bi.parameters()
                                       if p.requires_grad)


def test_bidirectional_structure():
    bi = build("asfm", bidirectional=True, num_layers=3)
    assert bi.num_directions == 2 and "bidirectional=True" in repr(bi)
    assert [c.input_size for c in bi.cells_reverse] == [N, 2 * M, 2 * M]
    assert bi.paper_parameters(1, reverse=True)["V_ste"].shape == (D, 2 * M)
    assert any(k.startswith("cells_reverse.2.") for k in bi.state_dict())
    one = build("asfm")
    assert one.cells_reverse is None and one.num_directions == 1
    bi.phase = "authors"
    assert all(cell.phase == "authors" for cell in bi.cells_reverse)


@pytest.mark.parametrize("kind", ["sfm", "asfm", "stock", "psfm"])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("enforce_sorted", [False, True])
def test_packed_sequence_equals_padded_with_lengths(kind, batch_first, enforce_sorted):
    lengths = torch.tensor([6, 3, 5, 1])
    if enforce_sorted:
        lengths = lengths.sort(descending=True).values
    module = build(kind, bidirectional=kind in ("sfm", "psfm"), batch_first=batch_first)
    x = torch.randn(*((B, T) if batch_first else (T, B)), N, dtype=torch.float64)
    times = torch.cumsum(torch.rand(B, T, dtype=torch.float64) + 0.1, 1)
    packed = pack_padded_sequence(x, lengths, batch_first=batch_first,
                                  enforce_sorted=enforce_sorted)
    out, state = module(packed, times=times)
    padded_out, padded_state = module(x, times=times, lengths=lengths)
    assert isinstance(out, PackedSequence)
    torch.testing.assert_close(out.batch_sizes, packed.batch_sizes)
    assert (out.sorted_indices is None) == enforce_sorted
    unpacked, unpacked_lengths = pad_packed_sequence(out, batch_first=batch_first)
    torch.testing.assert_close(unpacked_lengths, lengths)
    torch.testing.assert_close(unpacked, padded_out, rtol=1e-12, atol=1e-12)
    for value, want in zip(state, padded_state, strict=True):
        assert (value is None) == (want is None)
        if value is not None:
            torch.testing.assert_close(value, want, rtol=1e-12, atol=1e-12)


def test_packed_sequence_with_lengths_is_refused():
    packed = pack_padded_sequence(torch.randn(T, B, N, dtype=torch.float64), LENGTHS.clamp(1),
                                  enforce_sorted=False)
    with pytest.raises(ValueError, match=r"lengths: expected None with a PackedSequence"):
        build("sfm")(packed, lengths=LENGTHS)


@pytest.mark.parametrize("kind", ["sfm", "psfm"])
@pytest.mark.parametrize("value", [1, "yes", None])
def test_bidirectional_must_be_a_bool(kind, value):
    with pytest.raises(TypeError, match=r"bidirectional: expected a bool"):
        build(kind, bidirectional=value)


@pytest.mark.parametrize("kind", ["sfm", "psfm"])
def test_bidirectional_state_needs_both_directions(kind):
    bi, one = build(kind, bidirectional=True), build(kind)
    _, state = one(torch.randn(T, B, N, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"state\.z: expected shape \(4, 4, 4\)"):
        bi(torch.randn(T, B, N, dtype=torch.float64), state)


def test_paper_parameters_reverse_needs_bidirectional():
    with pytest.raises(ValueError, match=r"reverse: expected False \(the layer is not bidir"):
        build("sfm").paper_parameters(0, reverse=True)


def test_parallel_sfm_long_bidirectional_crosses_blocks():
    """ParallelSFM's blocks and chunks (block 32, chunk 8 here) on reversed padded sequences:
    the fused operator in one call and the PyTorch algorithm in blocks agree with the layers
    run by hand."""
    bi = build("psfm", bidirectional=True, num_layers=1)
    for cell in (*bi.cells, *bi.cells_reverse):
        cell.chunk_size, cell.block_size = 8, 32
    steps, lengths = 70, torch.tensor([70, 33, 0, 9])
    x = torch.randn(steps, B, N, dtype=torch.float64)
    state = random_state(bi, B)
    expected, _ = by_hand(bi, lambda n: build("psfm", n, num_layers=1), x, state, lengths, "time")
    for path in ("fast", "pytorch"):
        with freqnn.sfm.use_path(path):
            out, _ = bi(x, state, lengths=lengths)
        torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10, msg=path)


def test_parallel_sfm_step_refuses_bidirectional():
    with pytest.raises(ValueError, match=r"bidirectional: expected False for step\(\)"):
        build("psfm", bidirectional=True).step(torch.randn(B, N, dtype=torch.float64))
