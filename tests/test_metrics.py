"""Piano-roll metrics against direct loop computations (float64), including padding and lengths."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from freqnn.metrics import (
    PianoRollMetrics,
    accuracy_counts,
    frame_accuracy,
    piano_roll_nll,
    softmax_nll,
)

T, B, K = 7, 3, 88
LENGTHS = [7, 4, 1]


def batch(keys: int = K, steps: int = T, lengths=LENGTHS, density: float = 0.1):
    """Random logits and multi-hot targets; padding holds garbage (NaN logits, -1 targets)."""
    gen = torch.Generator().manual_seed(1)
    n = len(lengths)
    logits = torch.randn(steps, n, keys, generator=gen, dtype=torch.float64) * 3
    targets = (torch.rand(steps, n, keys, generator=gen) < density).double()
    targets[0, 0] = 0  # one silent frame
    for b, length in enumerate(lengths):
        logits[length:, b] = float("nan")
        targets[length:, b] = -1
    return logits, targets, torch.tensor(lengths)


# ---- direct (loop) references: plain Python floats --------------------------------------------

def ref_frame_nll(logit_row, target_row):
    total = 0.0
    for l, y in zip(logit_row.tolist(), target_row.tolist(), strict=True):
        p = 1.0 / (1.0 + math.exp(-l))
        total -= y * math.log(p) + (1 - y) * math.log(1 - p)
    return total


def ref_frame_softmax(logit_row, target_row):
    row = logit_row.tolist()
    m = max(row)
    log_z = m + math.log(sum(math.exp(v - m) for v in row))
    return -sum(y * (v - log_z) for v, y in zip(row, target_row.tolist(), strict=True))


def ref_frame_acc_threshold(logit_row, target_row):
    tp = fp = fn = 0
    for l, y in zip(logit_row.tolist(), target_row.tolist(), strict=True):
        pred = l > 0
        tp += pred and y == 1
        fp += pred and y == 0
        fn += (not pred) and y == 1
    return 1.0 if tp + fp + fn == 0 else tp / (tp + fp + fn)


def ref_frame_acc_expected(logit_row, target_row):
    """Enumerate all 2^K predictions (K small) and average their ACC by probability."""
    probs = [1.0 / (1.0 + math.exp(-l)) for l in logit_row.tolist()]
    ys = target_row.tolist()
    total = 0.0
    for pred in itertools.product((0, 1), repeat=len(probs)):
        weight = math.prod(p if d else 1 - p for p, d in zip(probs, pred, strict=True))
        tp = sum(d and y == 1 for d, y in zip(pred, ys, strict=True))
        fp = sum(d and y == 0 for d, y in zip(pred, ys, strict=True))
        fn = sum((not d) and y == 1 for d, y in zip(pred, ys, strict=True))
        total += weight * (1.0 if tp + fp + fn == 0 else tp / (tp + fp + fn))
    return total


def ref_reduce(frame_fn, logits, targets, lengths):
    """(frame-weighted mean, per-sequence mean, sum, per-frame list) by explicit loops."""
    per_seq, flat = [], []
    grid = [[0.0] * logits.shape[1] for _ in range(logits.shape[0])]
    for b, length in enumerate(lengths.tolist()):
        vals = [frame_fn(logits[t, b], targets[t, b]) for t in range(length)]
        for t, v in enumerate(vals):
            grid[t][b] = v
        per_seq.append(sum(vals) / length)
        flat.extend(vals)
    return sum(flat) / len(flat), sum(per_seq) / len(per_seq), sum(flat), grid


# ---- NLL ---------------------------------------------------------------------------------------

def test_nll_matches_loop_with_padding():
    logits, targets, lengths = batch()
    mean, seq, total, grid = ref_reduce(ref_frame_nll, logits, targets, lengths)
    assert piano_roll_nll(logits, targets, lengths).item() == pytest.approx(mean, rel=1e-12)
    assert piano_roll_nll(logits, targets, lengths, reduction="sequence").item() == \
        pytest.approx(seq, rel=1e-12)
    assert piano_roll_nll(logits, targets, lengths, reduction="sum").item() == \
        pytest.approx(total, rel=1e-12)
    none = piano_roll_nll(logits, targets, lengths, reduction="none")
    assert none.shape == (T, B)
    torch.testing.assert_close(none, torch.tensor(grid, dtype=torch.float64))
    # frame weighting differs from the per-sequence average on unequal lengths
    assert abs(mean - seq) > 1e-6


def test_nll_batch_first_and_unbatched_agree():
    logits, targets, lengths = batch()
    a = piano_roll_nll(logits, targets, lengths)
    b = piano_roll_nll(logits.transpose(0, 1), targets.transpose(0, 1), lengths,
                       batch_first=True)
    assert a.item() == pytest.approx(b.item(), rel=1e-14)
    none_bf = piano_roll_nll(logits.transpose(0, 1), targets.transpose(0, 1), lengths,
                             batch_first=True, reduction="none")
    assert none_bf.shape == (B, T)
    one = piano_roll_nll(logits[:4, 1], targets[:4, 1])
    assert one.item() == pytest.approx(
        sum(ref_frame_nll(logits[t, 1], targets[t, 1]) for t in range(4)) / 4, rel=1e-12)
    assert piano_roll_nll(logits[:4, 1], targets[:4, 1], reduction="none").shape == (4,)


def test_nll_stable_for_extreme_logits_and_differentiable():
    logits = torch.tensor([[[200.0, -200.0, 0.0]]], dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([[[1.0, 0.0, 1.0]]], dtype=torch.float64)
    nll = piano_roll_nll(logits, targets)
    assert nll.item() == pytest.approx(math.log(2), rel=1e-12)
    wrong = piano_roll_nll(logits.detach(), 1 - targets)
    assert wrong.item() == pytest.approx(400 + math.log(2), rel=1e-12)  # finite, no overflow
    nll.backward()
    assert torch.isfinite(logits.grad).all()
    torch.testing.assert_close(logits.grad, torch.sigmoid(logits.detach()) - targets)


def test_nll_of_probabilities():
    # TCN-style models output probabilities: probs= scores them; passing them as logits is
    # the silent mistake the keyword exists for
    logits, targets, lengths = batch()
    probs = torch.sigmoid(logits)
    for reduction in ("mean", "sequence", "sum", "none"):
        torch.testing.assert_close(
            piano_roll_nll(probs=probs, targets=targets, lengths=lengths, reduction=reduction),
            piano_roll_nll(logits, targets, lengths, reduction=reduction), rtol=1e-9, atol=0)
    first = probs[:, :1].transpose(0, 1)
    torch.testing.assert_close(  # batch_first, and the positional targets
        piano_roll_nll(None, targets[:, :1].transpose(0, 1), probs=first, batch_first=True),
        piano_roll_nll(logits[:, :1], targets[:, :1]))
    # 0 log 0 = 0: certain and right is free, certain and wrong is infinite
    y = torch.tensor([[1.0, 0.0]])
    assert piano_roll_nll(probs=torch.tensor([[1.0, 0.0]]), targets=y).item() == 0
    assert piano_roll_nll(probs=torch.tensor([[0.0, 0.0]]), targets=y).item() == math.inf
    with pytest.raises(ValueError, match="logits, probs: expected exactly one of them"):
        piano_roll_nll(logits, targets, probs=probs)
    with pytest.raises(ValueError, match="got neither"):
        piano_roll_nll(targets=targets)
    with pytest.raises(ValueError, match=r"probs: expected values in \[0, 1\]"):
        piano_roll_nll(probs=logits, targets=targets, lengths=lengths)


def test_nll_accepts_bool_and_integer_targets_and_float32():
    logits, targets, _ = batch(lengths=[7, 7, 7])
    ref = piano_roll_nll(logits, targets)
    assert piano_roll_nll(logits, targets.bool()).item() == pytest.approx(ref.item())
    assert piano_roll_nll(logits, targets.to(torch.uint8)).item() == pytest.approx(ref.item())
    assert piano_roll_nll(logits.float(), targets.float()).item() == pytest.approx(
        ref.item(), rel=1e-5)


# ---- softmax score -----------------------------------------------------------------------------

def test_softmax_score_matches_loop():
    logits, targets, lengths = batch()
    mean, seq, _, grid = ref_reduce(ref_frame_softmax, logits, targets, lengths)
    # default reduction is the authors' per-sequence average
    assert softmax_nll(logits, targets, lengths).item() == pytest.approx(seq, rel=1e-12)
    assert softmax_nll(logits, targets, lengths, reduction="mean").item() == \
        pytest.approx(mean, rel=1e-12)
    torch.testing.assert_close(softmax_nll(logits, targets, lengths, reduction="none"),
                               torch.tensor(grid, dtype=torch.float64))


def test_softmax_score_multi_hot_and_empty_frames():
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.125, 0.125]], dtype=torch.float64))
    # two active keys: log-probabilities are added, not averaged
    two = softmax_nll(logits, torch.tensor([[1.0, 1.0, 0.0, 0.0]], dtype=torch.float64))
    assert two.item() == pytest.approx(math.log(2) + math.log(4), rel=1e-12)
    empty = softmax_nll(logits, torch.zeros(1, 4, dtype=torch.float64))
    assert empty.item() == 0.0


def test_softmax_score_relation_to_bernoulli_nll():
    """softmax_nll = bernoulli_nll(log_softmax(l)) - sum_k log(1 + q_k), log 2 <= c < 1."""
    logits, targets, lengths = batch()
    soft = softmax_nll(logits, targets, lengths, reduction="none")
    log_q = torch.log_softmax(torch.nan_to_num(logits), dim=-1)
    bern = piano_roll_nll(log_q, targets, lengths, reduction="none")
    c = torch.log1p(log_q.exp()).sum(-1)
    mask = torch.arange(T).unsqueeze(1) < lengths
    torch.testing.assert_close(soft[mask], (bern - c)[mask])
    assert (c[mask] >= math.log(2) - 1e-12).all() and (c[mask] < 1).all()


# ---- accuracy ----------------------------------------------------------------------------------

def test_threshold_accuracy_matches_loop():
    logits, targets, lengths = batch(density=0.3)
    mean, seq, _, grid = ref_reduce(ref_frame_acc_threshold, logits, targets, lengths)
    got = frame_accuracy(logits, targets, lengths, mode="threshold")
    assert got.item() == pytest.approx(mean, rel=1e-12)
    assert frame_accuracy(logits, targets, lengths, mode="threshold",
                          reduction="sequence").item() == pytest.approx(seq, rel=1e-12)
    torch.testing.assert_close(
        frame_accuracy(logits, targets, lengths, mode="threshold", reduction="none"),
        torch.tensor(grid, dtype=torch.float64))


def test_expected_accuracy_matches_enumeration():
    logits, targets, lengths = batch(keys=7, density=0.4)
    targets[1, 1] = 0  # a silent frame (n = 0) with noisy predictions
    mean, seq, _, grid = ref_reduce(ref_frame_acc_expected, logits, targets, lengths)
    got = frame_accuracy(logits, targets, lengths, reduction="none")
    torch.testing.assert_close(got, torch.tensor(grid, dtype=torch.float64), rtol=1e-12,
                               atol=1e-14)
    assert frame_accuracy(logits, targets, lengths).item() == pytest.approx(mean, rel=1e-12)
    assert frame_accuracy(logits, targets, lengths, reduction="sequence").item() == \
        pytest.approx(seq, rel=1e-12)


def test_expected_accuracy_on_88_keys_is_monte_carlo_mean():
    """88 keys cannot be enumerated: compare with many sampled predictions instead."""
    logits, targets, _ = batch(lengths=[7, 7, 7], density=0.05)
    exact = frame_accuracy(logits, targets, reduction="none")
    gen = torch.Generator().manual_seed(3)
    draws = torch.rand(4000, *logits.shape, generator=gen, dtype=torch.float64)
    pred = (draws < torch.sigmoid(logits)).double()
    tp = (pred * targets).sum(-1)
    den = tp + (pred != targets).double().sum(-1)
    acc = torch.where(den > 0, tp / den.clamp_min(1), 1.0)
    mc, se = acc.mean(0), acc.std(0) / math.sqrt(4000)
    assert ((exact - mc).abs() <= 5 * se + 1e-9).all()
    assert (exact > 0).any() and (exact < 1).all()


def test_expected_accuracy_limits():
    # confident correct predictions: ACC -> 1; confident inverse: ACC -> 0
    targets = torch.tensor([[1.0, 0.0, 1.0, 0.0]], dtype=torch.float64)
    sure = (targets * 2 - 1) * 40
    assert frame_accuracy(sure, targets).item() == pytest.approx(1.0, abs=1e-12)
    assert frame_accuracy(-sure, targets).item() == pytest.approx(0.0, abs=1e-12)
    # silent target: probability that nothing is drawn
    logits = torch.zeros(1, 3, dtype=torch.float64)
    assert frame_accuracy(logits, torch.zeros(1, 3)).item() == pytest.approx(1 / 8)


def test_accuracy_counts_pooled():
    logits, targets, lengths = batch(density=0.3)
    tp = fp = fn = 0
    for b, length in enumerate(lengths.tolist()):
        for t in range(length):
            for l, y in zip(logits[t, b].tolist(), targets[t, b].tolist(), strict=True):
                tp += l > 0 and y == 1
                fp += l > 0 and y == 0
                fn += l <= 0 and y == 1
    got = accuracy_counts(logits, targets, lengths)
    assert [int(v) for v in got] == [tp, fp, fn]


# ---- accumulator -------------------------------------------------------------------------------

def test_accumulator_over_batches_equals_whole_split():
    logits, targets, lengths = batch()
    acc = PianoRollMetrics()
    acc.update(logits[:, :2], targets[:, :2], lengths[:2])
    acc.update(logits[:1, 2:].float(), targets[:1, 2:], lengths[2:])  # float32 batch
    out = acc.compute()
    assert out["frames"] == sum(LENGTHS) and out["sequences"] == B
    assert out["nll"] == pytest.approx(piano_roll_nll(logits, targets, lengths).item(), rel=1e-6)
    assert out["nll_sequence"] == pytest.approx(
        piano_roll_nll(logits, targets, lengths, reduction="sequence").item(), rel=1e-6)
    assert out["softmax_nll"] == pytest.approx(
        softmax_nll(logits, targets, lengths).item(), rel=1e-6)
    assert out["softmax_nll_frame"] == pytest.approx(
        softmax_nll(logits, targets, lengths, reduction="mean").item(), rel=1e-6)
    assert out["accuracy"] == pytest.approx(
        frame_accuracy(logits, targets, lengths).item(), rel=1e-6)
    assert out["accuracy_threshold"] == pytest.approx(
        frame_accuracy(logits, targets, lengths, mode="threshold").item(), rel=1e-6)
    tp, fp, fn = accuracy_counts(logits, targets, lengths)
    assert out["accuracy_pooled"] == pytest.approx((tp / (tp + fp + fn)).item(), rel=1e-12)
    bf = PianoRollMetrics()
    bf.update(logits.transpose(0, 1), targets.transpose(0, 1), lengths, batch_first=True)
    assert bf.compute()["nll_sequence"] == pytest.approx(out["nll_sequence"], rel=1e-6)
    acc.reset()
    with pytest.raises(ValueError, match="at least one update"):
        acc.compute()


# ---- validation --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"logits": torch.zeros(3, 2, 4, dtype=torch.long)}, TypeError, "logits: expected a floa"),
        ({"logits": torch.zeros(3)}, ValueError, "logits: expected 2-D or 3-D"),
        ({"targets": torch.zeros(3, 2, 5)}, ValueError, "targets: expected the shape"),
        ({"targets": [[0.0]]}, TypeError, "targets: expected a torch.Tensor"),
        ({"targets": torch.full((3, 2, 4), 0.5)}, ValueError, "targets: expected binary"),
        ({"lengths": torch.tensor([3, 0])}, ValueError, r"lengths: expected values in \[1, 3\]"),
        ({"lengths": torch.tensor([4, 1])}, ValueError, r"lengths: expected values in \[1, 3\]"),
        ({"lengths": torch.tensor([3])}, ValueError, r"lengths: expected shape \(2,\)"),
        ({"lengths": torch.tensor([3.0, 2.0])}, TypeError, "lengths: expected an integer"),
        ({"reduction": "avg"}, ValueError, "reduction: expected one of"),
    ],
)
def test_input_validation(kwargs, error, match):
    args = {"logits": torch.zeros(3, 2, 4), "targets": torch.zeros(3, 2, 4), "lengths": None}
    args.update(kwargs)
    reduction = args.pop("reduction", "mean")
    with pytest.raises(error, match=match):
        piano_roll_nll(args["logits"], args["targets"], args["lengths"], reduction=reduction)


def test_nan_in_valid_frame_rejected_but_allowed_in_padding():
    logits, targets, lengths = batch()
    assert torch.isfinite(piano_roll_nll(logits, targets, lengths))
    logits[0, 2, 5] = float("nan")
    with pytest.raises(ValueError, match="logits: expected finite values"):
        piano_roll_nll(logits, targets, lengths)
    with pytest.raises(ValueError, match="lengths: expected None"):
        piano_roll_nll(torch.zeros(3, 4), torch.zeros(3, 4), [3])
    with pytest.raises(ValueError, match="mode: expected"):
        frame_accuracy(torch.zeros(3, 4), torch.zeros(3, 4), mode="sampled")
