"""The shape of the code: dependencies point one way (bots -> core -> memory -> models), no import
cycles (imports under TYPE_CHECKING and inside functions count), platform libraries only in bots/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {
    "bots": ROOT / "bots",
    "core": ROOT / "core",
    "memory": ROOT / "memory",
    "models": ROOT / "models",
    "": ROOT / "greenroom",
}
# what each layer may import from the project (besides itself and the shared greenroom.errors)
ALLOWED = {"bots": {"core", "memory", "models"}, "core": {"memory", "models"}, "memory": {"models"}, "models": set()}
PLATFORM_LIBRARIES = ("discord", "telegram")


def modules() -> dict[str, Path]:
    found = {}
    for prefix, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(["greenroom", *([prefix] if prefix else []), *parts])] = path
    return found


def imports(name: str, path: Path) -> set[str]:
    """Every module ``path`` imports, wherever the import statement stands."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: {m for m in imports(name, path) if m in known and m != name} for name, path in known.items()}


def layer(module: str) -> str:
    part = module.split(".")[1] if module.count(".") else ""
    return part if part in ALLOWED else ""


def test_there_are_no_import_cycles(graph) -> None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt) :] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_layers_depend_one_way(graph) -> None:
    wrong = [
        f"{a} imports {b}"
        for a, deps in graph.items()
        if (la := layer(a))
        for b in deps
        if (lb := layer(b)) and lb != la and lb not in ALLOWED[la]
    ]
    wrong += [
        f"{a} imports {b}"
        for a, deps in graph.items()
        if layer(a)
        for b in deps
        if not layer(b) and b != "greenroom.errors"
    ]
    assert wrong == []


def test_only_bots_import_a_platform_library() -> None:
    offenders = [
        name
        for name, path in modules().items()
        if layer(name) != "bots" and any(m.split(".")[0] in PLATFORM_LIBRARIES for m in imports(name, path))
    ]
    assert offenders == []


def test_the_entry_point_and_layers_map_to_one_package() -> None:
    assert set(modules()) >= {
        "greenroom.cli",
        "greenroom.compose",
        "greenroom.errors",
        "greenroom.core.dispatch",
        "greenroom.bots.discord",
        "greenroom.memory.library",
        "greenroom.models.llm",
    }
