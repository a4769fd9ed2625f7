"""TIMIT (LDC93S1) for users who own it: audio, phone alignments, standard subsets, 61 -> 39.

TIMIT is licensed by the Linguistic Data Consortium and cannot be downloaded by freqnn: put your
copy under ``<data root>/timit`` (see :func:`freqnn.data.paths.data_root`) or pass its path.

Layout
------
The standard tree (any letter case; a leading ``data/`` level, as in some redistributions, is
accepted)::

    TIMIT/TRAIN/DR1/FCJF0/SA1.WAV, SA1.PHN, SI648.WAV, SI648.PHN, SX38.WAV, ...
    TIMIT/TEST/DR1/FAKS0/...

Audio files are NIST SPHERE (the original CD-ROM: a 1024-byte ASCII header ``NIST_1A`` ...
``end_head``, then 16-bit PCM) or RIFF WAV (the LDC's later releases and converted copies,
sometimes named ``SA1.WAV.wav``); both are parsed here in plain Python (:func:`read_audio`),
16 kHz, 16-bit PCM, mono. ``.PHN`` files hold one ``start end label`` line per phone, times in
samples, labels from the 61-phone set (:data:`freqnn.data.phones.PHONES61`).

Subsets (:func:`list_utterances`)
---------------------------------
* ``"train"``: the 462 training speakers, SI and SX sentences: 3696 utterances.
* ``"test"``: the complete test set, 168 speakers, SI and SX: 1344 utterances.
* ``"core"``: the core test set, 24 speakers (:data:`CORE_TEST_SPEAKERS`: one male and one
  female per dialect region plus a second male), 192 utterances: the set phone recognition
  results are reported on.
* ``"dev"``: the 50-speaker development set (:data:`DEV_SPEAKERS`), 400 utterances, drawn from
  the test speakers outside the core set, for model selection.

The SA sentences (two dialect calibration sentences read by every speaker) are excluded, as is
standard, because identical texts across the training and test speakers would bias phone
recognition; ``include_sa=True`` keeps them. Both speaker lists are those of Halberstadt's thesis
(MIT, 1998) as used by Kaldi's TIMIT recipe (``egs/timit/s5/local/timit_data_prep.sh``).

Labels
------
:func:`load_utterance` returns the 61-phone labels, their start / end times in seconds and the
39-class indices of the standard folding (:mod:`freqnn.data.phones`). The glottal stop ``q``
has no class: by default its frames are labelled -1 (ignored by the loss and the scores,
``q="ignore"``); ``q="merge"`` gives its span to the preceding phone (the following one at the
start), which is what deleting ``q`` from a transcription amounts to for frame labels.
"""

from __future__ import annotations

import os
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checks import fail
from .paths import data_root
from .phones import PHONES39, PHONES61, fold

__all__ = [
    "CORE_TEST_SPEAKERS",
    "DEV_SPEAKERS",
    "SAMPLE_RATE",
    "SPLITS",
    "Utterance",
    "find_root",
    "list_utterances",
    "load_timit",
    "load_utterance",
    "read_audio",
    "read_phn",
    "read_sphere",
]

SAMPLE_RATE = 16000
SPLITS = ("train", "test", "core", "dev")

#: The 24 core test speakers, dialect regions DR1..DR8 (three each: two male, one female).
CORE_TEST_SPEAKERS: tuple[str, ...] = (
    "MDAB0", "MWBT0", "FELC0",  # DR1
    "MTAS1", "MWEW0", "FPAS0",  # DR2
    "MJMP0", "MLNT0", "FPKT0",  # DR3
    "MLLL0", "MTLS0", "FJLM0",  # DR4
    "MBPM0", "MKLT0", "FNLP0",  # DR5
    "MCMJ0", "MJDH0", "FMGD0",  # DR6
    "MGRT0", "MNJM0", "FDHC0",  # DR7
    "MJLN0", "MPAM0", "FMLD0",  # DR8
)  # fmt: skip

