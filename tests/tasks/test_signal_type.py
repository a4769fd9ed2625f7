"""The signal-type task, the task registry and the batch helpers."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from pathlib import Path

import numpy as np
import pytest
import torch

from freqnn.data.npz import save_npz
from freqnn.data.waves import generate_waves
from freqnn.tasks import (
    TASKS,
    Task,
    classification_metrics,
    collate,
    get_task,
    step_mask,
)
from freqnn.tasks.signal_type import TASK, build, load_external
from freqnn.train import make_config


def _cfg(**kw: object) -> dict:
    return make_config(TASK, {"n_train": 6, "n_val": 4, "n_test": 5, "length": 20, **kw})


def test_registry() -> None:
    assert TASKS["signal_type"] == "freqnn.tasks.signal_type"
    assert get_task("signal_type") is TASK and isinstance(TASK, Task)
    with pytest.raises(ValueError, match="task: expected a registered task, one of"):
        get_task("no_such_task")


def test_tasks_resolve_by_registered_name_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import freqnn.tasks as tasks

    # a dotted module path is not a name: before, get_task imported it
    with pytest.raises(ValueError, match=r"got 'freqnn\.tasks\.signal_type' \(a task is found"):
        get_task("freqnn.tasks.signal_type")
    monkeypatch.setitem(tasks.TASKS, "broken", "freqnn.tasks")
    with pytest.raises(TypeError, match=r"task: expected freqnn\.tasks to define TASK"):
        get_task("broken")
    # a package's entry points in the group freqnn.tasks: a module, or its TASK itself
    installed = [
        EntryPoint("waves", "freqnn.tasks.signal_type", tasks.ENTRY_POINT_GROUP),
        EntryPoint("waves_task", "freqnn.tasks.signal_type:TASK", tasks.ENTRY_POINT_GROUP),
        EntryPoint("stocks", "freqnn.tasks.signal_type", tasks.ENTRY_POINT_GROUP),
    ]
    monkeypatch.setattr(tasks, "entry_points", lambda group: installed)
    assert get_task("waves") is TASK and get_task("waves_task") is TASK
    assert get_task("stocks").name == "stocks"  # a built-in name is not taken over
    assert {"waves", "waves_task", "signal_type"} <= set(tasks.available_tasks())


def test_build_splits_sizes_and_independence_from_the_training_seed() -> None:
    data = build(_cfg(types="square,sawtooth,sine"))
    assert (len(data.train), len(data.val), len(data.test)) == (6, 4, 5)
    assert (data.input_size, data.output_size, data.has_times) == (1, 3, True)
    assert data.info == {"class_names": ["square", "sawtooth", "sine"]}
    item = data.train[0]
    assert item["x"].shape == (20, 1) and item["x"].dtype == torch.float32
    assert item["times"].dtype == torch.float64 and item["y"].dtype == torch.int64
    ref = generate_waves(6, types=("square", "sawtooth", "sine"), length=20, seed=1234)
    np.testing.assert_array_equal(item["x"][:, 0].numpy(), ref.values[0])
    other = build(_cfg(types="square,sawtooth,sine", seed=99))
    assert torch.equal(other.test[3]["x"], data.test[3]["x"])
    assert not torch.equal(data.val[0]["x"], data.train[0]["x"])
    with pytest.raises(ValueError, match="types: expected a list of 2 or more 'square'"):
        _cfg(types="square")
    with pytest.raises(ValueError, match="types: expected two or more"):
        build({**_cfg(), "types": ["square", "square"]})


def test_external_npz(tmp_path: Path) -> None:
    w = generate_waves(4, length=15, seed=3)
    path = save_npz(tmp_path / "w.npz", w.values, w.labels, lengths=np.array([15, 9, 15, 4]),
                    class_names=w.types)
    data = load_external(str(path), _cfg(), {"class_names": ["square", "sawtooth"]})
    assert len(data) == 4 and data[1]["x"].shape == (9, 1)
    torch.testing.assert_close(data[1]["times"], torch.arange(9, dtype=torch.float64))
    with pytest.raises(ValueError, match="class_names: expected"):
        load_external(str(path), _cfg(), {"class_names": ["sawtooth", "square"]})


def test_collate_pads_time_axes_and_stacks_labels() -> None:
    items = [{"x": torch.ones(3, 2), "times": torch.arange(3.0), "y": torch.tensor(1)},
             {"x": torch.ones(5, 2), "times": torch.arange(5.0), "y": torch.tensor(0)}]
    batch = collate(items)
    assert batch["x"].shape == (2, 5, 2) and batch["times"].shape == (2, 5)
    assert batch["x"][0, 3:].abs().sum() == 0
    assert batch["y"].tolist() == [1, 0] and batch["lengths"].tolist() == [3, 5]
    assert step_mask(batch).sum(1).tolist() == [3, 5]
    with pytest.raises(ValueError, match="items: expected a non-empty"):
        collate([])


def test_classification_metrics_are_sums() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    batch = {"y": torch.tensor([0, 0, 0])}
    m = classification_metrics(logits, batch)
    assert float(m["accuracy"][0]) == 2 and float(m["accuracy"][1]) == 3
    ref = torch.nn.functional.cross_entropy(logits.double(), batch["y"], reduction="sum")
    torch.testing.assert_close(m["loss"][0], ref)
