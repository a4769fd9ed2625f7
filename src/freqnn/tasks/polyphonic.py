"""Polyphonic music modelling (SFM paper, experiment 2): predict the next 88-key piano-roll frame.

Task ``polyphonic`` (``freqnn train polyphonic --dataset jsb --model sfm``). Data:
:mod:`freqnn.data.polyphonic`: ``--dataset`` is ``bach`` (default: offline, built from the
music21 corpus), ``jsb``, ``musedata``, ``nottingham`` or ``piano-midi`` (read from the data
root: ``--data-root`` or ``FREQNN_DATA``). A sequence of ``T`` frames gives the item
``x = roll[:-1]``, ``y = roll[1:]`` (both (T - 1, 88) float32): the model reads frames ``<= t``
and predicts frame ``t + 1``, so every sequence has ``T - 1`` predicted frames.

Training objective (task key ``objective``; the runner logs it as ``train_loss``), averaged over
the batch's predicted frames:

* ``"bernoulli"`` (default): the frame-level Bernoulli NLL (88 independent sigmoid outputs,
  summed over keys), the standard benchmark's quantity (:func:`loss`);
* ``"softmax"``: the SFM authors' softmax score (:func:`freqnn.metrics.softmax_nll`: the 88
  outputs as one softmax, a frame scored ``-sum_k y_k log softmax(logits)_k``), to rebuild their
  protocol (:func:`softmax_loss`).

Metrics (:mod:`freqnn.metrics`; reported as ``val_*`` / ``test_*``, sums over the whole split
divided by counts), the same whatever the objective:

* ``loss`` = ``nll``: the standard benchmark number, frame-weighted NLL in nats per frame;
* ``nll_sequence``: the per-sequence average of the same;
* ``accuracy``: expected frame accuracy (Boulanger-Lewandowski et al. 2012), frame-weighted;
  ``accuracy_threshold`` / ``accuracy_pooled``: of the ``p > 1/2`` predictions;
* ``softmax_nll``: the SFM authors' softmax score (per-sequence average, their protocol) and
  ``softmax_nll_frame``; not comparable with the standard number (see :mod:`freqnn.metrics`).

The best checkpoint (and early stopping) follows the validation value of the training objective,
frame-weighted like the objective: ``val_loss`` (the Bernoulli NLL) for ``"bernoulli"``,
``val_softmax_nll_frame`` for ``"softmax"`` (the authors also select on their validation softmax
score; the Bernoulli NLL of a softmax-trained model is not what it was trained on: a common
shift of the 88 logits leaves the softmax unchanged but moves every Bernoulli probability).
``val_loss`` keeps its meaning in every run, so :func:`results_table` and :func:`summary_table`
compare configurations on the standard validation NLL. The test split is evaluated once, on the
selected checkpoint. The key is called ``objective``, not ``loss`` or ``train_loss``: those names
already stand for the Bernoulli NLL metric (``val_loss``, ``test_loss``) and the logged training
loss.

``train_chunk > 0`` cuts *training* sequences into pieces of that many predicted frames (each
starting from a zero state) to shorten backpropagation on the long MuseData / Piano-midi pieces;
validation and test always use whole sequences. Validation / test sequences are ordered by
length so that batches hold similar lengths (sums do not depend on the order).

Sampling (``freqnn sample CHECKPOINT``): this module is also the ``sample`` subcommand
(:func:`add_arguments`, :func:`run`): it primes a trained model with the first frames of a
validation sequence, draws the following frames one at a time from the model's 88 Bernoullis
(feeding each sampled frame back; the Bernoulli model is what ``objective="bernoulli"`` trains,
and a run trained with another objective is refused), and writes ``sample.mid``
(:func:`write_midi`) and ``sample.png`` (:func:`plot_piano_roll`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..checkpoint import epochs_text
from ..config import RunConfig
from ..data import polyphonic as poly
from ..io import atomic_write
from ..metrics import (
    accuracy_counts,
    frame_accuracy,
    piano_roll_nll,
    softmax_nll,
)
from ..models import ARCH_LABELS, ARCHS, arch_rank
from . import Batch, Task, TaskData, TensorDataset

__all__ = [
    "HELP",
    "OBJECTIVES",
    "TASK",
    "Options",
    "add_arguments",
    "build",
    "configure",
    "generate",
    "loss",
    "metrics",
    "plot_piano_roll",
    "results_table",
    "rolls_dataset",
    "run",
    "softmax_loss",
    "summary_table",
    "write_midi",
]

HELP = "generate music from a trained polyphonic checkpoint: MIDI file and piano-roll PNG"

#: Published test NLLs (frame-level, nats; the standard metric), as cited in the issue: Bai,
#: Kolter & Koltun 2018 (JSB, Nottingham: LSTM, GRU, TCN) and Chung et al. 2014 (MuseData,
#: Piano-midi: GRU).
PUBLISHED: dict[tuple[str, str], float] = {
    ("jsb", "lstm"): 8.45, ("jsb", "gru"): 8.43, ("jsb", "tcn"): 8.10,
    ("nottingham", "lstm"): 3.29, ("nottingham", "gru"): 3.46, ("nottingham", "tcn"): 3.07,
    ("musedata", "gru"): 5.99, ("piano-midi", "gru"): 8.82,
}

#: Frame length in quarter notes of each data set (the standard sets' authors' sampling).
FRAME_QUARTERS = {"bach": 1.0, "jsb": 1.0, "musedata": 0.5, "nottingham": 0.5,
                  "piano-midi": 0.5}

DEFAULTS: dict[str, Any] = {
    # data
    "dataset": "bach",
    "data_root": None,
    "bach_limit": None,  # first N chorales only (quick runs)
    "transpose": True,  # bach: transpose to C major / C minor
    "train_chunk": 0,  # >0: cut training sequences into pieces of this many predicted frames
    # model and training
    "objective": "bernoulli",  # or "softmax" (the SFM authors' score)
    "hidden_size": 64,
    "state_size": 32,
    "num_freqs": 4,
    "epochs": 20,
    "batch_size": 16,
    "lr": 1e-3,
    "patience": 5,
}


# --------------------------------------------------------------------------- data
def rolls_dataset(rolls: Sequence[np.ndarray], chunk: int = 0, *,
                  sort: bool = False) -> TensorDataset:
    """Next-frame items ``x = roll[:-1]``, ``y = roll[1:]`` (float32) from (T, 88) rolls.

    ``chunk > 0`` cuts each sequence's predicted frames into consecutive pieces of at most
    ``chunk`` (every predicted frame is in exactly one piece). Sequences of one frame have
    nothing to predict and are skipped. ``sort`` orders the items by length.
    """
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 0:
        raise ValueError(f"train_chunk: expected an int >= 0, got {chunk!r}")
    xs: list[Tensor] = []
    ys: list[Tensor] = []
    for roll in rolls:
        frames = torch.from_numpy(np.asarray(roll, dtype=np.float32))
        if frames.shape[0] < 2:
            continue
        x, y = frames[:-1], frames[1:]
        step = chunk or x.shape[0]
        for start in range(0, x.shape[0], step):
            xs.append(x[start:start + step])
            ys.append(y[start:start + step])
    if not xs:
        raise ValueError("rolls: expected at least one sequence of two or more frames, got none")
    if sort:
        order = sorted(range(len(xs)), key=lambda i: xs[i].shape[0])
        xs, ys = [xs[i] for i in order], [ys[i] for i in order]
    return TensorDataset(x=xs, y=ys)


def load_rolls(cfg: dict[str, Any]) -> poly.PianoRolls:
    """The data set named by ``cfg["dataset"]`` (see the module docstring)."""
    name = poly._canonical(cfg["dataset"])
    if name == "bach":
        limit = cfg.get("bach_limit")
        return poly.bach_chorales(transpose=bool(cfg.get("transpose", True)),
                                  limit=None if limit is None else int(limit))
    return poly.load_dataset(name, cfg.get("data_root"))


def build(cfg: dict[str, Any]) -> TaskData:
    """Train / validation / test items of the configured data set (deterministic)."""
    rolls = load_rolls(cfg)
    name = poly._canonical(cfg["dataset"])
    return TaskData(
        train=rolls_dataset(rolls.train, int(cfg.get("train_chunk") or 0)),
        val=rolls_dataset(rolls.valid, sort=True),
        test=rolls_dataset(rolls.test, sort=True),
        input_size=poly.KEYS,
        output_size=poly.KEYS,
        has_times=False,
        info={"dataset": name, "source": rolls.source, "sizes": list(rolls.sizes()),
              "frames": {p: rolls.frames(p) for p in poly.SPLITS},
              "frame_quarters": FRAME_QUARTERS[name]},
    )


def load_external(path: str, cfg: dict[str, Any], info: dict[str, Any]) -> Dataset:
    """``freqnn eval CHECKPOINT --data FILE``: the *test* split of a ``.mat`` or pickle file."""
    loader = poly.load_mat if str(path).lower().endswith(".mat") else poly.load_pickle
    return rolls_dataset(loader(path).test, sort=True)


# --------------------------------------------------------------------------- loss, metrics
def loss(output: Tensor, batch: Batch) -> Tensor:
    """Mean Bernoulli NLL per predicted frame of the batch (nats, summed over keys)."""
    return piano_roll_nll(output, batch["y"], batch["lengths"], batch_first=True)


def softmax_loss(output: Tensor, batch: Batch) -> Tensor:
    """Mean SFM authors' softmax score per predicted frame of the batch (nats; ``objective``
    ``"softmax"``)."""
    return softmax_nll(output, batch["y"], batch["lengths"], batch_first=True, reduction="mean")


#: Training objectives (task key ``objective``): the training loss and the metric (a key of
#: :func:`metrics`) whose validation value selects the checkpoint.
OBJECTIVES: dict[str, tuple[Callable[[Tensor, Batch], Tensor], str]] = {
    "bernoulli": (loss, "loss"),
    "softmax": (softmax_loss, "softmax_nll_frame"),
}


def metrics(output: Tensor, batch: Batch) -> dict[str, tuple[Tensor, Tensor]]:
    """Sums and counts of every score (float64; see the module docstring)."""
    out, y, lengths = output.detach().double(), batch["y"], batch["lengths"]
    kw: dict[str, Any] = {"batch_first": True}
    frames = lengths.sum().double()
    seqs = torch.tensor(float(lengths.numel()), dtype=torch.float64, device=out.device)
    nll = piano_roll_nll(out, y, lengths, reduction="sum", **kw)
    tp, fp, fn = accuracy_counts(out, y, lengths, **kw)
    return {
        "loss": (nll, frames),
        "nll": (nll, frames),
        "nll_sequence": (piano_roll_nll(out, y, lengths, reduction="sequence", **kw) * seqs,
                         seqs),
        "accuracy": (frame_accuracy(out, y, lengths, reduction="sum", **kw), frames),
        "accuracy_threshold": (frame_accuracy(out, y, lengths, mode="threshold",
                                              reduction="sum", **kw), frames),
        "accuracy_pooled": (tp, tp + fp + fn),
        "softmax_nll": (softmax_nll(out, y, lengths, reduction="sequence", **kw) * seqs, seqs),
        "softmax_nll_frame": (softmax_nll(out, y, lengths, reduction="sum", **kw), frames),
    }


class Options(RunConfig):
    """The polyphonic task's keys."""

    dataset: Literal[tuple(poly.dataset_names())] = Field(  # type: ignore[valid-type]
        description="data set (bach: offline, from the music21 corpus; the others are read "
        "from the data root)")
    data_root: str | None = Field(description="directory holding polyphonic/*.mat; null: "
                                  "FREQNN_DATA, else ../shared/data")
    bach_limit: int | None = Field(ge=1, description="bach: use the first N chorales only; "
                                   "null: all")
    transpose: bool = Field(description="bach: transpose to C major / C minor")
    train_chunk: int = Field(ge=0, description="cut training sequences into pieces of N "
                             "predicted frames (0: whole sequences)")
    objective: Literal[tuple(OBJECTIVES)] = Field(  # type: ignore[valid-type]
        description="training loss, also selecting the checkpoint on its validation value: "
        "bernoulli (the standard NLL) or softmax (the SFM authors' score); val_loss stays the "
        "Bernoulli NLL")


