"""analysis.bounds, analysis.claims and ``pgflow check``: claims on ensembles of trajectories."""


import numpy as np
import pytest
import sympy as sp
from matplotlib.figure import Figure

from pgflow.analysis import bounds as B
from pgflow.analysis import claims
from pgflow.analysis.bounds.ensembles import load_claim_file
from pgflow.analysis import symbolic as S
from pgflow.flows import (GradientFlow, MatrixFactorization, MatrixSensing, ModifiedFlow, PerturbedGradientFlow,
                          gradient_descent, init, integrate, integrate_piecewise, perturbations)

N_SEEDS = 20
T_END, N_SAVE = 6.0, 61


def _seeds(s):
    return np.random.SeedSequence(s).spawn(2)  # init, perturbation: independent of the target's stream


@pytest.fixture(scope="module")
def problem():
    return MatrixFactorization.random(m=6, n=5, rank=2, width=2, condition=2.0, seed=0)


@pytest.fixture(scope="module")
def ensemble(problem):
    """20 seeds of GF and of residual-form PGF with ‖E‖ = 0.1‖Σ − UVᵀ‖ + 0.02 (random direction)."""
    grid = np.linspace(0, T_END, N_SAVE)
    runs = []
    for s in range(N_SEEDS):
        init_seed, pert_seed = _seeds(s)
        x0 = init.gaussian(problem, 0.05, seed=init_seed)
        flow = GradientFlow(problem)
        runs.append(B.Run.of(integrate(flow, x0, T_END, t_eval=grid, rtol=1e-10, atol=1e-12), flow,
                             label=f"gf seed {s}"))
        model = perturbations.RandomPerturbation(problem, 0.1, 0.02, np.linspace(0, T_END, 12, endpoint=False),
                                                 pert_seed, norm="op")
        pflow = PerturbedGradientFlow(problem, model)
        runs.append(B.Run.of(integrate_piecewise(pflow, x0, T_END, t_eval=grid, rtol=1e-10, atol=1e-12), pflow,
                             label=f"pgf seed {s}"))
    return runs


@pytest.fixture(scope="module")
def gd_runs(problem):
    eta = 0.2 / problem.target.sigma[0]
    return [B.Run.of(gradient_descent(problem, init.gaussian(problem, 0.05, seed=_seeds(s)[0]), eta, 60), problem)
            for s in range(3)]


# ---------------------------------------------------------------------------------------------
# true and false claims on an ensemble
# ---------------------------------------------------------------------------------------------

def test_true_claims_hold_on_twenty_seeds(ensemble):
    assert len(ensemble) == 2 * N_SEEDS
    for name in ("noise_U_rate", "noise_V_rate", "signal_U_rate", "imbalance_conserved", "signal_U_identity",
                 "noise_U_identity"):
        report = B.check(claims.get(name), ensemble)
        assert report.holds, report.summary()
        assert report.first_violation is None and report.min_slack >= 0
        assert report.n_states == 2 * N_SEEDS * N_SAVE
    pgf = [r for r in ensemble if r.dynamics == "pgf_residual"]
    for name in ("perturbation_within_bound", "noise_U_rate_bounded"):
        assert B.check(claims.get(name), pgf).holds


def test_attained_bound_reports_ratio_one(ensemble):
    report = B.check(claims.get("perturbation_within_bound"), [r for r in ensemble if r.dynamics != "gf"])
    assert report.holds and report.worst_ratio == pytest.approx(1.0, abs=1e-9)  # RandomPerturbation meets its bound


