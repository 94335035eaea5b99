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


#: Inside ``pipeline/``, each job's sub-package imports only those below it: the command
#: line uses everything, prediction uses training's run folders, training uses extraction
#: (library versions, rebuilding a run's backbone), and nothing imports the command line.
PIPELINE_ORDER = {
    "outputs": 0,
    "extraction": 1,
    "training": 2,
    "inference": 3,
    "dataset": 3,
    "cli": 4,
    "__main__": 5,
}


def test_pipeline_sub_packages_depend_one_way():
    def job(module: str) -> str:
        return module.split(".")[2]

    wrong = [
        f"{module} imports {target}"
        for module, targets in imports().items()
        if module.startswith("vidcache.pipeline.") and job(module) in PIPELINE_ORDER
        for target in targets
        if target.startswith("vidcache.pipeline.")
        and PIPELINE_ORDER[job(target)] > PIPELINE_ORDER[job(module)]
    ]
    assert not wrong, wrong
    jobs = {job(m) for m in imports() if m.startswith("vidcache.pipeline.")}
    assert jobs <= set(PIPELINE_ORDER), jobs - set(PIPELINE_ORDER)  # a new one is placed


def test_tasks_import_no_other_task():
    """A task is one module: the skeleton and the registry know the tasks, no task knows
    another (a toy one may build on one, as tests/test_task_plugin.py shows)."""
    prefix = "vidcache.pipeline.training.tasks."
    graph = imports()
    wrong = [
        f"{module} imports {target}"
        for module, targets in graph.items()
        if module.startswith(prefix) and not module.endswith(".base")
        for target in targets
        if target.startswith(prefix) and not target.endswith(".base")
    ]
    assert not wrong, wrong


#: No module above this many lines: split it by job (docs/architecture.md).
LIMIT = 400


def test_modules_stay_small():
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text(encoding="utf-8").splitlines())
        for folder in LAYERS
        for path in (ROOT / folder).rglob("*.py")
    }
    too_big = {name: size for name, size in sizes.items() if size > LIMIT}
    assert not too_big, f"split these modules by job (limit {LIMIT} lines): {too_big}"
