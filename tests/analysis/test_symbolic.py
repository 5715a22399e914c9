"""analysis.symbolic: exact componentwise identities, and derivations against numerics."""

import warnings

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from pgflow.analysis import symbolic as S
from pgflow.analysis.symbolic import E, Phi, Phi_perp, Psi, Psi_perp, Sigma_star, U, V, eta
from pgflow.flows import (FunctionPerturbation, GradientFlow, MatrixFactorization, ModifiedFlow, PerturbedGradientFlow,
                          gradient_descent, init, integrate)

Q = {name: q.expr for name, q in S.QUANTITIES.items()}


def rel_err(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))


# ---------------------------------------------------------------------------------------------
# exact identities (componentwise, expanded to exactly 0)
# ---------------------------------------------------------------------------------------------

def test_imbalance_conserved_along_gf_and_residual_pgf_but_not_additive():
    assert S.vanishes(S.time_derivative("imbalance", "gf"))
    assert S.vanishes(S.time_derivative("imbalance", "pgf_residual"))
    assert not S.vanishes(S.time_derivative("imbalance", "pgf_additive"))  # the check is not vacuous


def test_loss_decreases_at_the_squared_gradient_norm():
    assert S.vanishes(S.time_derivative("loss", "gf") + Q["grad_sq"])
    assert not S.vanishes(S.time_derivative("loss", "gf"))


def test_gd_imbalance_step_is_eta_squared_gradient_gram_difference():
    G_U, G_V = Q["G_U"], Q["G_V"]
    assert S.vanishes(S.gd_step("imbalance") - eta ** 2 * (G_U.T * G_U - G_V.T * G_V))
    # the modified flow drifts at GD's rate per unit time (differentiate UᵀG_U = G_VᵀV along G)
    assert S.vanishes(S.time_derivative("imbalance", "modified") - eta * (G_U.T * G_U - G_V.T * G_V))


def _ye_du_terms():
    A, B, J, K, P, S_ = (Q[x] for x in "ABJKPS")
    U1, V1 = Q["U1"], Q["V1"]
    dA = P * A - S_ * B - A * (K.T * K + J.T * J) / 2 - B * (K.T * K - J.T * J) / 2
    dB = -P * B + S_ * A - B * (K.T * K + J.T * J) / 2 - A * (K.T * K - J.T * J) / 2
    dJ = -J * (V1.T * V1 + K.T * K)
    dK = -K * (U1.T * U1 + J.T * J)
    return {"A": dA, "B": dB, "J": dJ, "K": dK}


@pytest.mark.parametrize("sizes", [dict(m=3, n=3, k=2, r=2), dict(m=3, n=2, k=2, r=1)], ids=["k=r", "k>r"])
def test_ye_du_one_step_recursions_are_exact(sizes):
    """docs/math/proof-quantities.md: A₊ = A + η(PA − SB − A(KᵀK + JᵀJ)/2 − B(KᵀK − JᵀJ)/2), and B, J, K alike."""
    for name, rhs in _ye_du_terms().items():
        assert S.vanishes(S.gd_step(name) - eta * rhs, **sizes), name
        # their η → 0 limits are the continuous versions
        assert S.vanishes(S.time_derivative(name, "gf") - rhs, **sizes), name


def test_signal_and_noise_derivative_formulas_along_residual_pgf():
    """docs/math/proof-quantities.md, and mirrored for V."""
    U1, V1, J, K, UtU, VtV = (Q[x] for x in ("U1", "V1", "J", "K", "UtU", "VtV"))
    want = {"U1": Sigma_star * V1 - U1 * VtV + Phi.T * E * V,
            "J": -J * VtV + Phi_perp.T * E * V,
            "V1": Sigma_star.T * U1 - V1 * UtU + Psi.T * E.T * U,
            "K": -K * UtU + Psi_perp.T * E.T * U}
    for name, rhs in want.items():
        assert S.vanishes(S.time_derivative(name, "pgf_residual") - rhs, m=4, n=3, k=2, r=2), name


@pytest.mark.parametrize("name", ["loss", "imbalance", "noise_U_sq", "signal_V_sq", "A", "B_sq"])
def test_every_derivation_verifies_componentwise(name):
    result = S.verify(name)
    assert all(result.values()), result
    assert set(result) >= set(S.DYNAMICS)


