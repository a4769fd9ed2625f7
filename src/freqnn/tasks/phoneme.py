"""Frame-level phone classification (the SFM paper's TIMIT experiment) on open data.

Data: the flite phone-labelled corpus (:mod:`freqnn.data.phoneme`): voices kal16, awb and slt
read the train and valid texts, the unseen voice rms reads the test texts. By default
(``valid_voice="slt"``) slt leaves training: the models train on kal16 and awb, are selected on
slt's valid texts (a voice neither trained on nor tested) and are tested once on rms;
``valid_voice=None`` trains on all three and validates on their valid texts. Every 10 ms frame
(25 ms window) is classified into the 39 folded phone classes
(:data:`freqnn.data.phones.PHONES39`).

Inputs
------
``features="logmel"``: 40 log-mel filterbank energies per frame (:class:`freqnn.features.LogMel`:
pre-emphasis 0.97, Hamming window, 512-point FFT, HTK mel scale); ``"logmel_deltas"`` adds deltas
and delta-deltas (120 features). ``normalisation="utterance"`` (default, chosen on the
validation voice) standardises each utterance with its own mean and standard deviation,
``"global"`` each feature with those of the training frames.
``"cosine"``: the raw pre-emphasised waveform, cut into frames of 400 samples every 160
(:class:`FramedWaves`: the items' ``"x"`` is (T, 400)), through the learnable
:class:`freqnn.features.CosineFrontEnd` that the task puts in front of the runner's model
(:attr:`freqnn.tasks.Task.wrap_model`, :class:`FrontEndModel`): 40 log mel-band energies of a
trainable cosine transform, standardised with the statistics of its initial outputs on the first
50 training utterances (and then per utterance with ``normalisation="utterance"``). Its 400
frequencies train with Adam at their own learning rate ``frontend_lr`` (default 2e-5: a change
dw moves the phase at a frame's end by 400 dw), the rest at ``lr``.

Metric: frame accuracy = correctly classified frames / labelled frames, over every frame of
the test utterances (frames after flite's last phone, label -1, are not counted; there are
almost none). Loss: cross-entropy averaged over the labelled frames of a batch.

Commands
--------
Every model trains through the runner, at a parameter count matched to the SFM's::

    freqnn train phoneme --model sfm|asfm|lstm|gru|bilstm|bigru|... [--features cosine] \
        [--set normalisation=global] --seed S --run-dir runs/phoneme/NAME-sS

The bidirectional baselines are ``--model bilstm`` / ``bigru``
(:class:`freqnn.models.BidirectionalRNN`). ``python -m freqnn.tasks.phoneme table RUN_DIR...
[--confusion-model sfm] [--out DIR]`` makes the results table from the run directories: per
model and configuration, parameters, seeds, test frame accuracy (mean ± sample std over seeds),
validation accuracy and epochs; it also draws the test confusion matrix of one model
(recomputed from the best checkpoints) and the learned front-end frequencies of the cosine runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as Fn
from pydantic import Field
from torch import Tensor, nn
from torch.utils.data import Dataset

from .. import features as F
from ..checkpoint import (
    RESULTS_FILE,
    epochs_text,
    find_runs,
    load_run_config,
    model_from_checkpoint,
    predict,
)
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
from ..models import BIDIRECTIONAL_ARCHS, arch_rank
from . import Batch, Task, TaskData, TensorDataset, step_mask

__all__ = [
    "DEFAULTS",
    "FEATURES",
    "TASK",
    "FramedWaves",
    "FrontEndModel",
    "Options",
    "build",
    "confusion_matrix",
    "confusion_of_runs",
    "frame_loss",
    "frame_metrics",
    "load_corpus",
    "load_runs",
    "main",
    "param_groups",
    "row_name",
    "run_table",
    "wrap_model",
]

FEATURES = ("logmel", "logmel_deltas", "cosine")
NUM_CLASSES = len(PHONES39)
#: training utterances whose initial front-end outputs give its standardisation
FRONTEND_FIT_UTTERANCES = 50

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
    # the protocol of docs/results/phoneme.md: slt leaves training and is the only validation
    # voice (neither trained on nor tested); per-utterance normalisation was chosen on it
    "normalisation": "utterance",  # or "global" (the training frames' mean and std)
    "valid_voice": "slt",  # a training voice held out for validation; None: every voice
    "frontend_lr": 2e-5,  # learning rate of the cosine front end's frequencies
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


def _log_mel_items(corpus: PhonemeCorpus, cfg: dict[str, Any]
                   ) -> dict[str, tuple[list, list]]:
    """(features, labels) lists per split, features unnormalised; cached next to the corpus."""
    module = _feature_module(cfg)
    key = hashlib.sha256(json.dumps([corpus.meta["key"], cfg["features"], cfg["num_bands"],
                                     repr(module)]).encode()).hexdigest()[:16]
    path = cache_dir() / "phoneme" / f"features_{key}.pt"
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
    frames = torch.cat(parts["train"][0]).double()
    mean, std = frames.mean(0), frames.std(0).clamp(min=1e-5)
    scaled = {name: ([((x - mean) / std).float() for x in xs], ys)
              for name, (xs, ys) in parts.items()}
    return scaled, {"feature_mean": mean.float().tolist(), "feature_std": std.float().tolist()}


def _cmvn(x: Tensor) -> Tensor:
    x64 = x.double()
    return ((x64 - x64.mean(0)) / x64.std(0, unbiased=False).clamp(min=1e-5)).float()


class FramedWaves(Dataset):
    """Items ``{"x": frames, "y": labels}`` of waveforms cut into frames on access.

    Parameters
    ----------
    waves : list of Tensor [shape=(L,)]
        Pre-emphasised float32 waveforms (16 kHz).
    labels : list of Tensor [shape=(T,)]
        Frame labels, T = :func:`freqnn.features.num_frames` (L) (-1: unlabelled).

    Notes
    -----
    ``x`` is :func:`freqnn.features.frame_signal` of the waveform, (T, 400): a view, so the
    data set holds the waveforms only; :func:`freqnn.tasks.collate` pads the frames.
    """

    def __init__(self, waves: Sequence[Tensor], labels: Sequence[Tensor]) -> None:
        if len(waves) != len(labels):
            raise ValueError(f"labels: expected one per waveform ({len(waves)}), got "
                             f"{len(labels)}")
        for i, (wave, y) in enumerate(zip(waves, labels, strict=True)):
            if F.num_frames(int(wave.shape[0])) != int(y.shape[0]):
                raise ValueError(f"labels[{i}]: expected {F.num_frames(int(wave.shape[0]))} "
                                 f"frame labels (a waveform of {wave.shape[0]} samples), got "
                                 f"{y.shape[0]}")
        self.waves, self.labels = list(waves), list(labels)

    def __len__(self) -> int:
        return len(self.waves)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {"x": F.frame_signal(self.waves[index]), "y": self.labels[index]}


def _waveform_data(corpus: PhonemeCorpus, selection: dict[str, list[int]]
                   ) -> dict[str, FramedWaves]:
    out = {}
    for name in SPLITS:
        utts = corpus.split(name)
        chosen = [utts[i] for i in selection[name]]
        out[name] = FramedWaves([F.preemphasis(torch.from_numpy(u.audio).float()) for u in chosen],
                                [u.frame_labels() for u in chosen])
    return out


def _frontend_statistics(train: FramedWaves, num_bands: int) -> dict[str, list[float]]:
    """Mean and std of the initial front end's log energies on the first training utterances
    (:data:`FRONTEND_FIT_UTTERANCES`): the standardisation the front end starts with."""
    frontend = F.CosineFrontEnd(F.FRAME_LENGTH, num_bands)
    count = min(FRONTEND_FIT_UTTERANCES, len(train))
    frontend.fit_normalization(torch.cat([train[i]["x"] for i in range(count)]))
    return {"frontend_mean": frontend.mean.tolist(), "frontend_std": frontend.std.tolist()}


def build(cfg: dict[str, Any]) -> TaskData:
    """The three splits of the corpus of ``cfg``: normalised log-mel features, or framed
    waveforms for the cosine front end, with frame labels (module docstring)."""
    if cfg["features"] not in FEATURES:
        raise ValueError(f"features: expected one of {', '.join(FEATURES)}, got "
                         f"{cfg['features']!r}")
    if cfg["normalisation"] not in ("global", "utterance"):
        raise ValueError(f"normalisation: expected 'global' or 'utterance', got "
                         f"{cfg['normalisation']!r}")
    corpus = load_corpus(cfg)
    selection = _selection(corpus, cfg)
    info: dict[str, Any] = {
        "class_names": list(PHONES39), "corpus_key": corpus.meta["key"],
        "test_voice": corpus.meta["test_voice"], "train_voices": corpus.meta["train_voices"],
        "features": cfg["features"], "normalisation": cfg["normalisation"]}
    if cfg["features"] == "cosine":
        data = _waveform_data(corpus, selection)
        info.update(_frontend_statistics(data["train"], int(cfg["num_bands"])))
        input_size = int(cfg["num_bands"])  # what the front end hands to the body
    else:
        parts = _select(_log_mel_items(corpus, cfg), selection)
        scaled, stats = _normalise(parts, str(cfg["normalisation"]))
        data = {name: TensorDataset(x=xs, y=ys) for name, (xs, ys) in scaled.items()}
        info.update(stats)
        input_size = int(scaled["train"][0][0].shape[-1])
    return TaskData(train=data["train"], val=data["valid"], test=data["test"],
                    input_size=input_size, output_size=NUM_CLASSES, info=info)


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




# ------------------------------------------------------------------------ cosine front end
class FrontEndModel(nn.Module):
    """Waveform frames -> :class:`~freqnn.features.CosineFrontEnd` -> the runner's model.

    Parameters
    ----------
    frontend : CosineFrontEnd
        Frames of ``frontend.n`` samples -> ``frontend.num_bands`` standardised log energies.
    body : nn.Module
        The runner's model (:class:`freqnn.models.SequenceModel`), reading ``num_bands``
        features per step.
    utterance_norm : bool
        Standardise the band energies over each sequence's valid frames (as
        ``normalisation="utterance"`` does for log-mel features).

    Notes
    -----
    ``forward(x, times=None, lengths=None)``: ``x`` (B, T, n) pre-emphasised frames,
    zero-padded after ``lengths`` (B,) -> (B, T, num_bands) band energies -> ``body(...,
    times=times, lengths=lengths)`` -> (B, T, output_size).
    """

    def __init__(self, frontend: F.CosineFrontEnd, body: nn.Module,
                 utterance_norm: bool = False) -> None:
        super().__init__()
        self.frontend = frontend
        self.body = body
        self.utterance_norm = bool(utterance_norm)

    @property
    def auxiliary_loss(self) -> Tensor | None:
        """The body's training penalty (:attr:`freqnn.models.SequenceModel.auxiliary_loss`)."""
        return getattr(self.body, "auxiliary_loss", None)

    def forward(self, x: Tensor, times: Tensor | None = None,
                lengths: Tensor | None = None) -> Tensor:
        feats = self.frontend(x)
        if self.utterance_norm:
            steps = feats.shape[1]
            valid = lengths if lengths is not None else torch.full((feats.shape[0],), steps)
            mask = torch.arange(steps, device=feats.device) < valid.to(feats.device)[:, None]
            mask = mask.unsqueeze(-1).to(feats.dtype)
            count = mask.sum(1, keepdim=True)
            mean = (feats * mask).sum(1, keepdim=True) / count
            var = ((feats - mean).square() * mask).sum(1, keepdim=True) / count
            feats = (feats - mean) / var.sqrt().clamp(min=1e-5) * mask
        return self.body(feats, times=times, lengths=lengths)