def _noise_rate_sides(run):
    """Both sides of noise_U_rate with the perturbation term's sign flipped, straight from numpy."""
    vals = S.problem_values(run.problem)
    Pp, Sig = vals["Phi_perp"], vals["Sigma"]
    lhs, rhs = [], []
    for t, x in zip(run.trajectory.t, run.trajectory.x):
        U, V = run.problem.unpack(x)
        E = run.perturbation(t, x) if run.perturbation is not None else np.zeros_like(Sig)
        J = Pp.T @ U
        lhs.append(2 * np.sum(J * (Pp.T @ (Sig - U @ V.T + E) @ V)))
        noise = np.sum(J * J)
        rhs.append(-2 * np.linalg.eigvalsh(V.T @ V)[0] * noise
                   - 2 * np.sqrt(noise) * np.linalg.norm(E, 2) * np.linalg.norm(V))
    return np.array(lhs), np.array(rhs)


def test_false_claim_is_violated_at_the_right_time_and_run(ensemble):
    flipped = B.Claim("derivative(noise_U_sq) <= -2*lambda_min(VtV)*noise_U_sq - 2*sqrt(noise_U_sq)*norm(E)*fro(V)",
                      name="sign flipped", rel_allowance=1e-9)
    report = B.check(flipped, ensemble)
    assert not report.holds and report.min_slack < 0
    # the first violation, computed independently on every run
    first = None
    for i, run in enumerate(ensemble):
        lhs, rhs = _noise_rate_sides(run)
        bad = np.flatnonzero(lhs > rhs + 1e-9 * (np.abs(lhs) + np.abs(rhs)))
        if bad.size and (first is None or run.trajectory.t[bad[0]] < first[1]):
            first = (i, run.trajectory.t[bad[0]])
        series = report.series[i]
        assert np.allclose(series.lhs, lhs, rtol=1e-8, atol=1e-12) and np.allclose(series.rhs, rhs, rtol=1e-8,
                                                                                   atol=1e-12)
    v = report.first_violation
    assert (v.run, v.time) == first
    assert v.label == ensemble[v.run].label and ensemble[v.run].trajectory.t[v.index] == v.time


def test_first_violation_later_than_the_start(ensemble):
    """loss ≥ ½ f(x₀) fails when the loss first halves: the saved state right after, on the fastest seed."""
    gf = [r for r in ensemble if r.dynamics == "gf"]
    report = B.check("loss >= initial(loss) / 2", gf)
    times = []
    for run in gf:
        loss = run.trajectory.monitors["loss"]
        times.append(run.trajectory.t[np.flatnonzero(loss < loss[0] / 2)[0]])
    assert report.first_violation.time == min(times) > 0
    assert report.first_violation.run == int(np.argmin(times))


def test_gd_derivative_is_the_exact_one_step_quotient(problem, gd_runs):
    run = gd_runs[0]
    eta = run.step_size
    report = B.check("derivative(loss) <= 0", run)
    x = run.trajectory.x
    x_next = x - eta * problem.grad(x)
    quotient = (problem.loss(x_next) - problem.loss(x)) / eta
    assert np.allclose(report.series[0].lhs, quotient, rtol=1e-9, atol=1e-15)
    assert np.allclose(report.series[0].lhs[:-1], np.diff(run.trajectory.monitors["loss"]) / eta, rtol=1e-9,
                       atol=1e-15)
    assert B.check(claims.get("imbalance_gd_step"), gd_runs).holds
    conserved = B.check(claims.CATALOGUE["imbalance_conserved"].__class__(
        "fro(derivative(imbalance)) == 0", allowance="1e-12 * fro(U) * fro(V) * fro(R)", dynamics=("gd",)), gd_runs)
    assert not conserved.holds and conserved.first_violation.time == 0.0  # GD does not conserve it


def test_gd_derivative_of_a_spectral_function_uses_the_next_iterate(problem, gd_runs):
    run = gd_runs[1]
    report = B.check("derivative(norm(J)) <= 0", run)
    Pp = S.problem_values(problem)["Phi_perp"]
    x = run.trajectory.x
    x_next = x - run.step_size * problem.grad(x)
    norms = [np.array([np.linalg.norm(Pp.T @ problem.unpack(y)[0], 2) for y in states]) for states in (x, x_next)]
    assert np.allclose(report.series[0].lhs, (norms[1] - norms[0]) / run.step_size, rtol=1e-9)