@pytest.mark.parametrize("dynamics", ["gf", "pgf_residual", "pgf_additive", "modified"])
def test_grad_sq_flows_verify_componentwise(dynamics):
    assert all(S.verify("grad_sq", dynamics=(dynamics,)).values())


@pytest.mark.slow
def test_grad_sq_gd_step_verifies_componentwise():
    """A polynomial of high degree in η and the entries (degree 18 in the matrix leaves): decided
    exactly at generic sizes up to 47×44 and at the sizes given, in seconds (the former expansion
    into polynomial entries took a minute at 2×2 and 8 minutes at 3×2)."""
    assert all(S.verify("grad_sq", dynamics=("gd",), m=2, n=2, k=2, r=1).values())


def test_verify_catches_a_wrong_derivation(monkeypatch):
    wrong = S.time_derivative("noise_U_sq", "gf") * 2
    monkeypatch.setattr(S.checking, "time_derivative", lambda q, d="gf": wrong)
    assert S.verify("noise_U_sq", dynamics=("gf",))["gf"] is False


def test_componentwise_explicit_is_the_entrywise_polynomial():
    out = S.explicit(Q["imbalance"], m=2, n=1, k=1, r=1)
    u0, u1, v0 = (sp.Symbol(s) for s in ("U[0,0]", "U[1,0]", "V[0,0]"))
    assert sp.expand(out[0, 0] - (u0 ** 2 + u1 ** 2 - v0 ** 2)) == 0


# ---------------------------------------------------------------------------------------------
# gradients: against the problem's own gradient and against finite differences
# ---------------------------------------------------------------------------------------------

@given(m=st.integers(2, 7), n=st.integers(2, 7), rank=st.integers(1, 3), width=st.integers(1, 4),
       seed=st.integers(0, 2 ** 16))
@settings(max_examples=25, deadline=None)
def test_symbolic_gradient_equals_problem_grad(m, n, rank, width, seed):
    rank = min(rank, m, n)
    p = MatrixFactorization.random(m=m, n=n, rank=rank, width=width, condition=3.0, seed=seed)
    x = init.gaussian(p, 1.0, seed=np.random.SeedSequence(seed).spawn(1)[0])
    G_U, G_V = p.unpack(p.grad(x))
    assert rel_err(S.evaluate(S.gradient("loss", U), p, x), G_U) <= 1e-12
    assert rel_err(S.evaluate(S.gradient("loss", V), p, x), G_V) <= 1e-12


def test_catalogue_gradient_is_the_derived_one():
    assert Q["G_U"] == S.gradient("loss", U) and Q["G_V"] == S.gradient("loss", V)


@pytest.mark.parametrize("name", ["imbalance_sq", "noise_U_sq", "signal_V_sq", "B_sq", "grad_sq"])
def test_gradients_of_catalogue_quantities_match_finite_differences(name, rng):
    p = MatrixFactorization.random(m=5, n=4, rank=2, width=3, seed=3)
    x, d = rng.standard_normal(p.dim), rng.standard_normal(p.dim)
    h = 1e-5
    fd = (S.evaluate(name, p, x + h * d) - S.evaluate(name, p, x - h * d)) / (2 * h)
    g = p.pack(S.evaluate(S.gradient(name, U), p, x), S.evaluate(S.gradient(name, V), p, x))
    assert abs(g @ d - fd) <= 1e-7 * abs(fd)


def test_sympy_diff_fails_where_pgflow_does_not():
    """Why pgflow has its own matrix calculus: sympy cannot differentiate the first quantity anyone writes."""
    q = sp.Trace((U.T * U - V.T * V) ** 2)
    with pytest.raises(Exception), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sympy deprecation noise on its way to the error
        q.diff(U)
    assert S.gradient(q, U) == 4 * U * (U.T * U - V.T * V)


# ---------------------------------------------------------------------------------------------
# time derivatives against central differences along integrated trajectories
# ---------------------------------------------------------------------------------------------

H = 1e-4
TIMES = np.array([0.3, 1.0, 2.5])
FIVE = ["loss", "grad_sq", "noise_U_sq", "signal_U_sq", "B_sq", "imbalance_sq"]


