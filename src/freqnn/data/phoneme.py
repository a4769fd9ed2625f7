"""A phone-labelled speech corpus for frame-level phone classification, built offline with flite.

An open substitute for TIMIT (:mod:`freqnn.data.timit`): anyone can regenerate it bit for bit
from a seed with Debian's ``flite`` (see :mod:`freqnn.data.speech` for the voices, the word list
and flite's phone alignments).

Design
------
* **Texts.** ``n_texts`` texts of 4 to 10 words drawn from the system word list by
  :func:`freqnn.data.speech.make_texts` with ``seed``; their indices are shuffled by
  ``default_rng([seed, 1])`` and split into train / valid / test texts (by default 70 / 10 /
  20 %: the last ``round(test * n_texts)`` shuffled texts are test, the ``round(valid *
  n_texts)`` before them valid).
* **Speakers.** The training voices (default ``kal16``, ``awb``, ``slt``) read the train and
  valid texts; the test voice (default ``rms``) reads only the test texts. Test utterances
  therefore come from a voice never heard in training *and* from sentences never seen in
  training: the split is speaker- and text-disjoint. Validation is speaker-dependent
  (held-out texts of the training voices): it selects checkpoints without touching the test
  voice.
* **Prosody.** Every utterance is spoken with its own duration stretch and pitch shift, drawn
  log-uniformly from ``stretch`` (default 0.8 .. 1.25, flite's ``duration_stretch``: > 1 is
  slower) and ``f0_shift`` (default 0.85 .. 1.2, flite's ``f0_shift``: the voice's pitch
  contour multiplied by it) by ``default_rng([seed, 2, voice, text, variant])``;
  ``variants`` > 1 gives each (voice, text) several readings. flite's ``rms`` voice ignores
  ``f0_shift`` (its pitch is unchanged; only its durations vary).
* **Labels.** flite's phone labels (``flite -psdur`` end times, clipped to the audio:
  :func:`freqnn.data.speech.align_phones`) folded to the 39 classes of Lee & Hon
  (:data:`freqnn.data.phones.FLITE_TO_39`); frames of 25 ms every 10 ms take the class of the
  phone at their centre (:func:`freqnn.features.frame_labels`).

One command builds (or finds) the corpus in the cache::

    python -m freqnn.data.phoneme --n-texts 500 --seed 0

Cache: one ``.npz`` under ``cache_dir()/phoneme`` named by a hash of the configuration, the
flite version and the word list's SHA-256, written atomically (:func:`freqnn.io.atomic_write`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import features as F
from ..checks import fail
from ..io import atomic_write
from .paths import cache_dir
from .phones import FLITE_TO_39, PHONES39
from .speech import (
    CACHE_ERRORS,
    SAMPLE_RATE,
    VOICES,
    align_phones,
    available_voices,
    check_cache_meta,
    flite_version,
    make_texts,
    pack_utterances,
    parse_psdur,
    unpack_utterances,
    word_list,
)
from .timit import read_audio

__all__ = [
    "SPLITS",
    "TEST_VOICE",
    "TRAIN_VOICES",
    "PhonemeCorpus",
    "PhonemeUtterance",
    "build_phoneme_corpus",
    "corpus_config",
    "main",
    "split_texts",
]

TRAIN_VOICES = ("kal16", "awb", "slt")
TEST_VOICE = "rms"
SPLITS = ("train", "valid", "test")
FORMAT_VERSION = 1
_INDEX39 = {p: i for i, p in enumerate(PHONES39)}


@dataclass(frozen=True)
class PhonemeUtterance:
    """One utterance of the corpus.

    Attributes
    ----------
    id : str
        ``"<voice>_<text id, 4 digits>_<variant>"``.
    voice, split : str
    text_id, variant : int
    text : str
    stretch, f0_shift : float
        flite's ``duration_stretch`` and ``f0_shift`` for this reading.
    audio : ndarray [shape=(L,)]
        float32 in [-1, 1) (16-bit PCM / 32768), 16 kHz.
    phones : tuple of str
        flite labels.
    starts, ends : ndarray [shape=(P,)]
        int64 sample indices of each phone, contiguous from 0, ``ends[-1] <= L``.
    """

    id: str
    voice: str
    split: str
    text_id: int
    variant: int
    text: str
    stretch: float
    f0_shift: float
    audio: np.ndarray
    phones: tuple[str, ...]
    starts: np.ndarray
    ends: np.ndarray

    @property
    def num_frames(self) -> int:
        """Frames of 25 ms every 10 ms (:func:`freqnn.features.num_frames`)."""
        return F.num_frames(len(self.audio))

    def phone_labels(self) -> torch.Tensor:
        """(P,) int64 39-class index of each phone."""
        return torch.tensor([_INDEX39[FLITE_TO_39[p]] for p in self.phones], dtype=torch.long)

    def frame_labels(self) -> torch.Tensor:
        """(T,) int64 39-class label of each frame's centre (-1: after the last phone)."""
        return F.frame_labels(torch.from_numpy(self.starts) / SAMPLE_RATE,
                              torch.from_numpy(self.ends) / SAMPLE_RATE, self.phone_labels(),
                              self.num_frames)