def test_gd_derivative_keeps_eta_in_the_quantity_as_a_coefficient(gd_runs):
    assert B.check(B.Claim("derivative(eta * loss) == eta * derivative(loss)", rel_allowance=1e-12), gd_runs).holds


@pytest.mark.parametrize("statement", ["derivative(loss - initial(loss)) == derivative(loss)",
                                       "derivative(fro(J) * initial(noise_U_sq)) == initial(noise_U_sq) * derivative(fro(J))",
                                       "fro(derivative(U1 - initial(U1)) - derivative(U1)) == 0"])
def test_initial_is_a_constant_under_derivative(ensemble, gd_runs, statement):
    claim = B.Claim(statement, rel_allowance=1e-12)
    assert B.check(claim, [ensemble[0], ensemble[1], gd_runs[0]]).holds  # GF, residual PGF, GD (polynomial or not)


def test_ye_du_stage_one_claims_on_gd(gd_runs):
    for name in ("ye_du_step_size", "ye_du_AAt_upper", "ye_du_J_nonincreasing", "ye_du_K_nonincreasing",
                 "loss_decreases"):
        assert B.check(claims.get(name), gd_runs).holds, name
    assert B.check(claims.get("ye_du_B_bound", c=1.0, eps=0.05), gd_runs).holds


def test_modified_flow_and_additive_pgf_runs(problem):
    x0 = init.gaussian(problem, 0.3, seed=_seeds(7)[0])
    mod = ModifiedFlow(problem, 0.1)
    run = B.Run.of(integrate(mod, x0, 2.0, t_eval=np.linspace(0, 2, 11)), mod)
    assert run.dynamics == "modified" and run.step_size == 0.1
    drift = B.Claim("fro(derivative(imbalance) - eta*(G_U.T*G_U - G_V.T*G_V)) == 0",
                    allowance="1e-12 * fro(U) * fro(V) * (fro(R) + eta * fro(G_U) * fro(G_V))")
    assert B.check(drift, run).holds
    model = perturbations.FixedPerturbation(0.1 * np.ones(problem.dim))
    add = PerturbedGradientFlow(problem, model, form="additive")
    run = B.Run.of(integrate(add, x0, 2.0, t_eval=np.linspace(0, 2, 11)), add)
    assert run.dynamics == "pgf_additive"
    e_claim = "fro(derivative(U) - (-G_U + E_U)) + fro(derivative(V) - (-G_V + E_V)) == 0"
    assert B.check(B.Claim(e_claim, allowance="1e-12 * (1 + fro(U) + fro(V))**3"), run).holds


def test_sensing_gradient_flow_is_a_residual_pgf():
    p = MatrixSensing.random(m=5, n=4, rank=1, width=2, n_measurements=40, seed=3)
    flow = GradientFlow(p)
    traj = integrate(flow, init.gaussian(p, 0.1, seed=_seeds(3)[0]), 3.0, t_eval=np.linspace(0, 3, 16),
                     rtol=1e-10, atol=1e-12)
    run = B.Run.of(traj, flow)
    assert run.dynamics == "pgf_residual" and isinstance(run.perturbation, perturbations.SensingError)
    for name in ("imbalance_conserved", "noise_U_rate", "signal_U_identity"):
        assert B.check(claims.get(name), run).holds, name


def test_imbalance_drift_catches_a_sloppy_integration(problem):
    """imbalance_conserved is an identity (its derivative is 0 symbolically); imbalance_drift looks at the
    states: a loose RK23 run moves UᵀU − VᵀV off its initial value, a tight run does not."""
    flow = GradientFlow(problem)
    x0 = init.gaussian(problem, 0.05, seed=_seeds(3)[0])
    grid = np.linspace(0, T_END, N_SAVE)
    sloppy, tight = (B.Run.of(integrate(flow, x0, T_END, t_eval=grid, method="RK23", rtol=tol, atol=tol), flow)
                     for tol in (1e-3, 1e-11))
    drift = claims.get("imbalance_drift")
    assert not B.check(drift, sloppy).holds and B.check(drift, tight).holds
    assert B.check(claims.get("imbalance_conserved"), sloppy).holds  # the identity cannot tell them apart