def wrap_model(body: nn.Module, cfg: dict[str, Any], facts: dict[str, Any]) -> nn.Module:
    """The task's :attr:`~freqnn.tasks.Task.wrap_model` hook: ``body`` itself for log-mel
    features; for ``features="cosine"`` a :class:`FrontEndModel` whose front end starts with the
    standardisation saved in ``facts["info"]`` (``frontend_mean`` / ``frontend_std``)."""
    if cfg["features"] != "cosine":
        return body
    frontend = F.CosineFrontEnd(F.FRAME_LENGTH, int(cfg["num_bands"]))
    info = facts["info"]
    with torch.no_grad():
        frontend.mean.copy_(torch.tensor(info["frontend_mean"]))
        frontend.std.copy_(torch.tensor(info["frontend_std"]))
    return FrontEndModel(frontend, body, utterance_norm=cfg["normalisation"] == "utterance")


def param_groups(model: nn.Module, cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """The task's :attr:`~freqnn.tasks.Task.param_groups` hook: the front end's parameters (its
    frequencies) at ``cfg["frontend_lr"]``, everything else at ``cfg["lr"]``."""
    if not isinstance(model, FrontEndModel):
        return [{"params": list(model.parameters())}]
    return [{"params": list(model.body.parameters())},
            {"params": list(model.frontend.parameters()), "lr": float(cfg["frontend_lr"])}]


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
    features: Literal[FEATURES] = Field(description="input features (cosine: framed waveform "
                                        "through the learnable cosine front end)")  # type: ignore[valid-type]
    num_bands: int = Field(ge=1, description="mel bands")
    normalisation: Literal["global", "utterance"] = Field(
        description="standardise with the training frames' statistics, or each utterance "
        "with its own")
    valid_voice: str | None = Field(description="a training voice held out for "
                                    "speaker-independent validation; null: none")
    frontend_lr: float = Field(gt=0, description="learning rate of the cosine front end's "
                               "frequencies (features=cosine; the model trains at lr)")


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
    wrap_model=wrap_model,
    param_groups=param_groups,
)


