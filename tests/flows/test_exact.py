"""Closed-form references of flows.exact against high-precision arithmetic, the ODE and each other.

The reference throughout is the formula as written in docs/math/closed-forms.md (P = Y K⁻¹ Yᵀ, ...) evaluated in
mpmath at ~120 significant digits, where its ill-conditioning is harmless; the same formula in
double precision is shown to fail at the same times, which is why flows.exact exists.
"""

import math
import warnings

import mpmath as mp
import numpy as np
import pytest
import scipy.linalg
from scipy.integrate import solve_ivp

from pgflow.flows import exact
from pgflow.flows.init import lambda_balanced, spectral
from pgflow.flows.problems import MatrixFactorization, SymmetricFactorization
from pgflow.flows.targets import LowRankTarget, haar_columns

DPS = 120


def rel_err(A, B):
    return float(np.linalg.norm(np.asarray(A) - np.asarray(B)) / np.linalg.norm(B))


def symmetric_matrix(eigenvalues, seed=1):
    """Q diag(λ) Qᵀ with a Haar Q; the eigenvalues are exact only up to rounding of the product."""
    m = len(eigenvalues)
    Q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((m, m)))
    M = (Q * np.asarray(eigenvalues, dtype=float)) @ Q.T
    return 0.5 * (M + M.T)


# Spectra at the heart of the tests: two growing modes (σ₁ = 1), null directions and decaying ones.
SPECTRA = {
    "indefinite": [1.0, 0.6, 0.0, 0.0, -0.3, -0.8],
    "psd": [1.0, 0.55, 0.2, 0.0, 0.0, 0.0],
    "mixed": [1.0, -1.0, -0.5, 0.3, 1e-3, 0.0],
}


# --------------------------------------------------------------------------------------------------
# the formula as written: in mpmath (reference) and in double precision (to show it breaks)
# --------------------------------------------------------------------------------------------------

def _mp(A):
    return mp.matrix(np.asarray(A, dtype=float).tolist())


def _np(A):
    return np.array(A.tolist(), dtype=float)


def _mp_expm_and_integral(M, t):
    """e^{Mt} and ∫₀ᵗ e^{2Ms} ds, the latter from Van Loan's block exponential exp([[2M, I], [0, 0]]t)."""
    m = M.rows
    B = mp.zeros(2 * m, 2 * m)
    for i in range(m):
        for j in range(m):
            B[i, j] = 2 * M[i, j] * t
        B[i, m + i] = t
    return mp.expm(M * t), mp.expm(B)[:m, m:]


def mp_riccati(M, X0, t, dps=DPS):
    """P(t) = Y K⁻¹ Yᵀ, Y = e^{Mt}X₀, K = I + 2X₀ᵀ(∫₀ᵗ e^{2Ms} ds)X₀, in dps-digit arithmetic."""
    with mp.workdps(dps):
        Mm, X, t = _mp(M), _mp(X0), mp.mpf(float(t))
        E, G = _mp_expm_and_integral(Mm, t)
        Y = E * X
        K = mp.eye(X.cols) + 2 * X.T * G * X
        return _np(Y * mp.inverse(K) * Y.T)


def mp_riccati_eig(M, X0, t, dps):
    """The same formula through an mpmath eigendecomposition: cheap at the huge dps long times need."""
    with mp.workdps(dps):
        Mm, X, t = _mp(M), _mp(X0), mp.mpf(float(t))
        lam, Q = mp.eigsy(Mm)
        m = Mm.rows
        E = Q * mp.diag([mp.exp(lam[i] * t) for i in range(m)]) * Q.T
        G = Q * mp.diag([mp.expm1(2 * lam[i] * t) / (2 * lam[i]) if lam[i] != 0 else t
                         for i in range(m)]) * Q.T
        Y = E * X
        K = mp.eye(X.cols) + 2 * X.T * G * X
        return _np(Y * mp.inverse(K) * Y.T)


def naive_riccati(M, X0, t):
    """The formula as written in float64 (scipy expm, Van Loan integral, solve with K)."""
    m, k = X0.shape
    B = np.zeros((2 * m, 2 * m))
    B[:m, :m] = 2 * M * t
    B[:m, m:] = t * np.eye(m)
    with np.errstate(all="ignore"):
        G = scipy.linalg.expm(B)[:m, m:]
        Y = scipy.linalg.expm(M * t) @ X0
        K = np.eye(k) + 2 * X0.T @ G @ X0
        try:
            return Y @ np.linalg.solve(K, Y.T)
        except np.linalg.LinAlgError:     # K is singular to working precision
            return np.full((m, m), np.nan)


def naive_fails(P_naive, P_ref):
    return not np.all(np.isfinite(P_naive)) or rel_err(P_naive, P_ref) > 1e-2


def riccati_rhs(M, P):
    """Ṗ = MP + PM − 2P²."""
    return M @ P + P @ M - 2 * P @ P


