"""The leaderboard's modules import one another without circles (at the top or inside a function)."""

from __future__ import annotations

import ast
from pathlib import Path

import mlalign_tasks.leaderboard as package

PACKAGE = package.__name__
FOLDER = Path(package.__file__).parent


def imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that the module at `path` imports, wherever in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module == PACKAGE:
            found |= {alias.name for alias in node.names if alias.name in modules}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE + "."):
            found.add(node.module.removeprefix(PACKAGE + ".").split(".")[0])
        elif isinstance(node, ast.Import):
            found |= {
                a.name.removeprefix(PACKAGE + ".").split(".")[0] for a in node.names if a.name.startswith(PACKAGE + ".")
            }
    return found


def circle(graph: dict[str, set[str]]) -> list[str] | None:
    """A chain of imports that leads back to where it started, if there is one."""
    done: set[str] = set()

    def visit(module: str, chain: list[str]) -> list[str] | None:
        if module in chain:
            return chain[chain.index(module) :] + [module]
        if module in done:
            return None
        for other in sorted(graph[module]):
            found = visit(other, [*chain, module])
            if found:
                return found
        done.add(module)
        return None

    return next((c for m in sorted(graph) if (c := visit(m, []))), None)


def test_no_module_of_the_leaderboard_imports_one_that_imports_it_back() -> None:
    modules = {p.stem for p in FOLDER.glob("*.py")} - {"__init__"}
    graph = {m: imports(FOLDER / f"{m}.py", modules) for m in modules}
    assert graph["build"] and graph["write"]  # the check sees the imports
    assert circle(graph) is None
    assert circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
