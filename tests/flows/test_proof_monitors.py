"""Monitors for the quantities proofs track, and incremental learning (emergence times)."""

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

from pgflow.flows import GradientFlow, MatrixFactorization, Trajectory, gradient_descent, init, integrate
from pgflow.flows import proof_monitors as pm
from pgflow.flows.emergence import emergence_events, emergence_report, event_name, initial_amplitudes
from pgflow.flows.monitors import singular_values
from pgflow.flows.sensing import MatrixSensing

# (m, n, rank, width, seed) with rank <= min(m, n)
shapes = st.tuples(st.integers(2, 7), st.integers(2, 7), st.integers(1, 3), st.integers(1, 4),
                   st.integers(0, 2**31 - 1)).filter(lambda s: s[2] <= min(s[0], s[1]))


def problem_and_state(shape):
    m, n, r, k, seed = shape
    p = MatrixFactorization.random(m, n, r, k, condition=3.0, seed=seed)
    return p, np.random.default_rng(seed).standard_normal(p.dim)


def complement(Q):
    """An orthonormal basis of col(Q)⊥ (explicitly, for the reference only)."""
    full = np.linalg.svd(Q, full_matrices=True)[0]
    return full[:, Q.shape[1]:]


@given(shapes)
@settings(max_examples=40, deadline=None)
def test_signal_noise_against_explicit_complements(shape):
    p, x = problem_and_state(shape)
    U, V = p.unpack(x)
    t = p.target
    values = {name: fn(0.0, x) for name, fn in pm.signal_noise(p).items()}
    assert values["signal_U_min"] == pytest.approx(np.linalg.svd(t.Phi.T @ U, compute_uv=False).min(), rel=1e-12)
    assert values["signal_V_min"] == pytest.approx(np.linalg.svd(t.Psi.T @ V, compute_uv=False).min(), rel=1e-12)
    for name, basis, F in (("noise_U_norm", t.Phi, U), ("noise_V_norm", t.Psi, V)):
        perp = complement(basis)
        want = np.linalg.norm(perp.T @ F, 2) if perp.size else 0.0
        assert values[name] == pytest.approx(want, rel=1e-10, abs=1e-12)
    if U.shape[1] <= U.shape[0]:  # col(U) of dimension k
        want = np.sort(scipy.linalg.subspace_angles(U, t.Phi))
        np.testing.assert_allclose(values["principal_angles"], want, atol=1e-7)


@given(shapes)
@settings(max_examples=40, deadline=None)
def test_ye_du_blocks_split_the_rotated_residual(shape):
    p, x = problem_and_state(shape)
    U, V = p.unpack(x)
    t = p.target
    b = pm.ye_du_blocks(p, x)
    A, B, P = b["A"], b["B"], b["P"]
    top = t.Phi.T @ (t.dense() - U @ V.T) @ t.Psi
    np.testing.assert_allclose(P + A @ B.T - B @ A.T, top, atol=1e-12 * (1 + np.abs(top).max()))
    np.testing.assert_allclose(P, P.T, atol=1e-13 * (1 + np.abs(P).max()))
    # J, K carry the Gram matrices of Φ⊥ᵀU and Ψ⊥ᵀV
    for F, basis, off in ((U, t.Phi, b["J"]), (V, t.Psi, b["K"])):
        perp = complement(basis)
        np.testing.assert_allclose(off.T @ off, (perp.T @ F).T @ (perp.T @ F), atol=1e-12 * (1 + np.abs(F).max() ** 2))
    values = {name: fn(0.0, x) for name, fn in pm.ye_du(p).items()}
    assert values["A_norm"] == pytest.approx(np.linalg.norm(A, 2), rel=1e-12)
    assert values["B_fro"] == pytest.approx(np.linalg.norm(B), rel=1e-12, abs=1e-15)
    assert values["AAt_lambda_min"] == pytest.approx(np.linalg.eigvalsh(A @ A.T)[0], abs=1e-12 * (1 + values["A_norm"] ** 2))
    assert values["P_lambda_min"] == pytest.approx(np.linalg.eigvalsh(P)[0], abs=1e-12 * (1 + np.abs(P).max()))