# --------------------------------------------------------------------------------------------------
# riccati_factor / symmetric_flow
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spectrum", list(SPECTRA))
@pytest.mark.parametrize("k", [2, 3])
def test_riccati_matches_high_precision_and_naive_double_fails(spectrum, k):
    M = symmetric_matrix(SPECTRA[spectrum])
    X0 = 0.01 * np.random.default_rng(k).standard_normal((6, k))
    times = np.array([0.5, 5.0, 60.0])     # σ₁ = 1, so the last is σ₁t = 60
    X = exact.riccati_factor(M, X0, times)
    assert X.shape == (3, 6, k)
    for t, Xt in zip(times, X):
        P_ref = mp_riccati(M, X0, t)
        assert rel_err(Xt @ Xt.T, P_ref) <= 1e-10
    assert naive_fails(naive_riccati(M, X0, 60.0), P_ref)


def test_riccati_long_times_against_high_precision():
    """σ₁t up to 3000: one closed-form step (σ₁t < 256) and several semigroup restarts."""
    M = symmetric_matrix(SPECTRA["indefinite"])
    X0 = 0.01 * np.random.default_rng(7).standard_normal((6, 3))
    times = np.array([255.0, 600.0, 3000.0])
    X = exact.riccati_factor(M, X0, times)
    for t, Xt in zip(times, X):
        P_ref = mp_riccati_eig(M, X0, t, dps=int(t) + 60)   # K's condition number is ~e^{2σ₁t}
        assert rel_err(Xt @ Xt.T, P_ref) <= 1e-10


def test_riccati_restarts_lose_no_accuracy(monkeypatch):
    """Forcing a restart every σ₁h = 7 (nine of them up to σ₁t = 60) changes nothing measurable."""
    M = symmetric_matrix(SPECTRA["mixed"])
    X0 = 0.01 * np.random.default_rng(3).standard_normal((6, 3))
    P_ref = mp_riccati(M, X0, 60.0)
    monkeypatch.setattr(exact, "_MAX_GROWTH", 7.0)
    X = exact.riccati_factor(M, X0, 60.0)
    assert rel_err(X @ X.T, P_ref) <= 1e-10


def test_riccati_satisfies_the_ode():
    """Central difference of P(t) against Ṗ = MP + PM − 2P², including late times (σ₁t = 60)."""
    M = symmetric_matrix(SPECTRA["indefinite"])
    X0 = 1e-8 * np.random.default_rng(5).standard_normal((6, 3))   # small: the escape happens late
    h = 1e-4
    for t in (0.3, 4.0, 9.0, 25.0, 60.0):
        Xm, Xp = exact.riccati_factor(M, X0, [t - h, t + h])
        X = exact.riccati_factor(M, X0, t)
        P = X @ X.T
        dP = (Xp @ Xp.T - Xm @ Xm.T) / (2 * h)
        # Near the limit Ṗ → 0 and the difference quotient's rounding (~ε‖P‖/h) sets the floor.
        assert np.linalg.norm(dP - riccati_rhs(M, P)) <= 1e-6 * np.linalg.norm(riccati_rhs(M, P)) \
            + 1e-10 * np.linalg.norm(P)


def test_riccati_matches_dop853():
    """A third, independent check: DOP853 on Ż = (M − ZZᵀ)Z itself, m = 6, k = 2, up to σ₁t = 40."""
    M = symmetric_matrix(SPECTRA["indefinite"])
    X0 = 0.01 * np.random.default_rng(11).standard_normal((6, 2))
    times = np.linspace(0.0, 40.0, 9)

    def rhs(_, z):
        Z = z.reshape(6, 2)
        return ((M - Z @ Z.T) @ Z).ravel()

    sol = solve_ivp(rhs, (0.0, 40.0), X0.ravel(), method="DOP853", rtol=1e-12, atol=1e-14, t_eval=times)
    assert sol.success
    X = exact.riccati_factor(M, X0, times)
    for Z, Xt in zip(sol.y.T, X):
        Z = Z.reshape(6, 2)
        assert rel_err(Xt @ Xt.T, Z @ Z.T) <= 1e-8


def test_riccati_single_column_is_the_solution_itself():
    """For k = 1 the factor is unique given continuity: X(t) = e^{Mt}X₀/√K, compared with DOP853."""
    M = symmetric_matrix(SPECTRA["mixed"])
    X0 = np.array([[0.3], [-0.2], [0.1], [0.05], [-0.4], [0.2]])
    times = np.linspace(0.0, 30.0, 7)
    sol = solve_ivp(lambda _, z: (M - np.outer(z, z)) @ z, (0.0, 30.0), X0.ravel(), method="DOP853",
                    rtol=1e-12, atol=1e-14, t_eval=times)
    X = exact.riccati_factor(M, X0, times)
    np.testing.assert_allclose(X[..., 0], sol.y.T, rtol=0, atol=1e-10)


