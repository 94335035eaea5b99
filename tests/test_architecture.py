"""The folders show the architecture: data flows one way, pipeline -> models -> features,
and the modules of a folder import each other without circles (lazy imports included)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {"features": 0, "models": 1, "pipeline": 2}


def imports() -> dict[str, set[str]]:
    """``vidcache.<folder>.<module>`` -> the vidcache modules it imports, anywhere in it."""
    found = {}
    for folder in LAYERS:
        for path in sorted((ROOT / folder).glob("*.py")):
            name = f"vidcache.{folder}.{path.stem}"
            targets = set()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.module:
                    if node.module.startswith("vidcache."):
                        base = node.module
                        for alias in node.names:  # "from vidcache.pipeline import cli"
                            if f"{base}.{alias.name}".count(".") == 2 and base.count(".") == 1:
                                targets.add(f"{base}.{alias.name}")
                        if base.count(".") >= 2:
                            targets.add(".".join(base.split(".")[:3]))
                elif isinstance(node, ast.Import):
                    for alias in node.names:
                        if alias.name.startswith("vidcache.") and alias.name.count(".") >= 2:
                            targets.add(".".join(alias.name.split(".")[:3]))
            found[name] = targets - {name}
    return found


def test_layers_depend_one_way():
    wrong = [
        f"{module} imports {target}"
        for module, targets in imports().items()
        for target in targets
        if LAYERS[target.split(".")[1]] > LAYERS[module.split(".")[1]]
    ]
    assert not wrong, wrong


def test_no_import_circles():
    graph = imports()
    state: dict[str, int] = {}
    cycles = []

    def visit(module, trail):
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*trail[trail.index(target) :], target]))
            elif target not in state:
                visit(target, [*trail, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles
