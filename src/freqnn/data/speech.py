"""An offline speech corpus with phone alignments, synthesised with Debian's ``flite``.

No download: the text is drawn (by seed) from a word list on this machine and spoken by the
``flite`` speech synthesiser (Debian package ``flite``, version 2.2) with four of its voices:

* ``kal16`` (diphone, male, US), ``awb`` (male, Scottish), ``rms`` (male, US), ``slt`` (female,
  US), the last three CMU ARCTIC clustergen voices; all at 16 kHz. (``kal`` is 8 kHz and
  ``awb_time`` a talking clock: not used.)

``flite -psdur`` prints every phone with its end time in seconds; the corpus keeps these
alignments as sample indices, with the start of a phone the end of the previous one and every end
clipped to the length of the audio (flite's last pause often runs a few milliseconds past it;
a phone that starts at or after the end of the audio is dropped). Phone labels are flite's
US English set (``pau`` for silence; see :attr:`SpeechCorpus.phone_set`).

Text
----
Each text is ``min_words..max_words`` words drawn uniformly (with replacement) from the word
list by ``numpy.random.default_rng(seed)``. Word list: ``words="auto"`` reads
``/usr/share/dict/words`` (Debian package ``wamerican``) when it exists, keeping lower-case
ASCII words of 2 to 10 letters, else a small built-in vocabulary; ``"system"`` / ``"builtin"``
force one; any other string is a path to a word list (one word per line). The source and its
SHA-256 are part of the corpus's identity: the same seed, word list and flite version give the
same corpus. Every text is read by every voice (a parallel corpus), so a split by text keeps
held-out sentences unseen in every voice and a split by voice keeps a speaker unseen.

Cache
-----
A corpus is built once and stored as one ``.npz`` under ``cache_dir()/speech`` (written with
:func:`freqnn.io.atomic_write`, so an interrupted build leaves nothing), named by a hash of its
configuration.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import tempfile
import wave
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_write
from .paths import cache_dir

__all__ = [
    "SAMPLE_RATE",
    "VOICES",
    "SpeechCorpus",
    "Utterance",
    "align_phones",
    "available_voices",
    "build_corpus",
    "flite_available",
    "flite_version",
    "make_texts",
    "parse_psdur",
    "synthesize",
    "word_list",
]

VOICES = ("kal16", "awb", "rms", "slt")
SAMPLE_RATE = 16000
SYSTEM_WORDS = Path("/usr/share/dict/words")
FORMAT_VERSION = 1

# Fallback vocabulary (common English words) for machines without a system word list.
_BUILTIN_WORDS = """
able about above across after again against air all almost along also always among and animal
answer any appear area arm around art ask back ball bank base bear beat bed before begin behind
believe bell best better between big bird black blue board boat body book both box boy bread
bring brother brown build burn busy buy call came can car care carry case cat catch cause center
chair change check child city class clean clear climb clock close cloud coast cold color come
common cook cool corner count country course cover cross cry cut dance dark day deep door down
draw dream dress drink drive drop dry during each early earth east easy eat edge egg end enough
even evening every eye face fact fall family farm fast father feel field fill find fine fire
first fish five floor flower fly follow food foot forest form four free fresh friend front fruit
full game garden gate gentle girl give glass gold good grass great green ground group grow half
hand happy hard head hear heart heavy help high hill hold home horse hot hour house idea iron
island join jump keep kind king kitchen know lake land large last late laugh lead learn leave
left letter light line lion listen little long look low machine make many map mark market meet
middle milk mind minute money month moon morning mother mountain move music name near need never
new next night noise north nothing number ocean offer often old open orange order paper park part
pass pencil people pick picture piece place plain plan plant play point poor pretty pull push
quick quiet rain read ready red remember rest rich ride right river road rock room round run
salt same sand save school sea season seat second seed seven shape sharp ship shoe short show
side simple sing sister sit six sky sleep slow small smile snow soft soil song sound south space
speak spring square stand star start station stay step stone stop store storm story street
strong study sugar summer sun table tail take talk tall teacher team ten thing think three
through time today together tomorrow tonight town train travel tree true turn twelve under unit
until upon valley very village visit voice wait walk wall warm wash watch water wave weather
week west wheel white wide wild wind window winter wish wood word work world write yard year
yellow young
""".split()


@dataclass(frozen=True)
class Utterance:
    """One synthesised utterance.

    Attributes
    ----------
    id : str
        ``"<voice>_<text index, 4 digits>"``.
    voice : str
    text_id : int
        Index of the text; the same index is the same text in every voice.
    text : str
    audio : ndarray [shape=(T,)], float32 in [-1, 1) (16-bit PCM / 32768)
    phones : tuple of str
    starts, ends : ndarray [shape=(P,)], int64
        Sample indices of each phone: ``audio[starts[i]:ends[i]]`` is phone i; contiguous
        (``starts[i + 1] == ends[i]``), ``starts[0] == 0``, ``ends[-1] <= T``.
    sample_rate : int
    """

    id: str
    voice: str
    text_id: int
    text: str
    audio: np.ndarray
    phones: tuple[str, ...]
    starts: np.ndarray
    ends: np.ndarray
    sample_rate: int = SAMPLE_RATE

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.audio) / self.sample_rate

    def labels_at(self, samples: np.ndarray) -> list[str]:
        """The phone at each sample index (``"pau"`` after the last phone)."""
        samples = np.asarray(samples)
        index = np.searchsorted(self.ends, samples, side="right")
        return [self.phones[i] if i < len(self.phones) else "pau" for i in index.ravel()]


@dataclass
class SpeechCorpus:
    """Utterances with phone alignments and the facts that identify the corpus."""

    utterances: list[Utterance]
    sample_rate: int = SAMPLE_RATE
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.utterances)

    @property
    def voices(self) -> tuple[str, ...]:
        """Voices present, in corpus order."""
        return tuple(dict.fromkeys(u.voice for u in self.utterances))

    @property
    def phone_set(self) -> tuple[str, ...]:
        """Sorted distinct phone labels."""
        return tuple(sorted({p for u in self.utterances for p in u.phones}))

    def subset(self, keep: Callable[[Utterance], bool]) -> SpeechCorpus:
        """The utterances for which ``keep(u)`` is true (same meta)."""
        return SpeechCorpus([u for u in self.utterances if keep(u)], self.sample_rate,
                            dict(self.meta))

    def split_by_text(self, valid: float = 0.15, test: float = 0.15,
                      seed: int = 0) -> tuple[SpeechCorpus, SpeechCorpus, SpeechCorpus]:
        """Train / valid / test corpora with disjoint texts (every voice in each part).

        Text ids are shuffled by ``seed``; the last ``round(test * texts)`` go to test (at least
        one when ``test > 0``), the ``round(valid * texts)`` before them to valid.
        """
        if not (0 <= valid < 1 and 0 <= test < 1 and valid + test < 1):
            raise ValueError(f"valid, test: expected fractions with valid + test < 1, "
                             f"got valid={valid!r}, test={test!r}")
        ids = sorted({u.text_id for u in self.utterances})
        order = np.random.default_rng(seed).permutation(len(ids))
        n_test = max(round(test * len(ids)), 1 if test > 0 else 0)
        n_valid = max(round(valid * len(ids)), 1 if valid > 0 else 0)
        if n_test + n_valid >= len(ids):
            raise ValueError(f"corpus: expected more than {n_test + n_valid} texts to split, "
                             f"got {len(ids)}")
        test_ids = {ids[i] for i in order[len(ids) - n_test:]}
        valid_ids = {ids[i] for i in order[len(ids) - n_test - n_valid: len(ids) - n_test]}
        return (
            self.subset(lambda u: u.text_id not in test_ids and u.text_id not in valid_ids),
            self.subset(lambda u: u.text_id in valid_ids),
            self.subset(lambda u: u.text_id in test_ids),
        )


# ---------------------------------------------------------------------------------------------
# flite
# ---------------------------------------------------------------------------------------------
def _flite(executable: str = "flite") -> str:
    path = shutil.which(executable)
    if path is None:
        raise FileNotFoundError(
            f"flite: expected the '{executable}' executable on PATH, got none; install the "
            "Debian package: apt-get install -y flite (make system-deps does it)"
        )
    return path


def flite_available(executable: str = "flite") -> bool:
    """Whether the flite executable is on PATH."""
    return shutil.which(executable) is not None


def available_voices(executable: str = "flite") -> tuple[str, ...]:
    """Voices compiled into flite (``flite -lv``)."""
    out = subprocess.run([_flite(executable), "-lv"], capture_output=True, text=True, timeout=30,
                         check=True).stdout
    _, _, names = out.partition(":")
    return tuple(names.split())


def flite_version(executable: str = "flite") -> str:
    """flite's version line (part of a corpus's identity)."""
    # flite --version prints its banner and exits with status 1
    out = subprocess.run([_flite(executable), "--version"], capture_output=True, text=True,
                         timeout=30, check=False).stdout
    lines = [line.strip() for line in out.splitlines() if "version" in line]
    return lines[0] if lines else out.strip()


def parse_psdur(text: str) -> list[tuple[str, float]]:
    """Parse ``flite -psdur`` output ``"pau:0.220 dh:0.254 ..."`` into (phone, end seconds)."""
    pairs = []
    for token in text.split():
        label, sep, end = token.rpartition(":")
        try:
            value = float(end)
        except ValueError:
            value = float("nan")
        if not sep or not label or not np.isfinite(value) or value < 0:
            raise ValueError(f"flite output: expected 'phone:end_seconds' tokens, got {token!r}")
        pairs.append((label, value))
    return pairs


def align_phones(pairs: Sequence[tuple[str, float]], num_samples: int,
                 sample_rate: int = SAMPLE_RATE) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """Phone labels and [start, end) sample indices, ends clipped to ``num_samples``.

    Ends are rounded to the nearest sample and made non-decreasing; a phone's start is the
    previous phone's end (0 for the first); phones left empty after clipping are dropped.
    """
    labels, starts, ends = [], [], []
    previous = 0
    for label, end_seconds in pairs:
        end = min(round(end_seconds * sample_rate), num_samples)
        end = max(end, previous)
        if end > previous:
            labels.append(label)
            starts.append(previous)
            ends.append(end)
        previous = end
    return tuple(labels), np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as handle:
        if handle.getnchannels() != 1 or handle.getsampwidth() != 2:
            raise ValueError(f"{path}: expected mono 16-bit PCM, got {handle.getnchannels()} "
                             f"channel(s) of {8 * handle.getsampwidth()} bits")
        rate = handle.getframerate()
        data = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")
    return data.astype(np.int16), rate


def synthesize(
    text: str, voice: str, *, executable: str = "flite", workdir: str | Path | None = None
) -> tuple[np.ndarray, int, list[tuple[str, float]]]:
    """Speak ``text`` with ``voice``: (int16 samples, sample rate, [(phone, end seconds)])."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text: expected a non-empty string, got {text!r}")
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        target = Path(tmp) / "out.wav"
        result = subprocess.run(
            [_flite(executable), "-voice", voice, "-psdur", "-t", text, "-o", str(target)],
            capture_output=True, text=True, timeout=120,
        )
        if result.returncode != 0 or not target.is_file():
            raise RuntimeError(f"flite failed for voice {voice!r} (exit {result.returncode}): "
                               f"{result.stderr.strip()[:300]}")
        audio, rate = _read_wav(target)
    return audio, rate, parse_psdur(result.stdout)