def test_riccati_special_spectra():
    """Exactly zero, all-negative and zero M; a zero column in X₀; t = 0 returns X₀ itself."""
    X0 = np.array([[0.3, 0.0], [0.2, 0.0], [-0.1, 0.0]])
    for M in (np.diag([2.0, 0.0, 0.0]), np.diag([-1.0, -2.0, -0.5]), np.zeros((3, 3))):
        for t in (0.7, 30.0):
            X = exact.riccati_factor(M, X0, t)
            P_ref = mp_riccati_eig(M, X0, t, dps=DPS)
            assert np.allclose(X @ X.T, P_ref, rtol=0, atol=1e-13 * max(1.0, np.linalg.norm(P_ref)))
    np.testing.assert_array_equal(exact.riccati_factor(np.diag([1.0, 2.0, 3.0]), X0, 0.0), X0)
    # M = 0: Ẋ = −XXᵀX, so P(t) = P₀(I + 2tP₀)⁻¹ in closed form.
    P0 = X0 @ X0.T
    X = exact.riccati_factor(np.zeros((3, 3)), X0, 2.5)
    np.testing.assert_allclose(X @ X.T, P0 @ np.linalg.inv(np.eye(3) + 5.0 * P0), atol=1e-15)


def test_riccati_output_shapes_and_validation(monkeypatch):
    M = symmetric_matrix([1.0, 0.5, -0.2])
    X0 = np.ones((3, 2))
    assert exact.riccati_factor(M, X0, 1.0).shape == (3, 2)
    assert exact.riccati_factor(M, X0, [1.0]).shape == (1, 3, 2)
    assert exact.riccati_factor(M, X0, np.arange(4.0)).shape == (4, 3, 2)
    with pytest.raises(ValueError, match="t must be non-negative"):
        exact.riccati_factor(M, X0, [1.0, -1.0])
    with pytest.raises(ValueError, match="t must be finite"):
        exact.riccati_factor(M, X0, np.inf)
    with pytest.raises(ValueError, match="t must be a scalar or a 1-D"):
        exact.riccati_factor(M, X0, np.ones((2, 2)))
    with pytest.raises(ValueError, match="M must be symmetric"):
        exact.riccati_factor(M + np.triu(np.ones((3, 3)), 1), X0, 1.0)
    with pytest.raises(ValueError, match="M must be a non-empty square"):
        exact.riccati_factor(np.ones((3, 2)), X0, 1.0)
    with pytest.raises(ValueError, match="X0 must have shape"):
        exact.riccati_factor(M, np.ones((4, 2)), 1.0)
    with pytest.raises(ValueError, match="X0 must be 2-D"):
        exact.riccati_factor(M, np.ones(3), 1.0)
    monkeypatch.setattr(exact, "_MAX_STEPS", 10)
    with pytest.raises(ValueError, match="t is too large"):
        exact.riccati_factor(M, X0, 1e4)


def test_symmetric_flow_accepts_factor_or_state():
    problem = SymmetricFactorization.random(m=5, rank=2, width=3, condition=2.0, seed=4)
    x0 = 0.01 * np.random.default_rng(0).standard_normal(problem.dim)
    X0 = problem.unpack(x0)
    M = problem.target.dense()
    t = 60.0 / problem.target.sigma[0]
    P = exact.symmetric_flow(problem, x0, t)
    np.testing.assert_array_equal(P, exact.symmetric_flow(problem, X0, t))
    assert rel_err(P, mp_riccati(M, X0, t)) <= 1e-10
    assert exact.symmetric_flow(problem, x0, [0.0, t]).shape == (2, 5, 5)
    with pytest.raises(TypeError, match="problem must be a SymmetricFactorization"):
        exact.symmetric_flow(MatrixFactorization.random(5, 5, 2, 3), x0, t)


def test_symmetric_spectral_init_is_the_balanced_mode():
    """X₀ = Φ diag(a): each mode p = x² obeys ṗ = 2p(σ − p), so P(t) = Φ diag(u(t)) Φᵀ."""
    problem = SymmetricFactorization.random(m=6, rank=3, width=3, singular_values=[3.0, 1.0, 0.4], seed=2)
    a = np.array([1e-3, 1e-2, 0.1])
    x0 = spectral(problem, a)
    Phi, sigma = problem.target.Phi, problem.target.sigma
    for t in (0.5, 3.0, 20.0):
        u = [exact.balanced_mode(s, ai ** 2, t) for s, ai in zip(sigma, a)]
        P = exact.symmetric_flow(problem, x0, t)
        np.testing.assert_allclose(P, (Phi * u) @ Phi.T, rtol=0, atol=1e-13)


# --------------------------------------------------------------------------------------------------
# lambda_balanced_flow
# --------------------------------------------------------------------------------------------------

def _blocks(Sigma, U0, V0, t):
    """mpmath reference of the Gram blocks via the formula for M_λ."""
    m, k = U0.shape
    n = V0.shape[0]
    lam = np.trace(U0.T @ U0 - V0.T @ V0) / k
    M = np.block([[0.5 * lam * np.eye(m), Sigma], [Sigma.T, -0.5 * lam * np.eye(n)]])
    P2 = 2 * mp_riccati(M, np.vstack([U0, V0]) / math.sqrt(2), t)
    return P2[:m, m:], P2[:m, :m], P2[m:, m:], M


