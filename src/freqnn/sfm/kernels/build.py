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


def _fingerprint(path: Path) -> dict[str, object]:
    data = path.read_bytes()
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "abi": abi.ABI}


def _verified(target: Path) -> bool:
    """Whether ``target`` is the complete library recorded by its build."""
    try:
        record = json.loads(_record_path(target).read_text())
        if target.stat().st_size != record.get("size"):
            return False
        return _fingerprint(target) == record
    except (OSError, ValueError):
        return False


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
    _write_atomic(_record_path(target), json.dumps(_fingerprint(target)).encode())


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
    target.parent.mkdir(parents=True, exist_ok=True)
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
            from .parallel import self_test as parallel_self_test  # it imports this module

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