@pytest.fixture(scope="module")
def fd_setup():
    p = MatrixFactorization.random(m=6, n=5, rank=2, width=3, condition=3.0, seed=0)
    x0 = init.gaussian(p, 0.3, seed=np.random.SeedSequence(0).spawn(1)[0])
    grid = np.sort(np.concatenate([TIMES - H, TIMES, TIMES + H]))
    E_of_t = lambda t, x: 0.3 * np.sin(2 * t) * np.outer(np.arange(1, 7), np.ones(5)) / 6  # noqa: E731
    e_of_t = lambda t, x: 0.2 * np.cos(3 * t) * np.linspace(-1, 1, p.dim)  # noqa: E731
    flows_ = {"gf": (GradientFlow(p), {}),
              "pgf_residual": (PerturbedGradientFlow(p, FunctionPerturbation(E_of_t, state_dependent=False)),
                               {"E": lambda t, x: E_of_t(t, x)}),
              "pgf_additive": (PerturbedGradientFlow(p, FunctionPerturbation(e_of_t, state_dependent=False),
                                                     form="additive"),
                               {"E_U": lambda t, x: p.unpack(e_of_t(t, x))[0],
                                "E_V": lambda t, x: p.unpack(e_of_t(t, x))[1]}),
              "modified": (ModifiedFlow(p, 0.05), {"eta": lambda t, x: 0.05})}
    out = {}
    for name, (flow, extras) in flows_.items():
        traj = integrate(flow, x0, grid[-1], t_eval=grid, rtol=1e-13, atol=1e-15)
        assert np.allclose(traj.t, grid, rtol=0, atol=0)
        out[name] = (traj, extras)
    return p, out


@pytest.mark.parametrize("dynamics", ["gf", "pgf_residual", "pgf_additive", "modified"])
@pytest.mark.parametrize("name", FIVE)
def test_time_derivative_matches_central_difference(fd_setup, name, dynamics):
    p, runs = fd_setup
    traj, extras = runs[dynamics]
    X = traj.x.reshape(len(TIMES), 3, -1)
    q = S.evaluate(name, p, traj.x).reshape(len(TIMES), 3)
    fd = (q[:, 2] - q[:, 0]) / (2 * H)
    mid_t = traj.t.reshape(len(TIMES), 3)[:, 1]
    exact = np.array([S.evaluate(S.time_derivative(name, dynamics), p, x,
                                 **{k: f(t, x) for k, f in extras.items()}) for t, x in zip(mid_t, X[:, 1])])
    if name == "imbalance_sq" and dynamics in ("gf", "pgf_residual"):  # conserved: the derivative is exactly 0
        assert np.max(np.abs(exact)) <= 1e-12 and np.max(np.abs(fd)) <= 1e-7
    else:
        assert rel_err(exact, fd) <= 1e-6


def test_spectral_function_rates_match_central_differences(fd_setup):
    p, runs = fd_setup
    traj, _ = runs["gf"]
    exprs = [S.norm(Q["J"]), S.lambda_min(Q["VtV"]), S.lambda_max(Q["UtU"]), S.sigma_min(Q["U1"]), S.fro(Q["B"]),
             S.sigma_max(Q["R"])]
    for expr in exprs:
        q = S.evaluate(expr, p, traj.x).reshape(len(TIMES), 3)
        fd = (q[:, 2] - q[:, 0]) / (2 * H)
        exact = S.evaluate(S.time_derivative(expr, "gf"), p, traj.x.reshape(len(TIMES), 3, -1)[:, 1])
        assert rel_err(exact, fd) <= 1e-6, expr


# ---------------------------------------------------------------------------------------------
# GD steps against real gradient descent
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["loss", "imbalance", "grad_sq", "A", "J", "noise_U_sq"])
def test_gd_step_matches_gradient_descent(name):
    p = MatrixFactorization.random(m=6, n=5, rank=2, width=3, condition=3.0, seed=1)
    gd = gradient_descent(p, init.gaussian(p, 0.5, seed=np.random.SeedSequence(1).spawn(1)[0]), 0.05, 4)
    q = S.evaluate(name, p, gd.x)
    step = S.evaluate(S.gd_step(name), p, gd.x[:-1], eta=0.05)
    assert np.max(np.abs((q[1:] - q[:-1]) - step)) <= 1e-12 * np.max(np.abs(q))


def test_gd_step_of_a_quantity_that_mentions_eta_keeps_eta_as_a_coefficient():
    # the step size must not be confused with the eta inside q: gd_step(η·f) = η·gd_step(f)
    assert S.vanishes(S.gd_step(eta * Q["loss"]) - eta * S.gd_step("loss"))
    assert S.verify(eta * Q["imbalance_sq"], ("gd",))["gd"]