@pytest.mark.parametrize("lam", [0.0, 0.5, -1e-5])
def test_lambda_balanced_matches_high_precision(lam):
    problem = MatrixFactorization.random(m=4, n=3, rank=2, width=2, singular_values=[1.0, 0.4], seed=6)
    U0, V0 = problem.unpack(lambda_balanced(problem, scale=0.01, lam=lam, seed=3))
    Sigma = problem.target.dense()
    mu1 = math.hypot(1.0, lam / 2)             # top eigenvalue of M_λ
    times = np.array([1.0, 10.0, 60.0]) / mu1
    sol = exact.lambda_balanced_flow(problem, U0, V0, times)
    assert sol.UVt.shape == (3, 4, 3) and sol.UUt.shape == (3, 4, 4) and sol.VVt.shape == (3, 3, 3)
    assert sol.lam == pytest.approx(lam, abs=1e-14)
    for i, t in enumerate(times):
        UVt, UUt, VVt, M = _blocks(Sigma, U0, V0, t)
        assert rel_err(sol.UVt[i], UVt) <= 1e-10
        assert rel_err(sol.UUt[i], UUt) <= 1e-10
        assert rel_err(sol.VVt[i], VVt) <= 1e-10
    Z0 = np.vstack([U0, V0]) / math.sqrt(2)
    assert naive_fails(naive_riccati(M, Z0, times[-1]), mp_riccati(M, Z0, times[-1]))


def test_lambda_balanced_satisfies_the_factor_ode():
    """Finite differences of the Gram blocks against U̇ = RV, V̇ = RᵀU (R = Σ − UVᵀ) written in them:
    d(UVᵀ) = R VVᵀ + UUᵀ R, d(UUᵀ) = R(UVᵀ)ᵀ + (UVᵀ)Rᵀ, d(VVᵀ) = Rᵀ(UVᵀ) + (UVᵀ)ᵀR."""
    problem = MatrixFactorization.random(m=4, n=3, rank=2, width=3, singular_values=[2.0, 0.5], seed=8)
    U0, V0 = problem.unpack(lambda_balanced(problem, scale=0.05, lam=0.3, seed=1))
    Sigma = problem.target.dense()
    h = 1e-4
    for t in (0.2, 2.0, 6.0, 30.0):
        s = exact.lambda_balanced_flow(problem, U0, V0, [t - h, t, t + h])
        W, A, B = s.UVt[1], s.UUt[1], s.VVt[1]
        R = Sigma - W
        for G, rhs in ((s.UVt, R @ B + A @ R), (s.UUt, R @ W.T + W @ R.T), (s.VVt, R.T @ W + W.T @ R)):
            dG = (G[2] - G[0]) / (2 * h)
            assert np.linalg.norm(dG - rhs) <= 1e-6 * max(np.linalg.norm(rhs), 1e-3 * np.linalg.norm(G[1]))


def test_lambda_balanced_matches_dop853_on_u_v():
    problem = MatrixFactorization.random(m=4, n=3, rank=2, width=2, singular_values=[1.0, 0.4], seed=6)
    x0 = lambda_balanced(problem, scale=0.01, lam=0.2, seed=9)
    U0, V0 = problem.unpack(x0)
    times = np.linspace(0.0, 40.0, 5)
    sol = solve_ivp(lambda _, x: -problem.grad(x), (0.0, 40.0), x0, method="DOP853",
                    rtol=1e-12, atol=1e-14, t_eval=times)
    ex = exact.lambda_balanced_flow(problem, U0, V0, times)
    for i, x in enumerate(sol.y.T):
        U, V = problem.unpack(x)
        assert rel_err(ex.UVt[i], U @ V.T) <= 1e-8
        assert rel_err(ex.UUt[i], U @ U.T) <= 1e-8


def test_balanced_asymmetric_with_equal_factors_is_the_symmetric_flow():
    """Σ = M ⪰ 0 square and U₀ = V₀ = X₀ (balanced, λ = 0): U = V = X for all t."""
    sym = SymmetricFactorization.random(m=5, rank=2, width=3, condition=3.0, seed=12)
    asym = MatrixFactorization(sym.target, width=3)
    X0 = sym.unpack(0.01 * np.random.default_rng(4).standard_normal(sym.dim))
    times = np.array([0.0, 1.0, 10.0, 20.0])      # σ₁ = 3: σ₁t up to 60
    P = exact.symmetric_flow(sym, X0, times)
    s = exact.lambda_balanced_flow(asym, X0, X0, times)
    assert s.lam == 0.0
    for G in (s.UVt, s.UUt, s.VVt):
        np.testing.assert_allclose(G, P, rtol=0, atol=1e-12 * np.abs(P).max())


def test_lambda_balanced_spectral_init_decouples_into_modes():
    """U₀ = Φ diag(a), V₀ = Ψ diag(b) with aᵢ² − bᵢ² = λ: UVᵀ = Φ diag(aᵢbᵢ(t)) Ψᵀ by spectral_mode."""
    problem = MatrixFactorization.random(m=5, n=4, rank=3, width=3, singular_values=[2.0, 1.0, 0.3], seed=5)
    lam = 0.04
    b = np.array([1e-3, 0.05, 0.2])
    a = np.sqrt(b ** 2 + lam)
    U0, V0 = problem.unpack(spectral(problem, a, b))
    t = np.array([0.5, 5.0, 30.0])
    s = exact.lambda_balanced_flow(problem, U0, V0, t)
    Phi, sigma, Psi = problem.target.Phi, problem.target.sigma, problem.target.Psi
    modes = [exact.spectral_mode(si, ai, bi, t) for si, ai, bi in zip(sigma, a, b)]
    for i in range(t.size):
        ab = np.array([ai[i] * bi[i] for ai, bi in modes])
        aa = np.array([ai[i] ** 2 for ai, _ in modes])
        np.testing.assert_allclose(s.UVt[i], (Phi * ab) @ Psi.T, rtol=0, atol=1e-13)
        np.testing.assert_allclose(s.UUt[i], (Phi * aa) @ Phi.T, rtol=0, atol=1e-13)


