"""Build, verify, cache and load the compiled CPU kernels (``cpu/*.cpp`` and their headers: SFM's
``sfm_scan.cpp``, ParallelSFM's ``psfm_block.cpp``, linked into one library).

The kernel is compiled with the system C++ compiler on first use, against the BLAS that ships
inside PyTorch (``libtorch_cpu``), and cached in :func:`kernel_cache_dir`, keyed by a hash of
the source, the generated calling convention, the compiler, the flags and the torch build.

Safety of the cache:

* a build is written atomically, then its size and SHA-256 are recorded next to it (also
  atomically); a library is loaded only if it matches its record, so a truncated, damaged or
  foreign file is never ``dlopen``-ed (a truncated shared object kills the process with SIGBUS
  when mapped): it is rebuilt, with a warning;
* builds take a file lock, so several processes (DDP ranks) build once and never read a
  half-written file;
* the loaded library must report the calling convention it was built with
  (:data:`freqnn.sfm.kernels.abi.ABI`) and pass a self-test against the PyTorch algorithm.

The cache directory is code: whoever can write to it can put a library there (with a matching
record) whose constructor runs in every process that uses SFM. So it is created with mode 0700,
and a cache directory owned by another user or writable by group or others is refused (the
PyTorch algorithm serves, with a warning saying how to fix it). The record and the library are
read only when they are regular files of the user's, opened without blocking (a FIFO in their
place must not hang a process): anything else is rebuilt.

The first build prints one line to stderr. Where the kernel cannot be had (no compiler, not
Linux, a failed build or self-test), :func:`load_library` returns None and the PyTorch algorithm
is used; this warns once, with the reason.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import platform
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from importlib import resources
from pathlib import Path

import filelock
import torch

from . import abi
from .compiled import self_test
from .parallel_compiled import self_test as parallel_self_test

__all__ = [
    "CACHE_ENV",
    "compiled_available",
    "compiled_status",
    "kernel_cache_dir",
    "load_library",
]

CACHE_ENV = "FREQNN_CACHE"

# -fno-trapping-math lets the clamps of the vectorised exp become selects, so its loops vectorise
_CXXFLAGS = (
    "-O3",
    "-std=c++17",
    "-fPIC",
    "-shared",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-fopenmp-simd",
    "-pthread",
)

_lib: ctypes.CDLL | None = None
_lib_error: str | None = None
_lib_info: dict[str, object] = {}
_lib_lock = threading.Lock()


def kernel_cache_dir() -> Path:
    """Where compiled kernels are cached: ``$FREQNN_CACHE/sfm_kernel`` if set, else the user's
    cache directory (``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux, ``~/Library/Caches`` on
    macOS, ``%LOCALAPPDATA%`` on Windows) ``/freqnn/sfm_kernel``."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser() / "sfm_kernel"
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "freqnn" / "sfm_kernel"


def _sources() -> dict[str, str]:
    """The kernel's C++ files (``cpu/*.cpp``, ``cpu/*.h``, shipped as package data) by name."""
    folder = resources.files(__package__).joinpath("cpu")
    return {
        f.name: f.read_text()
        for f in sorted(folder.iterdir(), key=lambda f: f.name)
        if f.name.endswith((".cpp", ".h"))
    }


def _torch_lib_dir() -> Path:
    return Path(torch.__file__).resolve().parent / "lib"


def _compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")


def _arch_flags() -> tuple[str, ...]:
    """AVX2 + FMA where PyTorch itself runs its AVX2 (or AVX-512) kernels, else the default."""
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:  # older torch: no query, no vector flags
        return ()
    return ("-mavx2", "-mfma") if capability in ("AVX2", "AVX512") else ()


def _flags() -> tuple[str, ...]:
    return _CXXFLAGS + _arch_flags()


def _library_path(cxx: str, sources: dict[str, str]) -> Path:
    key = "\n".join(
        [
            *(f"{name}\n{text}" for name, text in sources.items()),
            abi.header(),
            " ".join(_flags()),
            cxx,
            torch.__version__,
            str(_torch_lib_dir()),
            platform.machine(),
            platform.system(),
        ]
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return kernel_cache_dir() / f"freqnn_sfm_{digest}.so"


def _record_path(target: Path) -> Path:
    return target.with_suffix(".json")


def _fingerprint(data: bytes) -> dict[str, object]:
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "abi": abi.ABI}


def _writable_by_others(mode: int) -> bool:
    return bool(mode & (stat.S_IWGRP | stat.S_IWOTH))


