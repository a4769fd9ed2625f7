"""Frame-level phone classification (the SFM paper's TIMIT experiment) on open data.

Data: the flite phone-labelled corpus (:mod:`freqnn.data.phoneme`): training voices kal16, awb
and slt read the train and valid texts, the unseen voice rms reads the test texts. Every 10 ms
frame (25 ms window) is classified into the 39 folded phone classes
(:data:`freqnn.data.phones.PHONES39`).

Inputs
------
``features="logmel"``: 40 log-mel filterbank energies per frame (:class:`freqnn.features.LogMel`:
pre-emphasis 0.97, Hamming window, 512-point FFT, HTK mel scale); ``"logmel_deltas"`` adds deltas
and delta-deltas (120 features). Each feature is standardised with the mean and standard
deviation of the training frames. ``"cosine"`` (experiment driver only, see below): the raw
pre-emphasised waveform, framed, through the learnable :class:`freqnn.features.CosineFrontEnd`
(40 log mel-band energies of a trainable cosine transform, standardised with the statistics of
its initial outputs on the first 50 training utterances).

Metric: frame accuracy = correctly classified frames / labelled frames, over every frame of
the test utterances (frames after flite's last phone, label -1, are not counted; there are
almost none). Loss: cross-entropy averaged over the labelled frames of a batch.

Two ways to run
---------------
* The runner: ``freqnn train freqnn.tasks.phoneme --model sfm`` (``phoneme`` once registered in
  :data:`freqnn.tasks.TASKS`): unidirectional SFM / A-SFM / LSTM / GRU on log-mel features, with
  checkpoints, resume and the runner's parameter matching.
* The experiment driver, for the results table (``python -m freqnn.tasks.phoneme run`` then
  ``... report``): the same data, loss and metric, and additionally the bidirectional LSTM / GRU
  baselines and models fed by the learnable cosine front end, which the runner's model builder
  does not provide. Every model is trained by the same loop (Adam, gradient clipping, early
  stopping on validation accuracy, test at the best validation epoch), at a parameter count
  matched to the SFM's. It writes one JSON per (model, seed), a markdown table, a confusion
  matrix and the learned front-end frequencies.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as Fn
from pydantic import Field
from torch import Tensor, nn

from .. import features as F
from ..config import RunConfig
from ..data.paths import cache_dir
from ..data.phoneme import (
    SPLITS,
    TEST_VOICE,
    TRAIN_VOICES,
    PhonemeCorpus,
    build_phoneme_corpus,
)
from ..data.phones import PHONES39
from ..io import atomic_write
from ..models import build_model, count_parameters
from . import Batch, Task, TaskData, TensorDataset, collate, step_mask

__all__ = [
    "DEFAULTS",
    "FEATURES",
    "MODELS",
    "TASK",
    "BiRNN",
    "FrontEndModel",
    "Options",
    "build",
    "build_experiment_model",
    "confusion_matrix",
    "frame_loss",
    "frame_metrics",
    "load_corpus",
    "main",
    "reverse_padded",
    "train_and_evaluate",
]

FEATURES = ("logmel", "logmel_deltas")
NUM_CLASSES = len(PHONES39)

DEFAULTS: dict[str, Any] = {
    # corpus (freqnn.data.phoneme)
    "n_texts": 500,
    "data_seed": 0,
    "train_voices": list(TRAIN_VOICES),
    "test_voice": TEST_VOICE,
    "valid_fraction": 0.1,
    "test_fraction": 0.2,
    "variants": 1,
    "max_train_utterances": None,  # int: keep only the first N training utterances
    # inputs
    "features": "logmel",
    "num_bands": 40,
    "normalisation": "global",  # or "utterance" (per-utterance mean and variance)
    "valid_voice": None,  # a training voice held out for speaker-independent validation
    # model and training
    "hidden_size": 64,
    "state_size": 16,
    "num_freqs": 8,
    "epochs": 15,
    "batch_size": 16,
    "lr": 3e-3,
    "patience": 4,
}


# ------------------------------------------------------------------------------------- data
def load_corpus(cfg: dict[str, Any], cache: str | Path | None = None) -> PhonemeCorpus:
    """The corpus of ``cfg`` (built on first use, then read from the cache)."""
    return build_phoneme_corpus(
        int(cfg["n_texts"]), seed=int(cfg["data_seed"]), train_voices=tuple(cfg["train_voices"]),
        test_voice=str(cfg["test_voice"]), valid=float(cfg["valid_fraction"]),
        test=float(cfg["test_fraction"]), variants=int(cfg["variants"]), cache=cache)


def _feature_module(cfg: dict[str, Any]) -> F.LogMel:
    if cfg["features"] not in FEATURES:
        raise ValueError(f"features: expected one of {', '.join(FEATURES)}, got "
                         f"{cfg['features']!r}")
    order = 2 if cfg["features"] == "logmel_deltas" else 0
    return F.LogMel(num_bands=int(cfg["num_bands"]), delta_order=order)


def _selection(corpus: PhonemeCorpus, cfg: dict[str, Any]) -> dict[str, list[int]]:
    """Indices (into ``corpus.split(name)``) of the utterances used in each split.

    Training utterances are ordered by (text, variant, voice), so that ``max_train_utterances``
    keeps every voice. ``valid_voice`` (one of the training voices) turns validation
    speaker-independent: that voice's utterances leave the training set and only they are
    validated on.
    """
    voice = cfg.get("valid_voice")
    if voice is not None and voice not in corpus.meta["train_voices"]:
        raise ValueError(f"valid_voice: expected one of the training voices "
                         f"{corpus.meta['train_voices']} or None, got {voice!r}")
    out: dict[str, list[int]] = {}
    for name in SPLITS:
        utts = corpus.split(name)
        index = list(range(len(utts)))
        if name == "train":
            index.sort(key=lambda i: (utts[i].text_id, utts[i].variant, utts[i].voice))
        if voice is not None and name != "test":
            index = [i for i in index if (utts[i].voice == voice) == (name == "valid")]
        out[name] = index
    limit = cfg.get("max_train_utterances")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"max_train_utterances: expected a positive int or None, got "
                             f"{limit!r}")
        out["train"] = out["train"][:limit]
    return out


def _log_mel_items(corpus: PhonemeCorpus, cfg: dict[str, Any],
                   cache: str | Path | None = None) -> dict[str, tuple[list, list]]:
    """(features, labels) lists per split, features unnormalised; cached next to the corpus."""
    module = _feature_module(cfg)
    key = hashlib.sha256(json.dumps([corpus.meta["key"], cfg["features"], cfg["num_bands"],
                                     repr(module)]).encode()).hexdigest()[:16]
    path = cache_dir(cache) / "phoneme" / f"features_{key}.pt"
    if path.is_file():
        try:
            stored = torch.load(path, weights_only=True)
            if set(stored) == {"train", "valid", "test"}:
                return {k: (v["x"], v["y"]) for k, v in stored.items()}
        except Exception:  # a bad cache is rebuilt, never trusted
            pass
    out: dict[str, Any] = {}
    with torch.no_grad():
        for name in ("train", "valid", "test"):
            xs, ys = [], []
            for u in corpus.split(name):
                xs.append(module(torch.from_numpy(u.audio)).float())
                ys.append(u.frame_labels())
            out[name] = {"x": xs, "y": ys}
    with atomic_write(path, "wb") as handle:
        torch.save(out, handle)
    return {k: (v["x"], v["y"]) for k, v in out.items()}


def _select(parts: dict[str, tuple[list, list]], selection: dict[str, list[int]]
            ) -> dict[str, tuple[list, list]]:
    return {name: ([xs[i] for i in selection[name]], [ys[i] for i in selection[name]])
            for name, (xs, ys) in parts.items()}


def _normalise(parts: dict[str, tuple[list, list]], mode: str
               ) -> tuple[dict[str, tuple[list, list]], dict[str, Any]]:
    """``"global"``: every feature standardised with the training frames' mean and std;
    ``"utterance"``: with each utterance's own (cepstral mean and variance normalisation)."""
    if mode == "utterance":
        scaled = {name: ([_cmvn(x) for x in xs], ys) for name, (xs, ys) in parts.items()}
        return scaled, {}
    if mode != "global":
        raise ValueError(f"normalisation: expected 'global' or 'utterance', got {mode!r}")
    frames = torch.cat(parts["train"][0]).double()
    mean, std = frames.mean(0), frames.std(0).clamp(min=1e-5)
    scaled = {name: ([((x - mean) / std).float() for x in xs], ys)
              for name, (xs, ys) in parts.items()}
    return scaled, {"feature_mean": mean.float().tolist(), "feature_std": std.float().tolist()}