#: The 50 development speakers (test speakers outside the core set).
DEV_SPEAKERS: tuple[str, ...] = (
    "FAKS0", "MMDB1", "MBDG0", "FEDW0", "MTDT0", "FSEM0", "MDVC0", "MRJM4", "MJSW0", "MTEB0",
    "FDAC1", "MMDM2", "MBWM0", "MGJF0", "MTHC0", "MBNS0", "MERS0", "FCAL1", "MREB0", "MJFC0",
    "FJEM0", "MPDF0", "MCSH0", "MGLB0", "MWJG0", "MMJR0", "FMAH0", "MMWH0", "FGJD0", "MRJR0",
    "MGWT0", "FCMH0", "FADG0", "MRTK0", "FNMR0", "MDLS0", "FDRW0", "FJSJ0", "FJMG0", "FMML0",
    "MJAR0", "FKMS0", "FDMS0", "MTAA0", "FREW0", "MDLF0", "MRCS0", "MAJC0", "MROA0", "MRWS1",
)  # fmt: skip

_HINT = ("TIMIT is licensed by the LDC (catalogue LDC93S1) and is not downloaded by freqnn; "
         "put your copy (with TRAIN/ and TEST/) under {where} or pass its path")


# ------------------------------------------------------------------------------------ readers
def _corrupt(path: Path, what: str) -> ValueError:
    return ValueError(f"{path}: corrupt or unsupported audio file: {what}")