# ---------------------------------------------------------------------------------------------
# reports
# ---------------------------------------------------------------------------------------------

def test_report_plot_and_table(ensemble):
    report = B.check("derivative(noise_U_sq) <= 0", ensemble[:4])
    fig = report.plot()
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    text = B.table([report, B.check(claims.get("noise_U_rate"), ensemble[:4])])
    assert "first violation" in text.splitlines()[0] and "noise_U_rate" in text
    assert report.summary().startswith("derivative(noise_U_sq) <= 0:")


@pytest.mark.parametrize("statement, sign", [("loss <= 2 * loss", 1.0), ("2 * loss >= loss", -1.0),
                                             ("loss == loss", 0.0)])
def test_plot_moves_the_bound_by_the_tolerance_the_way_the_claim_allows(ensemble, statement, sign):
    report = B.check(B.Claim(statement, allowance="0.1 * loss"), ensemble[0])
    s = report.series[0]
    bound = report.plot().axes[0].lines[1]
    assert np.allclose(bound.get_ydata(), s.rhs + sign * s.allowance, rtol=1e-15, atol=0)


@pytest.mark.filterwarnings("ignore:invalid value encountered in sqrt")
def test_equality_and_ratio_conventions(ensemble):
    run = ensemble[0]
    rep = B.check(B.Claim("loss == loss + 1e-9", allowance="2e-9"), run)
    assert rep.holds and rep.worst_ratio == pytest.approx(0.5) and rep.min_slack == pytest.approx(1e-9)
    rep = B.check("2 * loss >= loss", run)
    assert rep.holds and rep.worst_ratio == pytest.approx(0.5)
    rep = B.check("sqrt(-loss) <= 1", run)  # NaN counts as a violation
    assert not rep.holds and rep.first_violation.index == 0
    assert "min slack non-finite" in rep.summary() and "non-finite" in B.table([rep])


def test_a_report_explains_every_cell_that_is_not_a_number(ensemble):
    """lo ≤ hi with hi = 0 everywhere has no ratio: "n/a", explained under the table and in the summary."""
    rep = B.check(B.Claim("-loss <= 0 * loss"), ensemble[0])
    assert rep.holds and np.isnan(rep.worst_ratio)
    assert "worst ratio n/a" in rep.summary() and "no ratio is defined" in rep.summary()
    text = B.table([rep, B.check("2 * loss >= loss", ensemble[0])])
    assert "nan" not in text.lower() and text.count("no ratio is defined") == 1


