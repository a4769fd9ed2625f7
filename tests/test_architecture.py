"""Rule 1 of the architecture: the core imports only torch, numpy and the standard library."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import freqnn

SRC = Path(freqnn.__file__).resolve().parent
CORE = [
    "__init__.py", "checks.py", "frequencies.py", "functional.py", "transform.py", "metrics.py",
    "features.py", "io.py", "sfm", "data/paths.py",
]
ALLOWED = {"torch", "numpy", "freqnn"}


def _core_files() -> list[Path]:
    files: list[Path] = []
    for entry in CORE:
        path = SRC / entry
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return files


def test_core_modules_import_only_torch_numpy_stdlib():
    stdlib = set(sys.stdlib_module_names)
    offenders = []
    for path in _core_files():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in ALLOWED and top not in stdlib:
                    offenders.append(f"{path.relative_to(SRC)}: {name}")
    assert not offenders, offenders


def test_importing_freqnn_loads_no_experiment_stack():
    code = (
        "import sys, freqnn; heavy = {'lightning', 'pytorch_lightning', 'matplotlib', 'scipy',"
        " 'music21', 'pretty_midi', 'yaml'}; print(sorted(heavy & {m.split('.')[0] for m in"
        " sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
