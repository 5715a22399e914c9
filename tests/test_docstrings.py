"""Every example in a docstring runs and prints what it says (the doctests of every pgflow module)."""

import doctest
import importlib
import pkgutil

import numpy as np
import pytest

import pgflow
import pgflow.analysis
import pgflow.cli
import pgflow.figures
import pgflow.flows


def _module_names():
    names = ["pgflow"]
    for package in (pgflow.flows, pgflow.analysis, pgflow.figures, pgflow.cli):
        names.append(package.__name__)
        names += [info.name for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
    return sorted(set(names))  # not pgflow.__main__: importing it runs the command


MODULES = _module_names()


def test_every_layer_is_searched():
    for layer in ("pgflow.flows.integration", "pgflow.analysis.sweeps.planning", "pgflow.figures.gallery",
                  "pgflow.cli.check"):
        assert layer in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example that writes a file writes it here
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name, globs={"np": np, **vars(module)}):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples in {name} failed"