def _cmvn(x: Tensor) -> Tensor:
    x64 = x.double()
    return ((x64 - x64.mean(0)) / x64.std(0, unbiased=False).clamp(min=1e-5)).float()


def build(cfg: dict[str, Any]) -> TaskData:
    """Normalised log-mel features and frame labels of the three splits (module docstring)."""
    corpus = load_corpus(cfg)
    parts = _select(_log_mel_items(corpus, cfg), _selection(corpus, cfg))
    scaled, stats = _normalise(parts, str(cfg["normalisation"]))
    data = {name: TensorDataset(x=xs, y=ys) for name, (xs, ys) in scaled.items()}
    return TaskData(
        train=data["train"], val=data["valid"], test=data["test"],
        input_size=int(scaled["train"][0][0].shape[-1]), output_size=NUM_CLASSES,
        info={"class_names": list(PHONES39), "corpus_key": corpus.meta["key"],
              "test_voice": corpus.meta["test_voice"],
              "train_voices": corpus.meta["train_voices"],
              "normalisation": cfg["normalisation"], **stats},
    )


# --------------------------------------------------------------------------- loss and metrics
def _labelled(output: Tensor, batch: Batch) -> tuple[Tensor, Tensor]:
    y = batch["y"]
    mask = step_mask(batch) & (y >= 0)
    return output[mask], y[mask]


