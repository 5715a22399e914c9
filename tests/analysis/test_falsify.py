"""analysis.bounds.falsify: counterexamples found where claims are false, none where they are true."""

import numpy as np
import pytest

from pgflow.analysis import bounds as B
from pgflow.analysis import claims
from pgflow.analysis.bounds.ensembles import ensemble_runs, load_claim_file

PARAMS = {"ye_du_AAt_lower": {"c": 1.0, "eps": 0.01}, "ye_du_B_bound": {"c": 1.0, "eps": 0.01}}

# true on typical random starts, false on a few adversarial ones
ADVERSARIAL = [
    ("fro(J) >= 1e-9 * fro(U)", "gf"),  # aligned starts: J = 0
    ("imbalance_fro >= 1e-6 * (fro(UtU) + fro(VtV))", "gf"),  # balanced starts
    ("fro(G_U) + fro(G_V) >= 1e-12 * fro(Sigma)", "gf"),  # a zero factor is a critical point
]


@pytest.mark.parametrize("statement, dynamics", ADVERSARIAL)
def test_falsifier_breaks_claims_that_only_adversarial_starts_break(statement, dynamics):
    result = B.falsify(statement, dynamics=dynamics)
    assert result.found and result.worst_slack < 0 and result.report.verdict == "VIOLATED"
    assert result.kind != "gaussian"


@pytest.mark.parametrize("name", ["loss_identity", "noise_U_rate", "ye_du_J_nonincreasing"])
def test_no_counterexample_to_true_catalogue_claims_in_a_small_budget(name):
    result = B.falsify(claims.get(name), budget=24)
    assert not result.found and result.worst_slack >= 0 and result.applicable > 0, result.summary()


@pytest.mark.parametrize("name", ["imbalance_gd_step", "signal_U_identity", "perturbation_within_bound",
                                  "loss_decreases"])
def test_falsifier_breaks_false_variants(name):
    result = B.falsify(claims.FALSE_VARIANTS[name], params=PARAMS.get(name))
    assert result.found, result.summary()


@pytest.mark.slow
@pytest.mark.parametrize("name", list(claims.CATALOGUE))
def test_no_counterexample_to_any_catalogue_claim_at_the_default_budget(name):
    result = B.falsify(claims.get(name), params=PARAMS.get(name))
    assert not result.found and result.applicable > 0, result.summary()


@pytest.mark.slow
@pytest.mark.parametrize("name", list(claims.FALSE_VARIANTS))
def test_falsifier_breaks_every_false_variant_at_the_default_budget(name):
    assert set(claims.FALSE_VARIANTS) == set(claims.CATALOGUE)
    result = B.falsify(claims.FALSE_VARIANTS[name], params=PARAMS.get(name))
    assert result.found, result.summary()


def test_the_reproducer_reruns_the_counterexample(tmp_path):
    result = B.falsify("fro(J) >= 1e-9 * fro(U)", dynamics="gf", budget=30)
    assert result.found
    path = result.write(tmp_path / "repro.toml")
    chosen, ensemble, params = load_claim_file(path)
    assert ensemble["x0"] == pytest.approx(result.state.tolist(), rel=0, abs=0)
    runs = ensemble_runs(ensemble)
    report = B.check_all(chosen, runs, params=params)[0]
    assert not report.holds and report.first_violation.time == result.time
    assert report.min_slack == result.worst_slack and report.as_expected  # written with expect = false
    np.testing.assert_array_equal(runs[0].trajectory.x[0], result.state)


def test_an_explicit_start_from_a_npy_file(tmp_path):
    x0 = np.random.default_rng(3).standard_normal((2, (6 + 5) * 2)) * 0.1
    np.save(tmp_path / "starts.npy", x0)
    (tmp_path / "claims.toml").write_text('[ensemble]\nm = 6\nn = 5\nx0_file = "starts.npy"\ndynamics = ["gf"]\n'
                                          't_end = 1.0\nn_save = 11\n[[claim]]\nstatement = "loss >= 0"\n')
    chosen, ensemble, _ = load_claim_file(tmp_path / "claims.toml")
    runs = ensemble_runs(ensemble)
    assert len(runs) == 2 and np.array_equal(runs[1].trajectory.x[0], x0[1])
    with pytest.raises(ValueError, match="length dim"):
        ensemble_runs({**ensemble, "x0_file": None, "x0": [1.0, 2.0]})


def test_hypotheses_no_start_meets_are_reported_as_untested():
    claim = B.Claim("loss <= 0", assume="initial(loss) <= -1")  # no state can meet the hypothesis
    result = B.falsify(claim, dynamics="gf", budget=8)
    assert not result.found and result.applicable == 0 and "nothing tested" in result.summary()


def test_falsify_validates_its_arguments():
    with pytest.raises(ValueError, match="set the parameter"):
        B.falsify("ye_du_B_bound")
    with pytest.raises(ValueError, match="unknown key"):
        B.falsify("loss >= 0", problem_family={"size": 3})
    with pytest.raises(ValueError, match="budget"):
        B.falsify("loss >= 0", budget=0)
