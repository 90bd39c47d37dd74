"""The core's import graph: no cycles (lazy imports inside functions included) and arrows one way.

DESIGN.md: ``pages -> ui -> distill_core``; inside the core ``papers/lab -> train -> methods ->
attacks -> models``, ``robustness/evaluate -> attacks``. The graph is read from the source with
``ast`` (every ``import`` statement, at any depth), so an import hidden in a function counts.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "distill_core"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in CORE.rglob("*.py")}


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def _resolve(current: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = current if _is_package(current) else current.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def imports_of(name: str) -> set[str]:
    """Every module ``name`` imports, anywhere in its source (absolute names, external ones included)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, node)
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.add(sub if sub in MODULES else base)
    return out


def core_graph() -> dict[str, set[str]]:
    return {m: {i for i in imports_of(m) if i in MODULES and i != m} for m in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_reader_sees_lazy_imports(tmp_path):
    graph = core_graph()
    assert "distill_core.spec" in graph["distill_core.zoo_build"]                 # a plain import
    assert "distill_core.methods.mtard" in graph["distill_core.methods"]           # `from . import mtard`
    assert "distill_core.reproduce" in graph["distill_core.__main__"]              # inside a function
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_core_has_no_import_cycle():
    assert _cycles(core_graph()) == []


def test_no_dynamic_imports_in_the_core():
    for name, path in MODULES.items():
        text = path.read_text()
        assert "importlib" not in text and "__import__(" not in text, f"{name} imports dynamically"


FORBIDDEN = {
    # module prefix: prefixes it must not import
    "distill_core": ("streamlit", "ui", "pages", "app"),
    "distill_core.models": ("distill_core.attacks", "distill_core.methods", "distill_core.train",
                            "distill_core.evaluate", "distill_core.robustness"),
    "distill_core.attacks": ("distill_core.methods", "distill_core.train", "distill_core.evaluate",
                             "distill_core.robustness", "distill_core.explain", "distill_core.spec"),
    "distill_core.methods": ("distill_core.train", "distill_core.spec", "distill_core.evaluate",
                             "distill_core.robustness", "distill_core.papers", "distill_core.lab",
                             "distill_core.reproduce", "distill_core.zoo"),
    "distill_core.train": ("distill_core.spec", "distill_core.papers", "distill_core.lab", "distill_core.reproduce",
                           "distill_core.zoo", "distill_core.runs"),
    "distill_core.papers": ("distill_core.reproduce", "distill_core.lab", "distill_core.__main__"),
    "distill_core.lab": ("distill_core.reproduce", "distill_core.__main__"),
    "distill_core.plots": ("distill_core.evaluate", "distill_core.train", "distill_core.methods"),
}


@pytest.mark.parametrize("prefix", sorted(FORBIDDEN))
def test_arrows_run_one_way(prefix):
    bad = []
    for name in MODULES:
        if name != prefix and not name.startswith(prefix + "."):
            continue
        for target in imports_of(name):
            if any(target == f or target.startswith(f + ".") for f in FORBIDDEN[prefix]):
                bad.append(f"{name} -> {target}")
    assert not bad, bad
