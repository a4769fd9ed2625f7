"""The compression experiment: helpers against definitions, and a tiny end-to-end run."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from freqnn.data import speech as S
from freqnn.tasks import compression as C
from freqnn.transform import CosineTransform


def _toy_corpus(count: int = 6, length: int = 700) -> S.SpeechCorpus:
    rng = np.random.default_rng(0)
    t = np.arange(length)
    utts = []
    for i in range(count):
        audio = sum(rng.uniform(0.05, 0.2) * np.sin(rng.uniform(0, 0.5) * t + rng.uniform(0, 6))
                    for _ in range(4)).astype(np.float32)
        utts.append(S.Utterance(f"v_{i}", "kal16" if i % 2 else "slt", i // 2, "x", audio,
                                ("pau",), np.array([0]), np.array([length])))
    return S.SpeechCorpus(utts)


def test_blocks_and_snr() -> None:
    corpus = _toy_corpus()
    x = C.blocks(corpus, 64)
    assert x.shape == (6 * (700 // 64), 64) and x.dtype == torch.float64
    np.testing.assert_array_equal(x[:10].numpy().ravel(), corpus.utterances[0].audio[:640])
    assert C.snr_db(x, torch.zeros_like(x)) == pytest.approx(0.0)
    assert C.snr_db(x, 0.9 * x) == pytest.approx(20.0)
    assert C.snr_db(x, x) == math.inf
    with pytest.raises(ValueError, match="corpus: expected utterances of at least n = 1024"):
        C.blocks(corpus, 1024)


def test_pca_is_the_best_projection_on_its_training_blocks() -> None:
    x = C.blocks(_toy_corpus(), 32)
    for m in (2, 4, 8):
        pca, dct = C._pca_code(x, m)(x), C._dct_code(x, m)
        assert C.snr_db(x, pca) >= C.snr_db(x, dct) - 1e-9
        # an orthogonal projection: applying it twice changes nothing
        torch.testing.assert_close(C._pca_code(x, m)(pca), pca)


def test_dct_code_keeps_the_first_coefficients() -> None:
    x = torch.rand(3, 16, dtype=torch.float64)
    lowpass = CosineTransform(16, 16, learn_frequencies=False, dtype=torch.float64)
    y = C._dct_code(x, 16)
    torch.testing.assert_close(y, x)
    # m = n/2: equals projecting on the first half of the DCT-II basis
    basis = lowpass(torch.eye(16, dtype=torch.float64))[:8]  # idct(e_k): DCT-II basis vectors
    torch.testing.assert_close(C._dct_code(x, 8), (x @ basis.T) @ basis)


@pytest.mark.numerics
def test_training_keeps_the_best_validation_checkpoint() -> None:
    # blocks of one sinusoid (0.3 rad per sample) at random phases: the four full-band
    # frequencies (0.39 to 2.75) move towards it, and the validation MSE falls to 0.45 to 0.48 of
    # its start (training seeds 0 to 7 here; on the toy speech corpus 0.95 to 1.0, a knife edge)
    generator = torch.Generator().manual_seed(0)
    phases = 2 * math.pi * torch.rand(60, 1, generator=generator)
    x = torch.sin(0.3 * torch.arange(32.0) + phases)
    ct = CosineTransform(32, 4, init="full-band")
    info = C._train(ct, x[:40], x[40:], steps=20, batch=8, lr=0.05, freq_lr=0.01, eval_every=5,
                    seed=0)  # fmt: skip
    assert [s for s, _ in info["curve"]] == [0, 5, 10, 15, 20]
    assert info["valid_mse"] == min(v for _, v in info["curve"])
    with torch.no_grad():
        mse = float(((ct.inverse(ct(x[40:])) - x[40:]) ** 2).mean())
    assert mse == pytest.approx(info["valid_mse"], rel=1e-6)
    assert info["valid_mse"] < 0.75 * info["curve"][0][1]


def test_voice_holdout_split() -> None:
    corpus = _toy_corpus(count=12)
    train, valid, test = C._split(corpus, "voice", 0)
    assert test.voices == ("slt",) and "slt" not in train.voices + valid.voices
    with pytest.raises(ValueError, match="voices: expected 'slt'"):
        C._split(corpus.subset(lambda u: u.voice != "slt"), "voice", 0)


@pytest.mark.skipif(not S.flite_available(), reason="flite is not installed "
                    "(Debian: apt-get install -y flite)")
def test_tiny_end_to_end_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    status = C.main(["--n", "64", "--ms", "4", "16", "--n-texts", "7", "--voices", "kal16",
                     "slt", "--steps", "4", "--batch", "16", "--eval-every", "2",
                     "--cache", str(tmp_path / "cache"), "--out", str(out), "--threads", "1"])
    assert status == 0
    results = json.loads((out / "results.json").read_text())
    for m in ("4", "16"):
        row = results["snr_db"][m]
        assert set(row) == {"dct", "pca", "cosine-full-band", "cosine-lowpass"}
        assert all(math.isfinite(v) for v in row.values())
    assert results["snr_db"]["16"]["dct"] > results["snr_db"]["4"]["dct"]
    freqs = results["frequencies"]["4/lowpass"]
    np.testing.assert_allclose(freqs["initial"], (2 * np.arange(4) + 1) * np.pi / 128)
    assert all(0 <= w <= math.pi for w in freqs["analysis"] + freqs["synthesis"])
    assert (out / "snr.png").stat().st_size > 0 and (out / "frequencies.png").stat().st_size > 0
    assert "| 4 |" in (out / "table.md").read_text()
    with pytest.raises(ValueError, match=re.escape("ms: expected coefficient counts in 1..n = 64")):
        C.main(["--n", "64", "--ms", "128", "--out", str(out)])
