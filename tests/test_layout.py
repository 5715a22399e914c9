"""The layout of the house: layers that only import downwards, a shallow dynamics layer, public
helpers, files of a readable size, and no reference to a document the repository does not hold."""

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# folder -> (its package name, its layer): the command on top, the dynamics at the bottom
LAYERS = {"pgflow": ("pgflow", 3), "figures": ("pgflow.figures", 2), "analysis": ("pgflow.analysis", 1),
          "flows": ("pgflow.flows", 0)}
MAX_FLOWS_FLOORS = 7
MAX_LINES = 600


def _modules():
    """Module name -> path, for every library module."""
    out = {}
    for folder, (package, _) in LAYERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([package, *parts])] = path
    return out


MODULES = _modules()


def _imports(name: str, path: pathlib.Path) -> set[str]:
    """The pgflow modules ``name`` imports (anywhere in the file), resolved to module names."""
    is_package = path.name == "__init__.py"
    base = name if is_package else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                module = ".".join(anchor + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [module] + [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            # the longest known module the target names (a name imported from a module is that module)
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(module: str) -> int:
    for package, layer in sorted(LAYERS.values(), key=lambda p: -len(p[0])):
        if module == package or module.startswith(package + "."):
            return layer
    raise AssertionError(module)


def test_imports_only_point_down_the_layers():
    upward = [(a, b) for a, targets in GRAPH.items() for b in targets
              if _layer(b) > _layer(a) and not (a == "pgflow" or b == "pgflow")]
    assert not upward, f"upward imports: {upward}"


def test_nothing_outside_flows_imports_a_private_flows_module():
    private = [(a, b) for a, targets in GRAPH.items() for b in targets
               if _layer(a) > 0 and _layer(b) == 0 and any(part.startswith("_") for part in b.split(".")[2:])]
    assert not private
    for path in list((ROOT / "tests").rglob("*.py")) + list((ROOT / "benchmarks").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"pgflow\.flows\._[a-z]", text), path


def test_the_dynamics_layer_stands_on_few_floors():
    flows = {name: {t for t in targets if t.startswith("pgflow.flows.")} for name, targets in GRAPH.items()
             if name.startswith("pgflow.flows.")}
    floors: dict = {}

    def floor(name, path=()):
        assert name not in path, f"import cycle: {' -> '.join(path + (name,))}"
        if name not in floors:
            floors[name] = 1 + max((floor(t, path + (name,)) for t in flows[name]), default=-1)
        return floors[name]

    deepest = max(floor(name) for name in flows)
    assert deepest + 1 <= MAX_FLOWS_FLOORS, {n: f for n, f in sorted(floors.items(), key=lambda kv: kv[1])}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_library_file_is_too_long(name):
    lines = MODULES[name].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{MODULES[name]} has {lines} lines"


def test_every_named_document_exists():
    """A path to a .md document named in the code, the docs or the README is in the repository."""
    files = [*ROOT.glob("README.md"), *(ROOT / "docs").rglob("*.md"),
             *(p for folder in (*LAYERS, "tests", "benchmarks", "examples") for p in (ROOT / folder).rglob("*.py")),
             *(p for folder in LAYERS for p in (ROOT / folder).rglob("*.toml"))]
    missing = []
    for path in files:
        for ref in re.findall(r"[\w./-]*[\w-]+\.md\b", path.read_text(encoding="utf-8")):
            candidates = [ROOT / ref, path.parent / ref, ROOT / "docs" / ref, ROOT / "docs" / "math" / ref]
            if not any(c.is_file() for c in candidates):
                missing.append((str(path.relative_to(ROOT)), ref))
    assert not missing
