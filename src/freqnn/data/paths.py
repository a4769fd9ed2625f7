"""Where freqnn finds shared data and keeps its caches.

Data sets that freqnn does not generate are read from a data root, resolved in this order:
an explicit argument (the CLI's ``--data-root``), the environment variable ``FREQNN_DATA``, then
``../shared/data`` next to the repository root (the checkout this package was installed from in
editable mode) or next to the current directory.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV", "DATA_ENV", "cache_dir", "data_root", "repo_root"]

DATA_ENV = "FREQNN_DATA"
CACHE_ENV = "FREQNN_CACHE"


def repo_root() -> Path | None:
    """The source checkout (``src/`` layout) this package runs from, if any."""
    candidate = Path(__file__).resolve().parents[3]
    return candidate if (candidate / "pyproject.toml").is_file() else None


def data_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The directory holding shared data sets (it may not exist: loaders say how to get it)."""
    if explicit is not None:
        return Path(explicit).expanduser()
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    root = repo_root()
    base = root if root is not None else Path.cwd()
    return (base / ".." / "shared" / "data").resolve()


def cache_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Directory for derived data (built corpora, rendered piano rolls); created on demand.

    Order: explicit argument, ``FREQNN_CACHE``, ``<repo>/data_cache`` for a checkout, else
    ``~/.cache/freqnn``.
    """
    if explicit is not None:
        path = Path(explicit).expanduser()
    elif os.environ.get(CACHE_ENV):
        path = Path(os.environ[CACHE_ENV]).expanduser()
    else:
        root = repo_root()
        path = root / "data_cache" if root is not None else Path.home() / ".cache" / "freqnn"
    path.mkdir(parents=True, exist_ok=True)
    return path
