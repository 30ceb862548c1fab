"""The house's floors, read from the import graph (every import, module level or inside a
function): `flaxbert` (the model library) never imports `distill`; `distill`'s library modules
never import its programs (`distill.tasks`, `distill.cli`); and no import cycle exists."""

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGES = ("flaxbert", "distill")
PROGRAMS = ("distill.tasks", "distill.cli")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (`from a import b` counts `a.b` when that is a
    module, else `a`)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        edges = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                    + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:  # `import a.b.c` of a name in a.b
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def _within(module: str, prefixes) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_the_model_library_never_imports_the_training_framework():
    wrong = {m: sorted(t for t in ts if _within(t, ("distill",)))
             for m, ts in import_graph().items() if _within(m, ("flaxbert",))}
    assert not {m: ts for m, ts in wrong.items() if ts}


def test_distill_library_modules_never_import_the_programs():
    graph = import_graph()
    library = [m for m in graph if _within(m, ("distill",)) and not _within(m, PROGRAMS)]
    assert len(library) > 10  # the graph was read
    wrong = {m: sorted(t for t in graph[m] if _within(t, PROGRAMS)) for m in library}
    assert not {m: ts for m, ts in wrong.items() if ts}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles(import_graph()) == []
