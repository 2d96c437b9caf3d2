"""The import graph of our packages: arrows point down only and there are no cycles.

DESIGN's layers: `cli` on top may import everything; `ui -> worker -> styledrop ->
{muse, adapters, feedback}`; `zoo_build` and `bench` sit beside `worker`, on top of
`styledrop`; `adapters` may import `muse` only; `muse` and `feedback` import nothing of
ours. Every import counts, those inside functions included, since a lazy import is still
a dependency. The graph is read from the source with `ast`, so nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {
    "muse": set(),
    "feedback": set(),
    "adapters": {"muse"},
    "styledrop": {"muse", "adapters", "feedback"},
    "zoo_build": {"styledrop", "muse", "adapters", "feedback"},
    "bench": {"styledrop", "muse", "adapters", "feedback"},
    "worker": {"styledrop", "muse", "adapters", "feedback"},
    "ui": {"worker", "styledrop", "feedback"},
    "cli": {"ui", "worker", "bench", "zoo_build", "styledrop", "muse", "adapters", "feedback"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """Our modules that `path` imports, anywhere in the file.

    `from package import module` depends on that module only; `from module import name`
    on the module that defines the name.
    """
    found = set()
    own = module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing module's package
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *filter(None, [base])])
            submodules = {f"{base}.{alias.name}" for alias in node.names} & modules
            found.update(submodules)
            if len(submodules) < len(node.names):
                found.add(base)
    return {name for name in found if name in modules and name != own}


def graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports."""
    files = {module_name(p): p for top in ALLOWED for p in (ROOT / top).rglob("*.py")}
    return {name: imports_of(path, set(files)) for name, path in files.items()}


def _edits_sys_path(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in {"insert", "append", "extend"}
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "path"
            and isinstance(node.value.value, ast.Name)
            and node.value.value.id == "sys"
        ):
            return True
    return False


def test_every_package_of_the_layout_is_checked():
    tops = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    assert tops - {"tests"} == set(ALLOWED)


def test_imports_point_down_the_layers():
    upward = sorted(
        f"{source} imports {target}"
        for source, targets in graph().items()
        for target in targets
        if target.split(".")[0] != source.split(".")[0]
        and target.split(".")[0] not in ALLOWED[source.split(".")[0]]
    )
    assert upward == []


def test_no_module_import_cycles():
    edges = graph()
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for target in sorted(edges[node]):
            if state.get(target) == "open":
                cycles.append(" -> ".join([*stack[stack.index(target) :], target]))
            elif target not in state:
                visit(target, [*stack, target])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_no_sys_path_edits():
    edits = [
        str(path.relative_to(ROOT))
        for top in [*ALLOWED, "tests"]
        for path in (ROOT / top).rglob("*.py")
        if _edits_sys_path(path)
    ]
    assert edits == []


def test_the_graph_sees_top_level_lazy_and_relative_imports():
    edges = graph()
    assert "styledrop.guidance" in edges["styledrop.adapted"]  # at module top
    assert "worker.client" in edges["cli.jobs"]  # inside a function
    assert "zoo_build.train_vq" in edges["zoo_build.compact_vq"]
    assert "muse" not in edges["muse.pipeline"]  # `from muse import weights` is the module