@dataclass
class PhonemeCorpus:
    """The utterances (ordered by split, voice, text, variant) and the corpus's identity."""

    utterances: list[PhonemeUtterance]
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.utterances)

    def split(self, name: str) -> list[PhonemeUtterance]:
        """Utterances of split ``name`` (``"train"``, ``"valid"`` or ``"test"``)."""
        if name not in SPLITS:
            fail("split", f"one of {', '.join(SPLITS)}", repr(name))
        return [u for u in self.utterances if u.split == name]

    def summary(self) -> dict[str, Any]:
        """Utterances, frames and seconds per split, and the voices of each split."""
        out: dict[str, Any] = {}
        for name in SPLITS:
            utts = self.split(name)
            out[name] = {
                "utterances": len(utts),
                "frames": int(sum(u.num_frames for u in utts)),
                "seconds": round(float(sum(len(u.audio) for u in utts)) / SAMPLE_RATE, 1),
                "voices": sorted({u.voice for u in utts}),
            }
        return out


# ------------------------------------------------------------------------------ configuration
def _fraction(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        fail(name, "a fraction in (0, 1)", repr(value))
    return float(value)  # type: ignore[arg-type]


def _range(value: object, name: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        fail(name, "a (low, high) pair of positive numbers", repr(value))
    if not 0 < low <= high:
        fail(name, "a (low, high) pair with 0 < low <= high", repr(value))
    return low, high


def corpus_config(
    n_texts: int = 500,
    *,
    seed: int = 0,
    train_voices: Sequence[str] = TRAIN_VOICES,
    test_voice: str = TEST_VOICE,
    valid: float = 0.1,
    test: float = 0.2,
    stretch: Sequence[float] = (0.8, 1.25),
    f0_shift: Sequence[float] = (0.85, 1.2),
    variants: int = 1,
    min_words: int = 4,
    max_words: int = 10,
) -> dict[str, Any]:
    """The validated configuration of a corpus (the arguments of :func:`build_phoneme_corpus`)."""
    if isinstance(n_texts, bool) or not isinstance(n_texts, int) or n_texts < 3:
        fail("n_texts", "an int >= 3", repr(n_texts))
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        fail("seed", "an int >= 0", repr(seed))
    train_voices = tuple(train_voices)
    if not train_voices or len(set(train_voices)) != len(train_voices):
        fail("train_voices", "distinct voice names", repr(train_voices))
    for voice in (*train_voices, test_voice):
        if voice not in VOICES:
            fail("voice", f"one of the 16 kHz flite voices {', '.join(VOICES)}", repr(voice))
    if test_voice in train_voices:
        fail("test_voice", "a voice not among the training voices (speaker-disjoint split)",
             repr(test_voice))
    valid, test = _fraction(valid, "valid"), _fraction(test, "test")
    if round(valid * n_texts) < 1 or round(test * n_texts) < 1 or valid + test >= 1:
        fail("valid, test", f"fractions giving at least one valid and one test text of "
             f"{n_texts} and leaving training texts", f"valid={valid}, test={test}")
    if isinstance(variants, bool) or not isinstance(variants, int) or variants < 1:
        fail("variants", "an int >= 1", repr(variants))
    return {
        "format": FORMAT_VERSION, "n_texts": n_texts, "seed": seed,
        "train_voices": list(train_voices), "test_voice": test_voice, "valid": valid,
        "test": test, "stretch": list(_range(stretch, "stretch")),
        "f0_shift": list(_range(f0_shift, "f0_shift")), "variants": variants,
        "min_words": min_words, "max_words": max_words, "sample_rate": SAMPLE_RATE,
    }


def split_texts(n_texts: int, seed: int, valid: float, test: float) -> dict[str, list[int]]:
    """Text indices of each split (module docstring), each list sorted."""
    order = np.random.default_rng([seed, 1]).permutation(n_texts)
    n_test, n_valid = round(test * n_texts), round(valid * n_texts)
    return {
        "train": sorted(int(i) for i in order[: n_texts - n_test - n_valid]),
        "valid": sorted(int(i) for i in order[n_texts - n_test - n_valid: n_texts - n_test]),
        "test": sorted(int(i) for i in order[n_texts - n_test:]),
    }


def _prosody(config: dict[str, Any], voice: str, text_id: int, variant: int) -> tuple[float, ...]:
    rng = np.random.default_rng([config["seed"], 2, VOICES.index(voice), text_id, variant])
    out = []
    for low, high in (config["stretch"], config["f0_shift"]):
        # log-uniform, rounded to 3 decimals: flite reads the value from its command line
        out.append(round(float(np.exp(rng.uniform(np.log(low), np.log(high)))), 3))
    return tuple(out)


def _plan(config: dict[str, Any], texts: list[str]) -> list[dict[str, Any]]:
    parts = split_texts(config["n_texts"], config["seed"], config["valid"], config["test"])
    jobs = []
    for split in SPLITS:
        voices = [config["test_voice"]] if split == "test" else config["train_voices"]
        for voice in voices:
            for text_id in parts[split]:
                for variant in range(config["variants"]):
                    stretch, shift = _prosody(config, voice, text_id, variant)
                    jobs.append({"id": f"{voice}_{text_id:04d}_{variant}", "voice": voice,
                                 "split": split, "text_id": text_id, "variant": variant,
                                 "text": texts[text_id], "stretch": stretch, "f0_shift": shift})
    return jobs


# ---------------------------------------------------------------------------------- synthesis
def _synthesize(job: dict[str, Any], executable: str) -> PhonemeUtterance:
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "out.wav"
        command = [executable, "-voice", job["voice"],
                   "--setf", f"duration_stretch={job['stretch']}",
                   "--setf", f"f0_shift={job['f0_shift']}",
                   "-psdur", "-t", job["text"], "-o", str(target)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if result.returncode != 0 or not target.is_file():
            raise RuntimeError(f"flite failed on {job['id']} (exit {result.returncode}): "
                               f"{result.stderr.strip()[:300]}")
        audio, rate = read_audio(target)
    if rate != SAMPLE_RATE:
        raise ValueError(f"voice {job['voice']!r}: expected {SAMPLE_RATE} Hz audio, got {rate}")
    phones, starts, ends = align_phones(parse_psdur(result.stdout), audio.numel(), rate)
    unknown = sorted({p for p in phones if p not in FLITE_TO_39})
    if unknown or not phones:
        raise ValueError(f"{job['id']}: expected flite phone labels, got "
                         f"{unknown or 'no phones'}")
    return PhonemeUtterance(audio=audio.numpy(), phones=phones, starts=starts, ends=ends, **job)


def build_phoneme_corpus(
    n_texts: int = 500,
    *,
    seed: int = 0,
    train_voices: Sequence[str] = TRAIN_VOICES,
    test_voice: str = TEST_VOICE,
    valid: float = 0.1,
    test: float = 0.2,
    stretch: Sequence[float] = (0.8, 1.25),
    f0_shift: Sequence[float] = (0.85, 1.2),
    variants: int = 1,
    min_words: int = 4,
    max_words: int = 10,
    words: str = "auto",
    cache: str | Path | None = None,
    force: bool = False,
    jobs: int = 1,
    executable: str = "flite",
    progress: Callable[[int, int], None] | None = None,
) -> PhonemeCorpus:
    """Build the corpus (or load it from the cache); see the module docstring.

    Parameters
    ----------
    n_texts : int
        Texts drawn; utterances = ``variants * (len(train_voices) * (train + valid texts) +
        test texts)``.
    seed : int
        Seed of the texts, the split and the prosody draws.
    train_voices, test_voice : str
        Voices of the train / valid texts and of the test texts (disjoint).
    valid, test : float
        Fractions of the texts held out.
    stretch, f0_shift : (low, high)
        Log-uniform ranges of flite's ``duration_stretch`` and ``f0_shift`` per utterance.
    variants : int
        Readings per (voice, text), each with its own prosody.
    words : str
        Word list (:func:`freqnn.data.speech.word_list`).
    cache : path, optional
        Cache directory (default :func:`freqnn.data.paths.cache_dir`).
    force : bool
        Rebuild even if the cache holds the corpus.
    jobs : int
        flite processes run at once (the result does not depend on it).
    progress : callable, optional
        ``progress(done, total)`` after each synthesised utterance.
    """
    config = corpus_config(n_texts, seed=seed, train_voices=train_voices, test_voice=test_voice,
                           valid=valid, test=test, stretch=stretch, f0_shift=f0_shift,
                           variants=variants, min_words=min_words, max_words=max_words)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        fail("jobs", "an int >= 1", repr(jobs))
    have = available_voices(executable)
    missing = [v for v in (*config["train_voices"], test_voice) if v not in have]
    if missing:
        fail("voices", f"voices of this flite ({', '.join(have)})",
             f"missing {', '.join(missing)}")
    vocabulary, source, sha = word_list(words)
    config.update(words_source=source, words_sha256=sha, flite=flite_version(executable))
    key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir(cache) / "phoneme" / f"phoneme_{key}.npz"
    if path.is_file() and not force:
        return _load(path)

    texts = make_texts(n_texts, seed, vocabulary, min_words, max_words)
    plan = _plan(config, texts)
    utterances: list[PhonemeUtterance] = []

    def run(job: dict[str, Any]) -> PhonemeUtterance:
        return _synthesize(job, executable)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for done, utt in enumerate(pool.map(run, plan), start=1):
            utterances.append(utt)
            if progress is not None:
                progress(done, len(plan))
    corpus = PhonemeCorpus(utterances, {**config, "key": key})
    _save(path, corpus)
    return corpus


# -------------------------------------------------------------------------------------- cache


def _save(path: Path, corpus: PhonemeCorpus) -> None:
    utts = corpus.utterances
    arrays = pack_utterances(utts)
    arrays["splits"] = np.array([u.split for u in utts], dtype=np.str_)
    arrays["variants"] = np.array([u.variant for u in utts], dtype=np.int64)
    arrays["prosody"] = np.array([[u.stretch, u.f0_shift] for u in utts], dtype=np.float64)
    arrays["meta"] = np.array(json.dumps(corpus.meta, sort_keys=True))
    with atomic_write(path, "wb") as handle:
        np.savez(handle, **arrays)


def _load(path: Path) -> PhonemeCorpus:
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = check_cache_meta(json.loads(str(data["meta"])))
            splits, variants, prosody = data["splits"].tolist(), data["variants"], data["prosody"]
            utts = [
                PhonemeUtterance(
                    **fields, split=splits[i], variant=int(variants[i]),
                    stretch=float(prosody[i, 0]), f0_shift=float(prosody[i, 1]),
                )
                for i, fields in enumerate(unpack_utterances(data))
            ]
    except CACHE_ERRORS as error:
        raise ValueError(f"{path}: expected a phoneme corpus cache written by freqnn, got an "
                         f"unreadable file ({error}); delete it or rebuild with force=True "
                         "(--force)") from error
    return PhonemeCorpus(utts, meta)


# ---------------------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m freqnn.data.phoneme``: build the phone-labelled corpus and summarise it."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--n-texts", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-voices", nargs="+", default=list(TRAIN_VOICES))
    parser.add_argument("--test-voice", default=TEST_VOICE)
    parser.add_argument("--variants", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1, help="flite processes at once")
    parser.add_argument("--cache", default=None)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)

    def progress(done: int, total: int) -> None:
        if done % 100 == 0 or done == total:
            print(f"  {done}/{total} utterances", file=sys.stderr, flush=True)

    corpus = build_phoneme_corpus(args.n_texts, seed=args.seed, train_voices=args.train_voices,
                                  test_voice=args.test_voice, variants=args.variants,
                                  cache=args.cache, force=args.force, jobs=args.jobs,
                                  progress=progress)
    print(json.dumps({"key": corpus.meta["key"], **corpus.summary()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