def test_ye_du_one_step_recursions_hold_exactly():
    # docs/math/proof-quantities.md: A₊, B₊, J₊, K₊ after one GD step
    p = MatrixFactorization.random(7, 5, 2, 3, condition=2.0, seed=0)
    x = init.gaussian(p, 0.4, seed=1)
    eta = 0.05
    b, b1 = pm.ye_du_blocks(p, x), pm.ye_du_blocks(p, x - eta * p.grad(x))
    A, B, P, J, K = (b[key] for key in "ABPJK")
    U, V = p.unpack(x)
    S, KK, JJ = A @ B.T - B @ A.T, K.T @ K, J.T @ J
    np.testing.assert_allclose(b1["A"], A + eta * (P @ A - S @ B - A @ (KK + JJ) / 2 - B @ (KK - JJ) / 2), atol=1e-15)
    np.testing.assert_allclose(b1["B"], B + eta * (-P @ B + S @ A - B @ (KK + JJ) / 2 - A @ (KK - JJ) / 2), atol=1e-15)
    np.testing.assert_allclose(b1["J"], J - eta * J @ (V.T @ V), atol=1e-15)
    np.testing.assert_allclose(b1["K"], K - eta * K @ (U.T @ U), atol=1e-15)


def test_spectral_init_values_and_noise_norms_decrease_along_gf():
    p = MatrixFactorization(np.diag([3.0, 2.0, 1.0, 0.0])[:, :3], 4)
    x0 = init.spectral(p, [0.1, 0.2, 0.3])
    values = {name: fn(0.0, x0) for name, fn in {**pm.signal_noise(p), **pm.ye_du(p)}.items()}
    assert values["signal_U_min"] == pytest.approx(0.1) and values["noise_U_norm"] == 0.0
    assert values["A_norm"] == pytest.approx(0.3) and values["B_fro"] == 0.0
    np.testing.assert_allclose(values["principal_angles"], 0.0, atol=1e-7)
    # from a generic init, ‖J‖ and ‖K‖ never increase along GF (J̇ = −J VᵀV)
    q = MatrixFactorization.random(8, 6, 2, 3, condition=2.0, seed=1)
    run = integrate(GradientFlow(q), init.gaussian(q, 0.5, seed=2), 10.0, t_eval=np.linspace(0, 10, 41),
                    monitors=pm.ye_du(q), rtol=1e-10, atol=1e-13)
    for name in ("J_norm", "K_norm"):
        assert np.all(np.diff(run.monitors[name]) <= 1e-9), name
    # P + S → 0 at the minimum, and P is symmetric while S is antisymmetric
    assert abs(run.monitors["P_lambda_min"][-1]) < 1e-2 * abs(run.monitors["P_lambda_min"][0])


def test_monitors_work_on_sensing_problems():
    p = MatrixSensing.random(10, 8, 2, 3, 60, seed=0)
    run = gradient_descent(p, init.gaussian(p, 1e-3, seed=1), 0.2, 300, save_every=100,
                           monitors={**pm.signal_noise(p), **pm.ye_du(p)})
    assert run.monitors["principal_angles"].shape == (4, 2)
    assert run.monitors["signal_U_min"][-1] > 100 * run.monitors["signal_U_min"][0]


def diagonal_problem():
    return MatrixFactorization(np.diag([3.0, 2.0, 1.0, 0.0])[:, :3], 3)


