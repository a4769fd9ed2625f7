"""External sequence-classification data sets in one ``.npz`` file.

Format (``numpy.savez`` / ``savez_compressed``; no pickled objects):

=============== =========================== ==============================================
key             shape, dtype                meaning
=============== =========================== ==============================================
``values``      (S, T) or (S, T, F), float  S sequences of T steps with F features (F = 1
                                            when 2-D); finite
``labels``      (S,), int                   class of each sequence, >= 0
``times``       (S, T), float, optional     timestamp of each step, finite and
                                            non-decreasing along T within each sequence's
                                            length; absent: the step index 0, 1, 2, ...
``lengths``     (S,), int, optional         true lengths in [1, T] of zero-padded
                                            sequences; absent: every sequence has T steps
``class_names`` (C,), str, optional         names of the classes 0..C-1
=============== =========================== ==============================================

Any other key is an error (a misspelt ``label`` would otherwise be silently ignored).
:func:`load_npz` checks everything and raises ``ValueError`` naming the file, the key, what was
expected and what it found. :func:`save_npz` writes the format atomically.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..io import atomic_write

__all__ = ["NPZ_KEYS", "NpzData", "load_npz", "save_npz"]

NPZ_KEYS = ("values", "labels", "times", "lengths", "class_names")
#: The most bytes the arrays of one ``.npz`` may hold uncompressed (checked before reading).
MAX_NPZ_BYTES = 1 << 33


class NpzData(NamedTuple):
    """A validated ``.npz`` data set.

    Attributes
    ----------
    values : ndarray [shape=(S, T, F)], float32 (2-D files get F = 1)
    labels : ndarray [shape=(S,)], int64
    times : ndarray [shape=(S, T)], float64, or None
    lengths : ndarray [shape=(S,)], int64 (T for every sequence when the file has none)
    class_names : tuple of str, or None
    """

    values: np.ndarray
    labels: np.ndarray
    times: np.ndarray | None
    lengths: np.ndarray
    class_names: tuple[str, ...] | None


def _bad(path: Path, key: str, expected: str, got: str) -> ValueError:
    return ValueError(f"{path}: {key}: expected {expected}, got {got}")


def _describe(a: np.ndarray) -> str:
    return f"array of shape {a.shape} and dtype {a.dtype}"


def load_npz(path: str | os.PathLike[str], *, num_features: int | None = None,
             num_classes: int | None = None) -> NpzData:
    """Read and validate a sequence-classification ``.npz`` file.

    Parameters
    ----------
    path : path-like
    num_features : int, optional
        Required F (e.g. the input size of a trained model).
    num_classes : int, optional
        Labels must be < ``num_classes``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such .npz file")
    try:
        _check_members(path)
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise _bad(path, "file", "a numpy .npz archive of named arrays",
                       f"a single .npy array ({_describe(loaded)})")
        with loaded as archive:
            raw = {key: archive[key] for key in archive.files}
    except ValueError as error:
        if str(error).startswith(str(path)):
            raise
        raise ValueError(f"{path}: expected a numpy .npz archive of plain arrays (no pickled "
                         f"objects), got an unreadable file ({error})") from error
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise ValueError(f"{path}: expected a numpy .npz archive, got a corrupt or "
                         f"non-npz file ({type(error).__name__}: {error})") from error
    return _validate(raw, path, num_features, num_classes)