def test_lambda_balanced_validation():
    problem = MatrixFactorization.random(m=4, n=3, rank=2, width=2, seed=0)
    rng = np.random.default_rng(0)
    U0, V0 = rng.standard_normal((4, 2)), rng.standard_normal((3, 2))
    with pytest.raises(ValueError, match="U0 and V0 must be λ-balanced"):
        exact.lambda_balanced_flow(problem, U0, V0, 1.0)
    U0, V0 = problem.unpack(lambda_balanced(problem, scale=0.1, lam=0.2, seed=0))
    with pytest.raises(ValueError, match="V0 must have shape"):
        exact.lambda_balanced_flow(problem, U0, V0[:2], 1.0)
    with pytest.raises(TypeError, match="problem must be a MatrixFactorization"):
        exact.lambda_balanced_flow(SymmetricFactorization.random(4, rank=2, width=2), U0, V0, 1.0)
    at0 = exact.lambda_balanced_flow(problem, U0, V0, 0.0)
    np.testing.assert_allclose(at0.UVt, U0 @ V0.T, atol=1e-15)
    with pytest.raises(AttributeError):
        at0.lam = 1.0                      # frozen


# --------------------------------------------------------------------------------------------------
# exact spectra, rank-deficient starts, conditioning
# --------------------------------------------------------------------------------------------------

def _max_block_error(sol, i, refs):
    UVt, UUt, VVt = refs[:3]
    return max(rel_err(sol.UVt[i], UVt), rel_err(sol.UUt[i], UUt), rel_err(sol.VVt[i], VVt))


@pytest.mark.parametrize("lam", [50.0, 100.0, -50.0])
def test_lambda_balanced_at_large_lambda_is_at_rounding_level(lam):
    """|λ| ≫ σ₁: every growing rate of M_λ is ≈ |λ|/2 (μᵢ and the complement's |λ|/2) and they differ
    by only σᵢ²/(μᵢ + |λ|/2) ≈ 0.01–0.02, a gap that t multiplies. eigh of the dense M_λ (errors
    ~ε‖M_λ‖) was off by 7e-13 at λ = 50 and 1e-12 at λ = 100, σ₁t = 60; the known spectrum is not."""
    problem = MatrixFactorization.random(m=5, n=4, rank=2, width=2, singular_values=[1.0, 0.4], seed=6)
    scale = 30.0 if lam < 0 else 0.01          # λ ≥ −λ_min(V₀ᵀV₀) needs a large V₀ when λ < 0
    U0, V0 = problem.unpack(lambda_balanced(problem, scale=scale, lam=lam, seed=3))
    times = np.array([1.0, 10.0, 60.0])         # σ₁ = 1
    sol = exact.lambda_balanced_flow(problem, U0, V0, times)
    assert sol.lam == pytest.approx(lam, rel=1e-12) and sol.rank == 2
    for i, t in enumerate(times):
        assert _max_block_error(sol, i, _blocks(problem.target.dense(), U0, V0, t)) <= 1e-14
    assert sol.condition.shape == (3,) and np.all(sol.condition < 1e2)


def test_lambda_balanced_reorthonormalizes_a_loose_target():
    """A LowRankTarget accepts Φ, Ψ orthonormal to 1e-10, and then σ are Σ's singular values only to
    that accuracy: taken as exact, they were off by 6e-12 at λ = 50 with Φ, Ψ perturbed by 1e-11."""
    rng = np.random.default_rng(0)
    base = LowRankTarget.random(6, 5, 2, condition=2.0, seed=0)
    target = LowRankTarget(base.Phi + 1e-11 * rng.standard_normal((6, 2)), base.sigma,
                           base.Psi + 1e-11 * rng.standard_normal((5, 2)))
    problem = MatrixFactorization(target, width=2)
    U0, V0 = problem.unpack(lambda_balanced(problem, scale=0.01, lam=50.0, seed=1))
    sol = exact.lambda_balanced_flow(problem, U0, V0, [30.0])
    assert _max_block_error(sol, 0, _blocks(target.dense(), U0, V0, 30.0)) <= 1e-14


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)])
def test_identical_columns_stay_rank_one(seed):
    """An exactly rank-1, exactly balanced start: the solution stays rank 1. Advancing both columns
    grew a spurious second mode from rounding (relative error 6e-4 at σ₁t = 60, 0.67 at 100)."""
    problem = MatrixFactorization.random(m=8, n=6, rank=3, width=2, condition=3.0, seed=seed)
    v = 0.01 * np.random.default_rng(seed + 10).standard_normal(6)
    u = np.concatenate([v, [0.0, 0.0]])           # ‖u‖ = ‖v‖ to the last bit: λ = 0 exactly
    U0, V0 = np.column_stack([u, u]), np.column_stack([v, v])
    times = np.array([0.0, 60.0, 100.0]) / problem.target.sigma[0]
    sol = exact.lambda_balanced_flow(problem, U0, V0, times)
    assert sol.rank == 1 and sol.lam == 0.0
    assert rel_err(sol.UVt[0], U0 @ V0.T) <= 1e-15
    for i, t in enumerate(times[1:], start=1):
        assert _max_block_error(sol, i, _blocks(problem.target.dense(), U0, V0, t)) <= 1e-14
        s = np.linalg.svd(sol.UVt[i], compute_uv=False)
        assert s[1] <= 1e-15 * s[0]


