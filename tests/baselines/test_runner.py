"""The baselines in the runner: parameter matching on every task's default configuration,
timestamps, the ACT ponder cost in the training loss, a one-batch training of each."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from freqnn.baselines import ACTRNN, RHN, AssociativeLSTM, ClockworkRNN, PhasedLSTM
from freqnn.models import (
    ARCH_LABELS,
    ARCHS,
    SequenceModel,
    build_model,
    count_parameters,
    matched_hidden_size,
    rnn_parameter_count,
)

NEW = {"cwrnn": ClockworkRNN, "plstm": PhasedLSTM, "rhn": RHN, "alstm": AssociativeLSTM,
       "act": ACTRNN}
LABELS = {"cwrnn": "CW-RNN", "plstm": "Phased LSTM", "rhn": "RHN", "alstm": "A-LSTM",
          "act": "ACT-RNN"}
#: each task's default SFM sizes and data facts: (input, output, has_times, M, D, K)
TASK_DEFAULTS = {
    "signal_type": (1, 2, True, 16, 8, 8),
    "polyphonic": (88, 88, False, 64, 32, 4),
    "phoneme": (40, 39, False, 64, 16, 8),
    "stocks": (1, 1, False, 10, 10, 10),
}


def test_registered_with_their_labels() -> None:
    assert set(NEW) <= set(ARCHS)
    assert {arch: ARCH_LABELS[arch] for arch in NEW} == LABELS


def test_task_defaults_are_the_tasks_own() -> None:
    from freqnn.tasks import get_task

    for task, (*_, M, D, K) in TASK_DEFAULTS.items():
        defaults = get_task(task).defaults
        assert (defaults["hidden_size"], defaults["state_size"], defaults["num_freqs"]) == (
            M, D, K)


@pytest.mark.parametrize("task", TASK_DEFAULTS)
@pytest.mark.parametrize("arch", NEW)
def test_matched_within_ten_percent_of_the_sfm_on_every_task(task: str, arch: str) -> None:
    inp, out, timed, M, D, K = TASK_DEFAULTS[task]
    model, counts = build_model(arch, inp, out, "sequence" if task == "signal_type" else "step",
                                hidden_size=M, state_size=D, num_freqs=K, use_times=timed)
    assert counts["params"] == count_parameters(model)
    assert abs(counts["params"] - counts["sfm_params"]) <= 0.1 * counts["sfm_params"]
    # the closest of the hidden sizes the model accepts
    body_input = inp + int(timed and arch != "plstm")
    assert model.body.input_size == body_input
    h, step = counts["hidden_size"], NEW[arch].hidden_size_step()
    assert h % step == 0 and h == model.body.hidden_size
    gaps = [abs(rnn_parameter_count(arch, body_input, k, 1, out) - counts["sfm_params"])
            for k in (h - step, h, h + step) if k > 0]
    assert min(gaps) == abs(counts["params"] - counts["sfm_params"])


@pytest.mark.parametrize("arch", NEW)
def test_matched_hidden_size_is_the_closest_valid_size(arch: str) -> None:
    for target in (300, 5090, 80000):
        h = matched_hidden_size(target, arch, input_size=3, output_size=2)
        step = NEW[arch].hidden_size_step()
        gap = abs(rnn_parameter_count(arch, 3, h, 1, 2) - target)
        assert h % step == 0
        assert all(gap <= abs(rnn_parameter_count(arch, 3, k, 1, 2) - target)
                   for k in range(step, 2 * h + 2 * step, step))
        model = SequenceModel(arch, 3, 2, hidden_size=h)
        assert count_parameters(model) == rnn_parameter_count(arch, 3, h, 1, 2)


@pytest.mark.parametrize("arch", NEW)
@pytest.mark.parametrize("head", ["sequence", "step"])
def test_padded_batch_gives_each_sequence_alone(arch: str, head: str) -> None:
    torch.manual_seed(0)
    model = SequenceModel(arch, 2, 3, head, hidden_size=8, use_times=True).double()
    x = torch.randn(3, 9, 2, dtype=torch.float64)
    times = torch.cumsum(torch.rand(3, 9, dtype=torch.float64) + 0.1, dim=1)
    lengths = torch.tensor([9, 5, 1])
    out = model(x, times=times, lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        alone = model(x[b: b + 1, :n], times=times[b: b + 1, :n])
        got = out[b] if head == "sequence" else out[b, :n]
        torch.testing.assert_close(got, alone[0], rtol=1e-10, atol=1e-12)


def test_phased_lstm_reads_the_timestamps_and_the_others_the_deltas() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 6, 1, dtype=torch.float64)
    times = torch.cumsum(torch.rand(2, 6, dtype=torch.float64) + 0.5, dim=1)
    plstm = SequenceModel("plstm", 1, 2, "step", hidden_size=4, use_times=True).double()
    expected = plstm.readout(plstm.body(x, times=times)[0])
    torch.testing.assert_close(plstm(x, times=times), expected, rtol=0, atol=0)
    rhn = SequenceModel("rhn", 1, 2, "step", hidden_size=4, use_times=True).double()
    deltas = torch.cat([torch.zeros(2, 1, dtype=torch.float64), times.diff(dim=1)], dim=1)
    expected = rhn.readout(rhn.body(torch.cat([x, deltas.unsqueeze(-1)], dim=-1))[0])
    torch.testing.assert_close(rhn(x, times=times), expected, rtol=1e-12, atol=1e-12)


def test_auxiliary_loss_is_the_act_ponder_cost_only() -> None:
    x = torch.randn(2, 5, 1)
    act = SequenceModel("act", 1, 2, hidden_size=4)
    act(x)
    assert act.auxiliary_loss is act.body.ponder_cost and act.auxiliary_loss.dim() == 0
    for arch in ("lstm", "sfm", "cwrnn", "plstm"):
        model = SequenceModel(arch, 1, 2, hidden_size=4)
        model(x)
        assert model.auxiliary_loss is None


def test_training_step_adds_the_ponder_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    from freqnn.tasks import collate, get_task
    from freqnn.train import TaskModule, make_config

    task = get_task("signal_type")
    cfg = make_config(task, {"model": "act", "hidden_size": 4, "state_size": 2, "num_freqs": 2,
                             "n_train": 4, "n_val": 2, "n_test": 2, "length": 10})
    module = TaskModule(cfg, {"input_size": 1, "output_size": 2, "has_times": True})
    monkeypatch.setattr(module, "log", lambda *args, **kwargs: None)
    batch = collate([task.build(cfg).train[i] for i in range(4)])
    returned = module.training_step(batch, 0)
    task_loss = module._train_sum[-1]
    ponder = module.model.body.ponder_cost
    assert float(ponder.detach()) > 0
    torch.testing.assert_close(returned.detach().double(), task_loss + ponder.detach().double())


@pytest.mark.parametrize("arch", NEW)
def test_one_batch_of_training_through_the_runner(arch: str, tmp_path: Path) -> None:
    from freqnn.tasks import get_task
    from freqnn.train import make_config, train

    cfg = make_config(get_task("signal_type"), {
        "model": arch, "n_train": 16, "n_val": 8, "n_test": 8, "length": 10, "batch_size": 8,
        "hidden_size": 4, "state_size": 2, "num_freqs": 2, "epochs": 1, "patience": 0,
        "limit_train_batches": 1, "progress": False, "num_threads": 1,
        "run_dir": str(tmp_path / arch)})
    results = train(cfg)
    assert results["model"] == arch and 0 <= results["test"]["accuracy"] <= 1
    assert results["params"] == rnn_parameter_count(arch, 1 + int(arch != "plstm"),
                                                    results["hidden_size"], 1, 2)
    history = json.loads((tmp_path / arch / "history.json").read_text())
    assert np.isfinite(history[0]["train_loss"])


@pytest.mark.parametrize("arch", NEW)
def test_polyphonic_generation_steps_the_body_with_its_state(arch: str) -> None:
    from freqnn.tasks import polyphonic

    torch.manual_seed(0)
    model = SequenceModel(arch, 88, 88, "step", hidden_size=8).double()
    prime = (np.random.default_rng(0).random((4, 88)) < 0.1).astype(np.uint8)
    roll, probs = polyphonic.generate(model, prime, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole = torch.sigmoid(model(torch.from_numpy(roll[:-1]).double().unsqueeze(0)))[0]
    torch.testing.assert_close(torch.from_numpy(probs[1:]), whole, rtol=1e-10, atol=1e-12)
