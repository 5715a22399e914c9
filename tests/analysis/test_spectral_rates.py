"""Right-derivatives of spectral functions at repeated and zero singular values and eigenvalues."""

import numpy as np
import pytest

from pgflow.analysis import symbolic as S
from pgflow.analysis.bounds import Claim, Run, check
from pgflow.flows import (FixedPerturbation, GradientFlow, MatrixFactorization, ModifiedFlow, PerturbedGradientFlow,
                          init, integrate)

Q = {name: q.expr for name, q in S.QUANTITIES.items()}
EXPRS = {"norm(U)": S.norm(S.U), "sigma_min(U)": S.sigma_min(S.U), "nuclear_norm(U)": S.nuclear_norm(S.U),
         "top_sum(U, 1)": S.top_sum(S.U, 1), "lambda_min(VtV)": S.lambda_min(Q["VtV"]),
         "lambda_max(VtV)": S.lambda_max(Q["VtV"]), "lambda_min(imbalance)": S.lambda_min(Q["imbalance"]),
         "lambda_max(imbalance)": S.lambda_max(Q["imbalance"]), "nuclear_norm(J)": S.nuclear_norm(Q["J"]),
         "norm(J)": S.norm(Q["J"]), "sigma_min(J)": S.sigma_min(Q["J"]), "fro(J)": S.fro(Q["J"])}


@pytest.fixture(scope="module")
def setting():
    p = MatrixFactorization.random(m=6, n=5, rank=2, width=2, condition=2.0, seed=0)
    e = 0.3 * np.random.default_rng(0).standard_normal(p.dim)
    E_U, E_V = p.unpack(e)
    flows = {"gf": (GradientFlow(p), {}), "modified": (ModifiedFlow(p, 0.1), {"eta": 0.1}),
             "pgf_additive": (PerturbedGradientFlow(p, FixedPerturbation(e), form="additive"), {"E_U": E_U, "E_V": E_V})}
    starts = {"equal amplitudes 1.2": init.spectral(p, [1.2, 1.2]),  # σ₁(U) = σ₂(U), J = K = 0, UᵀU − VᵀV = 0
              "equal amplitudes 0.8": init.spectral(p, [0.8, 0.8]),
              "lambda-balanced": init.lambda_balanced(p, 0.5, 0.7, seed=3)}  # UᵀU − VᵀV = 0.7 I
    return p, flows, starts


def _one_sided(p, flow, x0, expr, extras, h=1e-4):
    """(q(h) − q(0))/h extrapolated to h → 0⁺ (Richardson on h and h/2) along the integrated flow."""
    traj = integrate(flow, x0, h, t_eval=np.array([0.0, h / 2, h]), rtol=1e-13, atol=1e-16, method="DOP853")
    q = S.evaluate(expr, p, traj.x, **extras)
    return float(2 * (q[1] - q[0]) / (h / 2) - (q[2] - q[0]) / h)


def test_right_derivatives_match_one_sided_differences_at_repeated_values(setting):
    p, flows, starts = setting
    worst = 0.0
    for start, x0 in starts.items():
        for dynamics, (flow, extras) in flows.items():
            for name, expr in EXPRS.items():
                rate = float(S.evaluate(S.time_derivative(expr, dynamics), p, x0, **extras))
                fd = _one_sided(p, flow, x0, expr, extras)
                assert abs(rate - fd) <= 1e-6 * max(1.0, abs(fd)), (start, dynamics, name, rate, fd)
                worst = max(worst, abs(rate - fd))
    assert worst > 0  # the comparison is not vacuous


def test_the_simple_value_formula_was_wrong_there(setting):
    """The measured defect: u₁ᵀU̇v₁ with an arbitrary basis of the repeated singular space."""
    p, flows, starts = setting
    x0 = starts["equal amplitudes 1.2"]
    flow = flows["gf"][0]
    U = p.unpack(x0)[0]
    U_dot = p.unpack(flow(0.0, x0))[0]
    u, s, vt = np.linalg.svd(U)
    assert s[0] - s[1] <= 1e-14 * s[0]
    rates = [u[:, i] @ U_dot @ vt[i] for i in range(2)]  # the two candidates a basis choice can give
    right = float(S.evaluate(S.time_derivative(S.norm(S.U), "gf"), p, x0))
    assert right == pytest.approx(max(rates), rel=1e-12) and min(rates) < right - 0.5
    assert right == pytest.approx(_one_sided(p, flow, x0, S.norm(S.U), {}), abs=1e-6)


def test_nonsmooth_points_are_flagged(setting):
    p, flows, starts = setting
    U_, V_ = p.unpack(starts["equal amplitudes 1.2"])
    f = S.compile_expr(S.time_derivative(S.norm(S.U), "gf"))
    values = {k: v for k, v in {**S.problem_values(p), "U": U_, "V": V_}.items() if k in f.leaves}
    _, flags = f.with_flags(**values)
    assert bool(flags)
    generic = init.gaussian(p, 0.5, seed=4)
    U_, V_ = p.unpack(generic)
    _, flags = f.with_flags(**{**values, "U": U_, "V": V_})
    assert not bool(flags)


def test_false_claims_at_repeated_values_are_not_reported_to_hold(setting):
    p, flows, starts = setting
    flow = GradientFlow(p)
    grid = np.linspace(0.0, 0.5, 6)
    run = Run.of(integrate(flow, starts["equal amplitudes 1.2"], 0.5, t_eval=grid, rtol=1e-12, atol=1e-14), flow)
    truth = _one_sided(p, flow, starts["equal amplitudes 1.2"], S.norm(S.U), {})
    assert truth > 0.6
    false = check(Claim(f"derivative(norm(U)) <= {truth - 0.1!r}"), run)  # true with the basis-dependent rate
    assert not false.holds and false.first_violation.time == 0.0 and false.n_nonsmooth >= 1
    true = check(Claim(f"derivative(norm(U)) <= {truth + 1e-6!r}"), run)
    assert true.holds
    modified = ModifiedFlow(p, 0.1)
    lb = integrate(modified, starts["lambda-balanced"], 0.5, t_eval=grid, rtol=1e-12, atol=1e-14)
    rate = _one_sided(p, modified, starts["lambda-balanced"], S.lambda_min(Q["imbalance"]), {"eta": 0.1})
    report = check(Claim(f"derivative(lambda_min(imbalance)) >= {rate + 1e-3!r}"), Run.of(lb, modified))
    assert not report.holds and report.first_violation.time == 0.0


def test_nuclear_norm_and_top_sum_in_the_claim_language(setting):
    p, flows, starts = setting
    flow = GradientFlow(p)
    grid = np.linspace(0.0, 1.0, 11)
    run = Run.of(integrate(flow, init.gaussian(p, 0.3, seed=5), 1.0, t_eval=grid, rtol=1e-11, atol=1e-13), flow)
    report = check(Claim("nuclear_norm(U) == top_sum(U, 2)", rel_allowance=1e-12), run)
    assert report.holds
    report = check(Claim("top_sum(U, 1) == norm(U)", rel_allowance=1e-12), run)
    assert report.holds
    U = run.trajectory.U
    assert np.allclose(S.evaluate(S.nuclear_norm(S.U), p, run.trajectory.x),
                       np.linalg.svd(U, compute_uv=False).sum(axis=1), rtol=1e-13, atol=0)
    with pytest.raises(Exception, match="positive integer"):
        Claim("top_sum(U, 0) >= 0")
    with pytest.raises(Exception, match="top_sum"):
        Claim("top_sum(U, norm(U)) >= 0")