def _read_own_file(path: Path) -> bytes:
    """The bytes of ``path`` if it is a regular file of this user's that no one else may write;
    else ``OSError``. Opened without blocking: a FIFO there must not hang the process."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"{path}: not a regular file")
        if info.st_uid != os.geteuid() or _writable_by_others(info.st_mode):
            raise OSError(f"{path}: owned by another user or writable by others")
        return f.read()


def _verified(target: Path) -> bool:
    """Whether ``target`` is the complete library recorded by its build."""
    try:
        record = json.loads(_read_own_file(_record_path(target)))
        if target.stat().st_size != record.get("size"):
            return False
        return _fingerprint(_read_own_file(target)) == record
    except (OSError, ValueError):
        return False


def _check_cache_dir(folder: Path) -> None:
    """Create ``folder`` (mode 0700) if needed, and refuse one that another user owns or that
    group or others may write: what is in it gets loaded as code."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = folder.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise RuntimeError(f"the kernel cache {folder} is not a directory: remove it, or set "
                           f"{CACHE_ENV} to a directory of your own")
    fixes = []
    if info.st_uid != os.geteuid():
        fixes.append(f"`chown {os.geteuid()} {folder}`")
    if _writable_by_others(info.st_mode):
        fixes.append(f"`chmod 700 {folder}`")
    if fixes:
        raise RuntimeError(
            f"the kernel cache {folder} is owned by uid {info.st_uid} with mode "
            f"{stat.S_IMODE(info.st_mode):o}: a library there is loaded as code, so the "
            f"directory must be yours (uid {os.geteuid()}) and writable by no one else; fix it "
            f"with {' and '.join(fixes)} (and remove the files others may have put in it), or "
            f"set {CACHE_ENV} to a directory of your own")


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _compile(cxx: str, sources: dict[str, str], target: Path) -> None:
    """Compile the kernel to ``target``, then record its fingerprint (both atomically)."""
    print(f"freqnn: compiling the SFM CPU kernel (once) into {target} ...", file=sys.stderr)
    lib_dir = _torch_lib_dir()
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        for name, text in sources.items():
            (Path(tmp) / name).write_text(text)
        (Path(tmp) / "sfm_abi.h").write_text(abi.header())
        partial = Path(tmp) / target.name
        cmd = [
            cxx,
            *_flags(),
            f"-I{tmp}",
            *(str(Path(tmp) / name) for name in sources if name.endswith(".cpp")),
            "-o",
            str(partial),
            f"-L{lib_dir}",
            f"-Wl,-rpath,{lib_dir}",
            "-ltorch_cpu",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr[-2000:]}")
        os.replace(partial, target)
    _write_atomic(_record_path(target), json.dumps(_fingerprint(target.read_bytes())).encode())


def _open(target: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(target))
    if lib.freqnn_sfm_abi() != abi.ABI:
        raise RuntimeError(f"{target}: built for another calling convention")
    ptr_args = [ctypes.c_void_p, ctypes.c_void_p]  # addresses of the sizes and pointer arrays
    for name in ("sfm_forward", "sfm_backward", "psfm_forward", "psfm_backward"):
        for suffix in ("f32", "f64"):
            fn = getattr(lib, f"freqnn_{name}_{suffix}")
            fn.argtypes = ptr_args
            fn.restype = None
    return lib


def _build_and_open() -> tuple[ctypes.CDLL, Path, bool]:
    if platform.system() != "Linux":
        raise RuntimeError(
            f"the compiled kernel is built on Linux only (this is {platform.system()}): it "
            "links the BLAS symbols of libtorch_cpu"
        )
    cxx = _compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (set CXX or install g++)")
    sources = _sources()
    target = _library_path(cxx, sources)
    _check_cache_dir(target.parent)
    with filelock.FileLock(str(target) + ".lock", timeout=900):
        built = False
        if not _verified(target):
            if target.exists():
                warnings.warn(
                    f"freqnn: the cached SFM kernel {target} does not match its build record "
                    "(damaged, truncated or foreign); rebuilding it",
                    RuntimeWarning,
                    stacklevel=2,
                )
            _compile(cxx, sources, target)
            built = True
        # opened under the lock: no other process replaces the file in between
        return _open(target), target, built


def load_library() -> ctypes.CDLL | None:
    """The compiled kernel, built and verified on first use; None (with a one-time warning
    giving the reason) where it cannot be had."""
    global _lib, _lib_error
    if _lib is not None or _lib_error is not None:
        return _lib
    with _lib_lock:
        if _lib is not None or _lib_error is not None:
            return _lib
        start = time.perf_counter()
        try:
            lib, target, built = _build_and_open()
            self_test(lib)
            parallel_self_test(lib)
        except Exception as exc:  # any failure: the PyTorch algorithm serves instead
            _lib_error = f"{type(exc).__name__}: {exc}"
            _lib_info.update(error=_lib_error, seconds=time.perf_counter() - start)
            warnings.warn(
                f"freqnn: the compiled SFM CPU kernel is unavailable ({_lib_error}); the SFM "
                "layers use the PyTorch implementation of the same algorithm (slower)",
                RuntimeWarning,
                stacklevel=2,
            )
            return None
        _lib = lib
        _lib_info.update(path=str(target), compiled=built, seconds=time.perf_counter() - start)
        return _lib


def compiled_available() -> bool:
    """Whether the compiled CPU kernel is usable (builds and loads it on the first call)."""
    return load_library() is not None


def compiled_status() -> dict[str, object]:
    """Build information of the compiled kernel: ``path``, ``compiled`` (built in this process
    rather than found in the cache), ``seconds`` (build / load time) or ``error``."""
    load_library()
    return dict(_lib_info)