# ---------------------------------------------------------------------------------------------
# text
# ---------------------------------------------------------------------------------------------
def word_list(words: str = "auto") -> tuple[list[str], str, str]:
    """(words, source description, sha256 of the source) for ``words`` (see the module doc)."""
    if words == "builtin" or (words == "auto" and not SYSTEM_WORDS.is_file()):
        blob = "\n".join(_BUILTIN_WORDS).encode()
        return list(_BUILTIN_WORDS), "builtin", hashlib.sha256(blob).hexdigest()
    path = SYSTEM_WORDS if words in ("auto", "system") else Path(words)
    if not path.is_file():
        raise FileNotFoundError(f"words: expected a word list file at {path}, got none "
                                "(Debian: apt-get install -y wamerican)")
    blob = path.read_bytes()
    candidates = blob.decode("utf-8", errors="replace").split()
    chosen = sorted({w for w in candidates if w.isascii() and w.isalpha() and w.islower()
                     and 2 <= len(w) <= 10})
    if len(chosen) < 10:
        raise ValueError(f"words: expected a word list with at least 10 usable words "
                         f"(lower-case ASCII, 2 to 10 letters) in {path}, got {len(chosen)}")
    return chosen, str(path), hashlib.sha256(blob).hexdigest()


def make_texts(count: int, seed: int, words: Sequence[str], min_words: int = 4,
               max_words: int = 10) -> list[str]:
    """``count`` texts of ``min_words..max_words`` words drawn with ``default_rng(seed)``."""
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"count: expected an int >= 1, got {count!r}")
    if not (isinstance(min_words, int) and isinstance(max_words, int)
            and 1 <= min_words <= max_words):
        raise ValueError(f"min_words, max_words: expected ints with 1 <= min_words <= max_words, "
                         f"got {min_words!r}, {max_words!r}")
    rng = np.random.default_rng(seed)
    texts = []
    for _ in range(count):
        k = int(rng.integers(min_words, max_words + 1))
        picks = rng.integers(0, len(words), size=k)
        texts.append(" ".join(words[i] for i in picks) + ".")
    return texts