def _check_members(path: Path) -> None:
    """Refuse, before anything is allocated, an archive whose members would need more than
    :data:`MAX_NPZ_BYTES` uncompressed (a zip bomb) or whose ``.npy`` header declares a shape
    its data does not hold (a shape of 10**12 made NumPy allocate it before reading)."""
    if not zipfile.is_zipfile(path):
        return  # np.load names a single .npy or a foreign file
    with zipfile.ZipFile(path) as archive:
        total = 0
        for info in archive.infolist():
            total += info.file_size
            key = info.filename.removesuffix(".npy")
            if total > MAX_NPZ_BYTES:
                raise _bad(path, key, f"arrays of at most {MAX_NPZ_BYTES:,} bytes in all "
                           "(uncompressed)", f"members declaring {total:,} bytes")
            if not info.filename.endswith(".npy"):
                continue
            with archive.open(info) as member:
                try:
                    version = np.lib.format.read_magic(member)
                    read = {(1, 0): np.lib.format.read_array_header_1_0,
                            (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                    if read is None:
                        continue
                    shape, _, dtype = read(member)
                except ValueError:
                    continue  # np.load reports a malformed header
                if dtype.hasobject:
                    continue  # refused by np.load (no pickles)
                declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
                held = info.file_size - member.tell()
                if declared != held:
                    raise _bad(path, key, f"the {declared:,} bytes of data its header declares "
                               f"(shape {shape}, dtype {dtype})", f"{held:,} bytes")


def _validate(raw: dict[str, np.ndarray], path: Path, num_features: int | None,
              num_classes: int | None) -> NpzData:
    for key, member in raw.items():
        # NpzFile returns the raw bytes of a member that is not in the .npy format
        if not isinstance(member, np.ndarray):
            raise _bad(path, key, "an array in the .npy format",
                       f"{type(member).__name__} of another format (a raw pickle?)")
    unknown = sorted(set(raw) - set(NPZ_KEYS))
    if unknown:
        raise _bad(path, "keys", f"only {', '.join(NPZ_KEYS)}", f"unknown {unknown}")
    for key in ("values", "labels"):
        if key not in raw:
            raise _bad(path, key, "a required array", f"no '{key}' in {sorted(raw)}")
    values = raw["values"]
    if values.dtype.kind not in "fiu" or values.ndim not in (2, 3):
        raise _bad(path, "values", "a real (S, T) or (S, T, F) array", _describe(values))
    if values.ndim == 2:
        values = values[:, :, None]
    s, t, f = values.shape
    if s == 0 or t == 0 or f == 0:
        raise _bad(path, "values", "at least one sequence, step and feature", _describe(values))
    values = values.astype(np.float32)
    if not np.isfinite(values).all():
        raise _bad(path, "values", "finite values", f"{int((~np.isfinite(values)).sum())} "
                   "NaN or infinite")
    if num_features is not None and f != num_features:
        raise _bad(path, "values", f"{num_features} feature(s) per step (the model's input "
                   "size)", f"{f} ({_describe(raw['values'])})")

    labels = raw["labels"]
    if labels.dtype.kind not in "iu" or labels.shape != (s,):
        raise _bad(path, "labels", f"an integer array of shape ({s},) (one per sequence)",
                   _describe(labels))
    labels = labels.astype(np.int64)
    if labels.min() < 0:
        raise _bad(path, "labels", "classes >= 0", f"minimum {labels.min()}")
    if num_classes is not None and labels.max() >= num_classes:
        raise _bad(path, "labels", f"classes in [0, {num_classes - 1}] (the model's classes)",
                   f"maximum {labels.max()}")

    lengths = np.full(s, t, dtype=np.int64)
    if "lengths" in raw:
        lengths = raw["lengths"]
        if lengths.dtype.kind not in "iu" or lengths.shape != (s,):
            raise _bad(path, "lengths", f"an integer array of shape ({s},)", _describe(lengths))
        lengths = lengths.astype(np.int64)
        if lengths.min() < 1 or lengths.max() > t:
            raise _bad(path, "lengths", f"values in [1, {t}]",
                       f"values in [{lengths.min()}, {lengths.max()}]")

    times = None
    if "times" in raw:
        times = raw["times"]
        if times.dtype.kind not in "fiu" or times.shape != (s, t):
            raise _bad(path, "times", f"a real array of shape ({s}, {t}) like values",
                       _describe(times))
        times = times.astype(np.float64)
        valid = np.arange(t)[None, :] < lengths[:, None]
        if not np.isfinite(times[valid]).all():
            raise _bad(path, "times", "finite timestamps", "NaN or infinite ones")
        steps_back = (np.diff(times, axis=1) < 0) & valid[:, 1:]
        if steps_back.any():
            row = int(np.argwhere(steps_back)[0, 0])
            raise _bad(path, "times", "non-decreasing timestamps within each sequence",
                       f"a decrease in sequence {row}")

    class_names = None
    if "class_names" in raw:
        names = raw["class_names"]
        if names.dtype.kind not in "US" or names.ndim != 1 or names.size <= labels.max():
            raise _bad(path, "class_names", f"a 1-D string array with at least "
                       f"{labels.max() + 1} names", _describe(names))
        class_names = tuple(str(n) for n in names.astype(str))
    return NpzData(values, labels, times, lengths, class_names)


def save_npz(path: str | os.PathLike[str], values: np.ndarray, labels: np.ndarray, *,
             times: np.ndarray | None = None, lengths: np.ndarray | None = None,
             class_names: tuple[str, ...] | list[str] | None = None) -> Path:
    """Check and write a data set in the ``.npz`` format (atomically); returns the path."""
    arrays: dict[str, np.ndarray] = {"values": np.asarray(values),
                                     "labels": np.asarray(labels)}
    if times is not None:
        arrays["times"] = np.asarray(times)
    if lengths is not None:
        arrays["lengths"] = np.asarray(lengths)
    if class_names is not None:
        arrays["class_names"] = np.asarray(list(class_names), dtype=str)
    path = Path(path)
    _validate(arrays, path, None, None)  # never write a file load_npz would refuse
    with atomic_write(path) as handle:
        np.savez_compressed(handle, **arrays)
    return path
