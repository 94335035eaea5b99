"""The folders show the architecture: data flows one way, pipeline -> models -> features,
and the modules of a folder import each other without circles (lazy imports included)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {"features": 0, "models": 1, "pipeline": 2}


def module_name(folder: str, path: Path) -> str:
    """``features/backbones/registry.py`` -> ``vidcache.features.backbones.registry``."""
    parts = path.relative_to(ROOT / folder).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(("vidcache", folder, *parts))


def imports() -> dict[str, set[str]]:
    """``vidcache.<folder>[.<sub-package>].<module>`` -> the vidcache modules it imports,
    anywhere in it (sub-packages included)."""
    paths = {
        module_name(folder, path): path
        for folder in LAYERS
        for path in sorted((ROOT / folder).rglob("*.py"))
    }

    def known(dotted: str) -> str | None:
        """The longest prefix of ``dotted`` that is one of our modules."""
        parts = dotted.split(".")
        for end in range(len(parts), 2, -1):
            if ".".join(parts[:end]) in paths:
                return ".".join(parts[:end])
        return None

    found = {}
    for name, path in paths.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith("vidcache."):
                    for alias in node.names:  # "from vidcache.pipeline import cli"
                        target = known(f"{node.module}.{alias.name}") or known(node.module)
                        if target:
                            targets.add(target)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("vidcache.") and known(alias.name):
                        targets.add(known(alias.name))
        found[name] = targets - {name}
    return found


def test_sub_packages_are_seen():
    graph = imports()
    assert "vidcache.features.backbones.registry" in graph
    assert "vidcache.features.backbones.registry" in graph["vidcache.features.settings"]


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