# ---------------------------------------------------------------------------------------------
# corpus
# ---------------------------------------------------------------------------------------------
def _config(n_texts: int, seed: int, voices: Sequence[str], min_words: int, max_words: int,
            source: str, sha: str, version: str) -> dict:
    return {"format": FORMAT_VERSION, "n_texts": n_texts, "seed": seed, "voices": list(voices),
            "min_words": min_words, "max_words": max_words, "words_source": source,
            "words_sha256": sha, "flite": version, "sample_rate": SAMPLE_RATE}


def pack_utterances(utts: Sequence[Any]) -> dict[str, np.ndarray]:
    """The arrays every flite corpus cache holds: 16-bit audio and phone alignments concatenated
    with their offsets, and each utterance's id, voice, text id and text.

    ``utts`` are :class:`Utterance`-like (``audio``, ``phones``, ``starts``, ``ends``, ``id``,
    ``voice``, ``text_id``, ``text``); :func:`unpack_utterances` reads the arrays back.
    """
    return {
        "audio": np.concatenate([np.round(u.audio * 32768).astype(np.int16) for u in utts]),
        "audio_offsets": np.cumsum([0] + [len(u.audio) for u in utts]).astype(np.int64),
        "phones": np.array([p for u in utts for p in u.phones], dtype=np.str_),
        "starts": np.concatenate([u.starts for u in utts]).astype(np.int64),
        "ends": np.concatenate([u.ends for u in utts]).astype(np.int64),
        "phone_offsets": np.cumsum([0] + [len(u.phones) for u in utts]).astype(np.int64),
        "ids": np.array([u.id for u in utts], dtype=np.str_),
        "voices": np.array([u.voice for u in utts], dtype=np.str_),
        "text_ids": np.array([u.text_id for u in utts], dtype=np.int64),
        "texts": np.array([u.text for u in utts], dtype=np.str_),
    }


