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
# optional back ends: the one module that may import an extra's package, imported on demand
# only (never by `import freqnn`; test below)
OPTIONAL = {"sfm/kernels/triton_scan.py": {"triton"}}


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
                relative = path.relative_to(SRC).as_posix()
                if top not in ALLOWED | OPTIONAL.get(relative, set()) and top not in stdlib:
                    offenders.append(f"{relative}: {name}")
    assert not offenders, offenders


def test_importing_freqnn_imports_no_optional_back_end():
    code = ("import sys, freqnn, freqnn.sfm.kernels.op; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'triton' "
            "or m.endswith('triton_scan')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.strip() == "[]", done.stdout


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


def _module_name(path: Path, root: Path, package: str) -> str:
    """Dotted name of the module at ``path`` in the package whose directory is ``root``."""
    parts = [package, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = SRC, package: str = "freqnn") -> dict[str, set[str]]:
    """Module -> the package's modules it imports, from every import statement (module-level,
    in functions, under ``TYPE_CHECKING``: a late import only hides a circle), relative imports
    resolved. ``from m import x`` is an edge to the submodule ``m.x`` where there is one, else to
    ``m``. The parent packages that Python initialises on the way are left out: every submodule
    of a package whose ``__init__`` imports it would otherwise form a circle."""
    modules = {_module_name(p, root, package): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        here = [package, *path.relative_to(root).parent.parts]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = here[: len(here) - node.level + 1] if node.level else []
                module = ".".join([*base, *([node.module] if node.module else [])])
                candidates = [f"{module}.{alias.name}" for alias in node.names]
            else:
                continue
            for candidate in candidates:
                while candidate and candidate not in modules:  # a name, not a module: its module
                    candidate = candidate.rpartition(".")[0]
                if candidate:
                    targets.add(candidate)
        graph[name] = targets - {name}  # "from . import x" of a name defined in __init__ itself
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of ``graph`` as [a, b, ..., a], or None if it has none (depth-first search;
    iterative, so a long chain cannot exhaust the recursion limit)."""
    done: set[str] = set()
    for root in sorted(graph):
        if root in done:
            continue
        path, on_path = [root], {root}
        stack = [iter(sorted(graph.get(root, ())))]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                done.add(path[-1])
                on_path.discard(path.pop())
            elif nxt in on_path:
                return [*path[path.index(nxt):], nxt]
            elif nxt not in done:
                path.append(nxt)
                on_path.add(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_cycle_detector_on_small_graphs():
    """The detector of the next test finds a circle where there is one (a test of the test)."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None  # a diamond is no circle
    assert find_cycle({"d": {"a"}, "a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"a"}}) == ["a", "a"]


def test_import_graph_resolves_relative_and_late_imports(tmp_path):
    """The graph of a synthetic package: a relative import of a name, a submodule through
    ``from . import``, and an import inside a function closing a circle."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .layer import Layer\n")
    (pkg / "layer.py").write_text("from .sub.kernel import run\nclass Layer: ...\n")
    (pkg / "sub" / "__init__.py").write_text("from . import kernel\n")
    (pkg / "sub" / "kernel.py").write_text("def run():\n    from ..layer import Layer\n")
    graph = import_graph(pkg, "pkg")
    assert graph == {
        "pkg": {"pkg.layer"},
        "pkg.layer": {"pkg.sub.kernel"},
        "pkg.sub": {"pkg.sub.kernel"},
        "pkg.sub.kernel": {"pkg.layer"},
    }
    assert find_cycle(graph) == ["pkg.layer", "pkg.sub.kernel", "pkg.layer"]


def test_package_import_graph_has_no_cycle():
    """No module of freqnn imports, even late, a module that imports it back: in particular
    the kernels (sfm/kernels/) hold every algorithm and never import the layer modules."""
    graph = import_graph()
    assert "freqnn.sfm.kernels.parallel" in graph["freqnn.sfm.parallel"]  # the resolver sees it
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])