@pytest.mark.parametrize("spectrum", ["indefinite", "mixed"])
def test_riccati_rank_deficient_start_stays_rank_deficient(spectrum):
    """Columns x, x, −2x: rank 1 for all t. Advancing all three columns was off by 0.6 (indefinite)
    and 9e-11 (mixed) at σ₁t = 100."""
    M = symmetric_matrix(SPECTRA[spectrum])
    x = 0.01 * np.random.default_rng(2).standard_normal(6)
    X0 = np.column_stack([x, x, -2 * x])
    X = exact.riccati_factor(M, X0, [0.0, 60.0, 100.0])
    np.testing.assert_array_equal(X[0], X0)
    for Xt, t in zip(X[1:], (60.0, 100.0)):
        assert rel_err(Xt @ Xt.T, mp_riccati(M, X0, t)) <= 1e-14
        s = np.linalg.svd(Xt, compute_uv=False)
        assert s[1] <= 1e-15 * s[0]
    np.testing.assert_array_equal(exact.riccati_factor(M, np.zeros((6, 2)), [0.0, 5.0]), 0.0)


@pytest.mark.parametrize("signs", [(1.0, 1.0, 1.0), (1.0, -1.0, 1.0)])
def test_symmetric_flow_on_the_targets_spectrum(signs):
    """M = Φ diag(σ) Ψᵀ with Ψ = Φ·diag(±1) has eigenvalues ±σᵢ on Φ and 0 on Φ⊥, used without eigh;
    full-rank and rank-1 starts, σ₁t = 60 and 100. (target.dense() is symmetric only to rounding, and
    the formula amplifies the asymmetry, so the reference takes its symmetric part.)"""
    base = SymmetricFactorization.random(m=6, rank=3, width=3, singular_values=[3.0, 2.0, 1.0], seed=1)
    Phi = base.target.Phi
    problem = SymmetricFactorization(LowRankTarget(Phi, base.target.sigma, Phi * np.array(signs)), width=3)
    M = problem.target.dense()
    M = 0.5 * (M + M.T)
    X0 = problem.unpack(0.01 * np.random.default_rng(1).standard_normal(problem.dim))
    X1 = np.column_stack([X0[:, 0], X0[:, 0], -X0[:, 0]])
    for start in (X0, X1):
        P = exact.symmetric_flow(problem, start, np.array([60.0, 100.0]) / 3.0)
        for Pt, t in zip(P, (20.0, 100.0 / 3.0)):
            assert rel_err(Pt, mp_riccati(M, start, t)) <= 1e-14


def _nearly_rank_one_start(problem, delta):
    """Balanced U₀, V₀ whose two columns differ by δ (relative ~δ): s₂/s₁ ≈ δ."""
    rng = np.random.default_rng(1)
    v, g = 0.01 * rng.standard_normal(problem.n), 0.01 * rng.standard_normal(problem.n)
    V0 = np.column_stack([v, v + delta * g])
    w, Q = np.linalg.eigh(V0.T @ V0)
    U0 = haar_columns(rng, problem.m, 2) @ ((Q * np.sqrt(np.maximum(w, 0.0))) @ Q.T)
    return U0, V0


def test_nearly_rank_deficient_start_warns_with_its_condition_number():
    """Columns 1e-6 apart: full rank, and the weak direction grows from a seed that rounding already
    perturbs. The closed form says so (condition > CONDITION_WARNING, a warning naming it), its
    condition bounds its actual error, and the sensitivity is the problem's own: a rounding-level
    change of the start moves the 120-digit solution by far more than ε."""
    problem = MatrixFactorization.random(m=8, n=6, rank=3, width=2, condition=3.0, seed=0)
    U0, V0 = _nearly_rank_one_start(problem, 1e-6)
    times = np.array([1.0, 30.0, 60.0]) / problem.target.sigma[0]
    with pytest.warns(exact.IllConditionedWarning, match="condition number"):
        sol = exact.lambda_balanced_flow(problem, U0, V0, times)
    worst = int(np.argmax(sol.condition))
    assert sol.rank == 2 and worst == 1 and sol.condition[worst] > exact.CONDITION_WARNING
    assert sol.condition[0] < 1e2 and sol.condition[2] < 1e2      # before the weak mode grows; saturated
    # M_λ is exactly symmetric, so the reference may go through mpmath's eigsy (10x cheaper than expm)
    eps = np.finfo(float).eps
    Z0 = np.vstack([U0, V0]) / math.sqrt(2)
    M = _blocks(problem.target.dense(), U0, V0, 0.0)[3]
    for i, t in enumerate(times):
        P2 = 2 * mp_riccati_eig(M, Z0, t, dps=DPS)
        m = problem.m
        err = _max_block_error(sol, i, (P2[:m, m:], P2[:m, :m], P2[m:, m:]))
        assert err <= 10 * sol.condition[i] * eps + 1e-15
    # the same Riccati problem (M_λ fixed) from Z₀ changed in its last bits
    Z0_moved = Z0 * (1 + 4 * eps * np.random.default_rng(5).standard_normal(Z0.shape))
    P, P_moved = mp_riccati_eig(M, Z0, times[worst], DPS), mp_riccati_eig(M, Z0_moved, times[worst], DPS)
    assert 1e-13 <= rel_err(P_moved, P) <= 10 * sol.condition[worst] * eps


