"""The flite phone-labelled corpus: determinism, speaker/text-disjoint split, label alignment."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from freqnn import features as F
from freqnn.data import phoneme as P
from freqnn.data.phones import PHONES39

needs_flite = pytest.mark.skipif(shutil.which("flite") is None, reason="flite not installed")
SMALL = {"valid": 0.2, "test": 0.2, "min_words": 2, "max_words": 3}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    if shutil.which("flite") is None:
        pytest.skip("flite not installed")
    cache = tmp_path_factory.mktemp("cache")
    return P.build_phoneme_corpus(5, seed=3, variants=2, cache=cache, **SMALL), cache


def test_split_texts():
    parts = P.split_texts(50, 0, 0.1, 0.2)
    assert [len(parts[s]) for s in P.SPLITS] == [35, 5, 10]
    assert sorted(i for part in parts.values() for i in part) == list(range(50))
    assert parts == P.split_texts(50, 0, 0.1, 0.2)
    assert parts != P.split_texts(50, 1, 0.1, 0.2)


def test_config_errors():
    with pytest.raises(ValueError, match="test_voice: expected a voice not among"):
        P.corpus_config(10, test_voice="slt")
    with pytest.raises(ValueError, match="voice: expected one of the 16 kHz"):
        P.corpus_config(10, train_voices=("kal",))
    with pytest.raises(ValueError, match="valid, test: expected fractions"):
        P.corpus_config(5, valid=0.05)
    with pytest.raises(ValueError, match="stretch: expected a"):
        P.corpus_config(10, stretch=(1.2, 0.9))
    with pytest.raises(ValueError, match="n_texts"):
        P.corpus_config(2)
    with pytest.raises(ValueError, match="variants"):
        P.corpus_config(10, variants=0)


@needs_flite
def test_speaker_and_text_disjoint(corpus):
    corpus, _ = corpus
    assert len(corpus) == 2 * (3 * 3 + 3 * 1 + 1)
    summary = corpus.summary()
    assert summary["test"]["voices"] == ["rms"]
    assert summary["train"]["voices"] == summary["valid"]["voices"] == ["awb", "kal16", "slt"]
    texts = {s: {u.text_id for u in corpus.split(s)} for s in P.SPLITS}
    assert not (texts["train"] & texts["valid"] or texts["train"] & texts["test"]
                or texts["valid"] & texts["test"])
    assert len({u.id for u in corpus.utterances}) == len(corpus)
    with pytest.raises(ValueError, match="split: expected one of train, valid, test"):
        corpus.split("dev")


@needs_flite
def test_labels_align_with_audio(corpus):
    corpus, _ = corpus
    sil = PHONES39.index("sil")
    for u in corpus.utterances:
        assert u.starts[0] == 0 and np.all(u.starts[1:] == u.ends[:-1])
        assert u.ends[-1] <= len(u.audio)
        labels = u.frame_labels()
        feats = F.log_mel_spectrogram(torch.from_numpy(u.audio))
        assert labels.shape[0] == feats.shape[0] == u.num_frames
        assert labels.min() >= -1 and labels.max() < 39
        # flite starts and ends with a pause: silence frames are far quieter than speech frames
        assert labels[0] == sil
        energy = torch.logsumexp(feats, dim=-1)
        speech = (labels != sil) & (labels >= 0)
        assert energy[labels == sil].mean() < energy[speech].mean() - 3.0
        # a frame's label is the phone whose sample span holds the frame centre
        centre = 160 * 7 + 200
        phone = u.phones[int(np.searchsorted(u.ends, centre, side="right"))]
        assert PHONES39[labels[7]] == P.FLITE_TO_39[phone]


@needs_flite
def test_prosody_and_determinism(corpus, tmp_path):
    corpus, cache = corpus
    for u in corpus.utterances:
        assert 0.8 <= u.stretch <= 1.25 and 0.85 <= u.f0_shift <= 1.2
    # two readings of one text by one voice: durations follow the stretch
    a, b = (u for u in corpus.utterances if u.voice == "kal16" and u.text_id ==
            corpus.split("train")[0].text_id)
    assert a.variant != b.variant and a.stretch != b.stretch
    speech = [float(u.ends[-2] - u.starts[1]) for u in (a, b)]  # between the edge pauses
    assert speech[0] / speech[1] == pytest.approx(a.stretch / b.stretch, rel=0.1)
    # the cache returns the same corpus; a rebuild elsewhere is bit-identical
    again = P.build_phoneme_corpus(5, seed=3, variants=2, cache=cache, **SMALL)
    fresh = P.build_phoneme_corpus(5, seed=3, variants=2, cache=tmp_path, jobs=2, **SMALL)
    assert again.meta == fresh.meta == corpus.meta
    for x, y, z in zip(corpus.utterances, again.utterances, fresh.utterances, strict=True):
        assert x.id == y.id == z.id and x.phones == y.phones == z.phones
        np.testing.assert_array_equal(x.audio, z.audio)
        np.testing.assert_array_equal(y.audio, z.audio)
        np.testing.assert_array_equal(x.ends, z.ends)
    other = P.build_phoneme_corpus(5, seed=4, cache=tmp_path, **SMALL)
    assert other.meta["key"] != corpus.meta["key"]


@needs_flite
def test_corrupt_cache_and_missing_flite(corpus, tmp_path):
    _, cache = corpus
    path = next((cache / "phoneme").glob("*.npz"))
    copy = tmp_path / "phoneme"
    copy.mkdir()
    (copy / path.name).write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="unreadable file"):
        P.build_phoneme_corpus(5, seed=3, variants=2, cache=tmp_path, **SMALL)
    with pytest.raises(FileNotFoundError, match="flite"):
        P.build_phoneme_corpus(5, seed=3, cache=tmp_path, executable="no-such-flite", **SMALL)
    assert not list(copy.glob(".*.tmp"))