# ---------------------------------------------------------------------------------------------
# malformed claims
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("statement, offending, message", [
    ("derivative(nois_U) <= 0", "nois_U", "unknown name 'nois_U' (did you mean noise_U_sq"),
    ("lambda_min(U*V) <= 1", "U*V", "inner sizes k and n differ"),
    ("fro(U.T*Sigma*Sigma_star) <= 1", "U.T*Sigma*Sigma_star", "inner sizes n and r differ"),
    ("loss + U <= 1", "loss + U", "cannot add 'loss' (scalar) and 'U' (m×k matrix)"),
    ("derivative(imbalance) <= 0", "derivative(imbalance)", "is not a scalar"),
    ("lambda_max(A) <= 0", "lambda_max(A)", "square matrix"),
    ("trace(J) >= 0", "trace(J)", "square matrix"),
    ("U**2 <= 1", "U**2", "only a square matrix has powers"),
    ("sqrt(U) <= 1", "sqrt(U)", "takes a scalar"),
    ("loss <= foo(U)", "foo", "unknown function 'foo'"),
    ("derivative(E) <= 0", "derivative(E)", "does not model dE/dt"),
    ("loss < 1", "loss < 1", "'<' is not allowed"),
    ("0 <= loss <= 1", "0 <= loss <= 1", "chained"),
    ("loss", "loss", "one comparison"),
    ("loss.H <= 1", "loss.H", "only .T"),
    ("x[0] <= 1", "x[0]", "unsupported syntax"),
    ("__import__('os') <= 1", "__import__", "unknown function"),
    ("norm(U) <= c", "c", "declare constants in the claim's params"),
    ("loss <= 1e400", "1e400", "not a finite real number"),
    ("loss <= 2 * (1/0)", "1/0", "not a finite real number"),
    ("loss <= log(0) + 1", "log(0)", "not a finite real number"),
    ("loss <= sqrt(-1)", "sqrt(-1)", "not a finite real number"),
    ("loss <= exp(1000)", "exp(1000)", "not a finite real number"),
    ("loss <= 10**5000", "5000", "exceeds 64"),
    ("loss <= 9**9**9", "9**9", "exceeds 64"),
    ("fro(VtV**65) <= 1", "65", "exceeds 64"),
])
def test_malformed_claims_point_at_the_offending_part(statement, offending, message):
    with pytest.raises(B.ClaimError) as info:
        B.Claim(statement)
    err = info.value
    assert message in err.reason
    start, end = err.span
    assert err.text[start:end] == offending
    caret_line = str(err).splitlines()[-1]
    assert caret_line.strip() == "^" * len(offending) and caret_line.index("^") - 4 == start


def test_claim_fields_are_validated():
    with pytest.raises(B.ClaimError, match="syntax error"):
        B.Claim("loss <= (1")
    with pytest.raises(B.ClaimError, match="shadow"):
        B.Claim("loss <= U", params={"U": 1.0})
    with pytest.raises(B.ClaimError, match="dynamics must be among"):
        B.Claim("loss >= 0", dynamics=("sgd",))
    with pytest.raises(B.ClaimError, match="allowance"):
        B.Claim("loss >= 0", allowance="U")
    with pytest.raises(B.ClaimError, match="not parameters"):
        claims.get("ye_du_B_bound", d=3)


@pytest.mark.parametrize("field, value, message", [
    ("expect", "false", "expect must be true or false"),
    ("allowance", ["1e-12"], "allowance must be an expression string or a number"),
    ("allowance", True, "allowance must be an expression string or a number"),
    ("quantities", {"q": 1.0}, "quantity 'q' must be an expression string"),
    ("quantities", ["q"], "quantities must map names"),
])
def test_claim_field_types_are_validated(field, value, message):
    with pytest.raises(B.ClaimError, match=message):
        B.Claim("loss >= 0", name="typed", **{field: value})


def test_shared_params_fill_in_but_do_not_override_a_claims_own(gd_runs, tmp_path):
    own = B.Claim("fro(B) <= 2 * c * r * eps", params={"c": 1e6, "eps": None}, name="own c")
    report, = B.check_all([own], gd_runs, params={"c": 1e-9, "eps": 0.05})
    assert report.holds  # with the shared c = 1e-9 it would fail
    assert not B.check(own.with_params(c=1e-9, eps=0.05), gd_runs).holds
    path = tmp_path / "claims.toml"
    path.write_text('[params]\nc = 1e-9\neps = 0.05\n[[claim]]\nuse = "ye_du_B_bound"\nparams = {c = 1e6}\n')
    chosen, _, params = load_claim_file(path)
    assert B.check_all(chosen, gd_runs, params=params)[0].holds


def test_claims_from_sympy_relations(ensemble):
    Q = {name: q.expr for name, q in S.QUANTITIES.items()}
    rel = B.derivative("noise_U_sq") <= -2 * S.lambda_min(Q["VtV"]) * Q["noise_U_sq"] \
        + 2 * S.fro(Q["J"]) * S.norm(S.E) * S.fro(S.V)
    claim = B.Claim(rel, rel_allowance=1e-9, allowance="1e-12 * (1 + kappa) * sigma_1 * fro(V) * fro(J)")
    assert claim.op == "<=" and B.check(claim, ensemble[:6]).holds
    with pytest.raises(B.ClaimError, match="unknown symbol"):
        B.Claim(sp.Symbol("zz") <= Q["loss"])
    with pytest.raises(B.ClaimError, match="sympy <=, >= or =="):
        B.Claim(sp.StrictLessThan(Q["loss"], 1))


