"""Every script in examples/ runs, at a small size, in a subprocess of its own, and reaches its end.

An example honours ``--small`` (tiny sizes, the same checks) and checks its own known answers with
``assert``; the shipped ones end by printing a line that starts with "OK:". An example that imports a
module of an optional extra (pandas, xarray) is skipped where that module is not installed.
"""

import ast
import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))

# What each shipped example prints besides its final "OK:" line: a number it computed, as a check that
# the run is the one described (the examples assert the answers themselves).
EXPECTED = {
    "own_ode.py": r"largest relative difference on the grid: \d\.\de-(1\d|0[89])",
    "own_problem.py": r"halving η shrinks the gap by (1\.9\d|2\.0\d)",
    "formula_problem.py": r"late decay rate of ‖D‖: 0\.99\d+, expected 2λσ_r = 1.*fitted order (0\.9\d|1\.[01]\d)",
    "sweep_script.py": r"8 runs: 8 computed, 0 read back.*run again: 0 computed, 8 reused",
    "sweep_analysis.py": r"pandas, xarray and phase_diagram agree",
    "notebook_figures.py": r"loss_curves: 1 axes, 4 lines",
}


def _missing_modules(path: pathlib.Path) -> list[str]:
    """Top-level modules the example imports that are not installed."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return sorted(n for n in names if importlib.util.find_spec(n) is None)


def test_the_examples_are_found():
    assert {p.name for p in EXAMPLES} >= set(EXPECTED)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(path, tmp_path):
    missing = _missing_modules(path)
    if missing:
        pytest.skip(f"{path.name} needs {', '.join(missing)} (pip install 'pgflow[data]')")
    text = path.read_text(encoding="utf-8")
    assert ast.get_docstring(ast.parse(text)), f"{path.name} has no docstring saying what it shows"
    assert "--small" in text, f"{path.name} must honour --small (the size the test suite runs)"
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONHASHSEED": "0"}
    done = subprocess.run([sys.executable, str(path), "--small"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, f"{path.name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    if path.name in EXPECTED:
        assert done.stdout.rstrip().splitlines()[-1].startswith("OK:"), done.stdout[-2000:]
        assert re.search(EXPECTED[path.name], done.stdout, flags=re.S), done.stdout[-3000:]
