"""gradient_descent(): exact one-step identities, variants, recording, divergence."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgflow.flows import DivergenceError, MatrixFactorization, SymmetricFactorization, gradient_descent, init
from pgflow.flows.sensing import MatrixSensing


@pytest.fixture(scope="module")
def problem():
    return MatrixFactorization.random(m=7, n=5, rank=2, width=3, condition=4.0, seed=0)


def test_one_step_is_exactly_x_minus_eta_grad(problem):
    x0 = init.gaussian(problem, 0.5, seed=1)
    gd = gradient_descent(problem, x0, step_size=0.05, n_steps=1, default_monitors=False)
    np.testing.assert_array_equal(gd.x[1], x0 - 0.05 * problem.grad(x0))
    np.testing.assert_array_equal(gd.x[0], x0)
    assert gd.t.tolist() == [0.0, 0.05]


@given(st.integers(2, 7), st.integers(2, 7), st.integers(1, 3), st.floats(0.01, 0.2), st.integers(0, 10**6))
@settings(max_examples=40, deadline=None)
def test_imbalance_changes_by_exactly_eta_squared_gram_difference(m, n, k, eta, seed):
    """U₊ᵀU₊ − V₊ᵀV₊ − (UᵀU − VᵀV) = η²(G_UᵀG_U − G_VᵀG_V): the first-order terms cancel."""
    p = MatrixFactorization.random(m=m, n=n, rank=1, width=k, condition=1.0, seed=seed)
    x0 = init.gaussian(p, 1.0, seed=seed + 1)
    gd = gradient_descent(p, x0, step_size=eta, n_steps=1, default_monitors=False)
    (U, V), (U1, V1) = p.unpack(gd.x[0]), p.unpack(gd.x[1])
    GU, GV = p.unpack(p.grad(x0))
    predicted = eta ** 2 * (GU.T @ GU - GV.T @ GV)
    measured = (U1.T @ U1 - V1.T @ V1) - (U.T @ U - V.T @ V)
    rounding = 1e-14 * (np.linalg.norm(U1.T @ U1) + np.linalg.norm(V1.T @ V1))
    assert np.linalg.norm(measured - predicted) <= max(1e-12 * np.linalg.norm(predicted), rounding)


def test_alternating_step_uses_the_new_U(problem):
    x0 = init.gaussian(problem, 0.5, seed=2)
    eta = 0.03
    gd = gradient_descent(problem, x0, step_size=eta, n_steps=1, variant="alternating", default_monitors=False)
    U, V = problem.unpack(x0)
    U1 = U - eta * problem.unpack(problem.grad(x0))[0]
    V1 = V - eta * problem.unpack(problem.grad(problem.pack(U1, V)))[1]
    np.testing.assert_allclose(gd.x[1], problem.pack(U1, V1), rtol=1e-15, atol=1e-15)


def blocks_along_the_full_gradient(p, x0, eta, n_steps):
    """Alternating GD as it was first written: each block steps along the full ∇f at the current state."""
    x = x0.copy()
    for _ in range(n_steps):
        for sl in p.slices().values():
            x[..., sl] -= eta * p.grad(x)[..., sl]
    return x


@given(st.integers(1, 6), st.integers(1, 6), st.booleans(), st.integers(1, 3), st.booleans(), st.integers(0, 10**6))
@settings(max_examples=30, deadline=None)
def test_alternating_gd_is_the_two_line_reference_and_the_full_gradient_blocks(m, n, square, k, batch, seed):
    """Block gradients only: the same iterates as U₊ = U − η(UVᵀ − Σ)V, V₊ = V − η(U₊Vᵀ − Σ)ᵀU₊ with a
    dense Σ, and bit for bit those of stepping each block along the full gradient."""
    n = m if square else n
    p = MatrixFactorization.random(m=m, n=n, rank=min(m, n, 2), width=k, condition=2.0, seed=seed)
    x0 = np.stack([init.gaussian(p, 0.5, seed=seed + s) for s in range(3 if batch else 1)])
    x0 = x0 if batch else x0[0]
    eta, n_steps = 0.05, 25
    # bit for bit against the full gradient's blocks: the full state (a reduced run is equal to rounding)
    gd = gradient_descent(p, x0, eta, n_steps, variant="alternating", save_every=n_steps, default_monitors=False, reduce=False)
    final = np.stack([run.final for run in gd]) if batch else gd.final
    assert (gd[0] if batch else gd).stats.nfev == n_steps  # two half gradients a step

    S = p.target.dense()
    U, V = p.unpack(x0.copy())
    for _ in range(n_steps):
        U = U - eta * (U @ V.mT - S) @ V
        V = V - eta * (U @ V.mT - S).mT @ U
    np.testing.assert_allclose(final, p.pack(U, V), rtol=1e-12, atol=1e-13 * np.abs(final).max())

    np.testing.assert_array_equal(final, blocks_along_the_full_gradient(p, x0, eta, n_steps))


def test_alternating_gd_without_block_gradients_steps_along_the_full_one():
    s = MatrixSensing.random(6, 5, 2, 2, 40, seed=0)
    x0 = init.gaussian(s, 0.5, seed=1)
    eta = 0.05
    gd = gradient_descent(s, x0, eta, 3, variant="alternating", default_monitors=False)
    np.testing.assert_array_equal(gd.final, blocks_along_the_full_gradient(s, x0, eta, 3))
    assert gd.stats.nfev == 6  # a full gradient for each block


def test_scaled_step_is_preconditioned_by_the_other_gram(problem):
    x0 = init.gaussian(problem, 0.5, seed=3)
    eta = 0.1
    gd = gradient_descent(problem, x0, step_size=eta, n_steps=1, variant="scaled", default_monitors=False)
    U, V = problem.unpack(x0)
    GU, GV = problem.unpack(problem.grad(x0))
    expected = problem.pack(U - eta * GU @ np.linalg.inv(V.T @ V), V - eta * GV @ np.linalg.inv(U.T @ U))
    np.testing.assert_allclose(gd.x[1], expected, rtol=1e-12, atol=1e-14)


def test_recording_and_convergence(problem):
    x0 = init.gaussian(problem, 0.1, seed=4)
    eta = 0.25 / problem.target.sigma[0]
    gd = gradient_descent(problem, x0, step_size=eta, n_steps=1003, save_every=100)
    assert gd.t.tolist() == pytest.approx([eta * k for k in [*range(0, 1001, 100), 1003]])
    assert gd.U.shape == (12, 7, 3) and gd.monitors["singular_values"].shape == (12, 3)
    assert np.all(np.diff(gd.monitors["loss"]) < 0) and gd.monitors["loss"][-1] < 1e-4
    assert gd.stats.nfev == 1003 and gd.meta["step_size"] == eta
    full = gradient_descent(problem, x0, step_size=eta, n_steps=1003, default_monitors=False, save_every=1)
    np.testing.assert_array_equal(full.x[[*range(0, 1001, 100), 1003]], gd.x)


def test_divergence_is_reported_with_its_step(problem):
    x0 = init.gaussian(problem, 1.0, seed=5)
    with pytest.raises(DivergenceError, match=r"diverged at step \d+ \(t = .*, step_size = 2\)") as info:
        gradient_descent(problem, x0, step_size=2.0, n_steps=10_000)
    err = info.value
    assert 1 <= err.step < 10_000
    assert np.all(np.isfinite(err.partial.x)) and err.partial.meta["diverged_at_step"] == err.step
    assert err.partial.t[-1] < err.step * 2.0


def test_symmetric_gd_converges():
    s = SymmetricFactorization.random(m=6, rank=2, width=2, condition=2.0, seed=1)
    gd = gradient_descent(s, init.gaussian(s, 0.1, seed=0), step_size=0.05, n_steps=2000, save_every=2000)
    assert gd.monitors["distance"][-1] < 1e-8
    with pytest.raises(ValueError, match="needs a problem with two factors"):
        gradient_descent(s, init.gaussian(s, 0.1, seed=0), step_size=0.05, n_steps=2, variant="alternating")


@pytest.mark.parametrize("kwargs, match", [
    (dict(step_size=0.0), "step_size must be positive"),
    (dict(step_size=float("nan")), "step_size must be positive and finite"),
    (dict(n_steps=0), "n_steps must be an integer >= 1"),
    (dict(n_steps=2.5), "n_steps must be an integer"),
    (dict(variant="heavy-ball"), "variant must be one of"),
    (dict(save_every=0), "save_every must be an integer >= 1"),
    (dict(max_loss=-1.0), "max_loss must be positive"),
])
def test_bad_gd_input_raises(problem, kwargs, match):
    args = dict(step_size=0.1, n_steps=3)
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        gradient_descent(problem, init.gaussian(problem, 0.1, seed=0), **args)


@pytest.mark.parametrize("variant", ["simultaneous", "alternating", "scaled"])
def test_a_batch_runs_each_member_exactly_as_alone(problem, variant):
    X0 = np.stack([init.gaussian(problem, 0.3, seed=s) for s in range(4)])
    batch = gradient_descent(problem, X0, step_size=0.05, n_steps=60, save_every=20, variant=variant)
    assert len(batch) == 4
    for b, run in enumerate(batch):
        alone = gradient_descent(problem, X0[b], step_size=0.05, n_steps=60, save_every=20, variant=variant)
        np.testing.assert_allclose(run.x, alone.x, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(run.monitors["loss"], alone.monitors["loss"], rtol=1e-10)
        assert run.meta["member"] == b and run.meta["batch_size"] == 4


def test_a_diverging_member_is_named(problem):
    X0 = np.stack([init.gaussian(problem, 0.1, seed=0), init.gaussian(problem, 3.0, seed=1)])
    with pytest.raises(DivergenceError, match=r"in batch members \[1\]") as info:
        gradient_descent(problem, X0, step_size=0.5, n_steps=10_000)
    assert len(info.value.partial) == 2


def test_t_end_gives_the_same_run_as_n_steps(problem):
    x0 = init.gaussian(problem, 0.5, seed=1)
    by_steps = gradient_descent(problem, x0, 0.05, 40, save_every=10)
    by_time = gradient_descent(problem, x0, 0.05, t_end=2.0, save_every=10)
    np.testing.assert_array_equal(by_time.x, by_steps.x)
    assert by_time.t[-1] == pytest.approx(2.0) and by_time.meta["n_steps"] == 40


@pytest.mark.parametrize("kw, error, match", [
    (dict(), TypeError, "exactly one of them"),
    (dict(n_steps=40, t_end=2.0), TypeError, "exactly one of them"),
    (dict(t_end=2.01), ValueError, "step_size must divide t_end = 2.01 into whole steps"),
    (dict(t_end=-1.0), ValueError, "t_end"),
])
def test_the_length_of_a_run_is_given_once_and_exactly(problem, kw, error, match):
    with pytest.raises(error, match=match):
        gradient_descent(problem, init.gaussian(problem, 0.5, seed=1), 0.05, **kw)