def check_cache_meta(meta: Any) -> dict[str, Any]:
    """A corpus cache's ``meta``: a JSON object whose ``sample_rate`` is an int >= 1
    (``ValueError`` otherwise; a list gave a TypeError and ``-1`` was accepted)."""
    if not isinstance(meta, dict):
        raise ValueError(f"meta: expected a JSON object, got a {type(meta).__name__}")
    rate = meta.get("sample_rate")
    if not isinstance(rate, int) or isinstance(rate, bool) or rate < 1:
        raise ValueError(f"meta.sample_rate: expected an int >= 1, got {rate!r}")
    return meta


def unpack_utterances(data: Any) -> list[dict[str, Any]]:
    """The fields of each utterance from arrays written by :func:`pack_utterances` (an open
    ``.npz``); ``ValueError`` when the offsets do not fit the arrays."""
    audio, ao, po = data["audio"], data["audio_offsets"], data["phone_offsets"]
    phones, starts, ends = data["phones"], data["starts"], data["ends"]
    ids, voices, texts = data["ids"].tolist(), data["voices"].tolist(), data["texts"].tolist()
    text_ids = data["text_ids"]
    count = len(ids)
    if len(ao) != count + 1 or len(po) != count + 1 or ao[-1] != len(audio) \
            or po[-1] != len(phones):
        raise ValueError("inconsistent offsets")
    for name, offsets in (("audio_offsets", ao), ("phone_offsets", po)):
        if offsets[0] != 0 or (np.diff(offsets) < 0).any():  # negative ones sliced backwards
            raise ValueError(f"{name}: expected offsets rising from 0, got "
                             f"{np.asarray(offsets)[:8].tolist()}...")
    if not len(starts) == len(ends) == len(phones) or not len(voices) == len(texts) == \
            len(text_ids) == count:
        raise ValueError("inconsistent array lengths")
    if (starts < 0).any() or (ends < starts).any():
        raise ValueError("phone times: expected 0 <= start <= end")
    return [
        {
            "id": ids[i], "voice": voices[i], "text_id": int(text_ids[i]), "text": texts[i],
            "audio": audio[ao[i]:ao[i + 1]].astype(np.float32) / 32768.0,
            "phones": tuple(str(p) for p in phones[po[i]:po[i + 1]]),
            "starts": starts[po[i]:po[i + 1]].copy(), "ends": ends[po[i]:po[i + 1]].copy(),
        }
        for i in range(count)
    ]