# ------------------------------------------------------------------------------- results table
#: configuration keys that do not change what a run computes (ignored when grouping runs)
_BOOKKEEPING = ("seed", "run_dir", "progress", "num_threads", "accelerator", "eval_batch_size",
                "max_minutes")  # a capped run's epochs cell names its cap
#: keys shown in the table's own columns
_SHOWN = ("model", "features", "normalisation")
_ROW_SUFFIX = {"logmel": "", "logmel_deltas": "-deltas", "cosine": "-cosine"}

_Run = tuple[Path, dict[str, Any], dict[str, Any]]


def row_name(cfg: dict[str, Any]) -> str:
    """The table's name of a run's model: the arch, with ``-cosine`` / ``-deltas`` for the
    cosine front end / log-mel features with deltas (``sfm``, ``bilstm``, ``sfm-cosine``)."""
    return f"{cfg['model']}{_ROW_SUFFIX[cfg['features']]}"


def load_runs(paths: Sequence[str | Path]) -> list[_Run]:
    """(run directory, configuration, results) of every finished phoneme run under ``paths``."""
    runs = []
    for run in find_runs(paths):
        cfg = load_run_config(run)
        if cfg["task"] != TASK.name:
            raise ValueError(f"{run}: expected a {TASK.name} run, got a run of task "
                             f"{cfg['task']!r}")
        runs.append((run, cfg, json.loads((run / RESULTS_FILE).read_text())))
    return runs


