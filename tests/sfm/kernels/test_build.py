"""The compiled kernel's cache: verified before it is loaded, built once under a lock, one line
logged for a build, one warning for a fallback, kept outside the checkout by default."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from freqnn.sfm import kernels
from freqnn.sfm.kernels import abi, build

# A new process: one SFM forward on the default path against the reference; prints the diff.
PROBE = """
import torch, freqnn
from freqnn.sfm import kernels
torch.manual_seed(0)
m = freqnn.AdaptiveSFM(3, 5, 4, 3, dtype=torch.float64)
x = torch.randn(6, 2, 3, dtype=torch.float64)
with torch.no_grad():
    a, _ = m(x)
    with kernels.use_reference():
        b, _ = m(x)
print("status", kernels.compiled_status().get("compiled"), "diff", float((a - b).abs().max()))
"""


def probe(cache: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "FREQNN_CACHE": str(cache), **env}
    return subprocess.Popen(
        [sys.executable, "-c", PROBE], env=environ, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def finish(proc: subprocess.Popen, timeout: float = 600) -> tuple[str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:  # hung (on a FIFO, say): leave no process behind
        proc.kill()
        proc.communicate()
        raise
    assert proc.returncode == 0, err
    assert "diff" in out and float(out.split("diff")[1]) < 1e-10, out
    return out, err


@pytest.fixture
def fresh_kernel(monkeypatch):
    monkeypatch.setattr(build, "_lib", None)
    monkeypatch.setattr(build, "_lib_error", None)
    monkeypatch.setattr(build, "_lib_info", {})


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A cache in which a new process built the kernel: it logs one line, leaves the library,
    its record and the lock, and no temporary."""
    cache = tmp_path_factory.mktemp("cache")
    out, err = finish(probe(cache))
    assert "status True" in out  # built by this process
    assert err.count("compiling the SFM CPU kernel (once)") == 1
    files = sorted(p.suffix for p in (cache / "sfm_kernel").iterdir())
    assert files == [".json", ".lock", ".so"]
    return cache


def test_build_is_cached(built, tmp_path):
    shutil.copytree(built, tmp_path, dirs_exist_ok=True)
    out, err = finish(probe(tmp_path))
    assert "status False" in out and "compiling" not in err  # loaded from the cache


@pytest.mark.parametrize(
    "damage", ["truncate", "foreign", "no-record", "fifo-record", "fifo-library"])
def test_damaged_library_is_never_loaded(built, tmp_path, damage):
    shutil.copytree(built, tmp_path, dirs_exist_ok=True)
    (library,) = (tmp_path / "sfm_kernel").glob("*.so")
    record = library.with_suffix(".json")
    if damage == "truncate":  # dlopen of this file used to kill the process with SIGBUS
        with open(library, "r+b") as f:
            f.truncate(30_000)
    elif damage == "foreign":  # same size, other bytes
        library.write_bytes(os.urandom(library.stat().st_size))
    elif damage == "no-record":
        record.unlink()
    elif damage == "fifo-record":  # reading it used to block every process for ever
        record.unlink()
        os.mkfifo(record)
    else:  # a FIFO in place of the library, with a record that fits it (empty)
        library.unlink()
        os.mkfifo(library)
        record.write_text(json.dumps({"size": 0, "sha256": hashlib.sha256(b"").hexdigest(),
                                      "abi": abi.ABI}))
    out, err = finish(probe(tmp_path), timeout=180)
    assert "does not match its build record" in err and "rebuilding" in err
    assert "status True" in out  # rebuilt, verified, used


def test_cache_directory_is_private(built):
    assert stat.S_IMODE((built / "sfm_kernel").stat().st_mode) == 0o700


def test_cache_writable_by_others_is_refused(built, tmp_path):
    """The cache is code: a library there runs in every process. A directory others may write is
    not trusted: nothing in it is loaded, the PyTorch algorithm serves, the warning says how to
    fix it."""
    shutil.copytree(built, tmp_path, dirs_exist_ok=True)
    folder = tmp_path / "sfm_kernel"
    folder.chmod(0o777)
    out, err = finish(probe(tmp_path))
    assert "status None" in out  # not loaded, not built
    assert f"the kernel cache {folder} is owned by uid {os.geteuid()} with mode 777" in err
    assert f"chmod 700 {folder}" in err and "compiling" not in err


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="giving a directory to another user needs root")
def test_cache_of_another_user_is_refused(tmp_path):
    folder = tmp_path / "sfm_kernel"
    folder.mkdir(mode=0o700)
    os.chown(folder, 65534, 65534)
    with pytest.raises(RuntimeError, match=rf"the kernel cache {folder} is owned by uid 65534 "
                                           rf"with mode 700: .*`chown 0 {folder}`"):
        build._check_cache_dir(folder)


def test_concurrent_builds_take_the_lock(tmp_path):
    """Three processes (DDP ranks) on an empty cache: one builds, the others wait and load it."""
    procs = [probe(tmp_path) for _ in range(3)]
    results = [finish(p) for p in procs]
    assert sum(err.count("compiling the SFM CPU kernel") for _, err in results) == 1
    assert sum("status True" in out for out, _ in results) == 1


def test_fallback_warns_once_with_the_reason(fresh_kernel, monkeypatch, recwarn):
    monkeypatch.setattr(build, "_compiler", lambda: None)
    assert not kernels.compiled_available()
    assert not kernels.compiled_available()
    messages = [str(w.message) for w in recwarn if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "no C++ compiler" in messages[0]


def test_default_cache_is_the_user_cache_not_the_checkout(monkeypatch, tmp_path):
    monkeypatch.delenv("FREQNN_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    if sys.platform.startswith("linux"):
        assert kernels.kernel_cache_dir() == tmp_path / "freqnn" / "sfm_kernel"
    repo = Path(__file__).resolve().parents[3]
    assert repo not in kernels.kernel_cache_dir().parents
    monkeypatch.setenv("FREQNN_CACHE", str(tmp_path / "elsewhere"))
    assert kernels.kernel_cache_dir() == tmp_path / "elsewhere" / "sfm_kernel"