def _header_count(path: Path, fields: dict[str, Any], key: str, minimum: int,
                  default: int | None = None) -> int:
    """A SPHERE header's integer field, at least ``minimum`` (sample_count -1, channel_count 0
    and sample_rate 0 were accepted, or gave an IndexError)."""
    value = fields.get(key, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        value = int(value)
    if not isinstance(value, int) or value < minimum:
        raise _corrupt(path, f"{key} {value!r} (expected an integer >= {minimum})")
    return value


def read_sphere(path: str | os.PathLike[str]) -> tuple[torch.Tensor, int]:
    """Read a NIST SPHERE file of 16-bit linear PCM.

    Returns
    -------
    samples : Tensor [shape=(L,)]
        float32 in [-1, 1) (int16 / 32768); the first channel if there are several.
    sample_rate : int

    Raises
    ------
    ValueError
        Not a SPHERE file, a malformed header, compressed (shorten) or non-16-bit data, or
        fewer samples than the header announces.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        data = handle.read()
    if not data.startswith(b"NIST_1A"):
        raise _corrupt(path, "no NIST_1A SPHERE header")
    lines = data[:64].split(b"\n")
    try:
        header_size = int(lines[1].strip())
    except (IndexError, ValueError):
        raise _corrupt(path, "unreadable SPHERE header size") from None
    if header_size < 16 or header_size > len(data):
        raise _corrupt(path, f"SPHERE header size {header_size} for a {len(data)}-byte file")
    fields: dict[str, Any] = {}
    ended = False
    for raw in data[:header_size].decode("latin-1").splitlines()[2:]:
        line = raw.strip()
        if line == "end_head":
            ended = True
            break
        if not line or line.startswith(";"):
            continue
        parts = line.split(None, 2)
        if len(parts) < 3:
            raise _corrupt(path, f"malformed SPHERE header line {line!r}")
        key, kind, value = parts
        try:
            fields[key] = int(value) if kind == "-i" else float(value) if kind == "-r" else value
        except ValueError:
            raise _corrupt(path, f"malformed SPHERE header line {line!r}") from None
    if not ended:
        raise _corrupt(path, "SPHERE header without end_head")
    coding = str(fields.get("sample_coding", "pcm"))
    if coding != "pcm":
        raise _corrupt(path, f"sample_coding {coding!r} (only uncompressed 'pcm' is supported; "
                             "decompress shorten files with sph2pipe first)")
    width = fields.get("sample_n_bytes", 2)
    if width != 2:
        raise _corrupt(path, f"sample_n_bytes {width} (expected 16-bit samples)")
    channels = _header_count(path, fields, "channel_count", 1, default=1)
    order = str(fields.get("sample_byte_format", "01"))
    if order not in ("01", "10"):
        raise _corrupt(path, f"sample_byte_format {order!r}")
    if "sample_rate" not in fields or "sample_count" not in fields:
        raise _corrupt(path, "SPHERE header without sample_rate or sample_count")
    count = _header_count(path, fields, "sample_count", 0)
    rate = _header_count(path, fields, "sample_rate", 1)
    body = data[header_size:]
    if len(body) < count * channels * 2:
        raise _corrupt(path, f"{len(body) // 2} samples of data for sample_count {count} x "
                             f"{channels} channel(s) (truncated file)")
    dtype = "<i2" if order == "01" else ">i2"
    pcm = np.frombuffer(body, dtype=dtype, count=count * channels).reshape(count, channels)
    samples = torch.from_numpy(pcm[:, 0].astype(np.float32) / 32768.0)
    return samples, rate


def _read_riff(path: Path) -> tuple[torch.Tensor, int]:
    try:
        with wave.open(str(path), "rb") as handle:
            if handle.getsampwidth() != 2:
                raise _corrupt(path, f"{8 * handle.getsampwidth()}-bit samples (expected 16)")
            channels = handle.getnchannels()
            rate = handle.getframerate()
            frames = handle.getnframes()
            raw = handle.readframes(frames)
    except (wave.Error, EOFError) as err:
        raise _corrupt(path, f"bad RIFF WAV ({err})") from None
    if len(raw) < frames * channels * 2:
        raise _corrupt(path, "truncated RIFF WAV data")
    pcm = np.frombuffer(raw, dtype="<i2").reshape(-1, channels)
    return torch.from_numpy(pcm[:, 0].astype(np.float32) / 32768.0), rate


def read_audio(path: str | os.PathLike[str]) -> tuple[torch.Tensor, int]:
    """Read a TIMIT audio file, NIST SPHERE or RIFF WAV (detected from its first bytes).

    Returns float32 samples in [-1, 1) (first channel) and the sample rate.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: audio file not found")
    with open(path, "rb") as handle:
        magic = handle.read(7)
    if magic.startswith(b"NIST_1A"):
        return read_sphere(path)
    if magic.startswith(b"RIFF"):
        return _read_riff(path)
    raise _corrupt(path, "neither a NIST SPHERE nor a RIFF WAV file")


def read_phn(path: str | os.PathLike[str]) -> list[tuple[int, int, str]]:
    """Read a ``.PHN`` alignment: ``(start_sample, end_sample, label)`` per phone, in order.

    Raises
    ------
    ValueError
        A malformed line, an unknown label, ``end < start`` or phones out of time order (each
        error names the file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: phone alignment (.PHN) not found")
    known = set(PHONES61)
    out: list[tuple[int, int, str]] = []
    with open(path, encoding="latin-1") as handle:
        for number, line in enumerate(handle, start=1):
            parts = line.split()
            if not parts:
                continue
            where = f"{path}, line {number}"
            if len(parts) != 3:
                raise ValueError(f"{where}: expected 'start end phone', got {line.strip()!r}")
            try:
                start, end = int(parts[0]), int(parts[1])
            except ValueError:
                raise ValueError(f"{where}: expected integer sample times, got "
                                 f"{line.strip()!r}") from None
            label = parts[2].lower()
            if label not in known:
                raise ValueError(f"{where}: expected one of the 61 TIMIT phone labels, got "
                                 f"{parts[2]!r}")
            if start < 0 or end < start:
                raise ValueError(f"{where}: expected 0 <= start <= end, got {start} {end}")
            if out and start < out[-1][1]:
                raise ValueError(f"{where}: expected phones in time order, got start {start} "
                                 f"before the previous end {out[-1][1]}")
            out.append((start, end, label))
    if not out:
        raise ValueError(f"{path}: empty phone alignment")
    return out


# ------------------------------------------------------------------------------------ listing
@dataclass(frozen=True)
class Utterance:
    """One TIMIT recording.

    Attributes
    ----------
    part : str
        ``"train"`` or ``"test"`` (the TRAIN / TEST directory).
    dialect : str
        Dialect region, ``"DR1"`` .. ``"DR8"``.
    speaker : str
        Speaker code, e.g. ``"FCJF0"`` (first letter: sex).
    sentence : str
        Sentence code, e.g. ``"SI648"`` (SA / SI / SX).
    audio : Path
    phn : Path
    """

    part: str
    dialect: str
    speaker: str
    sentence: str
    audio: Path
    phn: Path

    @property
    def id(self) -> str:
        """``SPEAKER_SENTENCE``, unique within TIMIT."""
        return f"{self.speaker}_{self.sentence}"

    @property
    def kind(self) -> str:
        """``"SA"``, ``"SI"`` or ``"SX"``."""
        return self.sentence[:2]


def _children(directory: Path) -> dict[str, Path]:
    """Entries of ``directory`` by lower-cased name."""
    return {entry.name.lower(): entry for entry in sorted(directory.iterdir())}


def find_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The TIMIT directory holding ``TRAIN`` and ``TEST`` (any case, optionally under
    ``data/``): ``root`` itself, or ``<data root>/timit`` when omitted.

    Raises
    ------
    FileNotFoundError
        With the LDC hint, when no such directory exists.
    """
    if root is None:
        base = data_root()
        candidates = [base / name for name in ("timit", "TIMIT")]
        where = f"{base / 'timit'}"
    else:
        candidates = [Path(root).expanduser()]
        where = str(candidates[0])
    for candidate in candidates:
        for level in (candidate, candidate / "data", candidate / "DATA", candidate / "timit",
                      candidate / "TIMIT"):
            if level.is_dir():
                names = _children(level)
                if "train" in names and "test" in names:
                    return level
    raise FileNotFoundError(f"no TIMIT tree (TRAIN/ and TEST/) at {where}. "
                            + _HINT.format(where=where))


def list_utterances(
    root: str | os.PathLike[str] | None = None, split: str = "train", *,
    include_sa: bool = False,
) -> list[Utterance]:
    """The utterances of a standard subset, sorted by (dialect, speaker, sentence).

    Parameters
    ----------
    root : path, optional
        The TIMIT directory (:func:`find_root`).
    split : {"train", "test", "core", "dev"}
        See the module docstring.
    include_sa : bool
        Keep the SA sentences (excluded by default).

    Raises
    ------
    FileNotFoundError
        No TIMIT tree, or an utterance with audio but no ``.PHN`` (or the reverse).
    ValueError
        An unknown ``split`` or a subset with no utterance.
    """
    if split not in SPLITS:
        fail("split", f"one of {', '.join(SPLITS)}", repr(split))
    base = find_root(root)
    part = "train" if split == "train" else "test"
    speakers = {"core": set(CORE_TEST_SPEAKERS), "dev": set(DEV_SPEAKERS)}.get(split)
    part_dir = _children(base)[part]
    found: list[Utterance] = []
    for dialect_dir in _children(part_dir).values():
        if not dialect_dir.is_dir() or not dialect_dir.name.lower().startswith("dr"):
            continue
        for speaker_dir in _children(dialect_dir).values():
            speaker = speaker_dir.name.upper()
            if not speaker_dir.is_dir() or (speakers is not None and speaker not in speakers):
                continue
            found.extend(_speaker_utterances(part, dialect_dir.name.upper(), speaker,
                                             speaker_dir, include_sa))
    if not found:
        fail("split", f"a subset with utterances under {base}", f"none for split {split!r}")
    return sorted(found, key=lambda u: (u.dialect, u.speaker, u.sentence))


def _speaker_utterances(part: str, dialect: str, speaker: str, directory: Path,
                        include_sa: bool) -> list[Utterance]:
    audio: dict[str, Path] = {}
    phn: dict[str, Path] = {}
    for name, entry in _children(directory).items():
        stem, _, suffix = name.partition(".")
        if suffix in ("wav", "wav.wav"):
            # prefer the plain .WAV; a converted .WAV.wav twin is used when it is alone
            if stem not in audio or suffix == "wav":
                audio[stem] = entry
        elif suffix == "phn":
            phn[stem] = entry
    out = []
    for stem in sorted(set(audio) | set(phn)):
        if stem.startswith("sa") and not include_sa:
            continue
        if stem not in phn:
            raise FileNotFoundError(f"{audio[stem]}: no phone alignment {stem.upper()}.PHN "
                                    "next to it (incomplete TIMIT copy?)")
        if stem not in audio:
            raise FileNotFoundError(f"{phn[stem]}: no audio {stem.upper()}.WAV next to it "
                                    "(incomplete TIMIT copy?)")
        out.append(Utterance(part, dialect, speaker, stem.upper(), audio[stem], phn[stem]))
    return out


# ------------------------------------------------------------------------------------ loading
def load_utterance(utterance: Utterance, *, q: str = "ignore") -> dict[str, Any]:
    """Audio and labels of one utterance.

    Parameters
    ----------
    utterance : Utterance
    q : {"ignore", "merge"}
        Handling of the glottal stop (no 39-class label): label -1, or give its span to the
        neighbouring phone.

    Returns
    -------
    dict with
        ``wave`` (L,) float32 in [-1, 1); ``sample_rate`` int; ``phones`` list of 61-set labels;
        ``starts`` / ``ends`` (S,) float64 seconds; ``labels`` (S,) int64 39-class indices
        (positions in :data:`~freqnn.data.phones.PHONES39`, -1 for ``q`` when ignored);
        ``id``, ``speaker``, ``dialect``, ``sentence`` str.

    Raises
    ------
    ValueError
        Corrupt files, a sample rate other than 16 kHz, or phones past the end of the audio.
    """
    if q not in ("ignore", "merge"):
        fail("q", "'ignore' or 'merge'", repr(q))
    samples, rate = read_audio(utterance.audio)
    if rate != SAMPLE_RATE:
        raise ValueError(f"{utterance.audio}: expected a {SAMPLE_RATE} Hz recording, got "
                         f"{rate} Hz")
    segments = read_phn(utterance.phn)
    if segments[-1][1] > samples.numel():
        raise ValueError(f"{utterance.phn}: expected phones within the audio "
                         f"({samples.numel()} samples), got an end at {segments[-1][1]}")
    if q == "merge" and len(segments) > 1:
        merged: list[list[Any]] = []
        for start, end, label in segments:
            if label == "q" and merged:
                merged[-1][1] = end
            elif merged and merged[-1][2] == "q":
                merged[-1] = [merged[-1][0], end, label]
            else:
                merged.append([start, end, label])
        segments = [tuple(s) for s in merged]  # type: ignore[misc]
    index = {p: i for i, p in enumerate(PHONES39)}
    labels = [-1 if label == "q" else index[fold(label)] for _, _, label in segments]  # type: ignore[index]
    return {
        "wave": samples,
        "sample_rate": rate,
        "phones": [label for _, _, label in segments],
        "starts": torch.tensor([s for s, _, _ in segments], dtype=torch.float64) / rate,
        "ends": torch.tensor([e for _, e, _ in segments], dtype=torch.float64) / rate,
        "labels": torch.tensor(labels, dtype=torch.long),
        "id": utterance.id,
        "speaker": utterance.speaker,
        "dialect": utterance.dialect,
        "sentence": utterance.sentence,
    }


def load_timit(
    root: str | os.PathLike[str] | None = None, split: str = "train", *,
    include_sa: bool = False, q: str = "ignore",
) -> list[dict[str, Any]]:
    """:func:`load_utterance` of every utterance of a subset (:func:`list_utterances`)."""
    return [load_utterance(u, q=q) for u in list_utterances(root, split, include_sa=include_sa)]
