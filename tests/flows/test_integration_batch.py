"""method="auto" and batches of initial states."""

import numpy as np
import pytest

from pgflow.flows import GradientFlow, MatrixFactorization, init, integrate
from pgflow.flows.integration import choose_method, stiffness


@pytest.fixture(scope="module")
def problem():
    return MatrixFactorization.random(m=20, n=20, rank=3, width=5, condition=10.0, seed=0)


def unbalanced(problem, big, small, seed=1):
    rng = np.random.default_rng(seed)
    return problem.pack(big + 0.1 * rng.standard_normal((20, 5)), small * rng.standard_normal((20, 5)))


def test_auto_picks_an_implicit_method_on_the_stiff_case(problem):
    x0 = unbalanced(problem, 3.0, 1e-6)
    fast, slow = stiffness(problem, x0)
    U, V = problem.unpack(x0)
    assert fast >= np.linalg.norm(U.T @ U - V.T @ V, 2) > 200 and slow == pytest.approx(1.0)
    run = integrate(GradientFlow(problem), x0, 30.0, default_monitors=False)
    assert run.stats.method == "LSODA" and run.meta["method_requested"] == "auto"
    assert run.stats.method_reason.startswith("stiff") and run.meta["jacobian"] == "analytic"
    assert run.stats.njev > 0 and problem.loss(run.final) < 1e-10


def test_auto_picks_an_explicit_method_on_balanced_and_mildly_unbalanced_starts(problem):
    x0 = init.gaussian(problem, 1e-4, seed=1)
    U, V = problem.unpack(x0)
    for start in (x0, problem.pack(100 * U, V / 100)):
        method, reason = choose_method(GradientFlow(problem), start, 30.0)
        assert method == "DOP853" and reason.startswith("not stiff")
    # stiff but short: a few hundred explicit steps are cheaper than Jacobians
    assert choose_method(GradientFlow(problem), unbalanced(problem, 3.0, 1e-6), 0.1)[0] == "DOP853"


def test_a_batch_matches_separate_solves(problem):
    X0 = np.stack([init.gaussian(problem, 1e-3, seed=s) for s in range(6)])
    grid = np.linspace(0, 15, 16)
    batch = integrate(GradientFlow(problem), X0, 15.0, method="DOP853", rtol=1e-9, atol=1e-12, t_eval=grid,
                      dense_output=True)
    assert len(batch) == 6
    for b, run in enumerate(batch):
        alone = integrate(GradientFlow(problem), X0[b], 15.0, method="DOP853", rtol=1e-9, atol=1e-12, t_eval=grid,
                          dense_output=True)
        scale = problem.target.frobenius_norm
        assert np.max(np.abs(run.x - alone.x)) / scale < 1e-7
        np.testing.assert_allclose(run.monitors["loss"][-1], alone.monitors["loss"][-1], rtol=1e-5)
        assert run.meta["member"] == b and run.meta["batch_size"] == 6
        assert 0 < run.stats.member_error <= 1
        np.testing.assert_allclose(run.at(7.5), alone.at(7.5), atol=1e-6)
    # one shared step sequence: one Python step drives six right-hand sides
    assert batch[0].stats.steps < 2 * alone.stats.steps


def test_a_stiff_batch_runs_bdf_with_a_block_jacobian(problem):
    X0 = np.stack([unbalanced(problem, 3.0, 1e-6, seed=s) for s in range(3)])
    batch = integrate(GradientFlow(problem), X0, 30.0, rtol=1e-8, atol=1e-12, default_monitors=False)
    assert batch[0].stats.method == "BDF" and batch[0].stats.njev > 0
    for b in range(3):
        alone = integrate(GradientFlow(problem), X0[b], 30.0, method="LSODA", rtol=1e-10, atol=1e-14, default_monitors=False)
        assert np.linalg.norm(batch[b].final - alone.final) < 1e-5 * np.linalg.norm(alone.final)


def test_batch_restrictions_are_explained(problem):
    X0 = np.stack([init.gaussian(problem, 1e-3, seed=s) for s in range(2)])
    with pytest.raises(ValueError, match="events are not supported with a batch"):
        integrate(GradientFlow(problem), X0, 1.0, events=[lambda t, x: 1.0])
    with pytest.raises(ValueError, match="LSODA.* cannot run a batch"):
        integrate(GradientFlow(problem), X0, 1.0, method="LSODA")
    with pytest.raises(ValueError, match=r"x0 must have shape \(200,\) or \(B, 200\)"):
        integrate(GradientFlow(problem), X0[:, :-1], 1.0)
