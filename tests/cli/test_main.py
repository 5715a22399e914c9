"""The command as a whole: one import name, ``--version``, ``python -m pgflow``, exit codes, errors
without tracebacks, and an installation that a user's own ``flows.py`` cannot shadow."""

import os
import pathlib
import re
import subprocess
import sys
import sysconfig
import venv
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import pytest

import pgflow
from pgflow import cli

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_version_everywhere(capsys):
    assert pgflow.__version__ and pgflow.__version__ == pgflow.flows.version.package_version()
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"pgflow {pgflow.__version__}"


def test_the_main_api_is_reachable_from_the_one_import_name():
    for name in ("integrate", "gradient_descent", "MatrixFactorization", "GradientFlow", "PerturbedGradientFlow",
                 "Trajectory", "init", "integrate_piecewise"):
        assert getattr(pgflow, name) is getattr(pgflow.flows, name)
    assert set(cli.COMMANDS) == {"run", "discretization", "check", "sweep", "figures"}


def test_python_dash_m_pgflow_and_a_one_line_error(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pgflow", "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0 and "COMMAND" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "pgflow", "check", str(tmp_path / "missing.toml")],
                         capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("pgflow check: error:") and "missing.toml" in bad.stderr


@pytest.mark.slow
def test_an_installation_is_not_shadowed_by_a_users_own_modules(tmp_path):
    """pip install into a fresh environment, then use pgflow from a folder holding flows.py,
    analysis.py and figures.py that would break any ``import flows`` inside pgflow."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    # numpy, scipy, ... from this environment, after the new one's own packages (pgflow among them)
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    pathlib.Path(purelib, "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", str(ROOT)],
                   check=True, capture_output=True)
    work = tmp_path / "work"
    work.mkdir()
    for name in ("flows.py", "analysis.py", "figures.py"):
        (work / name).write_text("raise ImportError('the user\\'s own module was imported')\n")
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    script = ("import pgflow; from pgflow import MatrixFactorization, GradientFlow, init, integrate; "
              "p = MatrixFactorization.random(m=5, n=4, rank=2, width=2, seed=0); "
              "run = integrate(GradientFlow(p), init.gaussian(p, 0.1, seed=1), 5.0); "
              "import pgflow.analysis.bounds, pgflow.analysis.sweeps, pgflow.figures.gallery; "
              "print(pgflow.__version__, pgflow.flows.__file__)")
    done = subprocess.run([python, "-c", script], cwd=work, capture_output=True, text=True, env=environ)
    assert done.returncode == 0, done.stderr
    version, location = done.stdout.split()
    assert version == pgflow.__version__ and str(env_dir) in location
    for argv in (["-m", "pgflow", "--help"], ["-m", "pgflow", "--version"]):
        assert subprocess.run([python, *argv], cwd=work, capture_output=True, env=environ).returncode == 0
    script_path = env_dir / "bin" / "pgflow"
    assert subprocess.run([script_path, "--version"], cwd=work, capture_output=True, env=environ).returncode == 0


def test_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    for code, meaning in ((0, "success"), (1, "the work failed"), (2, "a usage error"), (130, "interrupted")):
        assert re.search(rf"^  {code} +{meaning}", out, flags=re.M), code
    assert 'Errors print one line, "pgflow COMMAND: error: ..."; --debug shows the traceback.' in out


@pytest.mark.parametrize("exc, code, line", [
    (ValueError("rank must be <= 8,\n  got 9"), 2, "rank must be <= 8, got 9"),
    (KeyError("no column 'x'"), 2, "no column 'x'"),
    (FileNotFoundError(2, "No such file or directory", "in.toml"), 2, "in.toml: no such file or directory"),
    (OSError(28, "No space left on device", "out/table.csv"), 1, "out/table.csv: no space left on device"),
    (pgflow.flows.DivergenceError("gradient descent diverged at step 3", 3, None), 1,
     "gradient descent diverged at step 3"),
    (BrokenProcessPool("A process in the process pool was terminated abruptly"), 1,
     "A process in the process pool was terminated abruptly"),
    (ConnectionError("cannot reach the Dask scheduler at tcp://h:1"), 1, "cannot reach the Dask scheduler at tcp://h:1"),
    (np.linalg.LinAlgError("Singular matrix"), 1, "Singular matrix"),
    (IndexError("index 3 is out of bounds"), 1,
     "unexpected IndexError: index 3 is out of bounds (pgflow --debug ... shows the traceback; please report it)"),
    (KeyboardInterrupt(), 130, "interrupted"),
])
def test_every_error_is_one_line_and_an_exit_code(monkeypatch, capsys, exc, code, line):
    def fail(args):
        raise exc
    monkeypatch.setattr(cli.run, "run_command", fail)
    assert cli.main(["run"]) == code
    assert capsys.readouterr().err == f"pgflow run: error: {line}\n"
    with pytest.raises(type(exc)):
        cli.main(["run", "--debug"])


def test_a_bad_value_from_the_installed_command_is_one_line(tmp_path):
    bad = subprocess.run([sys.executable, "-m", "pgflow", "run", "--t-end", "-1"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr == "pgflow run: error: --t-end must be positive and finite, got -1.0\n"


@pytest.mark.parametrize("command", ["run", "discretization", "check", "sweep"])
def test_every_long_command_shows_progress_on_a_terminal_unless_told_not_to(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0 and "--no-progress" in capsys.readouterr().out
