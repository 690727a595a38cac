"""The package's shape: no import cycles, no import-time side effects, the CLI's privates
stay private, the public API is what ``__all__`` says."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import autocompress

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "autocompress"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(path: Path, known: set[str]) -> set[str]:
    """autocompress modules ``path`` imports at run time (anywhere but ``if TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("autocompress"):
            assert node.module is not None
            submodules = {f"{node.module}.{a.name}" for a in node.names} & known
            found |= submodules
            if len(submodules) < len(node.names):  # names defined by the module itself
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("autocompress")}
    return found & known


def test_no_import_cycles() -> None:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(files)
    graph = {name: runtime_imports(path, known) - {name} for name, path in files.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_importing_the_package_changes_no_global_setting() -> None:
    code = (
        # the libraries themselves install warning filters when imported: import them first
        "import logging, warnings, optuna, matplotlib, numpy, scipy.special, sqlalchemy\n"
        "import torch, torch_pruning, torch.utils.flop_counter, yaml, rich\n"
        "before = (optuna.logging.get_verbosity(), len(warnings.filters),"
        " matplotlib.get_backend(), logging.getLogger('torch.onnx').level)\n"
        "import autocompress, autocompress.cli, autocompress.search.loop\n"
        "import autocompress.report.plots, autocompress.export, autocompress.commands\n"
        "after = (optuna.logging.get_verbosity(), len(warnings.filters),"
        " matplotlib.get_backend(), logging.getLogger('torch.onnx').level)\n"
        "assert before == after, (before, after)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_nothing_outside_the_cli_imports_its_private_names() -> None:
    for path in [
        *ROOT.glob("benchmarks/*.py"),
        *ROOT.glob("tests/**/*.py"),
        *PACKAGE.rglob("*.py"),
    ]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "autocompress.cli":
                assert all(not a.name.startswith("_") for a in node.names), path


def test_the_public_api_is_exported_and_documented() -> None:
    for name in ("profile", "price", "compress", "search", "save", "load", "Search", "Policy"):
        assert name in autocompress.__all__
        assert getattr(autocompress, name).__doc__


def test_the_api_docstring_examples_run() -> None:
    import doctest
    import importlib

    import autocompress.api
    import autocompress.cost.latency
    import autocompress.cost.metrics
    import autocompress.fidelity
    import autocompress.spaces.budget

    residual = importlib.import_module("autocompress.compress.residual")  # `compress` is the API's
    for module in (
        autocompress.api,
        autocompress.cost.latency,
        autocompress.cost.metrics,
        autocompress.fidelity,
        autocompress.spaces.budget,
        residual,
    ):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.attempted and not result.failed, module.__name__
