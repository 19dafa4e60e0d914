"""The package's layout: every module belongs to a pipeline stage, imports point only down the stages,
and no two modules import each other, directly or through others (imports under TYPE_CHECKING and
inside functions included)."""

from __future__ import annotations

import ast
from pathlib import Path

import tinymnist

PACKAGE = Path(tinymnist.__file__).parent

# Bottom to top: a module may import from its own stage or from a stage listed before it.
STAGES = ["base", "data", "models", "backends", "evaluation", "training", "analysis", "export", "serve", "search",
          "front"]
BASE = {"errors", "atomic"}  # shared by every stage; they import nothing of tinymnist
FRONT = {"api", "cli", "__main__", "__init__"}  # the two front doors (and the package itself) sit on top


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def stage_of(module: str) -> str:
    parts = module.split(".")[1:]
    if not parts or parts[0] in FRONT:
        return "front"
    if parts[0] in BASE:
        return "base"
    return parts[0]


def imports_of(path: Path) -> set[str]:
    """The tinymnist modules `path` imports (a `from X import name` counts X.name when that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("tinymnist")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tinymnist") and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    return found


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def graph() -> dict[str, set[str]]:
    return {name: {m for m in imports_of(path) if m != name} for name, path in MODULES.items()}


def test_every_module_sits_in_a_known_stage():
    unknown = sorted(m for m in MODULES if stage_of(m) not in STAGES)
    assert not unknown, f"modules outside every stage: {unknown}"


def test_imports_point_down_the_stages():
    upward = []
    for module, targets in graph().items():
        here = STAGES.index(stage_of(module))
        if module == "tinymnist":  # the package's lazy re-exports of the API
            continue
        for target in targets:
            if target == "tinymnist":
                continue
            if STAGES.index(stage_of(target)) > here:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports from a later stage:\n" + "\n".join(sorted(upward))


def test_no_import_cycles():
    edges = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if nxt not in edges or nxt == "tinymnist":
                continue
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checker_sees_a_cycle_and_an_upward_import(tmp_path):
    """The checks above can fail: a stage-2 module importing training is flagged."""
    module = "tinymnist.models.zoo"
    assert STAGES.index(stage_of("tinymnist.training.trainer")) > STAGES.index(stage_of(module))
    fake = tmp_path / "fake.py"
    fake.write_text("from tinymnist.training import trainer\nimport tinymnist.models.zoo\n")
    assert imports_of(fake) == {"tinymnist.training.trainer", "tinymnist.models.zoo"}
