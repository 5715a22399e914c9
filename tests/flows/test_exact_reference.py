"""integrate(GradientFlow) against every closed form of flows.exact, rtol = 1e-10, σ₁t up to 40."""

import numpy as np
import pytest

from pgflow.flows import GradientFlow, MatrixFactorization, SymmetricFactorization, exact, init, integrate

RTOL, ATOL = 1e-10, 1e-14


def relative_errors(A, B):
    return np.linalg.norm(A - B, axis=(-2, -1)) / np.linalg.norm(B, axis=(-2, -1))


@pytest.mark.parametrize("method", ["DOP853", "RK45", "LSODA"])
def test_symmetric_flow_matches_the_riccati_solution(method):
    p = SymmetricFactorization.random(m=7, rank=3, width=2, condition=4.0, seed=0)
    x0 = init.gaussian(p, 0.1, seed=1)
    times = np.linspace(0, 40 / p.target.sigma[0], 41)
    run = integrate(GradientFlow(p), x0, times[-1], method=method, rtol=RTOL, atol=ATOL, t_eval=times, default_monitors=False)
    X = run.U
    P = exact.symmetric_flow(p, x0, times)
    assert np.max(relative_errors(X @ np.swapaxes(X, 1, 2), P)) <= 1e-8


@pytest.mark.parametrize("lam", [0.0, 0.5, -0.001])
def test_lambda_balanced_flow_matches_the_closed_form(lam):
    p = MatrixFactorization.random(m=6, n=5, rank=2, width=2, condition=3.0, seed=2)
    x0 = init.lambda_balanced(p, 0.05, lam, seed=3)
    U0, V0 = p.unpack(x0)
    times = np.linspace(0, 40 / p.target.sigma[0], 41)
    run = integrate(GradientFlow(p), x0, times[-1], rtol=RTOL, atol=ATOL, t_eval=times, default_monitors=False)
    ref = exact.lambda_balanced_flow(p, U0, V0, times)
    U, V = run.U, run.V
    for got, want in ((U @ np.swapaxes(V, 1, 2), ref.UVt), (U @ np.swapaxes(U, 1, 2), ref.UUt),
                      (V @ np.swapaxes(V, 1, 2), ref.VVt)):
        assert np.max(relative_errors(got, want)) <= 1e-8
    assert ref.lam == pytest.approx(lam, abs=1e-12)


def test_spectral_modes_match_the_scalar_closed_forms():
    """An aligned init decouples into modes; balanced ones follow u = ab, unbalanced ones (a, b)."""
    p = MatrixFactorization.random(m=6, n=5, rank=3, width=3, singular_values=[4.0, 2.0, 1.0], seed=4)
    a0, b0 = np.array([1e-3, 2e-3, 0.5]), np.array([1e-3, 2e-3, -0.1])
    times = np.linspace(0, 40 / 4.0, 41)
    run = integrate(GradientFlow(p), init.spectral(p, a0, b0), times[-1], rtol=RTOL, atol=ATOL, t_eval=times,
                    default_monitors=False)
    a = np.einsum("tik,ik->tk", run.U, p.target.Phi)
    b = np.einsum("tjk,jk->tk", run.V, p.target.Psi)
    for i, sigma in enumerate(p.target.sigma):
        a_ref, b_ref = exact.spectral_mode(sigma, a0[i], b0[i], times)
        scale = np.abs(a_ref) + np.abs(b_ref)
        assert np.max(np.abs(a[:, i] - a_ref) / scale) <= 1e-8
        assert np.max(np.abs(b[:, i] - b_ref) / scale) <= 1e-8
        if a0[i] == b0[i]:
            u = exact.balanced_mode(sigma, a0[i] * b0[i], times)
            assert np.max(np.abs(a[:, i] * b[:, i] - u) / u) <= 1e-8