def configure(cfg: dict[str, Any]) -> Task:
    """The task with the training loss and selection metric of ``cfg["objective"]``.

    Parameters
    ----------
    cfg : dict
        A configuration of the task (``objective`` a key of :data:`OBJECTIVES`).

    Returns
    -------
    Task
        :data:`TASK` with ``loss`` and ``monitor`` of the objective.
    """
    objective = cfg["objective"]
    if objective not in OBJECTIVES:
        raise ValueError(f"objective: expected one of {', '.join(map(repr, OBJECTIVES))}, got "
                         f"{objective!r}")
    train_loss, monitor = OBJECTIVES[objective]
    return dataclasses.replace(TASK, loss=train_loss, monitor=monitor)


TASK = Task(
    name="polyphonic",
    description="next-frame prediction of 88-key piano rolls (Bach / JSB / MuseData / "
                "Nottingham / Piano-midi)",
    head="step",
    defaults=DEFAULTS,
    build=build,
    loss=loss,
    metrics=metrics,
    monitor="loss",
    mode="min",
    options=Options,
    load_external=load_external,
    configure=configure,
)


# --------------------------------------------------------------------------- MIDI and PNG
def _check_roll(roll: object) -> np.ndarray:
    arr = np.asarray(roll.detach().cpu() if isinstance(roll, Tensor) else roll)
    return poly.validate_roll(arr, "roll")


