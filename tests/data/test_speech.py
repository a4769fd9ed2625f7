"""Offline flite speech corpus: parsing, clipping, text draw, cache, and label/audio alignment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from freqnn.data import speech as S

needs_flite = pytest.mark.skipif(
    not S.flite_available(),
    reason="flite is not installed (Debian: apt-get install -y flite; make system-deps does it)",
)
VOWELS = {"aa", "ae", "ah", "ao", "aw", "ax", "ay", "eh", "er", "ey", "ih", "iy", "ow", "oy",
          "uh", "uw"}
UNVOICED = {"p", "t", "k", "f", "s", "sh", "th", "hh", "ch"}


def test_parse_psdur() -> None:
    assert S.parse_psdur("pau:0.220 dh:0.254\nax:0.304 ") == [
        ("pau", 0.22), ("dh", 0.254), ("ax", 0.304)]
    assert S.parse_psdur("") == []
    for bad in ("pau0.2", "pau:abc", ":0.1", "pau:-1"):
        with pytest.raises(ValueError, match="flite output: expected 'phone:end_seconds'"):
            S.parse_psdur(bad)


def test_align_phones_clips_to_audio_length() -> None:
    pairs = [("pau", 0.1), ("a", 0.2), ("b", 0.2), ("c", 0.31), ("pau", 0.5)]
    labels, starts, ends = S.align_phones(pairs, num_samples=3000, sample_rate=10000)
    # "b" has zero length; the last pause is clipped to 3000 samples; nothing after the end
    assert labels == ("pau", "a", "c")
    np.testing.assert_array_equal(starts, [0, 1000, 2000])
    np.testing.assert_array_equal(ends, [1000, 2000, 3000])
    labels, starts, ends = S.align_phones([("pau", 0.1), ("x", 0.2)], 1000, 10000)
    assert labels == ("pau",) and ends[-1] == 1000


def test_make_texts_is_deterministic_by_seed() -> None:
    words, source, sha = S.word_list("builtin")
    assert source == "builtin" and len(sha) == 64 and len(words) > 100
    a = S.make_texts(5, 3, words, 2, 4)
    assert a == S.make_texts(5, 3, words, 2, 4)
    assert a != S.make_texts(5, 4, words, 2, 4)
    assert all(2 <= len(t.split()) <= 4 and t.endswith(".") for t in a)
    with pytest.raises(ValueError, match="min_words, max_words: expected"):
        S.make_texts(2, 0, words, 5, 3)
    with pytest.raises(ValueError, match="count: expected an int >= 1"):
        S.make_texts(0, 0, words)


def test_word_list_from_file(tmp_path: Path) -> None:
    path = tmp_path / "words"
    path.write_text("Alpha\nbravo\ncharlie's\ndelta\necho\nfoxtrot\ngolf\nhotel\nindia\n"
                    "juliet\nkilo\nlima\nmike\nx\n")
    words, source, _ = S.word_list(str(path))
    assert source == str(path)
    assert words == sorted(["bravo", "delta", "echo", "foxtrot", "golf", "hotel", "india",
                            "juliet", "kilo", "lima", "mike"])
    with pytest.raises(FileNotFoundError, match="words: expected a word list file"):
        S.word_list(str(tmp_path / "missing"))
    (tmp_path / "few").write_text("one two\n")
    with pytest.raises(ValueError, match="at least 10 usable words"):
        S.word_list(str(tmp_path / "few"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[S.SpeechCorpus, Path]:
    if not S.flite_available():
        pytest.skip("flite is not installed (Debian: apt-get install -y flite)")
    cache = tmp_path_factory.mktemp("speech_cache")
    return S.build_corpus(1, seed=7, voices=("kal16", "slt", "awb"), cache=cache), cache


@needs_flite
def test_tiny_corpus_labels_are_aligned_with_audio(tiny: tuple[S.SpeechCorpus, Path]) -> None:
    corpus, _ = tiny
    assert len(corpus) == 3 and corpus.voices == ("kal16", "slt", "awb")
    assert len({u.text for u in corpus.utterances}) == 1  # a parallel corpus
    vowel_energy, unvoiced_energy = [], []
    for u in corpus.utterances:
        assert u.sample_rate == S.SAMPLE_RATE and u.audio.dtype == np.float32
        assert u.duration > 0.5 and np.abs(u.audio).max() < 1.0
        # contiguous, starting at 0, clipped to the audio, covering it (up to 50 ms)
        assert u.starts[0] == 0
        np.testing.assert_array_equal(u.starts[1:], u.ends[:-1])
        assert bool((u.ends > u.starts).all())
        assert len(u.audio) - 800 <= u.ends[-1] <= len(u.audio)
        assert u.phones[0] == "pau" and u.phones[-1] == "pau"
        energy = [float(np.mean(u.audio[s:e].astype(np.float64) ** 2))
                  for s, e in zip(u.starts, u.ends, strict=True)]
        speech = np.mean([e for p, e in zip(u.phones, energy, strict=True) if p != "pau"])
        # the labelled leading / trailing silences are quiet, the phones between them are not
        assert energy[0] < 0.01 * speech and energy[-1] < 0.05 * speech
        vowel_energy += [e for p, e in zip(u.phones, energy, strict=True) if p in VOWELS]
        unvoiced_energy += [e for p, e in zip(u.phones, energy, strict=True) if p in UNVOICED]
        assert u.labels_at(np.array([0, len(u.audio) - 1])) == ["pau", "pau"]
    # vowels carry more energy than unvoiced obstruents: labels sit on the right sounds
    assert np.median(vowel_energy) > 3 * np.median(unvoiced_energy)
    assert "pau" in corpus.phone_set and len(corpus.phone_set) > 5


@needs_flite
def test_cache_is_reused_and_build_is_deterministic(
    tiny: tuple[S.SpeechCorpus, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus, cache = tiny
    files = list((cache / "speech").iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"  # no temporary file left behind

    def fail(*args, **kwargs):
        raise AssertionError("synthesize called although the corpus is cached")

    with monkeypatch.context() as patch:
        patch.setattr(S, "synthesize", fail)
        again = S.build_corpus(1, seed=7, voices=("kal16", "slt", "awb"), cache=cache)
    rebuilt = S.build_corpus(1, seed=7, voices=("kal16", "slt", "awb"), cache=cache,
                             force=True)
    for other in (again, rebuilt):
        assert other.meta == corpus.meta
        for a, b in zip(corpus.utterances, other.utterances, strict=True):
            assert (a.id, a.text, a.phones) == (b.id, b.text, b.phones)
            np.testing.assert_array_equal(a.audio, b.audio)
            np.testing.assert_array_equal(a.ends, b.ends)
    different = S.build_corpus(1, seed=8, voices=("kal16",), cache=cache)
    assert different.utterances[0].text != corpus.utterances[0].text


@needs_flite
def test_errors(tiny: tuple[S.SpeechCorpus, Path], tmp_path: Path) -> None:
    _, cache = tiny
    with pytest.raises(ValueError, match="voices: expected voices available in this flite"):
        S.build_corpus(1, voices=("kal16", "nosuchvoice"), cache=tmp_path)
    with pytest.raises(ValueError, match="n_texts: expected an int >= 1"):
        S.build_corpus(0, cache=tmp_path)
    with pytest.raises(ValueError, match="text: expected a non-empty string"):
        S.synthesize("  ", "kal16")
    path = next((cache / "speech").iterdir())
    corrupt = tmp_path / "speech" / path.name
    corrupt.parent.mkdir()
    corrupt.write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="expected a speech corpus cache written by freqnn"):
        S.build_corpus(1, seed=7, voices=("kal16", "slt", "awb"), cache=tmp_path)


def test_missing_flite_is_a_clear_error() -> None:
    with pytest.raises(FileNotFoundError, match="apt-get install -y flite"):
        S.available_voices("flite-that-does-not-exist")


def test_split_by_text() -> None:
    utts = [S.Utterance(f"{v}_{i}", v, i, f"text {i}", np.zeros(10, np.float32), ("pau",),
                        np.array([0]), np.array([10])) for v in ("a", "b") for i in range(10)]
    corpus = S.SpeechCorpus(utts)
    train, valid, test = corpus.split_by_text(0.2, 0.2, seed=1)
    ids = [{u.text_id for u in part.utterances} for part in (train, valid, test)]
    assert [len(i) for i in ids] == [6, 2, 2]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert test.voices == ("a", "b")
    with pytest.raises(ValueError, match="valid, test: expected fractions"):
        corpus.split_by_text(0.6, 0.5)


def _cache_arrays(damage: str, phoneme: bool) -> dict[str, np.ndarray]:
    """The arrays of a two-utterance corpus cache (as ``_save`` writes them), with ``damage``."""
    import json
    import types

    utts = [types.SimpleNamespace(
        id=f"kal16_000{i}", voice="kal16", text_id=i, text="a word",
        audio=np.zeros(100, dtype=np.float32), phones=("pau", "ax", "pau"),
        starts=np.array([0, 30, 60]), ends=np.array([30, 60, 100])) for i in range(2)]
    arrays = S.pack_utterances(utts)
    meta: object = {"sample_rate": 16000, "key": "k"}
    if damage == "negative audio offset":
        arrays["audio_offsets"] = np.array([0, -50, 200])
    elif damage == "negative phone offset":
        arrays["phone_offsets"] = np.array([-3, 3, 6])
    elif damage == "negative start":
        arrays["starts"][0] = -5
    elif damage == "sample_rate -1":
        meta = {"sample_rate": -1, "key": "k"}
    elif damage == "meta a list":
        meta = [16000]
    arrays["meta"] = np.array(json.dumps(meta))
    if phoneme:
        arrays["splits"] = np.array(["train", "test"])
        arrays["variants"] = np.zeros(2, dtype=np.int64)
        arrays["prosody"] = np.ones((2, 2))
    return arrays


@pytest.mark.parametrize("damage", ["negative audio offset", "negative phone offset",
                                    "negative start", "sample_rate -1", "meta a list"])
@pytest.mark.parametrize("kind", ["speech", "phoneme"])
def test_damaged_corpus_cache_is_refused(tmp_path: Path, kind: str, damage: str) -> None:
    """Speech and phoneme corpus caches with negative offsets or sample_rate -1 loaded, and a
    meta that is a JSON list gave a TypeError: each is refused naming the file."""
    from freqnn.data import phoneme as P

    path = tmp_path / "cache.npz"
    np.savez(path, **_cache_arrays("none", kind == "phoneme"))
    (S if kind == "speech" else P)._load(path)  # the undamaged cache loads
    np.savez(path, **_cache_arrays(damage, kind == "phoneme"))
    with pytest.raises(ValueError, match=f"expected a {kind} corpus cache written by freqnn, "
                       "got an unreadable file") as info:
        (S if kind == "speech" else P)._load(path)
    assert str(info.value).startswith(f"{path}: ")