def test_verify_includes_explicit_time_dependence():
    q = S.t * S.fro2(U)
    assert S.verify(q, ("gf", "modified", "gd")) == {"grad_U": True, "grad_V": True, "gf": True, "modified": True,
                                                     "gd": True}
    assert S.vanishes(S.time_derivative(q, "gf") - (S.fro2(U) + S.t * S.time_derivative(S.fro2(U), "gf")))


def test_derivative_of_an_absolute_value_is_sign_times_the_derivative():
    p = MatrixFactorization.random(m=5, n=4, rank=2, width=2, seed=0)
    xs = init.gaussian(p, 0.5, seed=1) * np.array([[1.0], [3.0]])
    shifted = Q["loss"] - float(np.mean(S.evaluate("loss", p, xs)))  # positive on one state, negative on the other
    rate = S.evaluate(S.time_derivative(sp.Abs(shifted), "gf"), p, xs)
    want = np.sign(S.evaluate(shifted, p, xs)) * S.evaluate(S.time_derivative("loss", "gf"), p, xs)
    assert set(np.sign(S.evaluate(shifted, p, xs))) == {-1.0, 1.0}
    assert np.allclose(rate, want, rtol=1e-13, atol=0)


def test_gd_step_is_a_polynomial_in_eta_without_the_zeroth_term():
    poly = sp.Poly(S.gd_step("imbalance_sq").as_expr(), eta)  # traces are generators
    assert poly.degree() == 4 and poly.coeff_monomial(1) == 0


# ---------------------------------------------------------------------------------------------
# errors and the numeric compiler
# ---------------------------------------------------------------------------------------------

def test_shape_checks_catch_what_sympy_misses():
    bad = U * V  # sympy accepts it: it cannot decide k != n
    with pytest.raises(S.ShapeError, match=r"cannot multiply U \(m×k\) by V \(n×k\)"):
        S.shape_of(bad)
    with pytest.raises(S.ShapeError, match="square"):
        S.trace(U)


def test_derivation_errors_are_clear():
    with pytest.raises(S.ShapeError, match="scalar"):
        S.gradient("imbalance", U)
    with pytest.raises(S.NotPolynomial):
        S.gd_step(S.norm(Q["J"]))
    with pytest.raises(S.NotPolynomial, match="no symbolic gradient"):
        S.gradient(S.norm(Q["J"]), U)
    with pytest.raises(ValueError, match="perturbation E"):
        S.time_derivative(S.fro2(E * V), "gf")
    with pytest.raises(ValueError, match="gd_step"):
        S.time_derivative("loss", "gd")
    with pytest.raises(KeyError, match="did you mean .*noise_U"):
        S.time_derivative("nose_U")


def test_compiled_functions_batch_and_validate_shapes():
    p = MatrixFactorization.random(m=5, n=4, rank=2, width=2, seed=2)
    xs = np.random.default_rng(0).standard_normal((7, p.dim))
    f = S.compile_expr(S.time_derivative("noise_U_sq", "pgf_residual"))
    E_ = np.random.default_rng(1).standard_normal((7, 5, 4))
    batched = S.evaluate(f.expr, p, xs, E=E_)
    one_by_one = [S.evaluate(f.expr, p, x, E=e) for x, e in zip(xs, E_)]
    assert batched.shape == (7,) and np.allclose(batched, one_by_one, rtol=1e-14, atol=0)
    U_, V_ = p.unpack(xs[0])
    with pytest.raises(ValueError, match=r"V must have shape \(\.\.\., n, k\) = \(\.\.\., 4, 2\) here, got \(4, 1\)"):
        S.compile_expr(Q["imbalance_sq"])(U=U_, V=V_[:, :1])
    with pytest.raises(TypeError, match="missing value"):
        S.compile_expr(Q["loss"])(U=U_, V=V_)


# ---------------------------------------------------------------------------------------------
# identities at generic sizes, and derivations checked against pgflow.flows (issue #17)
# ---------------------------------------------------------------------------------------------

def _cayley_hamilton():
    M = U.T * U
    return M * M - S.trace(M) * M + (S.trace(M) ** 2 - S.trace(M * M)) / 2 * sp.Identity(S.k)


