"""What the distributions ship: license, type marker, kernel source, citation and changelog."""

from __future__ import annotations

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
    sdist = _build("sdist", tmp_path / "sdist")
    with tarfile.open(sdist) as archive:
        top = {Path(name).relative_to(f"freqnn-{freqnn.__version__}").as_posix()
               for name in archive.getnames() if "/" in name}
    assert {"LICENSE", "CITATION.cff", "CHANGELOG.md", "src/freqnn/py.typed"} <= top
