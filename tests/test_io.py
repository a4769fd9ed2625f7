"""Atomic writes leave either the old or the new file, never a partial one."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from freqnn.io import atomic_write, fetch_verified, sha256sum


def test_atomic_write_replaces_and_cleans_up(tmp_path):
    target = tmp_path / "sub" / "file.bin"
    with atomic_write(target) as handle:
        handle.write(b"new")
    assert target.read_bytes() == b"new"
    with pytest.raises(RuntimeError), atomic_write(target) as handle:
        handle.write(b"partial")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"new"
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]


def test_atomic_write_rejects_append_mode(tmp_path):
    with pytest.raises(ValueError, match="mode: expected 'w' or 'wb'"), atomic_write(
        tmp_path / "f", "a"
    ):
        pass


def test_sha256sum(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"freqnn" * 1000)
    assert sha256sum(path, chunk=7) == hashlib.sha256(b"freqnn" * 1000).hexdigest()


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_atomic_write_uses_ordinary_permissions(tmp_path, umask):
    old = os.umask(umask)
    try:
        with atomic_write(tmp_path / "f.txt", "w") as handle:
            handle.write("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o666 & ~umask


def test_fetch_verified_checks_the_digest(tmp_path):
    path = tmp_path / "payload.bin"
    path.write_bytes(b"freqnn")
    digest = hashlib.sha256(b"freqnn").hexdigest()
    assert fetch_verified(path.as_uri(), digest) == b"freqnn"
    with pytest.raises(ValueError, match=r"sha256 expected 0{64}, got .*nothing written"):
        fetch_verified(path.as_uri(), "0" * 64)
