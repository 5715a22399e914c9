"""FormulaProblem: a loss from a formula, its derived and compiled derivatives against hand derivations,
every consumer of a problem, factored programs, and the errors of bad formulas."""

import pickle
import tracemalloc

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import solve_ivp

from pgflow.analysis import symbolic as S
from pgflow.analysis.bounds import Claim, Run, check
from pgflow.analysis.discretization import error_vs_step
from pgflow.analysis.symbolic import FORMULAS, FormulaError, FormulaProblem
from pgflow.flows import (DenseOperator, EntrySampling, FixedPerturbation, GradientFlow, LowRankTarget,
                          MatrixFactorization, MatrixSensing, ModifiedFlow, PerturbedGradientFlow, ProblemError,
                          RankOneOperator, gradient_descent, init, integrate)

M, N, K, R = 7, 5, 3, 2
LAM = 0.3


@pytest.fixture(scope="module")
def target():
    return LowRankTarget.random(M, N, R, condition=3.0, seed=0)


def _state(problem, seed=1):
    return problem.random_state(np.random.default_rng(seed))


def _rel(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# hand derivations: (U, V, Σ (dense), params) -> (∇_U, ∇_V)

def _hand_balanced(U, V, S_, lam):
    Rr, D = U @ V.T - S_, U.T @ U - V.T @ V
    return Rr @ V + lam / 2 * U @ D, Rr.T @ U - lam / 2 * V @ D


def _hand_weight_decay(U, V, S_, lam):
    Rr = U @ V.T - S_
    return Rr @ V + lam * U, Rr.T @ U + lam * V


def _hand_hvp_balanced(U, V, dU, dV, S_, lam):
    Rr, D = U @ V.T - S_, U.T @ U - V.T @ V
    W, dD = dU @ V.T + U @ dV.T, dU.T @ U + U.T @ dU - dV.T @ V - V.T @ dV
    return (W @ V + Rr @ dV + lam / 2 * (dU @ D + U @ dD),
            W.T @ U + Rr.T @ dU - lam / 2 * (dV @ D + V @ dD))


FURTHER = [  # (formula, params, hand gradient), none of them shipped
    ("fro(U*V.T - Sigma)**2/2 + mu/4*fro(U.T*U)**2", {"mu": 0.7},
     lambda U, V, S_, p: ((U @ V.T - S_) @ V + p["mu"] * U @ (U.T @ U), (U @ V.T - S_).T @ U)),
    ("fro(U*V.T - Sigma)**2/2 + c*trace(U.T*U*V.T*V)", {"c": 0.2},
     lambda U, V, S_, p: ((U @ V.T - S_) @ V + 2 * p["c"] * U @ (V.T @ V),
                          (U @ V.T - S_).T @ U + 2 * p["c"] * V @ (U.T @ U))),
    ("fro(U*V.T - Sigma)**4/4", {},
     lambda U, V, S_, p: (np.sum((U @ V.T - S_) ** 2) * (U @ V.T - S_) @ V,
                          np.sum((U @ V.T - S_) ** 2) * (U @ V.T - S_).T @ U)),
    ("sqrt(1 + fro(U)**2) + exp(-trace(U.T*Sigma*V)/10)", {},
     lambda U, V, S_, p: (U / np.sqrt(1 + np.sum(U * U)) - np.exp(-np.trace(U.T @ S_ @ V) / 10) / 10 * S_ @ V,
                          -np.exp(-np.trace(U.T @ S_ @ V) / 10) / 10 * S_.T @ U)),
    ("trace(Sigma.T*U*V.T)**2 + fro(V.T*Psi)**2 / (n*k)", {},
     None),  # checked against the numeric derivative below
]


# the shipped formulas

@pytest.mark.parametrize("name, hand", [("balanced", _hand_balanced), ("weight_decay", _hand_weight_decay)])
def test_shipped_formulas_equal_their_hand_gradients(target, name, hand):
    problem = getattr(FormulaProblem, name)(target, K, lam=LAM)
    S_ = target.dense()
    X = np.stack([_state(problem, seed) for seed in range(3)])
    G = problem.grad(X)
    for x, g in zip(X, G):
        want = problem.join(*hand(*problem.unpack(x), S_, LAM))
        assert _rel(problem.grad(x), want) <= 1e-12 and _rel(g, want) <= 1e-12
        assert np.array_equal(problem.negative_grad(x), -problem.grad(x))
    U, V = problem.unpack(X[0])
    Rr, D = U @ V.T - S_, U.T @ U - V.T @ V
    extra = LAM / 8 * np.sum(D * D) if name == "balanced" else LAM / 2 * (np.sum(U * U) + np.sum(V * V))
    assert problem.loss(X[0]) == pytest.approx(0.5 * np.sum(Rr * Rr) + extra, rel=1e-13)
    assert problem.loss(X).shape == (3,)
    assert problem.describe()["loss"] == FORMULAS[name] and problem.describe()["params"] == {"lam": LAM}


@pytest.mark.parametrize("operator", [DenseOperator.gaussian((M, N), 40, seed=2),
                                      RankOneOperator.gaussian((M, N), 40, seed=2),
                                      EntrySampling.uniform((M, N), 0.7, seed=2)], ids=lambda op: type(op).__name__)
def test_sensing_with_weight_decay_equals_its_hand_gradient(target, operator):
    problem = FormulaProblem.sensing_weight_decay(target, operator, K, lam=LAM)
    x = _state(problem)
    U, V = problem.unpack(x)
    Z = operator.adjoint(operator.apply(U @ V.T) - problem.measurements)
    assert _rel(problem.grad(x), problem.join(Z @ V + LAM * U, Z.T @ U + LAM * V)) <= 1e-12
    assert problem.loss(x) == pytest.approx(0.5 * np.sum((operator.apply(U @ V.T) - problem.measurements) ** 2)
                                            + LAM / 2 * np.sum(x * x), rel=1e-13)
    noisy = operator.apply(target.dense()) + 0.01
    given = FormulaProblem.sensing_weight_decay(target, operator, K, lam=LAM, measurements=noisy)
    assert given.describe()["measurements_sha256"] != problem.describe()["measurements_sha256"]
    assert _rel(given.grad(x) - problem.grad(x), problem.join(-0.01 * operator.adjoint(np.ones_like(noisy)) @ V,
                                                              -0.01 * operator.adjoint(np.ones_like(noisy)).T @ U)) <= 1e-10
    plain = FormulaProblem("fro(A(U*V.T) - y)**2/2", target, K, operator=operator)
    assert _rel(plain.grad(x), MatrixSensing(target, operator, K).grad(x)) <= 1e-12
    v = np.random.default_rng(5).standard_normal(x.shape)
    assert _rel(problem.hvp(x, v), MatrixSensing(target, operator, K).hvp(x, v) + LAM * v) <= 1e-12
    # the operator products are fused: one adjoint_products call serves both blocks
    listing = "\n".join(problem.program("grad").program.listing)
    assert listing.count("adjoint_products") == 1 and "apply_factored" in listing


def test_hessian_vector_products_and_third_derivatives_are_exact(target):
    problem = FormulaProblem.balanced(target, K, lam=LAM)
    x, v, w = _state(problem), *np.random.default_rng(3).standard_normal((2, problem.dim))
    hand = problem.join(*_hand_hvp_balanced(*problem.unpack(x), *problem.unpack(v), target.dense(), LAM))
    assert _rel(problem.hvp(x, v), hand) <= 1e-12
    h = 1e-5  # central differences of the exact gradient and hvp: error O(h²)
    fd = (problem.grad(x + h * v) - problem.grad(x - h * v)) / (2 * h)
    assert _rel(problem.hvp(x, v), fd) <= 1e-8
    fd3 = (problem.hvp(x + h * w, v) - problem.hvp(x - h * w, v)) / (2 * h)
    T = problem.third_derivative(x, v, w)
    assert _rel(T, fd3) <= 1e-8 and _rel(problem.third_derivative(x, w, v), T) <= 1e-12  # symmetric
    batch = np.stack([x, 2 * x])
    assert np.allclose(problem.hvp(batch, np.stack([v, v]))[1], problem.hvp(2 * x, v), rtol=1e-13, atol=1e-13)
    weight = FormulaProblem.weight_decay(target, K, lam=LAM)
    plain = MatrixFactorization(target, K)
    assert _rel(weight.hvp(x, v), plain.hvp(x, v) + LAM * v) <= 1e-12
    assert _rel(weight.third_derivative(x, v, w), plain.third_derivative(x, v, w)) <= 1e-12


# formulas that are not shipped

@pytest.mark.parametrize("formula, params, hand", FURTHER, ids=[f for f, _, _ in FURTHER])
def test_further_formulas_equal_their_hand_gradients(target, formula, params, hand):
    problem = FormulaProblem(formula, target, K, params=params)  # checked against the numeric derivative
    x = _state(problem)
    if hand is not None:
        assert _rel(problem.grad(x), problem.join(*hand(*problem.unpack(x), target.dense(), params))) <= 1e-12
    for block, (start, stop) in zip("UV", ((0, M * K), (M * K, problem.dim))):
        assert np.array_equal(problem.partial_grad(x, block).ravel(), problem.grad(x)[start:stop])


def test_a_sympy_expression_and_the_target_pieces(target):
    mu = sp.Symbol("mu")  # any symbol of that name: the parser's and the claims' real one is used
    loss = S.fro2(S.U * S.V.T - S.Sigma) / 2 + mu * S.fro2(S.Phi.T * S.U) - S.fro2(S.Phi_perp.T * S.U) / 4
    problem = FormulaProblem(loss, target, K, params={"mu": 0.5})
    x = _state(problem)
    U, V = problem.unpack(x)
    P = target.Phi @ target.Phi.T
    GU = (U @ V.T - target.dense()) @ V + P @ U - 0.5 * (np.eye(M) - P) @ U
    assert _rel(problem.grad(x), problem.join(GU, (U @ V.T - target.dense()).T @ U)) <= 1e-12


@settings(max_examples=25, deadline=None)
@given(m=st.integers(1, 6), n=st.integers(1, 6), k=st.integers(1, 4), seed=st.integers(0, 2 ** 16))
def test_the_plain_formula_is_matrix_factorization(m, n, k, seed):
    r = min(m, n, 2)
    mf = MatrixFactorization.random(m=m, n=n, rank=r, width=k, seed=seed)
    problem = FormulaProblem("fro(U*V.T - Sigma)**2/2", mf.target, k, check=False)
    X = np.random.default_rng(seed).standard_normal((3, mf.dim))
    assert np.allclose(problem.grad(X), mf.grad(X), rtol=1e-12, atol=1e-12 * np.abs(mf.grad(X)).max())
    assert np.allclose(problem.loss(X), mf.loss(X), rtol=1e-12, atol=0)
    x, a, b = X
    assert np.allclose(problem.hvp(x, a), mf.hvp(x, a), rtol=1e-12, atol=1e-12 * np.abs(mf.hvp(x, a)).max())
    T = mf.third_derivative(x, a, b)
    assert np.allclose(problem.third_derivative(x, a, b), T, rtol=1e-12, atol=1e-12 * np.abs(T).max())


# every consumer of a problem

def test_gradient_flow_matches_solve_ivp_of_the_hand_gradient(target):
    formula, params, hand = FURTHER[0]
    problem = FormulaProblem(formula, target, K, params=params)
    x0 = init.gaussian(problem, 0.5, seed=4)
    t = np.linspace(0.0, 4.0, 9)
    flow = integrate(GradientFlow(problem), x0, 4.0, t_eval=t, rtol=1e-11, atol=1e-13)

    def rhs(_, x):
        return -problem.join(*hand(*problem.unpack(x), target.dense(), params))

    ref = solve_ivp(rhs, (0.0, 4.0), x0, method="DOP853", t_eval=t, rtol=1e-12, atol=1e-14)
    assert np.max(np.abs(flow.x - ref.y.T)) <= 1e-9 * np.max(np.abs(ref.y))


def test_flows_descent_monitors_claims_and_the_discretization_study_accept_it(target):
    problem = FormulaProblem.balanced(target, K, lam=LAM)
    x0 = init.gaussian(problem, 0.3, seed=1)
    gf = integrate(GradientFlow(problem), x0, 2.0, t_eval=np.linspace(0.0, 2.0, 21), rtol=1e-10, atol=1e-12)
    assert gf.monitors["loss"][0] == pytest.approx(problem.loss(x0), rel=1e-12)
    assert gf.monitors["grad_norm"][-1] == pytest.approx(np.linalg.norm(problem.grad(gf.final)), rel=1e-12)
    assert {"imbalance_fro", "distance", "singular_values"} <= set(gf.monitors)
    for variant in ("simultaneous", "alternating"):
        gd = gradient_descent(problem, x0, 0.01, 200, save_every=10, variant=variant)
        assert np.max(np.abs(gd.final - gf.final)) < 0.05
    scaled = gradient_descent(problem, x0, 0.01, 200, save_every=10, variant="scaled")  # ScaledGD: its own flow
    assert scaled.monitors["loss"][-1] < 0.5 * scaled.monitors["loss"][0]
    pgf = integrate(PerturbedGradientFlow(problem, FixedPerturbation(np.zeros((M, N)))), x0, 2.0, rtol=1e-10,
                    atol=1e-12)
    assert np.allclose(pgf.final, gf.final, atol=1e-8)
    additive = PerturbedGradientFlow(problem, FixedPerturbation(np.zeros(problem.dim)), form="additive")
    assert np.array_equal(additive(0.0, x0), -problem.grad(x0))
    plain = FormulaProblem("fro(U*V.T - Sigma)**2/2", target, K)
    for order in (1, 2):
        assert _rel(ModifiedFlow(plain, 0.05, order=order)(0.0, x0),
                    ModifiedFlow(MatrixFactorization(target, K), 0.05, order=order)(0.0, x0)) <= 1e-12
    assert _rel(plain.hessian(x0), MatrixFactorization(target, K).hessian(x0)) <= 1e-12
    # the claims differentiate along the problem's own gradient: Ḋ = −(λ/2)(PD + DP), P = UᵀU + VᵀV
    claim = Claim("fro(derivative(imbalance) + lam/2*((UtU + VtV)*imbalance + imbalance*(UtU + VtV))) == 0",
                  params={"lam": LAM}, allowance="1e-12 * (fro(U)**2 + fro(V)**2)**2")
    assert check(claim, Run.of(gf, GradientFlow(problem))).holds
    assert not check("fro(derivative(imbalance)) == 0", Run.of(gf, GradientFlow(problem))).holds
    assert check("loss >= 0", Run.of(gradient_descent(problem, x0, 0.01, 50), problem)).holds
    # one GD step of weight decay: D₊ = (1 − ηλ)²D + η²(VᵀRᵀRV − UᵀRRᵀU), exactly
    decay = FormulaProblem.weight_decay(target, K, lam=LAM)
    step = Claim("fro(derivative(imbalance) - ((1 - eta*lam)**2 - 1)/eta*imbalance"
                 " - eta*(V.T*R.T*R*V - U.T*R*R.T*U)) == 0", params={"lam": LAM},
                 allowance="1e-12 * (fro(U)**2 + fro(V)**2) * (1 + fro(R))**2 / eta")
    assert check(step, Run.of(gradient_descent(decay, x0, 0.05, 20), decay)).holds
    study = error_vs_step(problem, x0, [0.04, 0.02, 0.01], 1.0)
    assert study.ok and study.order == pytest.approx(1.0, abs=0.1)


# factored programs

def test_the_compiled_gradient_never_forms_an_m_by_n_matrix():
    m = n = 3000
    target = LowRankTarget.random(m, n, 2, seed=0)
    problem = FormulaProblem.balanced(target, 2, lam=0.1, check=False)
    for name in ("loss", "grad", "hvp", "third"):
        shapes = problem.program(name).program.shapes.values()
        assert shapes and all(min(shape) <= 4 for shape in shapes), name
    x = _state(problem)
    problem.grad(x)  # compiled and bound before measuring
    tracemalloc.start()
    problem.grad(x)
    problem.loss(x)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 0.02 * m * n * 8  # an m×n float64 array would be 72 MB
    listing = "\n".join(problem.program("grad").program.listing)
    assert "Sigma" not in listing.replace("Sigma_star", "")


def test_it_pickles_and_checks_itself_once(target, monkeypatch):
    problem = FormulaProblem.balanced(target, K, lam=LAM)
    x = _state(problem)
    again = pickle.loads(pickle.dumps(problem))
    assert np.array_equal(again.grad(x), problem.grad(x))
    wrong = FormulaProblem._outputs

    def doubled(self, name):
        out = wrong(self, name)
        return tuple(2 * G for G in out) if name == "grad" else out

    monkeypatch.setattr(FormulaProblem, "_outputs", doubled)
    with pytest.raises(ProblemError, match="grad is not the gradient"):
        FormulaProblem.balanced(target, K, lam=LAM)
    FormulaProblem.balanced(target, K, lam=LAM, check=False)


# errors

@pytest.mark.parametrize("loss, params, match", [
    ("fro(U*V.T - Sigma", {}, "syntax error"),
    ("fro(U*V.T - Sigma)**2 + lamb*fro(U)**2", {"lam": 1.0}, r"unknown symbol 'lamb' \(did you mean lam\?\).*Known: "
                                                              r"matrices U, V, Sigma"),
    ("fro(U*V.T - Sigma)**2 + lam*fro(U)**2", {}, r"unknown symbol 'lam'.*params=\{'lam': ...\}"),
    ("fro(U*V.T - Sigma)**2", {"mu": 1.0}, r"params gives a value for 'mu', which the loss does not mention"),
    ("U*V.T - Sigma", {}, r"must be a scalar; it is an m×n matrix"),
    ("fro(U*V - Sigma)**2", {}, r"cannot multiply 'U' \(m×k matrix\) by 'V' \(n×k matrix\)"),
    ("fro(U.T*U - V*V.T)**2", {}, r"cannot add 'U.T\*U' \(k×k matrix\) and 'V\*V.T' \(n×n matrix\)"),
    ("fro(Sigma)**2 + trace(Phi.T*Phi)", {}, "does not involve the factors U or V"),
    ("norm(U*V.T - Sigma)", {}, "no symbolic gradient.*norm"),
    ("fro(U*V.T - Sigma + E)**2", {}, "'E' is a perturbation"),
    ("fro(A(U*V.T) - y)**2", {}, r"A\(\) is the measurement operator: pass operator="),
    ("__import__('os').system('true')", {}, "unknown function"),
    ("U.__class__", {}, "underscore|unknown attribute"),
    ("fro(U)**2", {"lam": float("nan")}, r"params\['lam'\] must be a finite real number"),
    ("fro(U)**2 + U*0", {"U": 1.0}, "parameter 'U' is already a name"),
])
def test_bad_formulas_are_refused_naming_what_is_wrong(target, loss, params, match):
    with pytest.raises(FormulaError, match=match) as info:
        FormulaProblem(loss, target, K, params=params)
    assert isinstance(info.value, (ValueError, ProblemError))


def test_bad_sympy_expressions_and_sensing_inputs_are_refused(target):
    W = sp.MatrixSymbol("W", S.m, S.k)
    with pytest.raises(FormulaError, match="unknown matrix 'W'"):
        FormulaProblem(S.fro2(S.U - W), target, K)
    with pytest.raises(FormulaError, match="'nu' has no value"):
        FormulaProblem(sp.Symbol("nu") * S.fro2(S.U), target, K)
    with pytest.raises(FormulaError, match="does not apply it"):
        FormulaProblem("fro(U)**2", target, K, operator=DenseOperator.gaussian((M, N), 10, seed=0))
    with pytest.raises(FormulaError, match="without an operator"):
        FormulaProblem("fro(U)**2", target, K, measurements=np.zeros(10))
    with pytest.raises(FormulaError, match=r"A\(\) maps m×n matrices"):
        FormulaProblem("fro(A(U) - y)**2", target, K, operator=DenseOperator.gaussian((M, N), 10, seed=0))