def write_midi(
    roll: np.ndarray | Tensor,
    path: str | os.PathLike[str],
    *,
    frame_seconds: float = 0.5,
    velocity: int = 80,
    program: int = 0,
) -> Path:
    """Write a (T, 88) binary piano roll as a one-track MIDI file (atomically).

    A key active in consecutive frames is one held note (the piano-roll representation does not
    distinguish a held note from repeated attacks); frame ``t`` starts at ``t * frame_seconds``.
    ``program`` is the General MIDI instrument (0: acoustic grand piano).

    Returns
    -------
    Path of the file written.
    """
    import pretty_midi

    arr = _check_roll(roll)
    if not (isinstance(frame_seconds, (int, float)) and frame_seconds > 0):
        raise ValueError(f"frame_seconds: expected a positive number, got {frame_seconds!r}")
    if not (isinstance(velocity, int) and 1 <= velocity <= 127):
        raise ValueError(f"velocity: expected an int in [1, 127], got {velocity!r}")
    midi = pretty_midi.PrettyMIDI(initial_tempo=60.0 / frame_seconds)
    instrument = pretty_midi.Instrument(program=program, name="freqnn")
    padded = np.concatenate([np.zeros((1, poly.KEYS), np.int8), arr.astype(np.int8),
                             np.zeros((1, poly.KEYS), np.int8)])
    change = np.diff(padded, axis=0)  # +1 at onsets, -1 at offsets (frame indices)
    for key in range(poly.KEYS):
        onsets = np.flatnonzero(change[:, key] == 1)
        offsets = np.flatnonzero(change[:, key] == -1)
        for on, off in zip(onsets, offsets, strict=True):
            instrument.notes.append(pretty_midi.Note(
                velocity=velocity, pitch=poly.LOWEST_PITCH + key,
                start=float(on * frame_seconds), end=float(off * frame_seconds)))
    instrument.notes.sort(key=lambda n: (n.start, n.pitch))
    midi.instruments.append(instrument)
    path = Path(path)
    with atomic_write(path, "wb") as handle:
        midi.write(handle)
    return path