def _setting(cfg: dict[str, Any]) -> dict[str, Any]:
    """The keys of ``cfg`` that define what a run computes (``frontend_lr`` only for the cosine
    front end)."""
    unused = () if cfg["features"] == "cosine" else ("frontend_lr",)
    return {k: v for k, v in cfg.items() if k not in _BOOKKEEPING and k not in unused}


def _groups(runs: Sequence[_Run]) -> list[list[_Run]]:
    """Runs of one configuration (all keys but the seed and bookkeeping) together, in table
    order: log-mel features first, then by model (:func:`freqnn.models.arch_rank`)."""
    groups: dict[str, list[_Run]] = {}
    for run in runs:
        groups.setdefault(json.dumps(_setting(run[1]), sort_keys=True), []).append(run)
    ordered = sorted(groups.items(), key=lambda item: (
        FEATURES.index(item[1][0][1]["features"]), arch_rank(item[1][0][1]["model"]),
        item[1][0][1]["normalisation"], item[0]))
    return [sorted(group, key=lambda r: r[1]["seed"]) for _, group in ordered]


def _varying(configs: Sequence[dict[str, Any]], skip: Sequence[str] = _SHOWN) -> list[str]:
    """Keys (besides ``skip``) whose value differs between the configurations that use them."""
    settings = [_setting(c) for c in configs]
    keys = sorted({k for c in settings for k in c} - set(skip))
    return [k for k in keys if len({json.dumps(c[k]) for c in settings if k in c}) > 1]


