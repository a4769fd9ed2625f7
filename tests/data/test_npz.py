"""The external .npz sequence-classification format: good files read back, bad ones are refused
with an error naming the key."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from freqnn.data.npz import load_npz, save_npz


def _good(s: int = 5, t: int = 7, f: int | None = None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    shape = (s, t) if f is None else (s, t, f)
    return {"values": rng.standard_normal(shape), "labels": np.arange(s) % 2,
            "times": np.cumsum(rng.uniform(0.1, 1.0, (s, t)), axis=1)}


def test_roundtrip_2d_with_times_and_names(tmp_path: Path) -> None:
    d = _good()
    path = save_npz(tmp_path / "a.npz", d["values"], d["labels"], times=d["times"],
                    class_names=["square", "sawtooth"])
    data = load_npz(path)
    assert data.values.shape == (5, 7, 1) and data.values.dtype == np.float32
    np.testing.assert_allclose(data.values[..., 0], d["values"], rtol=1e-6)
    np.testing.assert_array_equal(data.labels, d["labels"])
    np.testing.assert_array_equal(data.times, d["times"])
    np.testing.assert_array_equal(data.lengths, [7] * 5)
    assert data.class_names == ("square", "sawtooth")


def test_3d_without_times_and_with_lengths(tmp_path: Path) -> None:
    d = _good(f=3)
    path = tmp_path / "b.npz"
    np.savez(path, values=d["values"].astype(np.float16), labels=d["labels"].astype(np.uint8),
             lengths=np.array([7, 3, 1, 7, 2]))
    data = load_npz(path, num_features=3, num_classes=2)
    assert data.values.shape == (5, 7, 3) and data.times is None
    assert data.labels.dtype == np.int64
    np.testing.assert_array_equal(data.lengths, [7, 3, 1, 7, 2])


def test_times_may_decrease_in_padding(tmp_path: Path) -> None:
    d = _good()
    d["times"][1, 4:] = 0.0  # padding after length 4
    path = tmp_path / "c.npz"
    np.savez(path, **d, lengths=np.array([7, 4, 7, 7, 7]))
    assert load_npz(path).lengths[1] == 4


def _write(tmp_path: Path, **arrays: np.ndarray) -> Path:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return path


BAD = [
    ({"values": None}, "values: expected a required array"),
    ({"labels": None}, "labels: expected a required array"),
    ({"label": np.zeros(5)}, "keys: expected only"),
    ({"values": np.zeros((5, 7), dtype=bool)}, "values: expected a real"),
    ({"values": np.zeros(5)}, "values: expected a real"),
    ({"values": np.zeros((5, 0))}, "values: expected at least one"),
    ({"values": np.full((5, 7), np.nan)}, "values: expected finite values"),
    ({"labels": np.zeros(4, dtype=int)}, r"labels: expected an integer array of shape \(5,\)"),
    ({"labels": np.zeros(5)}, "labels: expected an integer array"),
    ({"labels": -np.ones(5, dtype=int)}, "labels: expected classes >= 0"),
    ({"times": np.zeros((5, 6))}, r"times: expected a real array of shape \(5, 7\)"),
    ({"times": np.tile(np.arange(7.0)[::-1], (5, 1))}, "times: expected non-decreasing"),
    ({"times": np.full((5, 7), np.inf)}, "times: expected finite"),
    ({"lengths": np.array([7, 8, 1, 1, 1])}, r"lengths: expected values in \[1, 7\]"),
    ({"lengths": np.zeros(5)}, "lengths: expected an integer array"),
    ({"class_names": np.array(["a"])}, "class_names: expected a 1-D string array"),
]


@pytest.mark.parametrize(("change", "match"), BAD)
def test_bad_files(tmp_path: Path, change: dict, match: str) -> None:
    arrays = {**_good(), **change}
    arrays = {k: v for k, v in arrays.items() if v is not None}
    path = _write(tmp_path, **arrays)
    with pytest.raises(ValueError, match=match) as info:
        load_npz(path)
    assert str(path) in str(info.value)


def test_model_mismatch(tmp_path: Path) -> None:
    path = _write(tmp_path, **_good(f=2))
    with pytest.raises(ValueError, match="values: expected 1 feature"):
        load_npz(path, num_features=1)
    with pytest.raises(ValueError, match=r"labels: expected classes in \[0, 0\]"):
        load_npz(path, num_classes=1)


def test_not_an_npz(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no such \.npz file"):
        load_npz(tmp_path / "missing.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip archive at all")
    with pytest.raises(ValueError, match=r"expected a numpy \.npz archive"):
        load_npz(garbage)
    good = save_npz(tmp_path / "good.npz", **{k: v for k, v in _good().items()})
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"expected a numpy \.npz archive"):
        load_npz(truncated)


def test_pickled_objects_refused(tmp_path: Path) -> None:
    path = tmp_path / "obj.npz"
    np.savez(path, values=np.array([[1.0, 2.0]]), labels=np.array([{"a": 1}], dtype=object))
    assert zipfile.is_zipfile(path)
    with pytest.raises(ValueError, match="no pickled objects"):
        load_npz(path)


def test_save_refuses_invalid_and_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out.npz"
    with pytest.raises(ValueError, match="labels"):
        save_npz(target, np.zeros((3, 4)), np.array([0, 1]))
    assert list(tmp_path.iterdir()) == []


def _npy_member(shape: tuple, data: bytes) -> bytes:
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buffer.getvalue() + data


@pytest.mark.parametrize("case", ["huge declared shape", "shape beyond its data", "zip bomb"])
def test_members_are_sized_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          case: str) -> None:
    """.npz members with huge declared shapes were allocated before being read, and a zip
    bomb was inflated whole: both are refused, naming the file and member, before."""
    import freqnn.data.npz as N

    path = tmp_path / "bad.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("labels.npy", _npy_member((2,), bytes(8)))
        if case == "huge declared shape":
            archive.writestr("values.npy", _npy_member((10**12, 3), bytes(24)))
        elif case == "shape beyond its data":
            archive.writestr("values.npy", _npy_member((2, 3), bytes(20)))
        else:
            archive.writestr("values.npy", _npy_member((2, 3 * 10**6), bytes(24 * 10**6)))
            monkeypatch.setattr(N, "MAX_NPZ_BYTES", 10**7)
    expected = ("arrays of at most 10,000,000 bytes in all" if case == "zip bomb" else
                "bytes of data its header declares")
    with pytest.raises(ValueError, match=expected) as info:
        load_npz(path)
    assert str(info.value).startswith(f"{path}: values: ")