def test_small_sizes_satisfy_false_identities_but_vanishes_does_not_certify_them():
    CH = _cayley_hamilton()  # an identity of 2×2 matrices only
    B_ = Q["B"]
    commutator = Sigma_star * B_ * B_.T - B_ * B_.T * Sigma_star  # vanishes only when r = 1
    assert S.vanishes(CH, m=3, n=2, k=2, r=1, generic=False)  # what the old default sizes certified
    assert S.vanishes(commutator, m=3, n=2, k=2, r=1, generic=False)
    assert not S.vanishes(CH) and not S.vanishes(commutator)
    assert not S.vanishes(CH, m=3, n=2, k=2, r=1)  # given sizes are tested in addition to generic ones
    sizes = S.generic_sizes(S.matrix_degree(CH))
    assert sizes[S.k] > S.matrix_degree(CH) and sizes[S.m] > sizes[S.n] > sizes[S.k] and sizes[S.r] >= 2


def test_generic_sizes_exceed_the_degree_and_are_distinct():
    for degree in (1, 4, 12):
        s = S.generic_sizes(degree)
        parts = [s[S.m], s[S.n], s[S.k], s[S.r], s[S.m] - s[S.r], s[S.n] - s[S.r]]
        assert min(parts) > degree and len(set(parts)) == len(parts) and s[S.m] > s[S.n] > s[S.k]


def _clear_caches():
    S.derivatives.vector_field.cache_clear()
    S.derivatives._time_derivative.cache_clear()
    S.derivatives._gd_step.cache_clear()


def test_verify_catches_a_wrong_gradient_shared_by_field_and_derivative(monkeypatch):
    """With G_U doubled, the symbolic field and the symbolic derivative agree with each other, so a
    check of one against the other passes; verify compares with GradientFlow and gradient_descent."""
    monkeypatch.setitem(S.QUANTITIES, "G_U", S.Quantity("G_U", 2 * Q["G_U"], "corrupted"))
    _clear_caches()
    try:
        result = S.verify("noise_U_sq", ("gf", "pgf_residual", "gd"))
        assert not result["gf"] and not result["pgf_residual"] and not result["gd"]
    finally:
        monkeypatch.undo()
        _clear_caches()
    assert all(S.verify("noise_U_sq", ("gf", "pgf_residual", "gd")).values())


@pytest.mark.parametrize("module", ["checking", "derivatives"])
def test_verify_checks_the_modified_field_against_modified_flow(monkeypatch, module):
    """−ηG added to the modified field leaves d/dt ‖UᵀU − VᵀV‖² unchanged (⟨∇D, G⟩ = 0), so only the
    field itself, compared with ModifiedFlow, can catch it."""
    good = S.derivatives.vector_field

    def bad(dynamics, gradient=None):
        U_dot, V_dot = good(dynamics, gradient)
        if dynamics == "modified":
            return U_dot - eta * Q["G_U"], V_dot - eta * Q["G_V"]
        return U_dot, V_dot

    monkeypatch.setattr(getattr(S, module), "vector_field", bad)
    S.derivatives._time_derivative.cache_clear()
    try:
        result = S.verify("imbalance_sq", ("modified",))
        assert result["modified"] is False
        failed = [f for f in result.details["modified"] if not f.passed]
        assert failed and all("field" in f.check for f in failed)
    finally:
        monkeypatch.undo()
        S.derivatives._time_derivative.cache_clear()


def test_spectral_quantities_are_verified_numerically(monkeypatch):
    result = S.verify("noise_U_norm", ("gf", "pgf_residual", "modified", "gd"))
    assert all(result.values()) and set(result) == {"gf", "pgf_residual", "modified", "gd"}
    assert all(f.error <= 1e-8 for found in result.details.values() for f in found)
    wrong = S.time_derivative(S.norm(Q["J"]), "gf") * 1.01
    monkeypatch.setattr(S.checking, "time_derivative", lambda q, d="gf": wrong)
    assert S.verify("noise_U_norm", ("gf",))["gf"] is False


def test_verify_reports_its_evidence():
    result = S.verify("imbalance", ("gf", "gd"))
    checks = [f.check for f in result.details["gf"]]
    assert any(c.startswith("exact") for c in checks) and any("flow object" in c for c in checks)
    sizes = {f.sizes for f in result.details["gd"]}
    assert len(sizes) >= 4  # two generic size sets and the numeric sizes
    assert "FAIL" not in result.report()