def run_table(runs: Sequence[_Run]) -> str:
    """Markdown table of phoneme runs (:func:`load_runs`), one row per configuration:
    parameters, seeds, test frame accuracy (mean ± sample std over seeds, %), mean validation
    accuracy of the selected epochs, epochs run (best, 1-based; "cap N min" where the wall-time
    cap stopped the run). A ``settings`` column lists the keys that differ between the rows of
    one model (beyond input and normalisation): ``num_layers=2`` tells two ParallelSFM rows
    apart, while the SFM's ``hidden_size`` is not shown on the LSTM row it only sizes."""
    groups = _groups(runs)
    by_model: dict[str, list[dict[str, Any]]] = {}
    for group in groups:
        by_model.setdefault(group[0][1]["model"], []).append(group[0][1])
    varying = {model: _varying(configs) for model, configs in by_model.items()}
    header = ["model", "direction", "input", "parameters", "seeds",
              "test frame accuracy (unseen voice)", "valid accuracy", "epochs (best)"]
    header += ["settings"] if any(varying.values()) else []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for group in groups:
        cfg, first = group[0][1], group[0][2]
        acc = np.array([r["test"]["accuracy"] for _, _, r in group]) * 100
        val = np.array([r["best_val"]["val_accuracy"] for _, _, r in group]) * 100
        spread = f" ± {acc.std(ddof=1):.2f}" if len(acc) > 1 else ""
        source = "cosine front end" if cfg["features"] == "cosine" else cfg["features"]
        cells = [row_name(cfg),
                 "bidirectional" if cfg["model"] in BIDIRECTIONAL_ARCHS else "unidirectional",
                 f"{source}, {cfg['normalisation']} norm.", f"{first['params']:,}",
                 ", ".join(str(c["seed"]) for _, c, _ in group),
                 f"{acc.mean():.2f}{spread} %", f"{val.mean():.2f} %",
                 ", ".join(epochs_text(r) for _, _, r in group)]
        used = _setting(cfg)
        if any(varying.values()):
            cells.append(", ".join(f"{k}={used[k]}" for k in varying[cfg["model"]] if k in used))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def confusion_of_runs(runs: Sequence[_Run]) -> Tensor:
    """(39, 39) int64 test-frame counts (row: true class, column: predicted), summed over the
    best checkpoints of ``runs`` (runs of one data configuration)."""
    matrix = torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.long)
    test = build(runs[0][1]).test
    for run, cfg, _ in runs:
        module = model_from_checkpoint(run / "checkpoints" / "best.ckpt")
        size = cfg["eval_batch_size"] or cfg["batch_size"]
        for batch, output in predict(module, test, size):
            logits, target = _labelled(output, batch)
            matrix += confusion_matrix(logits.argmax(-1), target)
    return matrix


def _save(fig: Any, path: Path) -> Path:
    with atomic_write(path) as handle:
        fig.savefig(handle, format="png", dpi=110, bbox_inches="tight")
    return path


