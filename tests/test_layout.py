"""The package layout's rules, read from the source: imports point down, no cycles, one hook module.

Layers, bottom to top: data -> probes -> saes -> analyses -> dashboard. A module may import its
own layer and the layers below; library code (everything but ``analyses.cli``) never imports
the CLI. Imports inside functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

LAYERS = ("data", "probes", "saes", "analyses", "dashboard")
HOOK_ATTACH = re.compile(r"\.add_hook\(|\.register_forward_hook\(|\.register_forward_pre_hook\(|"
                         r"\.register_full_backward_hook\(|\.hooks\(")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    out = {}
    for layer in LAYERS:
        for path in sorted((REPO_ROOT / layer).rglob("*.py")):
            out[_module_name(path)] = path
    return out


SOURCES = _sources()


def _imports(path: Path) -> set[str]:
    """Every attnlab module ``path`` imports (module-level and inside functions)."""
    me = _module_name(path)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this package
                base = me.split(".")[: -node.level] if path.name != "__init__.py" else \
                    me.split(".")[: len(me.split(".")) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            names = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in SOURCES:
                name = name.rpartition(".")[0]
            if name and name != me:
                found.add(name)
    return found


GRAPH = {name: _imports(path) for name, path in SOURCES.items()}


def _layer(module: str) -> int:
    return LAYERS.index(module.split(".")[0])


def _is_cli(module: str) -> bool:
    return module == "analyses.cli" or module.startswith("analyses.cli.")


def test_imports_point_down_only():
    upward = [(m, d) for m, deps in GRAPH.items() for d in deps if _layer(d) > _layer(m)]
    assert upward == [], f"upward imports (module, imported): {upward}"


def test_library_code_never_imports_the_cli():
    bad = [(m, d) for m, deps in GRAPH.items() if not _is_cli(m) for d in deps if _is_cli(d)]
    assert bad == [], f"library modules importing analyses.cli: {bad}"


def test_no_import_cycle():
    # Package __init__ files re-export their children; an edge child -> its own package is not a
    # cycle of code, so drop edges into a package from inside it.
    graph = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in GRAPH.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep] if dep in stack else [node, dep])
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == [], f"import cycles: {cycles}"


def test_analyses_top_level_holds_packages_and_at_most_two_modules():
    top = REPO_ROOT / "analyses"
    modules = sorted(p.name for p in top.glob("*.py") if p.name != "__init__.py")
    assert len(modules) <= 2, modules
    for sub in top.iterdir():
        if sub.is_dir() and sub.name != "__pycache__":
            assert (sub / "__init__.py").exists(), f"{sub} is not a package"


@pytest.mark.parametrize("package", ["probes", "saes", "analyses", "dashboard", "data"])
def test_only_probes_hooks_attaches_hooks(package):
    attaching = sorted(
        _module_name(p) for p in (REPO_ROOT / package).rglob("*.py")
        if HOOK_ATTACH.search(p.read_text()) and _module_name(p) != "probes.hooks")
    assert attaching == [], f"modules attaching hooks outside probes.hooks: {attaching}"