def frame_loss(output: Tensor, batch: Batch) -> Tensor:
    """Cross-entropy averaged over the labelled frames (valid steps with label >= 0)."""
    logits, target = _labelled(output, batch)
    return Fn.cross_entropy(logits, target)


def frame_metrics(output: Tensor, batch: Batch) -> dict[str, tuple[Tensor, Tensor]]:
    """Summed cross-entropy and correct frames, with the number of labelled frames."""
    logits, target = _labelled(output, batch)
    count = torch.tensor(float(target.numel()), dtype=torch.float64, device=output.device)
    loss = Fn.cross_entropy(logits.double(), target, reduction="sum")
    correct = (logits.argmax(-1) == target).sum().double()
    return {"loss": (loss, count), "accuracy": (correct, count)}


def confusion_matrix(predicted: Tensor, target: Tensor, classes: int = NUM_CLASSES) -> Tensor:
    """(classes, classes) int64 counts: row = true class, column = predicted class."""
    index = target.reshape(-1).long() * classes + predicted.reshape(-1).long()
    return torch.bincount(index, minlength=classes * classes).reshape(classes, classes)


class Options(RunConfig):
    """The phoneme task's keys."""

    n_texts: int = Field(ge=1, description="texts in the corpus")
    data_seed: int = Field(ge=0, description="seed of the corpus (texts and split)")
    train_voices: list[str] = Field(min_length=1, description="flite voices reading the "
                                    "train and valid texts")
    test_voice: str = Field(description="the unseen voice reading the test texts")
    valid_fraction: float = Field(gt=0, lt=1, description="fraction of the texts for "
                                  "validation")
    test_fraction: float = Field(gt=0, lt=1, description="fraction of the texts for testing")
    variants: int = Field(ge=1, description="readings of each (voice, text), each with its own "
                          "duration stretch and pitch shift")
    max_train_utterances: int | None = Field(ge=1, description="use only the first N training "
                                             "utterances; null: all")
    features: Literal[FEATURES] = Field(description="input features")  # type: ignore[valid-type]
    num_bands: int = Field(ge=1, description="mel bands")
    normalisation: Literal["global", "utterance"] = Field(
        description="standardise with the training frames' statistics, or each utterance "
        "with its own")
    valid_voice: str | None = Field(description="a training voice held out for "
                                    "speaker-independent validation; null: none")


TASK = Task(
    name="phoneme",
    description="frame-level phone classification (39 classes) on the flite corpus, "
                "tested on an unseen voice",
    head="step",
    defaults=DEFAULTS,
    build=build,
    loss=frame_loss,
    metrics=frame_metrics,
    monitor="accuracy",
    mode="max",
    options=Options,
)