@pytest.mark.parametrize("fraction", [0.5, 0.25])
def test_emergence_times_match_the_balanced_mode_prediction(fraction):
    p = diagonal_problem()
    x0 = init.spectral(p, [1e-3, 2e-3, 1e-3])
    events = emergence_events(p, fraction)
    assert [ev.name for ev in events] == [event_name(i, fraction) for i in range(3)]
    run = integrate(GradientFlow(p), x0, 12.0, events=events, rtol=1e-10, atol=1e-14)
    report = emergence_report(run, p, x0, fraction)
    assert report.source == "events"
    np.testing.assert_allclose(report.u0, [1e-6, 4e-6, 1e-6], rtol=1e-12)
    assert np.all(np.diff(report.measured) > 0)  # learned one after another, largest first
    assert np.all(report.relative_error <= 0.01)
    assert np.all(report.relative_error <= 1e-7)  # in fact exact, to solver tolerance
    assert report.as_dict()["fraction"] == fraction


def test_emergence_from_gd_and_from_a_random_init():
    p = diagonal_problem()
    x0 = init.spectral(p, [1e-3, 1e-3, 1e-3])
    gd = gradient_descent(p, x0, 0.005, 2000, monitors={"singular_values": singular_values(p)})
    report = emergence_report(gd, p, x0)
    assert report.source == "grid" and np.all(report.relative_error < 0.01)
    q = MatrixFactorization.random(20, 20, 3, 5, singular_values=[3.0, 2.0, 1.0], seed=0)
    x1 = init.gaussian(q, 1e-4, seed=1)
    run = integrate(GradientFlow(q), x1, 15.0, events=emergence_events(q), rtol=1e-10, atol=1e-14)
    rough = emergence_report(run, q, x1)
    assert np.all(np.diff(rough.measured) > 0) and np.all(rough.relative_error < 0.1)


def test_initial_amplitudes_and_not_reached():
    p = diagonal_problem()
    x0 = init.spectral(p, [0.5, 1e-3, 1e-3], [0.5, 3e-3, 1e-3])
    np.testing.assert_allclose(initial_amplitudes(p, x0), [0.25, 4e-6, 1e-6], rtol=1e-12)
    run = integrate(GradientFlow(p), x0, 1.0, events=emergence_events(p), rtol=1e-10, atol=1e-14)
    report = emergence_report(run, p, x0)
    # mode 1 starts well on its way (u₀ = 0.25) and emerges early; modes 2 and 3 not before t = 1
    assert np.isfinite(report.measured[0]) and np.all(np.isnan(report.measured[1:]))


def test_emergence_bad_input():
    p = diagonal_problem()
    x0 = init.spectral(p, [1e-3, 1e-3, 1e-3])
    with pytest.raises(ValueError, match=r"fraction must lie in \(0, 1\)"):
        emergence_events(p, 1.0)
    with pytest.raises(ValueError, match="fraction must be positive"):
        emergence_events(p, -0.5)
    bare = Trajectory(t=np.array([0.0]), x=x0[None], layout=p.layout)
    with pytest.raises(ValueError, match="emergence_events"):
        emergence_report(bare, p, x0)


def test_principal_angles_are_accurate_near_zero_and_nan_for_missing_directions():
    p = MatrixFactorization.random(m=7, n=6, rank=2, width=2, seed=0)
    Phi = p.target.Phi
    normal = np.linalg.qr(np.column_stack([Phi, np.random.default_rng(1).standard_normal(7)]))[0][:, 2]
    for angle in (1e-10, 1e-7, 0.3):
        U = np.column_stack([Phi[:, 0], np.cos(angle) * Phi[:, 1] + np.sin(angle) * normal])
        got = pm.principal_angles(p)(0.0, p.pack(U, np.zeros((6, 2))))
        np.testing.assert_allclose(got, [0.0, angle], rtol=1e-6, atol=1e-15)
    # a rank-one U orthogonal to col(Φ): one angle of π/2, the other undefined
    U = np.column_stack([normal, np.zeros(7)])
    got = pm.principal_angles(p)(0.0, p.pack(U, np.zeros((6, 2))))
    assert got[0] == pytest.approx(np.pi / 2) and np.isnan(got[1])
