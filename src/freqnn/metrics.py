"""Scores for next-frame prediction of binary piano rolls (polyphonic music modelling).

Conventions shared by every function here
-----------------------------------------
``logits[t]`` is the model's prediction for ``targets[t]``. For next-frame prediction of a
piano roll ``roll`` of ``T`` frames the caller feeds ``roll[:-1]`` and scores against
``targets = roll[1:]``: frame ``t + 1`` is predicted from frames ``<= t``, so a sequence of ``T``
frames has ``T - 1`` *predicted frames* and its first frame is never scored. This is the protocol
of Bai, Kolter & Koltun (2018, the TCN paper; their evaluation divides the summed NLL by the
number of predicted frames) whose numbers the issue compares against. (Boulanger-Lewandowski et
al. 2012 also score the first frame from an initial state; that is one frame per sequence, about
1.7 % of the frames of JSB Chorales.)

Layouts: ``(T, B, K)`` (default), ``(B, T, K)`` with ``batch_first=True``, or ``(T, K)`` for one
sequence; ``K`` keys (88 for the piano; any ``K >= 1`` is accepted). ``targets`` has the same
shape, with values in {0, 1} (bool, integer or floating). ``lengths`` (B,) gives the number of
predicted frames of each sequence, ``1 <= lengths[b] <= T``; frames ``t >= lengths[b]`` are padding:
ignored entirely (their logits may be anything, even NaN). ``lengths=None`` means no padding.

Reductions (the ``reduction`` argument)
---------------------------------------
* ``"mean"``: frame-weighted mean over all predicted frames: every frame of every sequence
  counts once, so long sequences weigh more. This is the standard of the polyphonic benchmark
  (Boulanger-Lewandowski et al. 2012, whose data page asks for it explicitly; Chung et al. 2014;
  Bai et al. 2018). To score a whole split, add ``reduction="sum"`` over batches and divide by the
  total number of predicted frames (or use :class:`PianoRollMetrics`).
* ``"sequence"``: the per-sequence average: mean over sequences of each sequence's own
  frame mean (every sequence counts once).
* ``"sum"``: the total over predicted frames.
* ``"none"``: one value per frame, shape ``(T, B)`` (``(B, T)`` with ``batch_first``, ``(T,)``
  for one sequence), zero at padding.

The three scores
----------------
:func:`piano_roll_nll`: the standard metric. Each frame is modelled by 88 independent Bernoulli
variables, ``p_k = sigmoid(logits_k)``; the frame NLL is ``-sum_k [y_k log p_k + (1 - y_k)
log(1 - p_k)]``, summed over keys, in nats (natural log), computed with log-sigmoids. The published
numbers in the issue (LSTM 8.45 / GRU 8.43 / TCN 8.10 on JSB; LSTM 3.29 / GRU 3.46 / TCN 3.07 on
Nottingham; GRU 5.99 MuseData, 8.82 Piano-midi) are this quantity with ``reduction="mean"`` over a
whole test split.

:func:`frame_accuracy`: the accuracy of Bay et al. (2009) used by Boulanger-Lewandowski et al.
(2012): for one frame, ``ACC = TP / (TP + FP + FN)`` (true positives, false positives = extra keys,
false negatives = missed keys). Boulanger-Lewandowski's data page defines the number to report as
the *expected* accuracy: for each frame, given the true history, the expectation of that frame's
ACC over the model's conditional distribution of the frame, then averaged over frames
(frame-weighted). ``mode="expected"`` computes that expectation exactly (see the function);
``mode="threshold"`` scores the single prediction ``p_k > 1/2``. A frame with no target key
and no predicted key is a correct silence, ACC = 1 (the 0/0 case). :func:`accuracy_counts`
gives the pooled counts ``sum TP / sum (TP + FP + FN)`` of thresholded predictions (MIREX style).

:func:`softmax_nll`: the score of the SFM authors' released code (Hu & Qi 2017). It treats the
88 outputs as one softmax ``q = softmax(logits)`` and scores a multi-hot frame ``y`` by
``-sum_k y_k log q_k``: the negative log-probability of drawing each active key once from the
categorical ``q``; a frame with no active key scores 0 whatever the model predicts. Their code
averages it over the ``T - 1`` predicted frames of each sequence, then over sequences
(``reduction="sequence"``, the default here), and reports the log-likelihood (the negative of
this NLL).

How the SFM paper's table relates to the standard numbers
---------------------------------------------------------
They are different quantities and must not be put in one column. Exactly, for every frame,

    softmax_nll = bernoulli_nll(logits' = log_softmax(logits)) - c,
    c = sum_k log(1 + q_k),  log 2 <= c < 1,

i.e. the softmax score is the standard Bernoulli NLL of an implied model whose key probabilities
are ``q_k / (1 + q_k)`` (those sum to less than 1: the implied model expects fewer than one active
key per frame, while JSB frames hold about 3.9), *minus* an offset between 0.69 and 1 nat per
frame in the model's favour. On top of that the released code averages per sequence instead of
per frame, and builds its piano rolls from MIDI at fixed 0.3 s frames rather than the standard
beat-synchronous frames, so even the frames differ. freqnn reports the standard metric and, next
to it, the softmax score of the same models for reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from .checks import check_floating, check_integer, check_range, check_rank, describe, fail

__all__ = [
    "PianoRollMetrics",
    "accuracy_counts",
    "frame_accuracy",
    "piano_roll_nll",
    "softmax_nll",
]

Reduction = Literal["mean", "sequence", "sum", "none"]
_REDUCTIONS = ("mean", "sequence", "sum", "none")
_LAYOUT = "(T, B, K) (or (B, T, K) with batch_first=True) or (T, K) for one sequence"


def _prepare(
    logits: Tensor,
    targets: Tensor | None,
    lengths: Tensor | Sequence[int] | None,
    batch_first: bool,
    name: str = "logits",
) -> tuple[Tensor, Tensor, Tensor, Tensor, bool]:
    """Validate and bring inputs to (T, B, K); ``name`` is what ``logits`` holds in messages.

    Returns logits (padding zeroed), targets (logits' dtype, padding zeroed), mask (T, B) bool,
    lengths (B,) int64 and whether the input was one unbatched sequence.
    """
    logits = check_floating(logits, name)
    check_rank(logits, name, (2, 3), _LAYOUT)
    if not isinstance(targets, Tensor):
        fail("targets", "a torch.Tensor", describe(targets), TypeError)
    if tuple(targets.shape) != tuple(logits.shape):
        fail("targets", f"the shape of {name} {tuple(logits.shape)}", describe(targets))
    if logits.shape[-1] < 1:
        fail(name, "at least one key (last dimension >= 1)", describe(logits))
    unbatched = logits.dim() == 2
    if unbatched:
        if lengths is not None:
            fail("lengths", "None for one unbatched (T, K) sequence", describe(lengths))
        logits, targets = logits.unsqueeze(1), targets.unsqueeze(1)
    elif batch_first:
        logits, targets = logits.transpose(0, 1), targets.transpose(0, 1)
    steps, batch = logits.shape[0], logits.shape[1]
    if steps < 1 or batch < 1:
        fail(name, "at least one frame and one sequence", describe(logits))

    if lengths is None:
        lengths_t = torch.full((batch,), steps, dtype=torch.long, device=logits.device)
    else:
        if not isinstance(lengths, Tensor):
            try:
                lengths = torch.as_tensor(lengths)
            except (TypeError, ValueError, RuntimeError):
                fail("lengths", "a (B,) integer tensor or sequence of ints", describe(lengths),
                     TypeError)
        lengths_t = check_integer(lengths, "lengths")
        if tuple(lengths_t.shape) != (batch,):
            fail("lengths", f"shape ({batch},) (one length per sequence)", describe(lengths_t))
        lo, hi = int(lengths_t.min()), int(lengths_t.max())
        if lo < 1 or hi > steps:
            fail("lengths", f"values in [1, {steps}] (predicted frames per sequence)",
                 f"values in [{lo}, {hi}]")
        lengths_t = lengths_t.to(device=logits.device, dtype=torch.long)

    mask = torch.arange(steps, device=logits.device).unsqueeze(1) < lengths_t.unsqueeze(0)
    valid = mask.unsqueeze(-1)
    if targets.dtype == torch.bool:
        targets = targets.to(logits.dtype)
    bad = valid & (targets != 0) & (targets != 1)
    if bool(bad.any()):
        fail("targets", "binary values (0 or 1) at every predicted frame",
             f"{int(bad.sum())} other value(s) in {describe(targets)}")
    finite = torch.isfinite(logits) | ~valid
    if not bool(finite.all()):
        fail(name, "finite values at every predicted frame",
             f"{int((~finite).sum())} NaN or infinite element(s) in {describe(logits)}")
    zero = logits.new_zeros(())
    logits = torch.where(valid, logits, zero)
    targets = torch.where(valid, targets.to(logits.dtype), zero)
    return logits, targets, mask, lengths_t, unbatched


def _reduce(
    per_frame: Tensor,
    mask: Tensor,
    lengths: Tensor,
    reduction: str,
    batch_first: bool,
    unbatched: bool,
) -> Tensor:
    """Reduce (T, B) per-frame values (zero at padding) as documented in the module."""
    if reduction == "mean":
        return per_frame.sum() / mask.sum()
    if reduction == "sum":
        return per_frame.sum()
    if reduction == "sequence":
        return (per_frame.sum(0) / lengths.to(per_frame.dtype)).mean()
    if reduction == "none":
        if unbatched:
            return per_frame[:, 0]
        return per_frame.transpose(0, 1) if batch_first else per_frame
    fail("reduction", f"one of {', '.join(map(repr, _REDUCTIONS))}", repr(reduction))
    raise AssertionError  # unreachable: fail raises


def _check_reduction(reduction: object) -> None:
    if reduction not in _REDUCTIONS:
        fail("reduction", f"one of {', '.join(map(repr, _REDUCTIONS))}", repr(reduction))


def piano_roll_nll(
    logits: Tensor | None = None,
    targets: Tensor | None = None,
    lengths: Tensor | Sequence[int] | None = None,
    *,
    probs: Tensor | None = None,
    batch_first: bool = False,
    reduction: Reduction = "mean",
) -> Tensor:
    """Frame-level NLL of 88 independent Bernoulli outputs, in nats (the standard metric).

    Give the model's outputs either as ``logits`` (pre-sigmoid, the default) or as ``probs``
    (post-sigmoid, what TCN-style models output), never probabilities as ``logits``: that
    returns a wrong number without an error (about 61.7 instead of 8.4 nats on JSB Chorales).

    Parameters
    ----------
    logits : Tensor [shape=(T, B, K), (B, T, K) with batch_first, or (T, K)], optional
        Pre-sigmoid outputs; ``logits[t]`` predicts ``targets[t]`` (see the module docstring:
        for next-frame prediction ``targets = roll[1:]`` and the model has seen ``roll[:t+1]``).
    targets : Tensor [same shape]
        Binary piano roll of the predicted frames.
    lengths : Tensor or sequence of int [shape=(B,)], optional
        Predicted frames per sequence (``T_b - 1`` for a sequence of ``T_b`` frames).
    probs : Tensor [same shape], optional
        Key probabilities in [0, 1], instead of ``logits``: the NLL is
        ``-sum_k [y_k log p_k + (1 - y_k) log(1 - p_k)]`` (``0 log 0 = 0``; a probability of
        exactly 0 for an active key gives ``inf``). Logits are more accurate where you have
        them: float32 probabilities saturate near 0 and 1, log-sigmoids do not.
    batch_first : bool
        Layout of batched input.
    reduction : {"mean", "sequence", "sum", "none"}
        ``"mean"`` (default) is the benchmark number: the frame-weighted average over every
        predicted frame; see the module docstring for the others.

    Returns
    -------
    Tensor
        0-d, or per-frame values for ``reduction="none"``. Differentiable (usable as a loss).

    Examples
    --------
    >>> y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> a = piano_roll_nll(torch.tensor([[2.0, -1.0], [0.0, 3.0]]), y)
    >>> b = piano_roll_nll(probs=torch.sigmoid(torch.tensor([[2.0, -1.0], [0.0, 3.0]])), targets=y)
    >>> bool(torch.isclose(a, b))
    True
    """
    _check_reduction(reduction)
    if (logits is None) == (probs is None):
        fail("logits, probs", "exactly one of them (the model's outputs before or after the "
             "sigmoid)", "both" if probs is not None else "neither")
    if probs is not None:
        probs, targets, mask, lengths_t, unbatched = _prepare(probs, targets, lengths,
                                                              batch_first, "probs")
        check_range(probs, "probs", 0.0, 1.0)
        per_key = -(torch.xlogy(targets, probs) + torch.xlogy(1 - targets, 1 - probs))
    else:
        logits, targets, mask, lengths_t, unbatched = _prepare(logits, targets, lengths,
                                                               batch_first)
        # -[y log s(l) + (1 - y) log s(-l)] with log-sigmoids: no overflow for large |l|.
        per_key = -(targets * F.logsigmoid(logits) + (1 - targets) * F.logsigmoid(-logits))
    per_frame = per_key.sum(-1) * mask
    return _reduce(per_frame, mask, lengths_t, reduction, batch_first, unbatched)


def softmax_nll(
    logits: Tensor,
    targets: Tensor,
    lengths: Tensor | Sequence[int] | None = None,
    *,
    batch_first: bool = False,
    reduction: Reduction = "sequence",
) -> Tensor:
    """The SFM authors' score: ``-sum_k y_k log softmax(logits)_k`` per frame, in nats.

    A multi-hot frame is scored as one categorical draw per active key (the keys' log-softmax
    values are added, not averaged); an empty frame scores 0. The default ``reduction="sequence"``
    matches the released code (mean over each sequence's predicted frames, then over sequences).
    This is *not* the standard metric; see the module docstring for the exact relation.

    Parameters
    ----------
    logits, targets, lengths, batch_first
        As in :func:`piano_roll_nll`.
    reduction : {"sequence", "mean", "sum", "none"}

    Returns
    -------
    Tensor
        0-d, or per-frame values for ``reduction="none"``.
    """
    _check_reduction(reduction)
    logits, targets, mask, lengths_t, unbatched = _prepare(logits, targets, lengths, batch_first)
    per_frame = -(targets * torch.log_softmax(logits, dim=-1)).sum(-1) * mask
    return _reduce(per_frame, mask, lengths_t, reduction, batch_first, unbatched)


def _poisson_binomial(probs: Tensor) -> Tensor:
    """Distribution of a sum of independent Bernoulli(probs[..., k]); shape (..., K + 1).

    Exact dynamic programme over the keys (K steps of a 2-tap convolution); all terms are
    non-negative, so there is no cancellation.
    """
    lead, keys = probs.shape[:-1], probs.shape[-1]
    cols = probs.reshape(-1, keys).t().contiguous()  # (K, F): each key's row is contiguous
    dist = torch.zeros((keys + 1, cols.shape[1]), dtype=probs.dtype, device=probs.device)
    dist[0] = 1
    for k in range(keys):
        # after k keys the count is at most k: only entries 0..k+1 change
        q = cols[k]
        head = dist[: k + 1].clone()
        dist[: k + 1] *= 1 - q
        dist[1 : k + 2] += head * q
    return dist.t().reshape(*lead, keys + 1)


def _expected_accuracy(logits: Tensor, targets: Tensor) -> Tensor:
    """E[TP / (TP + FP + FN)] per frame under independent Bernoulli(sigmoid(logits)).

    With n target keys, TP + FN = n, so ACC = TP / (n + FP). TP counts draws on the target keys
    and FP on the others: they are independent, hence E[ACC] = E[TP] * E[1 / (n + FP)] for
    n >= 1, where FP is Poisson-binomial. For n = 0, ACC = 1 if nothing is drawn, else 0:
    E[ACC] = prod_k (1 - p_k).
    """
    probs = torch.sigmoid(logits)
    n = targets.sum(-1)
    expected_tp = (probs * targets).sum(-1)
    dist_fp = _poisson_binomial(probs * (1 - targets))
    j = torch.arange(dist_fp.shape[-1], dtype=logits.dtype, device=logits.device)
    inv = dist_fp / (n.unsqueeze(-1) + j).clamp_min(1)
    with_notes = expected_tp * inv.sum(-1)
    silent = torch.exp(F.logsigmoid(-logits).sum(-1))
    return torch.where(n > 0, with_notes, silent)


def frame_accuracy(
    logits: Tensor,
    targets: Tensor,
    lengths: Tensor | Sequence[int] | None = None,
    *,
    batch_first: bool = False,
    mode: Literal["expected", "threshold"] = "expected",
    reduction: Reduction = "mean",
) -> Tensor:
    """Frame-level accuracy ``TP / (TP + FP + FN)`` of Boulanger-Lewandowski et al. (2012).

    Parameters
    ----------
    logits, targets, lengths, batch_first
        As in :func:`piano_roll_nll`.
    mode : {"expected", "threshold"}
        ``"expected"`` (default, the published definition): for each frame the exact expectation
        of its ACC when the frame is drawn from the model's 88 independent Bernoullis (computed
        with the Poisson-binomial law of the false positives; no sampling). ``"threshold"``: the
        ACC of the single prediction ``sigmoid(logits) > 1/2``. A frame with no target key and
        no predicted key has ACC 1.
    reduction : {"mean", "sequence", "sum", "none"}
        ``"mean"`` (default) averages over all predicted frames, as the benchmark does.

    Returns
    -------
    Tensor
        In [0, 1]; 0-d, or per-frame values for ``reduction="none"``. Not differentiable in
        ``"threshold"`` mode.
    """
    _check_reduction(reduction)
    if mode not in ("expected", "threshold"):
        fail("mode", "'expected' or 'threshold'", repr(mode))
    logits, targets, mask, lengths_t, unbatched = _prepare(logits, targets, lengths, batch_first)
    if mode == "expected":
        per_frame = _expected_accuracy(logits, targets)
    else:
        pred = (logits > 0).to(logits.dtype)
        tp = (pred * targets).sum(-1)
        wrong = (pred != targets).to(logits.dtype).sum(-1)  # FP + FN
        per_frame = torch.where(tp + wrong > 0, tp / (tp + wrong).clamp_min(1), 1.0)
    per_frame = per_frame * mask
    return _reduce(per_frame, mask, lengths_t, reduction, batch_first, unbatched)


def accuracy_counts(
    logits: Tensor,
    targets: Tensor,
    lengths: Tensor | Sequence[int] | None = None,
    *,
    batch_first: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """Total (TP, FP, FN) of thresholded predictions ``sigmoid(logits) > 1/2``.

    The pooled accuracy of Bay et al. (2009, MIREX) is ``TP / (TP + FP + FN)`` of these totals
    over a whole split; unlike :func:`frame_accuracy` it weighs frames by their number of keys.

    Returns
    -------
    tuple of three 0-d Tensors (logits' dtype)
    """
    logits, targets, mask, _, _ = _prepare(logits, targets, lengths, batch_first)
    pred = (logits > 0).to(logits.dtype) * mask.unsqueeze(-1)
    tp = (pred * targets).sum()
    fp = (pred * (1 - targets)).sum()
    fn = ((1 - pred) * targets).sum()
    return tp, fp, fn


class PianoRollMetrics:
    """Accumulate every score over the batches of a split (float64 sums, exact aggregation).

    Example
    -------
    >>> acc = PianoRollMetrics()
    >>> for logits, targets, lengths in batches:          # doctest: +SKIP
    ...     acc.update(logits, targets, lengths, batch_first=True)
    >>> acc.compute()["nll"]                              # doctest: +SKIP

    :meth:`compute` returns a dict of floats:

    * ``nll``: the standard frame-weighted Bernoulli NLL (nats per predicted frame);
    * ``nll_sequence``: the per-sequence average of the same;
    * ``accuracy``: expected frame accuracy, frame-weighted (Boulanger-Lewandowski et al. 2012);
    * ``accuracy_threshold``: frame accuracy of ``p > 1/2`` predictions, frame-weighted;
    * ``accuracy_pooled``: ``sum TP / sum (TP + FP + FN)`` of ``p > 1/2`` predictions;
    * ``softmax_nll``: the SFM authors' softmax score, per-sequence average (their protocol);
    * ``softmax_nll_frame``: the same score, frame-weighted;
    * ``frames``, ``sequences``: how many predicted frames and sequences were scored.
    """

    _SUMS = ("nll", "nll_sequence", "accuracy", "accuracy_threshold", "softmax_nll",
             "softmax_nll_frame", "tp", "errors")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self._sums = dict.fromkeys(self._SUMS, 0.0)
        self.frames = 0
        self.sequences = 0

    @torch.no_grad()
    def update(
        self,
        logits: Tensor,
        targets: Tensor,
        lengths: Tensor | Sequence[int] | None = None,
        *,
        batch_first: bool = False,
    ) -> None:
        """Add one batch (arguments as in :func:`piano_roll_nll`); computed in float64."""
        logits = check_floating(logits, "logits").double()
        args = (logits, targets, lengths)
        kw = {"batch_first": batch_first}
        nll = piano_roll_nll(*args, reduction="none", **kw)
        if nll.dim() == 1:
            nll = nll.unsqueeze(1)
            seq_dim = 0
        else:
            seq_dim = 1 if batch_first else 0
        _, _, mask, lengths_t, _ = _prepare(logits, targets, lengths, batch_first)
        n_frames = lengths_t.double()
        soft = softmax_nll(*args, reduction="none", **kw).reshape(nll.shape)
        s = self._sums
        s["nll"] += float(nll.sum())
        s["nll_sequence"] += float((nll.sum(seq_dim) / n_frames).sum())
        s["softmax_nll_frame"] += float(soft.sum())
        s["softmax_nll"] += float((soft.sum(seq_dim) / n_frames).sum())
        s["accuracy"] += float(frame_accuracy(*args, reduction="sum", **kw))
        s["accuracy_threshold"] += float(
            frame_accuracy(*args, mode="threshold", reduction="sum", **kw))
        tp, fp, fn = accuracy_counts(*args, **kw)
        s["tp"] += float(tp)
        s["errors"] += float(fp + fn)
        self.frames += int(mask.sum())
        self.sequences += int(lengths_t.numel())

    def compute(self) -> dict[str, float]:
        """The scores over everything added since the last :meth:`reset`."""
        if self.frames == 0:
            raise ValueError("PianoRollMetrics: expected at least one update, got none")
        s, f, n = self._sums, self.frames, self.sequences
        pooled_den = s["tp"] + s["errors"]
        return {
            "nll": s["nll"] / f,
            "nll_sequence": s["nll_sequence"] / n,
            "accuracy": s["accuracy"] / f,
            "accuracy_threshold": s["accuracy_threshold"] / f,
            "accuracy_pooled": s["tp"] / pooled_den if pooled_den > 0 else 1.0,
            "softmax_nll": s["softmax_nll"] / n,
            "softmax_nll_frame": s["softmax_nll_frame"] / f,
            "frames": float(f),
            "sequences": float(n),
        }
