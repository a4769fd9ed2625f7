"""What the distributions ship: license, type marker, kernel source, citation and changelog;
the metadata (version from one place, Project-URLs, classifiers); and an sdist whose own test
suite and documentation travel with it."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import yaml

import freqnn

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "freqnn"


def _build(kind: str, out: Path) -> Path:
    """Build a wheel or an sdist of the checkout into ``out`` (no network: no isolation)."""
    if kind == "wheel":
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                   "-q", "-w", str(out), str(ROOT)]
    else:
        command = [sys.executable, "-c", "from setuptools import build_meta; "
                   f"build_meta.build_sdist({str(out)!r})"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (built,) = out.glob("*.whl" if kind == "wheel" else "*.tar.gz")
    return built


def test_repository_files() -> None:
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    assert (PACKAGE / "py.typed").is_file()
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["version"] == freqnn.__version__
    titles = [ref["title"] for ref in citation["references"]]
    assert "State-Frequency Memory Recurrent Neural Networks" in titles
    assert all(ref["authors"] and ref["year"] for ref in citation["references"])
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog and f"## [{freqnn.__version__}]" in changelog


def test_wheel_and_sdist_contents(tmp_path: Path) -> None:
    wheel = _build("wheel", tmp_path / "wheel")
    names = set(zipfile.ZipFile(wheel).namelist())
    info = f"freqnn-{freqnn.__version__}.dist-info"
    assert f"{info}/licenses/LICENSE" in names
    assert "freqnn/py.typed" in names
    sources = {
        f"freqnn/{p.relative_to(PACKAGE).as_posix()}"
        for pattern in ("*.cpp", "*.h")
        for p in PACKAGE.rglob(pattern)
    }
    assert len(sources) >= 3  # sfm_scan.cpp and its headers
    assert sources <= names, sorted(sources - names)  # the C++ kernel source, compiled on use
    metadata = zipfile.ZipFile(wheel).read(f"{info}/METADATA").decode()
    assert "License-Expression: MIT" in metadata and "License-File: LICENSE" in metadata
    assert f"\nVersion: {freqnn.__version__}\n" in metadata
    assert "Classifier: Typing :: Typed" in metadata
    assert "Project-URL: " in metadata
    sdist = _build("sdist", tmp_path / "sdist")
    unpacked = tmp_path / "unpacked"
    with tarfile.open(sdist) as archive:
        top = {Path(name).relative_to(f"freqnn-{freqnn.__version__}").as_posix()
               for name in archive.getnames() if "/" in name}
        archive.extractall(unpacked, filter="data")
    assert {"LICENSE", "CITATION.cff", "CHANGELOG.md", "src/freqnn/py.typed", "README.md",
            "mkdocs.yml"} <= top
    # the tests and the documentation they build and run, every file of them
    shipped = {
        p.relative_to(ROOT).as_posix()
        for folder in ("tests", "docs")
        for p in (ROOT / folder).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert shipped <= top, sorted(shipped - top)[:10]
    # and they collect there (the installed package, the unpacked tree's tests and files)
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                           "-p", "no:cacheprovider", "tests"],
                          cwd=unpacked / f"freqnn-{freqnn.__version__}", capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:]


def test_version_has_one_source() -> None:
    """pyproject.toml reads the version from ``freqnn.__version__`` and writes none itself."""
    text = (ROOT / "pyproject.toml").read_text()
    assert not re.search(r"^version\s*=\s*\"", text, flags=re.M)  # no literal version
    assert 'dynamic = ["version"]' in text
    assert 'version = { attr = "freqnn.__version__" }' in text
