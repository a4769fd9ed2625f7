"""File helpers shared by data caches, checkpoints and reports.

``atomic_write`` is the only way freqnn writes a file that another run may read: the content goes
to a temporary file in the same directory, is flushed and fsync'ed, then renamed over the target
(``os.replace`` is atomic on POSIX), so a killed process never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_write", "fetch_verified", "sha256sum"]


def _default_mode() -> int:
    """Permissions of a newly created file under the current umask (mkstemp uses 0o600).

    Linux reports the umask in /proc; elsewhere it is read by setting and restoring it.
    """
    try:
        with open("/proc/self/status") as status:
            umask = next(int(line.split()[1], 8) for line in status if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file next to ``path``; on success rename it over ``path``.

    On any exception the temporary file is removed and ``path`` is left untouched. The file gets
    the permissions of an ordinary new file (0o666 minus the umask), not mkstemp's private 0o600.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode: expected 'w' or 'wb', got {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _default_mode())
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    # make the rename itself durable
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def sha256sum(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fetch_verified(
    url: str, sha256: str, opener: Callable[[str], IO[bytes]] | None = None
) -> bytes:
    """Download ``url`` into memory and return its bytes if their SHA-256 is ``sha256``.

    ``opener`` (default ``urllib.request.urlopen``) is there for tests and proxies; ``url`` may
    be ``file://``. A mismatch raises ``ValueError`` before the caller writes anything.
    """
    open_url = opener if opener is not None else urllib.request.urlopen
    with open_url(url) as response:
        payload = response.read()
    digest = hashlib.sha256(payload).hexdigest()
    if digest != sha256:
        raise ValueError(f"{url}: sha256 expected {sha256}, got {digest}; nothing written")
    return payload
