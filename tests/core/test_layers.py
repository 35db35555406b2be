"""The package's layers, read from its source: core < providers < recovery < asgi, cli
< aisdk.

A module may import its own layer or a lower one, never a higher one, and no import
cycle may run between modules (imports under TYPE_CHECKING and inside functions
count: they tie the code together just the same).
"""

from __future__ import annotations

import ast
from pathlib import Path

import chatpersist

ROOT = Path(chatpersist.__file__).parent


def layer(module: str) -> tuple[int, str]:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    if top == "providers":
        return 1, "providers"
    if top == "recovery":
        return 2, "recovery"
    if top in ("asgi", "cli"):
        return 3, top
    if top == "aisdk":  # the AI SDK's protocol, over chatpersist.asgi
        return 4, top
    return 0, "core"


def modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        if "migrations" in path.relative_to(ROOT).parts:
            continue  # alembic's scripts, shipped inside the package
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(["chatpersist", *parts])] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("chatpersist")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("chatpersist"):
                continue
            subs = {f"{target}.{a.name}" for a in node.names} & set(known)
            out |= subs or {target}
    return {m for m in out if m in known and m != name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_no_module_imports_a_higher_layer() -> None:
    wrong = []
    for name, deps in graph().items():
        rank, kind = layer(name)
        for dep in deps:
            dep_rank, dep_kind = layer(dep)
            if dep_rank > rank or (dep_rank == rank and dep_kind != kind):
                wrong.append(f"{name} ({kind}) imports {dep} ({dep_kind})")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycle() -> None:
    g = graph()
    # Package __init__ modules re-export their submodules; a submodule importing its
    # own package's __init__ would close a loop, and is a cycle like any other.
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(g[node]):
            if state.get(dep) == 1:
                cycles.append([*stack[stack.index(dep) :], dep])
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[node] = 2

    for node in sorted(g):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_what_it_checks() -> None:
    g = graph()
    # the graph is read for real: known edges are present
    assert "chatpersist._store" in g["chatpersist.recovery"]
    assert "chatpersist.providers._pipe" in g["chatpersist.providers"]
    assert any(m.startswith("chatpersist._writer") for m in g["chatpersist._store"])
    assert layer("chatpersist.cli._chat") == (3, "cli")