# ------------------------------------------------------------------------- experiment models
#: Models of the experiment driver: unidirectional bodies on log-mel features, bidirectional
#: baselines, and bodies fed by the learnable cosine front end.
MODELS = ("sfm", "asfm", "lstm", "gru", "bilstm", "bigru", "sfm-cosine", "lstm-cosine")


def reverse_padded(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence of a zero-padded batch within its length: (B, T, ...) -> same,
    ``out[b, t] = x[b, lengths[b] - 1 - t]`` for ``t < lengths[b]``, padding left in place.
    Applying it twice gives ``x`` back."""
    steps = x.shape[1]
    t = torch.arange(steps, device=x.device)
    if lengths is None:
        return x.flip(1)
    valid = lengths.to(x.device)[:, None]
    index = torch.where(t < valid, valid - 1 - t, t)  # (B, T)
    index = index.reshape(*index.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)


class BiRNN(nn.Module):
    """Bidirectional LSTM / GRU and a per-frame linear read-out (a non-causal baseline).

    Two unidirectional layers: one reads the sequence forwards, the other reads each sequence
    reversed within its true length (:func:`reverse_padded`), so padding never enters the
    backward direction before the valid frames; their outputs are concatenated. This is
    ``nn.LSTM(bidirectional=True)`` on packed sequences, parameter for parameter, without
    packing (about 20 times slower on CPU).

    ``forward(x, lengths=None)``: (B, T, N) -> (B, T, output_size).
    """

    def __init__(self, arch: str, input_size: int, output_size: int, hidden_size: int) -> None:
        super().__init__()
        if arch not in ("lstm", "gru"):
            raise ValueError(f"arch: expected 'lstm' or 'gru', got {arch!r}")
        rnn = nn.LSTM if arch == "lstm" else nn.GRU
        self.arch = arch
        self.forward_rnn = rnn(input_size, hidden_size, batch_first=True)
        self.backward_rnn = rnn(input_size, hidden_size, batch_first=True)
        self.readout = nn.Linear(2 * hidden_size, output_size)

    @staticmethod
    def parameter_count(arch: str, input_size: int, hidden: int, output_size: int) -> int:
        gates = 4 if arch == "lstm" else 3
        return 2 * gates * hidden * (input_size + hidden + 2) + 2 * hidden * output_size \
            + output_size

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        ahead, _ = self.forward_rnn(x)
        behind, _ = self.backward_rnn(reverse_padded(x, lengths))
        return self.readout(torch.cat([ahead, reverse_padded(behind, lengths)], dim=-1))


class FrontEndModel(nn.Module):
    """Waveform -> :class:`~freqnn.features.CosineFrontEnd` per frame -> recurrent model.

    ``forward(wave, lengths=None)``: ``wave`` (B, L) pre-emphasised samples (zero-padded),
    framed into (B, T, 400) with hop 160, then (B, T, 40) band energies, then ``body``
    (a :class:`freqnn.models.SequenceModel`) -> (B, T, output_size). With
    ``utterance_norm`` the band energies are standardised over each sequence's valid frames
    (as ``normalisation="utterance"`` does for log-mel features).
    """

    def __init__(self, frontend: F.CosineFrontEnd, body: nn.Module,
                 utterance_norm: bool = False) -> None:
        super().__init__()
        self.frontend = frontend
        self.body = body
        self.utterance_norm = bool(utterance_norm)

    def forward(self, wave: Tensor, lengths: Tensor | None = None) -> Tensor:
        frames = F.frame_signal(wave, self.frontend.n, F.HOP_LENGTH)
        if lengths is not None:
            frames = frames[:, : int(lengths.max())]
        feats = self.frontend(frames)
        if self.utterance_norm:
            steps = feats.shape[1]
            valid = lengths if lengths is not None else torch.full((feats.shape[0],), steps)
            mask = (torch.arange(steps, device=feats.device) < valid.to(feats.device)[:, None])
            mask = mask.unsqueeze(-1).to(feats.dtype)
            count = mask.sum(1, keepdim=True)
            mean = (feats * mask).sum(1, keepdim=True) / count
            var = ((feats - mean).square() * mask).sum(1, keepdim=True) / count
            feats = (feats - mean) / var.sqrt().clamp(min=1e-5) * mask
        return self.body(feats)  # causal body: no packing needed (see _run_model)


def _matched_bi_hidden(target: int, arch: str, input_size: int, output_size: int) -> int:
    best, gap = 1, None
    for hidden in range(1, 4096):
        count = BiRNN.parameter_count(arch, input_size, hidden, output_size)
        if gap is None or abs(count - target) < gap:
            best, gap = hidden, abs(count - target)
        if count > target:
            break
    return best


def build_experiment_model(name: str, input_size: int, cfg: dict[str, Any]
                           ) -> tuple[nn.Module, dict[str, int]]:
    """A model of :data:`MODELS` with its parameter budget matched to the SFM's.

    Unidirectional models come from :func:`freqnn.models.build_model` (``head="step"``; LSTM /
    GRU hidden sizes matched to the SFM of ``hidden_size`` / ``state_size`` / ``num_freqs``).
    The bidirectional models get the hidden size whose count is closest to that SFM's. A
    ``-cosine`` model is the same body behind a :class:`~freqnn.features.CosineFrontEnd`
    (its ``n`` learnable frequencies come on top of the matched body).
    """
    if name not in MODELS:
        raise ValueError(f"model: expected one of {', '.join(MODELS)}, got {name!r}")
    sizes = {"hidden_size": int(cfg["hidden_size"]), "state_size": int(cfg["state_size"]),
             "num_freqs": int(cfg["num_freqs"])}
    if name.startswith("bi"):
        _, ref = build_model("sfm", input_size, NUM_CLASSES, "step", **sizes)
        hidden = _matched_bi_hidden(ref["sfm_params"], name[2:], input_size, NUM_CLASSES)
        model: nn.Module = BiRNN(name[2:], input_size, NUM_CLASSES, hidden)
        return model, {"params": count_parameters(model), "sfm_params": ref["sfm_params"],
                       "hidden_size": hidden}
    arch = name.split("-")[0]
    body, counts = build_model(arch, input_size, NUM_CLASSES, "step", **sizes)
    if name.endswith("-cosine"):
        model = FrontEndModel(F.CosineFrontEnd(F.FRAME_LENGTH, int(cfg["num_bands"])), body,
                              utterance_norm=cfg["normalisation"] == "utterance")
        counts = {**counts, "params": count_parameters(model)}
        return model, counts
    return body, counts


# --------------------------------------------------------------------------- experiment loop
def _batches(lengths: Sequence[int], batch_size: int, generator: torch.Generator | None
             ) -> list[list[int]]:
    """Batches of similar lengths (sorted, chunked); the batch order is shuffled when a
    generator is given."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    chunks = [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
    if generator is not None:
        chunks = [chunks[i] for i in torch.randperm(len(chunks), generator=generator).tolist()]
    return chunks


def _wave_batch(waves: Sequence[Tensor], ys: Sequence[Tensor], index: Sequence[int]) -> Batch:
    sizes = [int(ys[i].shape[0]) for i in index]
    steps, samples = max(sizes), max(int(waves[i].shape[0]) for i in index)
    wave = torch.zeros(len(index), samples)
    y = torch.full((len(index), steps), -1, dtype=torch.long)
    for row, i in enumerate(index):
        wave[row, : waves[i].shape[0]] = waves[i]
        y[row, : sizes[row]] = ys[i]
    # "x" only carries the frame count for step_mask
    return {"wave": wave, "y": y, "lengths": torch.tensor(sizes), "x": y.unsqueeze(-1)}


def _run_model(model: nn.Module, batch: Batch) -> Tensor:
    """Outputs (B, T, classes). Unidirectional bodies are causal: padding at the end cannot
    change the outputs of valid steps, so they get no ``lengths`` (which would make LSTM / GRU
    pack the batch, about 20 times slower on CPU); the outputs at padded steps are ignored."""
    if isinstance(model, FrontEndModel):
        return model(batch["wave"], batch["lengths"])
    if isinstance(model, BiRNN):
        return model(batch["x"], batch["lengths"])
    return model(batch["x"])


def _evaluate(model: nn.Module, items: dict[str, list], batch_size: int,
              confusion: bool = False) -> dict[str, Any]:
    model.eval()
    totals = {"loss": 0.0, "accuracy": 0.0, "count": 0.0}
    matrix = torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.long)
    with torch.no_grad():
        for index in _batches([y.shape[0] for y in items["y"]], batch_size, None):
            batch = _make_batch(items, index)
            output = _run_model(model, batch)
            metrics = frame_metrics(output, batch)
            for key in ("loss", "accuracy"):
                totals[key] += float(metrics[key][0])
            totals["count"] += float(metrics["loss"][1])
            if confusion:
                logits, target = _labelled(output, batch)
                matrix += confusion_matrix(logits.argmax(-1), target)
    model.train()
    out: dict[str, Any] = {"loss": totals["loss"] / totals["count"],
                           "accuracy": totals["accuracy"] / totals["count"],
                           "frames": int(totals["count"])}
    if confusion:
        out["confusion"] = matrix.tolist()
    return out