def test_generic_start_is_well_conditioned_and_silent():
    problem = MatrixFactorization.random(m=8, n=6, rank=3, width=2, condition=3.0, seed=0)
    U0, V0 = _nearly_rank_one_start(problem, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sol = exact.lambda_balanced_flow(problem, U0, V0, np.array([1.0, 10.0, 30.0, 60.0]) / 3.0)
        one = exact.lambda_balanced_flow(problem, U0, V0, 10.0 / 3.0)
    assert sol.rank == 2 and np.all(sol.condition < 1e2)
    assert isinstance(one.condition, float) and one.condition == pytest.approx(sol.condition[1], rel=1e-6)


# --------------------------------------------------------------------------------------------------
# scalar modes
# --------------------------------------------------------------------------------------------------

def mp_balanced_mp(sigma, u0, t):
    """σe^{2σt}/(e^{2σt} − 1 + σ/u₀) at the current mpmath precision, t an mpf."""
    s, u0 = mp.mpf(sigma), mp.mpf(u0)
    e = mp.exp(2 * s * t)
    return s * e / (e - 1 + s / u0)


def mp_balanced(sigma, u0, t):
    with mp.workdps(DPS):
        return float(mp_balanced_mp(sigma, u0, mp.mpf(float(t))))


def mp_spectral(sigma, a0, b0, t, dps=DPS):
    """(a, b)(t) = e^{M_λ t}(a₀, b₀)/√K, K = 1 + (a₀, b₀)(∫₀ᵗ e^{2M_λ s} ds)(a₀, b₀)ᵀ, in mpmath."""
    with mp.workdps(dps):
        lam = mp.mpf(a0) ** 2 - mp.mpf(b0) ** 2
        M = mp.matrix([[lam / 2, sigma], [sigma, -lam / 2]])
        z = mp.matrix([a0, b0])
        E, G = _mp_expm_and_integral(M, mp.mpf(float(t)))
        y = E * z / mp.sqrt(1 + (z.T * G * z)[0])
        return float(y[0]), float(y[1])


@pytest.mark.parametrize("sigma,u0", [(1.0, 1e-6), (2.0, 0.3), (0.5, 2.0)])
def test_balanced_mode_matches_high_precision(sigma, u0):
    times = np.array([0.0, 0.5, 5.0, 60.0]) / sigma
    u = exact.balanced_mode(sigma, u0, times)
    ref = np.array([mp_balanced(sigma, u0, t) for t in times])
    np.testing.assert_allclose(u, ref, rtol=1e-13)
    assert exact.balanced_mode(sigma, u0, 0.0) == pytest.approx(u0, rel=1e-15)
    # σe^{2σt}/(e^{2σt} − 1 + σ/u₀) as written overflows to inf/inf once σt ≳ 355.
    t = 400.0 / sigma
    with np.errstate(all="ignore"):
        e = np.exp(2 * sigma * t)
        naive = sigma * e / (e - 1 + sigma / u0)
    assert not np.isfinite(naive)
    assert exact.balanced_mode(sigma, u0, t) == pytest.approx(sigma, rel=1e-15)


@pytest.mark.parametrize("sigma,a0,b0", [(1.0, 1e-3, 1e-3), (1.0, -1.0, 2.0), (2.0, 3.0, 0.1),
                                         (0.7, 0.0, 0.4), (1.0, -0.5, -0.2), (1.0, -1.0, 1.0 + 1e-6)])
def test_spectral_mode_matches_high_precision(sigma, a0, b0):
    mu = math.hypot(sigma, (a0 ** 2 - b0 ** 2) / 2)
    times = np.array([0.0, 0.5, 5.0, 60.0]) / mu
    a, b = exact.spectral_mode(sigma, a0, b0, times)
    for i, t in enumerate(times):
        ref = np.array(mp_spectral(sigma, a0, b0, t))
        assert rel_err([a[i], b[i]], ref) <= 1e-10
    # e^{M_λ t}(a₀, b₀)/√K as written overflows once μt ≳ 355.
    t = 400.0 / mu
    lam = a0 ** 2 - b0 ** 2
    M = np.array([[lam / 2, sigma], [sigma, -lam / 2]])
    with np.errstate(all="ignore"):
        E = scipy.linalg.expm(M * t)
        G = scipy.linalg.expm(np.block([[2 * M * t, t * np.eye(2)], [np.zeros((2, 4))]]))[:2, 2:]
        z = np.array([a0, b0])
        naive = E @ z / np.sqrt(1 + z @ G @ z)
    ref = np.array(mp_spectral(sigma, a0, b0, t, dps=500))
    assert naive_fails(naive, ref)
    assert rel_err(exact.spectral_mode(sigma, a0, b0, t), ref) <= 1e-10


@pytest.mark.parametrize("sigma,a0,b0",
                         [(1.0, -1.0, 2.0), (2.0, 3.0, 0.1), (0.7, 0.0, 0.4), (1.0, -0.5, -0.2)])
def test_spectral_mode_matches_dop853(sigma, a0, b0):
    """Including a sign change of a (a₀ = −1 < 0 < b₀) and a mode settling on a, b < 0."""
    times = np.linspace(0.0, 15.0, 16)
    sol = solve_ivp(lambda _, y: [y[1] * (sigma - y[0] * y[1]), y[0] * (sigma - y[0] * y[1])],
                    (0.0, 15.0), [a0, b0], method="DOP853", rtol=1e-12, atol=1e-14, t_eval=times)
    a, b = exact.spectral_mode(sigma, a0, b0, times)
    np.testing.assert_allclose(a, sol.y[0], rtol=0, atol=1e-10)
    np.testing.assert_allclose(b, sol.y[1], rtol=0, atol=1e-10)
    np.testing.assert_allclose(a ** 2 - b ** 2, a0 ** 2 - b0 ** 2, rtol=0, atol=1e-13)


def test_spectral_mode_stable_manifold_and_limits():
    # a₀ = −b₀ is the stable manifold of the saddle at 0: the mode decays, at any t.
    a, b = exact.spectral_mode(1.0, -1.0, 1.0, [1.0, 1e3, 1e300])
    assert np.all(np.abs(a[1:]) < 1e-300) and np.all(a == -b) and a[0] < 0
    # otherwise it settles on ab = σ with a² − b² conserved, without overflow at absurd times
    a, b = exact.spectral_mode(2.0, 1.0, 0.5, 1e300)
    assert a * b == pytest.approx(2.0, rel=1e-14) and a * a - b * b == pytest.approx(0.75, rel=1e-14)
    assert exact.spectral_mode(1.0, 0.0, 0.0, 5.0) == (0.0, 0.0)
    assert exact.spectral_mode(1.0, 0.3, -0.2, 0.0) == (0.3, -0.2)


def test_balanced_mode_is_the_balanced_spectral_mode():
    for sigma, a0 in ((1.0, 1e-4), (3.0, 0.5), (0.2, 1.0)):
        t = np.linspace(0.0, 60.0 / sigma, 13)
        a, b = exact.spectral_mode(sigma, a0, a0, t)
        np.testing.assert_allclose(a, b, rtol=1e-15)
        np.testing.assert_allclose(a * b, exact.balanced_mode(sigma, a0 ** 2, t), rtol=1e-13)


def test_emergence_time_inverts_balanced_mode():
    for sigma, u0 in ((1.0, 1e-8), (2.5, 1e-3), (0.3, 0.01)):
        for fraction in (0.1, 0.5, 0.99):
            t = exact.emergence_time(sigma, u0, fraction)
            assert exact.balanced_mode(sigma, u0, t) == pytest.approx(fraction * sigma, rel=1e-13)
            with mp.workdps(DPS):
                t_ref = mp.findroot(lambda s: mp_balanced_mp(sigma, u0, s) - fraction * sigma, t)
            assert t == pytest.approx(float(t_ref), rel=1e-13)
    # from small init the half-way time is ≈ ln(σ/u₀)/(2σ)
    assert exact.emergence_time(2.0, 1e-12) == pytest.approx(math.log(2.0 / 1e-12) / 4.0, rel=1e-10)


def test_scalar_mode_validation():
    with pytest.raises(ValueError, match="sigma must be positive"):
        exact.balanced_mode(0.0, 0.1, 1.0)
    with pytest.raises(ValueError, match="u0 must be positive"):
        exact.balanced_mode(1.0, -0.1, 1.0)
    with pytest.raises(ValueError, match="t must be non-negative"):
        exact.balanced_mode(1.0, 0.1, -1.0)
    with pytest.raises(ValueError, match="t must be finite"):
        exact.spectral_mode(1.0, 0.1, 0.2, [1.0, np.nan])
    with pytest.raises(ValueError, match="a0 must be finite"):
        exact.spectral_mode(1.0, np.inf, 0.2, 1.0)
    with pytest.raises(ValueError, match="sigma must be positive"):
        exact.spectral_mode(-1.0, 0.1, 0.2, 1.0)
    with pytest.raises(ValueError, match="fraction must lie in"):
        exact.emergence_time(1.0, 0.1, 1.0)
    with pytest.raises(ValueError, match="u0 must be below"):
        exact.emergence_time(1.0, 0.6, 0.5)
    assert isinstance(exact.balanced_mode(1.0, 0.1, 2.0), float)
    assert exact.balanced_mode(1.0, 0.1, [0.0, 1.0]).shape == (2,)
    a, b = exact.spectral_mode(1.0, 0.1, 0.2, np.arange(3.0))
    assert a.shape == b.shape == (3,)
