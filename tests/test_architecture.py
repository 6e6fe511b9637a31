"""The shape of the package: the import graph has no circle, no lower layer imports a higher
one, and no module or function grows past what a reader takes in at once."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "logdist"
MODULE_LINES = 450
FUNCTION_LINES = 100

# Lower layers first; a module may import its own layer and those below it.
LAYERS = [
    ("logdist.errors", "logdist.events"),
    ("logdist.formats",),
    ("logdist.core",),
    ("logdist.config", "logdist.search", "logdist.net", "logdist.admin_client"),
    ("logdist.distributor", "logdist.analyzer", "logdist.emitter", "logdist.local"),
    ("logdist.bench", "logdist.cli", "logdist.__main__"),
]
# Inside the distributor: its parts, then the composition root, then the HTTP face.
DISTRIBUTOR_LAYERS = [
    tuple(
        f"logdist.distributor.{part}"
        for part in ("inputs", "routing", "outputs", "storage", "control", "observe")
    ),
    ("logdist.distributor.node",),
    ("logdist.distributor.web",),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The logdist modules `name` imports, wherever in the file (a deferred import counts)."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in known:
                    found.add(full)
                elif base in known:
                    found.add(base)
    found.discard(name)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def rank(name: str, layers: list[tuple[str, ...]]) -> int | None:
    for i, layer in enumerate(layers):
        if any(name == top or name.startswith(top + ".") for top in layer):
            return i
    return None


def test_the_import_graph_has_no_circle() -> None:
    edges = graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                circle = stack[stack.index(nxt) :] + [nxt]
                pytest.fail("import circle: " + " -> ".join(circle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)


@pytest.mark.parametrize("layers", [LAYERS, DISTRIBUTOR_LAYERS], ids=["package", "distributor"])
def test_no_layer_imports_a_higher_one(layers: list[tuple[str, ...]]) -> None:
    wrong = []
    for name, deps in graph().items():
        mine = rank(name, layers)
        if mine is None:
            continue
        for dep in deps:
            theirs = rank(dep, layers)
            if theirs is not None and theirs > mine:
                wrong.append(f"{name} imports {dep}")
    assert not wrong, "\n".join(sorted(wrong))


def test_every_module_has_a_layer() -> None:
    loose = [n for n in modules() if n != "logdist" and rank(n, LAYERS) is None]
    assert not loose, f"modules in no layer: {loose}"


def test_no_module_or_function_is_too_long() -> None:
    long = []
    for name, path in modules().items():
        text = path.read_text()
        if text.count("\n") > MODULE_LINES:
            long.append(f"{name}: {text.count(chr(10))} lines (at most {MODULE_LINES})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {size} lines (at most {FUNCTION_LINES})")
    assert not long, "\n".join(long)


def test_at_most_six_modules_sit_at_the_top() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 6, top


def test_package_faces_are_deliberate() -> None:
    """An __init__.py is empty unless the package's face is meant (config's names, the
    daemons' make_app, the CLI's main)."""
    faces = {"logdist", "logdist.config", "logdist.analyzer", "logdist.cli"}
    busy = []
    for path in PACKAGE.rglob("__init__.py"):
        body = ast.parse(path.read_text()).body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]  # a docstring says what the package is; it is not a face
        if body and module_name(path) not in faces:
            busy.append(module_name(path))
    assert not busy, busy