def _make_batch(items: dict[str, list], index: Sequence[int]) -> Batch:
    if "wave" in items:
        return _wave_batch(items["wave"], items["y"], index)
    return collate([{"x": items["x"][i], "y": items["y"][i]} for i in index])


def experiment_items(cfg: dict[str, Any], cosine: bool, cache: str | Path | None = None
                     ) -> tuple[dict[str, dict[str, list]], dict[str, Any]]:
    """Per split ``{"x": features}`` (normalised log-mel) or ``{"wave": pre-emphasised
    waveforms}`` (cosine front end), with ``"y"`` frame labels; and corpus facts."""
    corpus = load_corpus(cfg, cache)
    selection = _selection(corpus, cfg)
    parts = _select(_log_mel_items(corpus, cfg, cache), selection)
    facts = {"corpus_key": corpus.meta["key"], "summary": corpus.summary(),
             "utterances_used": {name: len(index) for name, index in selection.items()}}
    if not cosine:
        scaled, _ = _normalise(parts, str(cfg["normalisation"]))
        return {name: {"x": xs, "y": ys} for name, (xs, ys) in scaled.items()}, facts
    out = {}
    for name in SPLITS:
        utts = corpus.split(name)
        waves = [F.preemphasis(torch.from_numpy(utts[i].audio)) for i in selection[name]]
        out[name] = {"wave": waves, "y": parts[name][1]}
    return out, facts


