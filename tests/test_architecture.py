"""Import rules of the architecture: the core imports only torch, numpy and the standard library;
the tasks read runs without the trainer."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import freqnn

SRC = Path(freqnn.__file__).resolve().parent
CORE = [
    "__init__.py", "checks.py", "frequencies.py", "functional.py", "transform.py", "metrics.py",
    "features.py", "io.py", "sfm", "baselines", "data/paths.py",
]
# filelock is a dependency of torch itself (the kernel cache locks its builds with it)
ALLOWED = {"torch", "numpy", "freqnn", "filelock"}


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


# what the core may not import from the package itself: the experiment stack and the data sets
EXPERIMENT_MODULES = ("freqnn.data", "freqnn.tasks", "freqnn.train", "freqnn.cli", "freqnn.plots",
                      "freqnn.config")
CORE_WITHOUT_DATA = ["sfm", "baselines", "transform.py", "functional.py", "frequencies.py",
                     "checks.py", "metrics.py"]


def _absolute_imports(path: Path) -> list[str]:
    """Every module ``path`` imports, relative imports resolved against its package."""
    package = ["freqnn", *path.relative_to(SRC).parent.parts]
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            # "from . import x" imports the submodule x
            names += [f"{module}.{a.name}" for a in node.names] if not node.module else [module]
    return names


def test_relative_import_resolution():
    """The resolver of the next test, on a known file (a test of the test)."""
    imports = _absolute_imports(SRC / "sfm" / "cell.py")
    assert "freqnn.checks" in imports and "freqnn.sfm.kernels" in imports


def test_core_imports_nothing_from_data_or_the_experiment_stack():
    offenders = []
    for entry in CORE_WITHOUT_DATA:
        path = SRC / entry
        if not path.exists():  # baselines/ lands with its own issue
            continue
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            offenders += [
                f"{file.relative_to(SRC)}: {name}"
                for name in _absolute_imports(file)
                if name.startswith(EXPERIMENT_MODULES)
            ]
    assert not offenders, offenders


def test_importing_freqnn_loads_no_experiment_stack():
    code = (
        "import sys, freqnn; heavy = {'lightning', 'pytorch_lightning', 'matplotlib', 'scipy',"
        " 'music21', 'pretty_midi', 'yaml', 'pydantic'}; print(sorted(heavy & {m.split('.')[0]"
        " for m in"
        " sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_tasks_import_neither_the_trainer_nor_the_cli():
    """Tasks sit below the runner: they read runs through freqnn.checkpoint, never through
    freqnn.train (Lightning) or freqnn.cli, which import the tasks."""
    forbidden = ("freqnn.train", "freqnn.cli")
    offenders = [
        f"{file.relative_to(SRC)}: {name}"
        for file in sorted((SRC / "tasks").rglob("*.py"))
        for name in _absolute_imports(file)
        if name in forbidden or name.startswith(tuple(f"{m}." for m in forbidden))
    ]
    assert not offenders, offenders


def test_checkpoint_loading_needs_no_lightning():
    code = (
        "import sys, freqnn.checkpoint, freqnn.tasks.phoneme, freqnn.tasks.stocks; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'lightning', "
        "'pytorch_lightning'}), 'freqnn.train' in sys.modules, 'freqnn.cli' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] False False"