def plot_piano_roll(
    roll: np.ndarray | Tensor,
    path: str | os.PathLike[str],
    *,
    prime: int = 0,
    title: str = "",
    probabilities: np.ndarray | Tensor | None = None,
) -> Path:
    """Draw a piano roll (time right, pitch up) as a PNG (matplotlib, no GUI; atomic).

    ``prime`` frames at the start are marked as given (a line ends them). ``probabilities``
    (T, 88), if given, are drawn in a second panel (the model's p of every key per frame).
    """
    from matplotlib.figure import Figure

    arr = _check_roll(roll)
    panels = 1 if probabilities is None else 2
    fig = Figure(figsize=(max(6.0, min(16.0, arr.shape[0] / 12)), 3.2 * panels))
    axes = fig.subplots(panels, 1, squeeze=False)[:, 0]
    extent = (-0.5, arr.shape[0] - 0.5, poly.LOWEST_PITCH - 0.5, poly.HIGHEST_PITCH + 0.5)
    images = [(arr, "notes", "Greys")]
    if probabilities is not None:
        probs = np.asarray(probabilities.detach().cpu() if isinstance(probabilities, Tensor)
                           else probabilities, dtype=np.float64)
        if probs.shape != arr.shape:
            raise ValueError(f"probabilities: expected shape {arr.shape}, got {probs.shape}")
        images.append((probs, "model probability of each key", "viridis"))
    for ax, (data, label, cmap) in zip(axes, images, strict=True):
        im = ax.imshow(data.T, origin="lower", aspect="auto", cmap=cmap, extent=extent,
                       interpolation="nearest", vmin=0.0, vmax=1.0)
        if prime:
            ax.axvline(prime - 0.5, color="tab:red", lw=1.0, label="end of primer")
            ax.legend(loc="upper right", fontsize=7)
        ax.set_ylabel("MIDI pitch")
        ax.set_title(label, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.03)  # on both panels: equal widths
    axes[-1].set_xlabel("frame")
    if title:
        fig.suptitle(title)
    path = Path(path)
    with atomic_write(path) as handle:
        fig.savefig(handle, format="png", dpi=110, bbox_inches="tight")
    return path