def train_and_evaluate(name: str, cfg: dict[str, Any], seed: int, *,
                       cache: str | Path | None = None, frontend_lr: float = 2e-5,
                       log: Any = None) -> dict[str, Any]:
    """Train model ``name`` with ``seed`` on the corpus of ``cfg``; validation accuracy picks
    the epoch, whose test accuracy and confusion matrix are returned (with the history)."""
    cosine = name.endswith("-cosine")
    items, facts = experiment_items(cfg, cosine, cache)
    torch.manual_seed(seed)
    input_size = int(cfg["num_bands"]) if cosine else int(items["train"]["x"][0].shape[-1])
    model, counts = build_experiment_model(name, input_size, cfg)
    if cosine:
        # statistics of the initial log energies on the first 50 training utterances
        frames = torch.cat([F.frame_signal(w) for w in items["train"]["wave"][:50]])
        model.frontend.fit_normalization(frames)
    frequencies = [p for n, p in model.named_parameters() if n.startswith("frontend.")]
    others = [p for n, p in model.named_parameters() if not n.startswith("frontend.")]
    groups = [{"params": others, "lr": float(cfg["lr"])}]
    if frequencies:
        # a frequency change dw moves the phase at a frame's end by 400 dw: a much smaller step
        groups.append({"params": frequencies, "lr": frontend_lr})
    optimiser = torch.optim.Adam(groups)
    generator = torch.Generator().manual_seed(seed)
    lengths = [int(y.shape[0]) for y in items["train"]["y"]]
    best: dict[str, Any] = {"accuracy": -1.0}
    history, waited, start = [], 0, time.perf_counter()
    for epoch in range(1, int(cfg["epochs"]) + 1):
        total, frames_seen = 0.0, 0
        for index in _batches(lengths, int(cfg["batch_size"]), generator):
            batch = _make_batch(items["train"], index)
            loss = frame_loss(_run_model(model, batch), batch)
            optimiser.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            count = int(_labelled(batch["y"], batch)[1].numel())
            total, frames_seen = total + loss.item() * count, frames_seen + count
        valid = _evaluate(model, items["valid"], 32)
        history.append({"epoch": epoch, "train_loss": total / frames_seen,
                        "val_loss": valid["loss"], "val_accuracy": valid["accuracy"],
                        "wall_s": round(time.perf_counter() - start, 1)})
        if log is not None:
            log(f"{name} seed {seed} epoch {epoch}: train loss {total / frames_seen:.4f}, "
                f"valid accuracy {valid['accuracy']:.4f}")
        if valid["accuracy"] > best["accuracy"]:
            best = {"accuracy": valid["accuracy"], "epoch": epoch,
                    "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
            waited = 0
        else:
            waited += 1
            if int(cfg["patience"]) and waited >= int(cfg["patience"]):
                break
    model.load_state_dict(best["state"])
    test = _evaluate(model, items["test"], 32, confusion=True)
    result = {
        "model": name, "seed": seed, "params": counts["params"],
        "sfm_params": counts["sfm_params"], "hidden_size": counts["hidden_size"],
        "best_epoch": best["epoch"], "epochs_run": len(history),
        "val_accuracy": best["accuracy"], "test_accuracy": test["accuracy"],
        "test_loss": test["loss"], "test_frames": test["frames"], "confusion": test["confusion"],
        "history": history, "train_wall_s": round(time.perf_counter() - start, 1),
        "config": {k: cfg[k] for k in DEFAULTS}, "frontend_lr": frontend_lr if cosine else None,
        "corpus": facts, "torch_threads": torch.get_num_threads(),
        "hardware": f"{platform.machine()} CPU", "torch": torch.__version__,
    }
    if cosine:
        result["frequencies_hz"] = model.frontend.frequencies_hz.tolist()
        result["initial_frequencies_hz"] = model.frontend.initial_frequencies_hz().tolist()
    return result


# ------------------------------------------------------------------------------------ report
def _write_json(path: Path, obj: Any) -> None:
    with atomic_write(path, "w") as handle:
        json.dump(obj, handle, indent=1)


def _table(results: list[dict[str, Any]]) -> str:
    by_model: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_model.setdefault(r["model"], []).append(r)
    lines = ["| model | direction | input | parameters | seeds | test frame accuracy (unseen "
             "voice) | valid accuracy | epochs (best) |", "|---|---|---|---|---|---|---|---|"]
    for name in [m for m in MODELS if m in by_model]:
        runs = sorted(by_model[name], key=lambda r: r["seed"])
        acc = np.array([r["test_accuracy"] for r in runs]) * 100
        val = np.array([r["val_accuracy"] for r in runs]) * 100
        spread = f" ± {acc.std(ddof=1):.2f}" if len(acc) > 1 else ""
        config = runs[0]["config"]
        source = "cosine front end" if name.endswith("-cosine") else config["features"]
        norm = config.get("normalisation", "global")
        seeds = ", ".join(str(r["seed"]) for r in runs)
        epochs = ", ".join(f"{r['epochs_run']} ({r['best_epoch']})" for r in runs)
        direction = "bidirectional" if name.startswith("bi") else "unidirectional"
        lines.append(f"| {name} | {direction} | {source}, {norm} norm. | {runs[0]['params']:,} "
                     f"| {seeds} | {acc.mean():.2f}{spread} % | {val.mean():.2f} % | {epochs} |")
    return "\n".join(lines) + "\n"


def _plots(results: list[dict[str, Any]], out: Path, confusion_model: str) -> list[Path]:
    from matplotlib.figure import Figure

    written = []
    chosen = [r for r in results if r["model"] == confusion_model]
    if chosen:
        matrix = np.sum([np.array(r["confusion"], dtype=np.float64) for r in chosen], axis=0)
        rows = matrix.sum(1, keepdims=True)
        norm = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
        fig = Figure(figsize=(9, 8))
        ax = fig.subplots()
        image = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(NUM_CLASSES), PHONES39, rotation=90, fontsize=7)
        ax.set_yticks(range(NUM_CLASSES), PHONES39, fontsize=7)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(f"{confusion_model}: test frames of the unseen voice, row-normalised "
                     f"({len(chosen)} seed(s))")
        fig.colorbar(image, ax=ax, fraction=0.046)
        path = out / f"confusion_{confusion_model}.png"
        with atomic_write(path) as handle:
            fig.savefig(handle, format="png", dpi=110, bbox_inches="tight")
        written.append(path)
    cosine = [r for r in results if "frequencies_hz" in r]
    if cosine:
        fig = Figure(figsize=(7, 4))
        ax = fig.subplots()
        for r in cosine:
            init = np.array(r["initial_frequencies_hz"])
            moved = np.array(r["frequencies_hz"]) - init
            ax.plot(init, moved, ".", ms=2, label=f"{r['model']} seed {r['seed']}")
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xlabel("initial frequency (Hz, DCT grid)")
        ax.set_ylabel("learned - initial frequency (Hz)")
        ax.set_title("cosine front end: learned analysis frequencies")
        ax.legend(fontsize=7)
        path = out / "frontend_frequencies.png"
        with atomic_write(path) as handle:
            fig.savefig(handle, format="png", dpi=110, bbox_inches="tight")
        written.append(path)
    return written


