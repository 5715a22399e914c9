"""Progress bars of work counted in runs: the discretization study, the check ensemble and its
claims, sweeps; shown when asked (or on a terminal), silent otherwise, and counting every run."""

import re

import pytest

from pgflow.analysis import bounds
from pgflow.analysis.bounds.ensembles import ensemble_runs
from pgflow.analysis.discretization import error_vs_step
from pgflow.analysis.progress import run_bar
from pgflow.flows import MatrixFactorization, init

SMALL = {"m": 5, "n": 4, "rank": 1, "width": 1, "init_seeds": 2, "t_end": 1.0, "dynamics": ["gf", "gd"]}


def final_count(err: str, desc: str) -> tuple[int, int]:
    """The last "desc: ... n/total" that tqdm drew on stderr."""
    counts = re.findall(rf"{re.escape(desc)}:.*?(\d+)/(\d+)", err)
    assert counts, f"no progress bar {desc!r} in {err!r}"
    return tuple(map(int, counts[-1]))


def test_a_bar_counts_to_its_total_when_shown_and_is_silent_otherwise(capsys):
    with run_bar(3, "work", True) as bar:
        for _ in range(3):
            bar.update()
    assert final_count(capsys.readouterr().err, "work") == (3, 3)
    with run_bar(3, "work", False) as bar:
        bar.update(3)
    with run_bar(3, "work", None) as bar:  # stderr is not a terminal under pytest
        bar.update(3)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("bad", ["yes", 1, 0.5])
def test_progress_must_be_true_false_or_none(bad):
    with pytest.raises(TypeError, match="progress must be True, False or None"):
        run_bar(1, "work", bad)


@pytest.mark.parametrize("against, solves", [("flow", 2), ("modified", 6)])
def test_the_discretization_study_counts_its_descents_and_reference_solves(capsys, against, solves):
    p = MatrixFactorization.random(m=5, n=4, rank=1, width=1, seed=0)
    x0 = init.gaussian(p, 0.3, seed=1)
    quiet = error_vs_step(p, x0, [0.1, 0.05, 0.025], 0.5, against=against)
    assert capsys.readouterr().err == ""
    shown = error_vs_step(p, x0, [0.1, 0.05, 0.025], 0.5, against=against, progress=True)
    assert final_count(capsys.readouterr().err, f"simultaneous vs {against}") == (3 + solves, 3 + solves)
    assert shown.order == quiet.order  # the bar changes nothing but the screen


def test_the_check_ensemble_and_its_claims_count_every_run_and_claim(capsys):
    runs = ensemble_runs(SMALL, progress=True)
    assert final_count(capsys.readouterr().err, "ensemble") == (4, 4) and len(runs) == 4
    claims = [bounds.Claim("loss >= 0"), bounds.Claim("derivative(loss) <= 0", dynamics=["gf"])]
    reports = bounds.check_all(claims, runs, progress=True)
    assert final_count(capsys.readouterr().err, "claims") == (2, 2) and all(r.holds for r in reports)