#: what reading a damaged cache can raise
CACHE_ERRORS = (OSError, KeyError, ValueError, IndexError, EOFError, zipfile.BadZipFile)


def _save(path: Path, corpus: SpeechCorpus) -> None:
    arrays = pack_utterances(corpus.utterances)
    arrays["meta"] = np.array(json.dumps(corpus.meta, sort_keys=True))
    with atomic_write(path, "wb") as handle:
        np.savez(handle, **arrays)


def _load(path: Path) -> SpeechCorpus:
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = check_cache_meta(json.loads(str(data["meta"])))
            rate = meta["sample_rate"]
            utts = [Utterance(**fields, sample_rate=rate) for fields in unpack_utterances(data)]
    except CACHE_ERRORS as error:
        raise ValueError(f"{path}: expected a speech corpus cache written by freqnn, got an "
                         f"unreadable file ({error}); delete it or pass force=True") from error
    return SpeechCorpus(utts, rate, meta)


def build_corpus(
    n_texts: int = 40,
    *,
    seed: int = 0,
    voices: Sequence[str] = VOICES,
    min_words: int = 4,
    max_words: int = 10,
    words: str = "auto",
    cache: str | Path | None = None,
    force: bool = False,
    executable: str = "flite",
) -> SpeechCorpus:
    """Build (or load from the cache) a corpus of ``n_texts`` texts read by each of ``voices``.

    Parameters
    ----------
    n_texts : int
        Number of texts; the corpus has ``n_texts * len(voices)`` utterances.
    seed : int
        Seed of the text draw.
    voices : sequence of str
        flite voices at 16 kHz (default kal16, awb, rms, slt). A voice missing from this flite
        build raises ``ValueError`` naming the available ones.
    min_words, max_words : int
        Words per text.
    words : str
        Word list: ``"auto"``, ``"system"``, ``"builtin"`` or a path (module docstring).
    cache : path, optional
        Cache directory (default :func:`freqnn.data.paths.cache_dir`).
    force : bool
        Rebuild even if a cached corpus exists.

    Returns
    -------
    SpeechCorpus
        Utterances ordered by voice, then text index. ``meta`` holds the configuration.
    """
    if not isinstance(n_texts, int) or isinstance(n_texts, bool) or n_texts < 1:
        raise ValueError(f"n_texts: expected an int >= 1, got {n_texts!r}")
    voices = tuple(voices)
    if not voices or len(set(voices)) != len(voices):
        raise ValueError(f"voices: expected distinct flite voice names, got {voices!r}")
    have = available_voices(executable)
    missing = [v for v in voices if v not in have]
    if missing:
        raise ValueError(f"voices: expected voices available in this flite ({', '.join(have)}), "
                         f"got missing {', '.join(missing)}")
    vocabulary, source, sha = word_list(words)
    config = _config(n_texts, seed, voices, min_words, max_words, source, sha,
                     flite_version(executable))
    key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir(cache) / "speech" / f"flite_{key}.npz"
    if path.is_file() and not force:
        return _load(path)

    texts = make_texts(n_texts, seed, vocabulary, min_words, max_words)
    utterances = []
    for voice in voices:
        for index, text in enumerate(texts):
            samples, rate, pairs = synthesize(text, voice, executable=executable)
            if rate != SAMPLE_RATE:
                raise ValueError(f"voice {voice!r}: expected {SAMPLE_RATE} Hz audio, got {rate}")
            phones, starts, ends = align_phones(pairs, len(samples), rate)
            utterances.append(Utterance(
                id=f"{voice}_{index:04d}", voice=voice, text_id=index, text=text,
                audio=samples.astype(np.float32) / 32768.0, phones=phones, starts=starts,
                ends=ends, sample_rate=rate,
            ))
    corpus = SpeechCorpus(utterances, SAMPLE_RATE, {**config, "key": key})
    _save(path, corpus)
    return corpus


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m freqnn.data.speech``: build the corpus into the cache and summarise it."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--n-texts", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--voices", nargs="+", default=list(VOICES))
    parser.add_argument("--words", default="auto")
    parser.add_argument("--cache", default=None)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    corpus = build_corpus(args.n_texts, seed=args.seed, voices=args.voices, words=args.words,
                          cache=args.cache, force=args.force)
    seconds = sum(u.duration for u in corpus.utterances)
    print(f"{len(corpus)} utterances, {seconds:.1f} s of audio, {len(corpus.phone_set)} phones, "
          f"voices {', '.join(corpus.voices)}, key {corpus.meta['key']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