def _confusion_png(matrix: Tensor, name: str, seeds: int, path: Path) -> Path:
    from matplotlib.figure import Figure

    counts = matrix.double().numpy()
    rows = counts.sum(1, keepdims=True)
    norm = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    fig = Figure(figsize=(9, 8))
    ax = fig.subplots()
    image = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(NUM_CLASSES), PHONES39, rotation=90, fontsize=7)
    ax.set_yticks(range(NUM_CLASSES), PHONES39, fontsize=7)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"{name}: test frames of the unseen voice, row-normalised ({seeds} seed(s))")
    fig.colorbar(image, ax=ax, fraction=0.046)
    return _save(fig, path)


def _frequencies_png(runs: Sequence[_Run], path: Path) -> Path:
    """Learned minus initial analysis frequency of the front end of each cosine run."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    for run, cfg, _ in runs:
        frontend = model_from_checkpoint(run / "checkpoints" / "best.ckpt").model.frontend
        init = frontend.initial_frequencies_hz().numpy()
        moved = frontend.frequencies_hz.detach().double().numpy() - init
        ax.plot(init, moved, ".", ms=2,
                label=f"{row_name(cfg)}, {cfg['normalisation']} norm., seed {cfg['seed']}")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("initial frequency (Hz, DCT grid)")
    ax.set_ylabel("learned - initial frequency (Hz)")
    ax.set_title("cosine front end: learned analysis frequencies")
    ax.legend(fontsize=7)
    return _save(fig, path)


def _table_command(args: argparse.Namespace) -> int:
    runs = load_runs(args.runs)
    table = run_table(runs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "table.md", "w") as handle:
        handle.write(table)
    print(table)
    written = [out / "table.md"]
    chosen = [run for run in runs if row_name(run[1]) == args.confusion_model]
    if chosen:
        groups = _groups(chosen)
        if len(groups) > 1:
            keys = _varying([group[0][1] for group in groups], skip=())
            raise ValueError(f"--confusion-model: expected the runs of {args.confusion_model!r} "
                             f"to share one configuration, got {len(groups)} (differing in "
                             f"{', '.join(keys)}); pass the run directories of one")
        written.append(_confusion_png(confusion_of_runs(chosen), args.confusion_model,
                                      len(chosen), out / f"confusion_{args.confusion_model}.png"))
    elif args.confusion_model != "none":
        print(f"no runs of {args.confusion_model!r}: no confusion matrix", file=sys.stderr)
    cosine = [run for group in _groups(runs) for run in group if run[1]["features"] == "cosine"]
    if cosine:
        written.append(_frequencies_png(cosine, out / "frontend_frequencies.png"))
    for path in written:
        print(f"wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m freqnn.tasks.phoneme table RUN_DIR... [--confusion-model NAME] [--out DIR]``.

    Writes ``DIR/table.md`` (:func:`run_table`, also printed), ``DIR/confusion_NAME.png`` (the
    row-normalised test confusion matrix of the runs named NAME by :func:`row_name`, summed over
    their seeds) and, with cosine runs, ``DIR/frontend_frequencies.png``. Returns the exit
    status: 2 with one line on stderr for bad run directories or options.
    """
    parser = argparse.ArgumentParser(
        prog="python -m freqnn.tasks.phoneme",
        description="results of phoneme runs trained by `freqnn train phoneme`")
    sub = parser.add_subparsers(dest="command", required=True)
    table = sub.add_parser("table", help="markdown table and figures of run directories")
    table.add_argument("runs", nargs="+", metavar="RUN_DIR",
                       help="run directories of `freqnn train phoneme`, or folders holding them")
    table.add_argument("--confusion-model", default="sfm", metavar="NAME",
                       help="the table row whose test confusion matrix is drawn (sfm, bilstm, "
                       "sfm-cosine, ...; none: no matrix; default sfm)")
    table.add_argument("--out", default="reports/phoneme",
                       help="folder for table.md and the figures (default reports/phoneme)")
    args = parser.parse_args(argv)
    try:
        return _table_command(args)
    except (ValueError, OSError) as error:
        print(f"python -m freqnn.tasks.phoneme: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
