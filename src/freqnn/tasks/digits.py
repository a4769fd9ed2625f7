"""Sequential digits: pixel-by-pixel classification of handwritten digits, a long-sequence task.

Data: the 1797 8x8 handwritten digits of scikit-learn (:func:`sklearn.datasets.load_digits`,
shipped inside the scikit-learn wheel: nothing is downloaded), 10 classes ``"0"`` .. ``"9"``.
Each image is scaled from 0..16 to [0, 1], upsampled to ``size`` x ``size`` pixels by bilinear
interpolation (:func:`torch.nn.functional.interpolate`, ``mode="bilinear"``,
``align_corners=False``, computed in float64, clamped to [0, 1], stored as float32; at
``size=8`` the image is the scaled original, exactly) and read one pixel per step in row-major
order, as in sequential MNIST: T = ``size**2`` steps (784 by default) of one feature, and the
class is read at the last step. ``permute=true`` reorders the pixels of every image by one fixed
random permutation drawn from ``data_seed`` (as in permuted sequential MNIST). Items carry no
timestamps: every model uses the step index.

Split: stratified and seeded by ``data_seed`` (not by the training ``seed``): in each class the
images are shuffled and shares of ``n_val`` and ``n_test`` proportional to the class's size
(largest remainders) go to validation and test, the rest (1257 images by default) to training.
The validation loss picks the checkpoint; the test set is used for nothing but the reported
test metrics. The metric is the accuracy over the test images.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from ..checks import EXPERIMENTS_HINT
from ..config import RunConfig
from . import Task, TaskData, TensorDataset, classification_loss, classification_metrics

__all__ = ["TASK", "Options", "build", "load_images", "pixel_permutation", "sequences",
           "stratified_split"]

CLASS_NAMES = [str(k) for k in range(10)]

DEFAULTS: dict[str, Any] = {
    # data
    "size": 28,
    "permute": False,
    "n_val": 180,
    "n_test": 360,
    "data_seed": 0,
    # model and training: small enough for a 2-core CPU at T = 784
    "hidden_size": 32,
    "state_size": 8,
    "num_freqs": 8,
    "epochs": 20,
    "batch_size": 64,
    "lr": 3e-3,
    "patience": 5,
    # one thread: small recurrences gain nothing from intra-op threads (see signal_type)
    "num_threads": 1,
}


def load_images() -> tuple[np.ndarray, np.ndarray]:
    """The scikit-learn digits: (1797, 8, 8) float64 images in [0, 1] and (1797,) int64 labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ModuleNotFoundError(
            "the sequential_digits task needs scikit-learn (part of the experiments extra): "
            f'{EXPERIMENTS_HINT}, or pip install "scikit-learn>=1.3"',
            name="sklearn") from exc
    digits = load_digits()
    return digits.images.astype(np.float64) / 16.0, digits.target.astype(np.int64)


def stratified_split(labels: np.ndarray, n_val: int, n_test: int,
                     seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted indices of the train / validation / test images: a stratified, seeded split.

    Each class gets shares of ``n_val`` and ``n_test`` proportional to its size (floors, then
    the largest remainders, ties to the lower class); its images are shuffled by
    ``numpy.random.default_rng(seed)`` and the first ones go to test, the next to validation.
    """
    classes, counts = np.unique(labels, return_counts=True)

    def shares(n: int) -> np.ndarray:
        quota = n * counts / counts.sum()
        out = np.floor(quota).astype(np.int64)
        order = np.argsort(-(quota - out), kind="stable")
        out[order[: n - int(out.sum())]] += 1
        return out

    test_shares, val_shares = shares(n_test), shares(n_val)
    if np.any(test_shares + val_shares >= counts):
        raise ValueError(f"n_val + n_test: expected at least one training image of each class "
                         f"left out of {len(labels)}, got n_val={n_val}, n_test={n_test}")
    rng = np.random.default_rng(seed)
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    for k, n_te, n_va in zip(classes, test_shares, val_shares, strict=True):
        idx = rng.permutation(np.flatnonzero(labels == k))
        parts[2].append(idx[:n_te])
        parts[1].append(idx[n_te: n_te + n_va])
        parts[0].append(idx[n_te + n_va:])
    train, val, test = (np.sort(np.concatenate(p)) for p in parts)
    return train, val, test


def sequences(images: np.ndarray, size: int, permutation: np.ndarray | None = None) -> torch.Tensor:
    """(n, size**2, 1) float32 pixel sequences of (n, h, w) images in [0, 1].

    Bilinear upsampling to ``size`` x ``size`` (``align_corners=False``, float64, clamped to
    [0, 1]), then the pixels in row-major order, reordered by ``permutation`` if given.
    """
    x = torch.from_numpy(images)[:, None]
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = x.clamp(0.0, 1.0).reshape(len(images), size * size)
    if permutation is not None:
        x = x[:, torch.from_numpy(permutation)]
    return x.to(torch.float32).unsqueeze(-1)


def pixel_permutation(size: int, seed: int) -> np.ndarray:
    """The fixed pixel order of ``permute=true``: a permutation of ``size**2`` from ``seed``
    (a random stream of its own, independent of the split's)."""
    return np.random.default_rng([seed, 1]).permutation(size * size)


def build(cfg: dict[str, Any]) -> TaskData:
    """The train / validation / test pixel sequences of ``cfg`` (see the module docstring)."""
    size, seed = int(cfg["size"]), int(cfg["data_seed"])
    images, labels = load_images()
    splits = stratified_split(labels, int(cfg["n_val"]), int(cfg["n_test"]), seed)
    permutation = pixel_permutation(size, seed) if cfg["permute"] else None

    def dataset(idx: np.ndarray) -> TensorDataset:
        return TensorDataset(x=sequences(images[idx], size, permutation),
                             y=torch.from_numpy(labels[idx]))

    train, val, test = (dataset(idx) for idx in splits)
    return TaskData(train=train, val=val, test=test, input_size=1,
                    output_size=len(CLASS_NAMES), has_times=False,
                    info={"class_names": list(CLASS_NAMES)})


class Options(RunConfig):
    """The sequential_digits task's keys."""

    size: int = Field(ge=8, description="side of the upsampled image (bilinear): "
                      "T = size*size steps (28: 784; 8: the original 64 pixels)")
    permute: bool = Field(description="read the pixels in one fixed random order drawn from "
                          "data_seed (permuted sequential digits)")
    n_val: int = Field(ge=1, description="validation images (stratified; train: the rest of "
                       "the 1797)")
    n_test: int = Field(ge=1, description="test images (stratified)")
    data_seed: int = Field(ge=0, description="seed of the split and of the permutation")


TASK = Task(
    name="sequential_digits",
    description="classify the 8x8 scikit-learn digits read one pixel per step after "
                "upsampling (sequential MNIST-style, T = size^2)",
    head="sequence",
    defaults=DEFAULTS,
    build=build,
    loss=classification_loss,
    metrics=classification_metrics,
    options=Options,
)  # monitor: the validation loss (the default)