def test_check_refuses_runs_and_missing_values(ensemble, gd_runs):
    with pytest.raises(ValueError, match="is stated for"):
        B.check(claims.get("loss_identity"), gd_runs)
    with pytest.raises(ValueError, match="parameter eps has no value"):
        B.check(claims.get("ye_du_B_bound", c=1.0), gd_runs)
    with pytest.raises(ValueError, match="E is not defined on run"):
        B.check("norm(E) <= 1", gd_runs)
    with pytest.raises(ValueError, match="eta is not defined"):
        B.check("eta <= 1", ensemble[0])
    with pytest.raises(TypeError, match="must be a Run"):
        B.check("loss >= 0", [ensemble[0].trajectory])


# ---------------------------------------------------------------------------------------------
# runs that know what they are; derivatives against their trajectories; hypotheses (issue #17)
# ---------------------------------------------------------------------------------------------

def test_a_run_refuses_a_label_its_trajectory_contradicts(problem, gd_runs):
    gd_traj = gd_runs[0].trajectory
    with pytest.raises(ValueError, match="records dynamics 'gd'"):
        B.Run(problem, gd_traj, "gf")
    with pytest.raises(ValueError, match="step_size"):
        B.Run(problem, gd_traj, "gd", step_size=2 * gd_runs[0].step_size)
    alternating = gradient_descent(problem, gd_traj.x[0], gd_runs[0].step_size, 5, variant="alternating")
    with pytest.raises(ValueError, match="alternating"):
        B.Run(problem, alternating, "gd", step_size=gd_runs[0].step_size)
    sensing = MatrixSensing.random(m=5, n=4, rank=1, width=2, n_measurements=40, seed=3)
    flow = GradientFlow(sensing)
    traj = integrate(flow, init.gaussian(sensing, 0.1, seed=1), 1.0, t_eval=np.linspace(0, 1, 11))
    with pytest.raises(ValueError, match="MatrixSensing is modelled only through its gradient flow"):
        B.Run(sensing, traj, "gf")
    assert B.Run.of(traj, flow).dynamics == "pgf_residual"


def test_a_gd_trajectory_without_its_record_is_caught_by_its_differences(problem):
    """GD labelled as GF: d/dt ‖UᵀU − VᵀV‖² is 0 along GF, but GD changes it every step."""
    import dataclasses

    traj = gradient_descent(problem, init.gaussian(problem, 0.3, seed=_seeds(1)[0]), 0.1, 60)
    bare = dataclasses.replace(traj, dynamics=None)
    drift = float(np.ptp(S.evaluate("imbalance_sq", problem, traj.x)))
    assert drift > 0.01
    report = B.check("derivative(imbalance_sq) == 0", B.Run(problem, bare, "gf"))
    assert report.first_violation is None  # every value satisfies the claim ...
    assert not report.holds and report.verdict == "UNRELIABLE"  # ... but the values are not this run's
    check, = report.disagreements
    assert check.compared == 60 and check.mismatched >= 55
    assert abs(check.symbolic) <= 1e-12 and check.differenced > 1e-3
    text = B.table([report])
    assert "DISAGREES" in text and "UNRELIABLE" in text.splitlines()[2]
    good = B.check("derivative(imbalance_sq) == 0", B.Run.of(traj, problem))
    assert not good.holds and good.verdict == "VIOLATED" and not good.disagreements


