"""Data root and cache resolution order."""

from __future__ import annotations

from pathlib import Path

from freqnn.data import paths


def test_data_root_order(monkeypatch, tmp_path):
    monkeypatch.delenv(paths.DATA_ENV, raising=False)
    default = paths.data_root()
    assert default.parts[-2:] == ("shared", "data")
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path))
    assert paths.data_root() == tmp_path
    assert paths.data_root("/explicit") == Path("/explicit")


def test_cache_dir_created(monkeypatch, tmp_path):
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache"))
    assert paths.cache_dir().is_dir()
    assert paths.cache_dir(tmp_path / "other") == tmp_path / "other"