# --------------------------------------------------------------------------- generation
def _step_model(model: nn.Module, frame: Tensor, state: Any) -> tuple[Tensor, Any]:
    """One step of a :class:`freqnn.models.SequenceModel` with state passing: (1, 1, 88) in,
    logits (1, 88) and the new state out. SFM / A-SFM keep their step count in the state, so
    the phase times equal those of a whole-sequence forward."""
    out, state = model.body(frame, state)
    return model.readout(model.dropout(out))[:, -1], state


@torch.no_grad()
def generate(
    model: nn.Module,
    prime: np.ndarray | Tensor,
    steps: int,
    *,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Continue a primer by sampling ``steps`` frames from a next-frame model.

    Parameters
    ----------
    model : SequenceModel
        Trained with ``head="step"``, 88 inputs and outputs, no timestamps.
    prime : (P, 88) binary roll, P >= 1
        Given frames; the first sampled frame is drawn from the prediction after frame P - 1.
    steps : int
        Frames to sample.
    temperature : float
        Logits are divided by it before the sigmoid (1: the model's own distribution).
    generator : torch.Generator, optional
        Random source of the Bernoulli draws.

    Returns
    -------
    roll : ndarray [shape=(P + steps, 88), uint8]
        Primer followed by the sampled frames.
    probs : ndarray [shape=(P + steps, 88), float64]
        The model's key probabilities for each frame (row 0 is zero: nothing predicts it).
    """
    prime_arr = _check_roll(prime)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected a positive int, got {steps!r}")
    if not (isinstance(temperature, (int, float)) and temperature > 0):
        raise ValueError(f"temperature: expected a positive number, got {temperature!r}")
    model.eval()
    param = next(model.parameters())
    frames = [torch.from_numpy(row.astype(np.float64)).to(param) for row in prime_arr]
    probs = [torch.zeros(poly.KEYS, dtype=torch.float64)]
    state = None
    total = len(frames) + steps
    for t in range(total - 1):
        logits, state = _step_model(model, frames[t].view(1, 1, -1), state)
        p = torch.sigmoid(logits[0].double() / temperature)
        probs.append(p.cpu())
        if t + 1 >= len(frames):
            draw = torch.rand(poly.KEYS, generator=generator, dtype=torch.float64)
            frames.append((draw < p.cpu()).to(param))
    roll = torch.stack(frames).cpu().numpy().astype(np.uint8)
    return roll, torch.stack(probs).numpy()


# --------------------------------------------------------------------------- sample command
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``freqnn sample`` (the command registry's hook; not the task's options)."""
    parser.add_argument("checkpoint", help="a .ckpt file or a run directory (its best.ckpt)")
    parser.add_argument("--out", default=None,
                        help="output folder (default reports/sample/<dataset>-<model>)")
    parser.add_argument("--steps", type=int, default=64, help="frames to generate (64)")
    parser.add_argument("--prime", type=int, default=8,
                        help="frames of a validation sequence given first (8)")
    parser.add_argument("--index", type=int, default=0,
                        help="which validation sequence primes the model (0)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws (0)")
    parser.add_argument("--qpm", type=float, default=100.0,
                        help="tempo of the MIDI file in quarter notes per minute (100)")
    parser.add_argument("--data-root", default=None,
                        help="data root holding polyphonic/*.mat (default: the run's "
                        "data_root, else FREQNN_DATA, else ../shared/data)")


def run(args: argparse.Namespace) -> int:
    """``freqnn sample``: prime, generate, write ``sample.mid``, ``sample.png``, ``sample.json``."""
    from ..checkpoint import model_from_checkpoint

    if not (math.isfinite(args.qpm) and args.qpm > 0):  # 0 divided the frame length
        raise ValueError(f"--qpm: expected a positive finite tempo (quarter notes per "
                         f"minute), got {args.qpm:g}")
    path = Path(args.checkpoint)
    if path.is_dir():
        path = path / "checkpoints" / "best.ckpt"
    module = model_from_checkpoint(path)
    if module.task.name != TASK.name:
        raise ValueError(f"checkpoint: expected a {TASK.name} run, got task "
                         f"{module.task.name!r} ({path})")
    cfg = module.cfg
    objective = cfg.get("objective", DEFAULTS["objective"])
    if objective != "bernoulli":
        # the softmax score is not a distribution over multi-key frames, and its logits are
        # defined up to a common shift that moves every per-key Bernoulli probability
        raise ValueError(f"checkpoint: expected a run trained with objective 'bernoulli' (samples "
                         f"are drawn from the 88 per-key Bernoullis), got objective "
                         f"{objective!r} ({path})")
    if args.prime < 1:
        raise ValueError(f"--prime: expected at least 1 frame, got {args.prime}")
    if args.data_root is not None:
        cfg = {**cfg, "data_root": args.data_root}
    rolls = load_rolls(cfg)
    if not 0 <= args.index < len(rolls.valid):
        raise ValueError(f"--index: expected 0..{len(rolls.valid) - 1} (validation sequences), "
                         f"got {args.index}")
    source = rolls.valid[args.index]
    prime = source[: args.prime]
    generator = torch.Generator().manual_seed(int(args.seed))
    roll, probs = generate(module.model, prime, int(args.steps),
                           temperature=float(args.temperature), generator=generator)
    name = poly._canonical(cfg["dataset"])
    out = Path(args.out or Path("reports") / "sample" / f"{name}-{cfg['model']}")
    out.mkdir(parents=True, exist_ok=True)
    frame_seconds = FRAME_QUARTERS[name] * 60.0 / float(args.qpm)
    midi = write_midi(roll, out / "sample.mid", frame_seconds=frame_seconds)
    title = (f"{name} / {cfg['model']}: {prime.shape[0]} primer frames (validation sequence "
             f"{args.index}) + {args.steps} sampled, T={args.temperature:g}, seed {args.seed}")
    png = plot_piano_roll(roll, out / "sample.png", prime=prime.shape[0], title=title,
                          probabilities=probs)
    facts = {"checkpoint": str(path), "dataset": name, "model": cfg["model"],
             "prime_frames": int(prime.shape[0]), "validation_index": args.index,
             "sampled_frames": int(args.steps), "temperature": float(args.temperature),
             "seed": int(args.seed), "frame_seconds": frame_seconds,
             "mean_notes_per_sampled_frame": float(roll[prime.shape[0]:].sum(1).mean()),
             "midi": str(midi), "png": str(png)}
    with atomic_write(out / "sample.json", "w") as handle:
        json.dump(facts, handle, indent=2)
        handle.write("\n")
    print(json.dumps(facts, indent=2))
    return 0


# --------------------------------------------------------------------------- results table
_DATA_ORDER = {name: i for i, name in enumerate(("jsb", "nottingham", "musedata",
                                                  "piano-midi", "bach"))}


def _finished_runs(paths: Sequence[str | os.PathLike[str]]) -> list[tuple[dict, dict, Path]]:
    """(results, config, run dir) of every finished polyphonic run under ``paths``."""
    import yaml

    runs = []
    for base in map(Path, paths):
        found = [base] if (base / "results.json").is_file() else sorted(
            p.parent for p in base.rglob("results.json"))
        runs.extend(found)
    rows = []
    for run_dir in runs:
        res = json.loads((run_dir / "results.json").read_text())
        if res.get("task") != TASK.name:
            continue
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
        rows.append((res, cfg, run_dir))
    if not rows:
        raise ValueError(f"paths: expected finished polyphonic runs (results.json), got none "
                         f"under {[str(p) for p in paths]}")
    rows.sort(key=lambda r: (_DATA_ORDER.get(r[0]["info"]["dataset"], 9),
                             arch_rank(r[0]["model"]), float(r[1]["lr"]),
                             str(r[2])))
    return rows


def _variant(cfg: dict[str, Any], model: str) -> str:
    """Short description of what differs between runs of one data set and model."""
    parts = [f"lr {float(cfg['lr']):g}", f"batch {cfg['batch_size']}"]
    if cfg.get("train_chunk"):
        parts.append(f"chunk {cfg['train_chunk']}")
    if cfg.get("optimizer", "adam") != "adam":
        parts.append(str(cfg["optimizer"]))
    if cfg.get("objective", DEFAULTS["objective"]) != DEFAULTS["objective"]:
        parts.append(f"{cfg['objective']} objective")
    sfm_family = model in ("sfm", "asfm", "psfm")
    sizes = tuple(cfg.get(key, DEFAULTS[key]) for key in ("state_size", "num_freqs"))
    if sfm_family and sizes != (DEFAULTS["state_size"], DEFAULTS["num_freqs"]):
        parts.append("D {} K {}".format(*sizes))
    if sfm_family and cfg.get("time", "data") != "data":
        parts.append(f"time {cfg['time']}")
    if model == "asfm" and cfg.get("phase", "accumulate") != "accumulate":
        parts.append(f"phase {cfg['phase']}")
    if sfm_family and cfg.get("learn_frequencies"):
        parts.append("learned frequencies")
    if float(cfg.get("dropout") or 0):
        parts.append(f"dropout {float(cfg['dropout']):g}")
    if model in ("sfm", "asfm") and cfg.get("frequencies", "paper") != "paper":
        parts.append(f"{cfg['frequencies']} grid")
    if int(cfg.get("num_layers", 1)) > 1:
        parts.append(f"{cfg['num_layers']} layers")
    if sfm_family and cfg.get("hidden_size", DEFAULTS["hidden_size"]) != DEFAULTS["hidden_size"]:
        parts.append(f"M {cfg['hidden_size']}")
    return ", ".join(parts)


def results_table(paths: Sequence[str | os.PathLike[str]]) -> str:
    """Markdown table of finished polyphonic runs (``results.json`` under ``paths``).

    One row per run: data set, model, seed, training variant (learning rate, batch, chunking,
    optimiser, objective, SFM sizes, time and phase conventions, dropout, frequency grid),
    parameters, epochs run (best, 1-based; "cap N min" where the wall-time cap ``max_minutes``
    stopped the run), training wall time, validation NLL of the selected checkpoint, and its
    test scores (standard frame-weighted NLL, per-sequence NLL, expected frame accuracy, the SFM
    authors' softmax score), next to the published NLL of the same model where there is one.
    """
    lines = ["| data set | model | seed | variant | params | epochs (best) | train time (s) | "
             "val NLL | **test NLL** | published test NLL | test NLL per sequence | "
             "test expected accuracy | test softmax score | run |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for res, cfg, run_dir in _finished_runs(paths):
        name, model, test = res["info"]["dataset"], res["model"], res["test"]
        published = PUBLISHED.get((name, model))
        lines.append(
            f"| {name} | {ARCH_LABELS.get(model, model)} | {res['seed']} | "
            f"{_variant(cfg, model)} | "
            f"{res['params']} | {epochs_text(res)} | "
            f"{res['train_wall_s']:.0f} | {res['best_val']['val_loss']:.3f} | "
            f"**{test['nll']:.3f}** | {'' if published is None else f'{published:.2f}'} | "
            f"{test['nll_sequence']:.3f} | {test['accuracy']:.3f} | "
            f"{test['softmax_nll']:.3f} | `{run_dir}` |")
    return "\n".join(lines)


def summary_table(paths: Sequence[str | os.PathLike[str]]) -> str:
    """Test NLL per data set (rows) and model (columns) next to the published numbers.

    Runs in one folder that differ only by seed (``.../TAG/MODEL-sSEED``) form a configuration.
    For each data set and model the configuration with the lowest mean *validation* NLL is shown
    (the test split plays no part in the choice) as the test NLL, mean ± sample std over its
    seeds, with its folder name; ``*`` marks the best of the models on validation, and
    "cap N min" the runs the wall-time cap ``max_minutes`` stopped.
    """
    configs: dict[tuple[str, str, str], list[dict]] = {}
    for res, _cfg, run_dir in _finished_runs(paths):
        key = (res["info"]["dataset"], res["model"], str(run_dir.parent))
        configs.setdefault(key, []).append(res)

    # (mean validation NLL, folder, runs) of the configuration chosen per data set and model
    chosen: dict[tuple[str, str], tuple[float, str, list[dict]]] = {}
    for (name, model, tag), runs in sorted(configs.items()):
        val = statistics.fmean(r["best_val"]["val_loss"] for r in runs)
        if (name, model) not in chosen or val < chosen[(name, model)][0]:
            chosen[(name, model)] = (val, tag, runs)
    models = [m for m in ARCHS if any(k[1] == m for k in chosen)]
    datasets = sorted({k[0] for k in chosen}, key=lambda d: _DATA_ORDER.get(d, 9))
    lines = ["| data set | " + " | ".join(ARCH_LABELS[m] for m in models) +
             " | published LSTM | published GRU | published TCN |",
             "|---|" + "---|" * (len(models) + 3)]
    for name in datasets:
        here = {m: chosen[(name, m)] for m in models if (name, m) in chosen}
        best = min(here, key=lambda m: here[m][0])
        cells = []
        for m in models:
            if m not in here:
                cells.append("")
                continue
            _, tag, runs = here[m]
            tests = [r["test"]["nll"] for r in runs]
            cell = f"{statistics.fmean(tests):.3f}"
            if len(tests) > 1:
                cell += f" ± {statistics.stdev(tests):.3f}"
            seeds = f"{len(tests)} seeds" if len(tests) > 1 else f"seed {runs[0]['seed']}"
            capped = [r["max_minutes"] for r in runs if r.get("stopped_by") == "max_minutes"]
            if capped:
                cap = f"cap {'/'.join(f'{c:g}' for c in sorted(set(capped)))} min"
                seeds += f", {len(capped)} at {cap}" if len(runs) > 1 else f", {cap}"
            cells.append(f"{cell}{'*' if m == best else ''} ({Path(tag).name}, {seeds})")
        pub = [PUBLISHED.get((name, m)) for m in ("lstm", "gru", "tcn")]
        cells += ["" if v is None else f"{v:.2f}" for v in pub]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m freqnn.tasks.polyphonic table [--summary] RUN_DIR...``: print a table."""
    parser = argparse.ArgumentParser(prog="python -m freqnn.tasks.polyphonic")
    sub = parser.add_subparsers(dest="command", required=True)
    table = sub.add_parser("table", help="markdown table of finished polyphonic runs")
    table.add_argument("paths", nargs="+", help="run directories or folders holding them")
    table.add_argument("--summary", action="store_true",
                       help="one row per data set, the run of each model chosen on validation")
    args = parser.parse_args(argv)
    print(summary_table(args.paths) if args.summary else results_table(args.paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