def test_a_wrong_perturbation_is_caught_by_the_differences(problem):
    import dataclasses

    E_true = perturbations.FixedPerturbation(0.3 * np.ones(problem.target.shape))
    flow = PerturbedGradientFlow(problem, E_true)
    traj = integrate(flow, init.gaussian(problem, 0.3, seed=_seeds(2)[0]), 2.0, t_eval=np.linspace(0, 2, 41),
                     rtol=1e-10, atol=1e-12)
    wrong = perturbations.FixedPerturbation(np.zeros(problem.target.shape))
    with pytest.raises(ValueError, match="not the one the trajectory records"):
        B.Run(problem, traj, "pgf_residual", perturbation=wrong)
    bare = B.Run(problem, dataclasses.replace(traj, dynamics=None), "pgf_residual", perturbation=wrong)
    report = B.check(claims.get("noise_U_rate"), bare)
    assert report.verdict == "UNRELIABLE" and not report.holds
    assert B.check(claims.get("noise_U_rate"), B.Run.of(traj, flow)).verdict == "holds"


def test_derivatives_agree_with_the_trajectories_of_every_true_claim(ensemble, gd_runs):
    for name in ("imbalance_conserved", "loss_decreases", "noise_U_rate", "signal_U_rate", "ye_du_J_nonincreasing"):
        claim = claims.get(name)
        runs = [r for r in ensemble + gd_runs if r.dynamics in claim.dynamics]
        report = B.check(claim, runs)
        assert report.holds and not report.disagreements, report.summary()
        compared = [c for c in report.derivative_checks if c.compared]
        assert compared and max(c.worst for c in compared) <= 0.5


def test_table_says_what_its_columns_are(ensemble):
    reports = [B.check(claims.get("noise_U_rate"), ensemble[:2]),
               B.check(B.Claim("derivative(loss) >= 0", expect=False, name="loss grows (false)"), ensemble[:2])]
    lines = B.table(reports).splitlines()
    assert lines[0].split()[:7] == ["claim", "dynamics", "runs", "states", "holds", "must_hold", "as_expected"]
    assert "expected" not in lines[0].replace("as_expected", "")
    row = lines[3].split()
    assert row[:3] == ["loss", "grows", "(false)"] and row[6:9] == ["NO", "no", "yes"]


def test_hypotheses_restrict_the_states_a_claim_is_checked_on(ensemble):
    run = ensemble[0]
    loss = run.trajectory.monitors["loss"]
    middle = np.sort(loss)[len(loss) // 2 - 1:len(loss) // 2 + 1]
    cut = float(middle.mean())  # between two saved losses: the claim's own loss agrees with the monitor's to rounding
    claim = B.Claim(f"loss <= {cut!r}", assume="loss <= " + repr(cut))
    report = B.check(claim, run)
    assert report.holds and report.n_excluded == int(np.sum(loss > cut)) > 0
    assert not B.check(B.Claim(f"loss <= {cut!r}"), run).holds
    per_dynamics = B.Claim("derivative(loss) <= 0", assume={"gd": "eta <= 0"})
    assert per_dynamics.hypotheses_for("gf") == () and len(per_dynamics.hypotheses_for("gd")) == 1
    with pytest.raises(B.ClaimError, match="assume"):
        B.Claim("loss >= 0", assume={"sgd": "loss >= 0"})
    nothing = B.check(B.Claim("loss >= 0", assume="loss <= -1"), run)  # no state meets the hypothesis
    assert not nothing.holds and nothing.verdict == "NOT CHECKED" and "NOT CHECKED" in B.table([nothing])


def test_diverged_gd_is_judged_on_the_steps_before_divergence():
    from pgflow.analysis.bounds.ensembles import ensemble_runs

    p_dim = (6 + 5) * 2
    x0 = (3.0 * np.random.default_rng(0).standard_normal(p_dim)).tolist()
    runs = ensemble_runs({"m": 6, "n": 5, "dynamics": ["gd"], "t_end": 2.0, "x0": x0})
    assert "diverged" in runs[0].label and len(runs[0].trajectory.t) >= 2
    assert not B.check(claims.FALSE_VARIANTS["loss_decreases"], runs).holds
