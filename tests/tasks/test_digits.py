"""The sequential_digits task: upsampled 8x8 digits read one pixel per step."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from freqnn import cli
from freqnn.config import make_config
from freqnn.tasks import TASKS, get_task
from freqnn.tasks.digits import (
    TASK,
    build,
    load_images,
    pixel_permutation,
    sequences,
    stratified_split,
)

pytest.importorskip("sklearn", reason="experiments extra not installed (scikit-learn)")


def _cfg(**kw: object) -> dict:
    return make_config(TASK, {"size": 8, **kw})


def _labels(dataset: torch.utils.data.Dataset) -> np.ndarray:
    return np.array([int(dataset[i]["y"]) for i in range(len(dataset))])


def test_registry_and_items() -> None:
    assert TASKS["sequential_digits"] == "freqnn.tasks.digits"
    assert get_task("sequential_digits") is TASK
    data = build(_cfg(size=12))
    assert (len(data.train), len(data.val), len(data.test)) == (1257, 180, 360)
    assert (data.input_size, data.output_size, data.has_times) == (1, 10, False)
    assert data.info == {"class_names": [str(k) for k in range(10)]}
    item = data.train[0]
    assert set(item) == {"x", "y"}
    assert item["x"].shape == (144, 1) and item["x"].dtype == torch.float32
    assert item["y"].shape == () and item["y"].dtype == torch.int64
    for split in (data.train, data.val, data.test):
        x = split.columns["x"]
        assert x.shape[1:] == (144, 1) and float(x.min()) >= 0 and float(x.max()) <= 1


def test_default_length_is_784() -> None:
    cfg = make_config(TASK, {})
    assert (cfg["size"], cfg["hidden_size"], cfg["batch_size"], cfg["epochs"]) == (28, 32, 64, 20)
    images, _ = load_images()
    x = sequences(images[:3], 28)
    assert x.shape == (3, 784, 1) and float(x.min()) >= 0 and float(x.max()) <= 1


def test_size_8_is_the_scaled_original_in_row_major_order() -> None:
    images, labels = load_images()
    assert images.shape == (1797, 8, 8) and float(images.max()) == 1.0
    data = build(_cfg())
    train, _, _ = stratified_split(labels, 180, 360, 0)
    expected = torch.from_numpy(images[train].reshape(len(train), 64, 1)).float()
    assert torch.equal(data.train.columns["x"], expected)
    # and the interpolation itself is the identity at the original size
    same = torch.nn.functional.interpolate(torch.from_numpy(images[:5])[:, None], size=(8, 8),
                                           mode="bilinear", align_corners=False)
    assert torch.equal(same[:, 0], torch.from_numpy(images[:5]))


def test_split_is_disjoint_complete_stratified_and_seeded() -> None:
    _, labels = load_images()
    train, val, test = stratified_split(labels, 180, 360, 0)
    assert (len(train), len(val), len(test)) == (1257, 180, 360)
    assert len(np.unique(np.concatenate([train, val, test]))) == 1797
    counts = np.bincount(labels, minlength=10)
    for idx, n in ((val, 180), (test, 360)):
        share = np.bincount(labels[idx], minlength=10)
        assert np.all(np.abs(share - n * counts / 1797) < 1)
    again = stratified_split(labels, 180, 360, 0)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again, strict=True))
    other = stratified_split(labels, 180, 360, 1)
    assert not np.array_equal(other[2], test)
    # the split follows data_seed, not the training seed
    a, b = build(_cfg(seed=5)), build(_cfg(seed=6))
    assert np.array_equal(_labels(a.test), _labels(b.test))
    assert torch.equal(a.val.columns["x"], b.val.columns["x"])


def test_permutation_is_fixed_by_the_seed() -> None:
    perm = pixel_permutation(8, 0)
    assert np.array_equal(np.sort(perm), np.arange(64))
    assert np.array_equal(perm, pixel_permutation(8, 0))
    assert not np.array_equal(perm, pixel_permutation(8, 1))
    plain, permuted = build(_cfg()), build(_cfg(permute=True))
    x, xp = plain.train.columns["x"], permuted.train.columns["x"]
    assert torch.equal(xp, x[:, torch.from_numpy(perm)])
    assert not torch.equal(xp, x)
    assert torch.equal(build(_cfg(permute=True)).train.columns["x"], xp)


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="size: expected an int >= 8, got int 4"):
        _cfg(size=4)
    with pytest.raises(ValueError, match="n_val: expected an int >= 1"):
        _cfg(n_val=0)
    with pytest.raises(ValueError, match="n_val \\+ n_test: expected at least one training "
                                         "image of each class"):
        build(_cfg(n_val=900, n_test=897))


def test_missing_scikit_learn_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ModuleNotFoundError, match=r"needs scikit-learn .*freqnn\[experiments\]"):
        load_images()


@pytest.mark.parametrize("model", ["psfm", "lstm"])
def test_smoke_run_through_the_runner(model: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "r"
    assert cli.main(["train", "sequential_digits", "--model", model, "--size", "8",
                     "--epochs", "1", "--limit-train-batches", "2", "--hidden-size", "8",
                     "--state-size", "4", "--num-freqs", "2", "--run-dir", str(run),
                     "--no-progress"]) == 0
    assert f"sequential_digits / {model}" in capsys.readouterr().out
    assert "size: 8" in (run / "config.yaml").read_text()
    results = json.loads((run / "results.json").read_text())
    assert 0 <= results["test"]["accuracy"] <= 1
