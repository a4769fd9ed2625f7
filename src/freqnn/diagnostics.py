"""Training diagnostics (runner key ``diagnostics``): what changes inside a model as it trains.

:class:`TrainingDiagnostics` is a Lightning callback that the runner adds only when
``diagnostics: true``, so a run without it pays nothing. It logs, per optimiser step, to the
run's ``logs/metrics.csv`` and TensorBoard (keys prefixed ``diag/``):

* ``grad_norm/<param>`` and ``grad_norm`` before clipping, ``grad_norm_clipped`` after (the
  norm :func:`torch.nn.utils.clip_grad_norm_` leaves: min(norm, clip));
* ``update_ratio/<param>``: ||w_after - w_before|| / ||w_before|| of the optimiser step;

and every ``diagnostics_every`` steps, for an SFM / A-SFM body, the activations of each layer on
one fixed training batch (:func:`freqnn.sfm.trace.trace`), ``l<layer>/...``:

* ``f_ste_open`` / ``f_ste_shut`` (likewise ``f_fre``, ``g``, ``o``): the fraction of gate
  values above 0.95 / below 0.05; ``forget_mean``: the mean joint forget factor f_ste * f_fre;
* ``amp_mean``, ``amp_max``: |S| over states, frequencies, steps and sequences, and
  ``amp_k<k>``: its mean at frequency k;
* ``readout_abs_k<k>``: the mean of |W_z^k A^k + b_z^k| at frequency k, and
  ``readout_saturated``: the fraction of those pre-activations beyond 3 in magnitude
  (tanh'(3) = 0.01: no gradient flows back through them);
* ``omega_k<k>``: the frequencies (SFM omega, A-SFM b_omega) and, for A-SFM, ``omega_t_std``.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torch import Tensor

from .models import step_times
from .sfm import SFM
from .sfm.trace import LayerTrace, trace
from .tasks import step_mask

__all__ = ["TrainingDiagnostics", "divergence", "divergence_text", "trace_statistics"]

#: A gate value counts as open above this and shut below 1 - this.
OPEN = 0.95
#: |pre-activation| beyond which tanh is saturated (tanh'(3) = 0.0099).
SATURATED = 3.0

#: A run diverged when its epoch training loss rises more than this (nats) above its running
#: minimum ...
LOSS_RISE = 0.25
#: ... or when its validation accuracy, after reaching ACCURACY_PEAK, falls to ACCURACY_FLOOR
#: or below.
ACCURACY_PEAK, ACCURACY_FLOOR = 0.8, 0.6


def divergence(history: list[dict[str, Any]]) -> str | None:
    """Why a run diverged, or None if it did not.

    ``history`` is a run's ``history.json`` (one record per epoch). A run diverged at the first
    epoch whose mean training loss is more than :data:`LOSS_RISE` nats above the lowest of the
    epochs before it, or whose validation accuracy (tasks that report one) is at most
    :data:`ACCURACY_FLOOR` after an earlier epoch reached :data:`ACCURACY_PEAK`. Returns e.g.
    ``"epoch 3: train loss 0.70 > 0.21 + 0.25"`` (epochs 1-based).
    """
    lowest, peaked = math.inf, False
    for record in history:
        epoch = record["epoch"] + 1
        loss, accuracy = record.get("train_loss"), record.get("val_accuracy")
        if loss is not None:
            if loss > lowest + LOSS_RISE:
                return f"epoch {epoch}: train loss {loss:.2f} > {lowest:.2f} + {LOSS_RISE}"
            lowest = min(lowest, loss)
        if accuracy is not None:
            if peaked and accuracy <= ACCURACY_FLOOR:
                return (f"epoch {epoch}: validation accuracy {accuracy:.2f} <= "
                        f"{ACCURACY_FLOOR} after reaching {ACCURACY_PEAK}")
            peaked = peaked or accuracy >= ACCURACY_PEAK
    return None


def divergence_text(runs: list[tuple[int, list[dict[str, Any]]]]) -> str:
    """The "diverged" cell of a results table for runs ``(seed, history)``: ``"0 of 3"``, or
    ``"1 of 3 (seed 0 at epoch 4)"``."""
    hits = [(seed, reason) for seed, history in runs
            if (reason := divergence(history)) is not None]
    text = f"{len(hits)} of {len(runs)}"
    if hits:
        text += " (" + "; ".join(f"seed {seed} at {reason.split(':')[0]}"
                                 for seed, reason in hits) + ")"
    return text


def trace_statistics(layers: list[LayerTrace], mask: Tensor | None = None) -> dict[str, float]:
    """The scalars listed in the module docstring, from :func:`freqnn.sfm.trace.trace`.

    ``mask`` (T, B) bool selects the valid steps of a padded batch (None: every step).
    """
    stats: dict[str, float] = {}

    def valid(x: Tensor) -> Tensor:  # (T, B, ...) -> (valid steps, ...)
        return x.flatten(0, 1) if mask is None else x[mask]

    for layer, tr in enumerate(layers):
        p = f"l{layer}/"
        for name in ("f_ste", "f_fre", "g", "o"):
            gate = valid(getattr(tr, name))
            stats[p + name + "_open"] = float((gate > OPEN).double().mean())
            stats[p + name + "_shut"] = float((gate < 1 - OPEN).double().mean())
        forget = valid(tr.f_ste).unsqueeze(-1) * valid(tr.f_fre).unsqueeze(-2)
        stats[p + "forget_mean"] = float(forget.double().mean())
        amp = valid(tr.amplitude)  # (n, D, K)
        stats[p + "amp_mean"] = float(amp.double().mean())
        stats[p + "amp_max"] = float(amp.max())
        readout = valid(tr.readout).abs()  # (n, K, M)
        stats[p + "readout_saturated"] = float((readout > SATURATED).double().mean())
        for k in range(amp.shape[-1]):
            stats[p + f"amp_k{k}"] = float(amp[..., k].double().mean())
            stats[p + f"readout_abs_k{k}"] = float(readout[:, k].double().mean())
            stats[p + f"omega_k{k}"] = float(tr.frequencies[k])
        if tr.omega is not None:
            stats[p + "omega_t_std"] = float(valid(tr.omega).double().std())
    return stats


class TrainingDiagnostics(L.Callback):
    """Log the diagnostics of the module docstring (see there) every step.

    Parameters
    ----------
    probe : dict
        One collated training batch (:func:`freqnn.tasks.collate`) the activations are traced on.
    every : int
        Trace the activations every that many optimiser steps (the gradient and update
        scalars are logged at every step).
    clip : float
        The run's gradient-norm clip (0: off), for ``grad_norm_clipped``.
    """

    def __init__(self, probe: dict[str, Tensor], every: int, clip: float) -> None:
        super().__init__()
        self.probe = probe
        self.every = int(every)
        self.clip = float(clip)
        self._before: dict[str, Tensor] = {}

    @staticmethod
    def _named(pl_module: L.LightningModule) -> list[tuple[str, Tensor]]:
        return [(name.removeprefix("model."), p) for name, p in pl_module.named_parameters()
                if p.requires_grad]

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        # Lightning calls this after the backward and before clipping
        logs, total = {}, 0.0
        for name, p in self._named(pl_module):
            if p.grad is None:
                continue
            norm = float(p.grad.detach().double().norm())
            logs[f"diag/grad_norm/{name}"] = norm
            total += norm * norm
        total **= 0.5
        logs["diag/grad_norm"] = total
        logs["diag/grad_norm_clipped"] = min(total, self.clip) if self.clip else total
        self._log(pl_module, logs)
        self._before = {name: p.detach().clone() for name, p in self._named(pl_module)}

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        logs = {}
        for name, p in self._named(pl_module):
            before = self._before.get(name)
            if before is not None:
                scale = float(before.double().norm())
                change = float((p.detach() - before).double().norm())
                logs[f"diag/update_ratio/{name}"] = change / scale if scale > 0 else change
        body = getattr(pl_module.model, "body", None)
        if isinstance(body, SFM) and (trainer.global_step - 1) % self.every == 0:
            logs.update(("diag/" + k, v) for k, v in self.trace(body, pl_module).items())
        self._log(pl_module, logs)

    def trace(self, body: SFM, pl_module: L.LightningModule) -> dict[str, float]:
        """The activation scalars of ``body`` on the probe batch."""
        batch = {k: v.to(pl_module.device) for k, v in self.probe.items()}
        model, lengths = pl_module.model, batch["lengths"]
        steps = batch["x"].shape[1]
        times = batch.get("times") if pl_module.facts["has_times"] else None
        if model.time != "data":  # the times the body sees (SequenceModel.forward)
            times = step_times(model.time, len(lengths), steps, lengths, lengths.device)
        layers = trace(body, batch["x"], times=times, lengths=lengths)
        return trace_statistics(layers, step_mask(batch).t())

    @staticmethod
    def _log(pl_module: L.LightningModule, logs: dict[str, float]) -> None:
        for key, value in logs.items():
            pl_module.log(key, value, on_step=True, on_epoch=False)
