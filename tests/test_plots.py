"""Figures: the stepped amplitudes equal the layer's own memory; PNGs are written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from freqnn import SFM, AdaptiveSFM
from freqnn.plots import amplitude_figure, learning_curves, sfm_amplitudes


@pytest.mark.parametrize("layer_type", [SFM, AdaptiveSFM])
def test_sfm_amplitudes_match_the_layer_state(layer_type: type) -> None:
    torch.manual_seed(0)
    layer = layer_type(2, 5, 3, 4, dtype=torch.float64)
    x = torch.randn(11, 2, dtype=torch.float64)
    times = torch.cumsum(torch.rand(11, dtype=torch.float64) + 0.2, 0)
    amps = sfm_amplitudes(layer.cells[0], x, times)
    assert amps.shape == (11, 3, 4)
    for t in (0, 5, 10):
        _, state = layer(x[: t + 1], times=times[: t + 1])
        torch.testing.assert_close(amps[t], torch.hypot(state.re[0], state.im[0]))


def test_figures_are_written(tmp_path: Path) -> None:
    hist = [[{"epoch": e, "train_loss": 1.0 / (e + 1), "val_loss": 1.0 / (e + 2),
              "val_accuracy": 0.5 + e / 10} for e in range(n)] for n in (3, 4)]
    png = learning_curves({"SFM": hist, "LSTM": hist[:1]}, tmp_path / "lc.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    t = np.arange(20.0)
    amps = np.random.default_rng(0).random((20, 3, 4))
    png = amplitude_figure([("square", t, np.sign(np.sin(t)), amps), ("sawtooth", t, t % 3,
                            amps)], np.linspace(0, 3, 4), tmp_path / "amp.png", title="x")
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert amplitude_figure([("a", t, t, amps)], None, tmp_path / "a2.png").is_file()


def test_a_one_epoch_curve_is_drawn(tmp_path: Path) -> None:
    # a line through one point draws nothing; the markers show it (the legend is in the
    # first panel, so the second panel's blue pixels are the curve's)
    from matplotlib.image import imread

    hist = [[{"epoch": 0, "train_loss": 0.7, "val_loss": 0.6}]]
    png = learning_curves({"SFM": hist}, tmp_path / "one.png", metrics=("train_loss", "val_loss"))
    image = imread(png)[..., :3]
    right = image[:, image.shape[1] // 2:]
    blue = np.abs(right - np.array([0x1F, 0x77, 0xB4]) / 255).max(-1) < 0.1  # matplotlib's C0
    assert blue.sum() >= 5