def _config_from(args: argparse.Namespace) -> dict[str, Any]:
    cfg = dict(DEFAULTS)
    for key in ("n_texts", "data_seed", "epochs", "batch_size", "lr", "patience", "hidden_size",
                "state_size", "num_freqs", "max_train_utterances", "features",
                "normalisation", "valid_voice"):
        value = getattr(args, key, None)
        if value is not None:
            cfg[key] = value
    return cfg


def _run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    cfg = _config_from(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        for name in args.models:
            path = out / f"{name}-s{seed}.json"
            if path.is_file() and not args.force:
                print(f"{path} exists: skipped", flush=True)
                continue
            result = train_and_evaluate(name, cfg, seed, cache=args.cache,
                                        frontend_lr=args.frontend_lr,
                                        log=lambda msg: print(msg, flush=True))
            _write_json(path, result)
            print(f"{name} seed {seed}: test frame accuracy {result['test_accuracy']:.4f} "
                  f"({result['params']} parameters, {result['train_wall_s']:.0f} s)", flush=True)
    return 0


def _report(args: argparse.Namespace) -> int:
    out = Path(args.out)
    results = [json.loads(p.read_text()) for p in sorted(out.glob("*-s*.json"))]
    if not results:
        raise FileNotFoundError(f"{out}: no results (*-s*.json); run the experiment first")
    table = _table(results)
    with atomic_write(out / "table.md", "w") as handle:
        handle.write(table)
    paths = _plots(results, out, args.confusion_model)
    print(table)
    for path in paths:
        print(f"wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m freqnn.tasks.phoneme run|report``: the experiment driver."""
    parser = argparse.ArgumentParser(prog="python -m freqnn.tasks.phoneme",
                                     description="frame-level phone classification experiment")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train and test models, one JSON per (model, seed)")
    run.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    run.add_argument("--seeds", nargs="+", type=int, default=[0])
    run.add_argument("--n-texts", type=int)
    run.add_argument("--data-seed", type=int)
    run.add_argument("--features", choices=FEATURES)
    run.add_argument("--epochs", type=int)
    run.add_argument("--batch-size", type=int)
    run.add_argument("--lr", type=float)
    run.add_argument("--patience", type=int)
    run.add_argument("--hidden-size", type=int)
    run.add_argument("--state-size", type=int)
    run.add_argument("--num-freqs", type=int)
    run.add_argument("--max-train-utterances", type=int)
    run.add_argument("--normalisation", choices=("global", "utterance"),
                     help="feature standardisation (default global: training statistics)")
    run.add_argument("--valid-voice", help="training voice held out for validation")
    run.add_argument("--frontend-lr", type=float, default=2e-5,
                     help="Adam learning rate of the front end's frequencies")
    run.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    run.add_argument("--cache", default=None, help="cache directory")
    run.add_argument("--force", action="store_true", help="rerun existing results")
    run.add_argument("--out", default="runs/phoneme")
    report = sub.add_parser("report", help="table.md and figures from the results")
    report.add_argument("--out", default="runs/phoneme")
    report.add_argument("--confusion-model", default="sfm", choices=MODELS)
    args = parser.parse_args(argv)
    try:
        return _run(args) if args.command == "run" else _report(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
