"""integrate(): every solve_ivp method, grid accuracy, invariants, Jacobians, events and failures."""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from pgflow.flows import (METHODS, Event, GradientFlow, IntegrationError, MatrixFactorization, SymmetricFactorization,
                          init, integrate, loss_below)


def uvt(problem, X):
    U, V = problem.factors(X)
    return U @ np.swapaxes(V, -1, -2)


@pytest.fixture(scope="module")
def small():
    p = MatrixFactorization.random(m=8, n=6, rank=2, width=3, condition=3.0, seed=0)
    return p, init.gaussian(p, 0.1, seed=1)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_reaches_the_same_endpoint(small, method):
    p, x0 = small
    ref = integrate(GradientFlow(p), x0, 6.0, method="DOP853", rtol=1e-13, atol=1e-15, default_monitors=False)
    run = integrate(GradientFlow(p), x0, 6.0, method=method, rtol=1e-9, atol=1e-12, default_monitors=False)
    assert run.t[-1] == 6.0 and run.stats.method == method
    err = np.linalg.norm(uvt(p, run.final) - uvt(p, ref.final)) / p.target.frobenius_norm
    assert err < 1e-6
    for key in ("rtol", "atol", "version", "problem"):
        assert key in run.meta
    assert run.stats.nfev > 0 and run.stats.steps > 0 and run.stats.wall_time > 0
    assert run.dynamics.kind == "gf"


def test_grid_states_are_as_accurate_as_the_steps():
    """scipy's DOP853 interpolant at t_eval is far worse than its steps; integrate() steps onto the grid."""
    p = MatrixFactorization.random(m=30, n=25, rank=4, width=6, condition=10.0, seed=0)
    x0 = init.gaussian(p, 1e-4, seed=1)
    grid = np.linspace(0.0, 8.0, 101)
    flow = GradientFlow(p)
    ref = uvt(p, integrate(flow, x0, 8.0, rtol=1e-13, atol=1e-16, t_eval=grid, default_monitors=False).x)
    # the reference is 1e-13 accurate: 100x below every error measured here
    scale = p.target.frobenius_norm

    def err(X):
        return np.max(np.linalg.norm(uvt(p, X) - ref, axis=(1, 2))) / scale

    rtol = 1e-6
    for method in ("RK45", "DOP853", "LSODA"):
        run = integrate(flow, x0, 8.0, method=method, rtol=rtol, atol=1e-10, t_eval=grid, default_monitors=False)
        np.testing.assert_array_equal(run.t, grid)
        assert err(run.x) < 10 * rtol, method
    ours = err(integrate(flow, x0, 8.0, method="DOP853", rtol=rtol, atol=1e-10, t_eval=grid, default_monitors=False).x)
    theirs = err(solve_ivp(flow, (0, 8), x0, method="DOP853", rtol=rtol, atol=1e-10, t_eval=grid).y.T)
    assert 100 * ours < theirs


def test_imbalance_is_conserved_along_gradient_flow():
    p = MatrixFactorization.random(m=10, n=8, rank=3, width=4, condition=5.0, seed=3)
    x0 = init.lambda_balanced(p, scale=0.5, lam=0.7, seed=4)
    run = integrate(GradientFlow(p), x0, 20.0, rtol=1e-11, atol=1e-13, default_monitors=False)
    D = np.einsum("tia,tib->tab", run.U, run.U) - np.einsum("tia,tib->tab", run.V, run.V)
    drift = np.max(np.linalg.norm(D - D[0], axis=(1, 2))) / np.linalg.norm(D[0])
    assert drift <= 1e-8
    np.testing.assert_allclose(D[0], 0.7 * np.eye(4), atol=1e-12)
    assert p.loss(run.final) < 1e-8


class JacobianSpy(GradientFlow):
    calls = 0

    def jac(self, t, x):
        type(self).calls += 1
        return super().jac(t, x)


@pytest.mark.parametrize("method", ["Radau", "BDF", "LSODA"])
def test_implicit_methods_use_the_analytic_jacobian(method):
    p = MatrixFactorization.random(m=10, n=10, rank=2, width=4, condition=2.0, seed=0)
    rng = np.random.default_rng(0)
    # a strongly unbalanced start makes the flow stiff, so LSODA switches to its implicit method
    x0 = p.pack(3 + 0.1 * rng.standard_normal((10, 4)), 1e-6 * rng.standard_normal((10, 4)))
    JacobianSpy.calls = 0
    # the full state: the finite-difference Jacobian's cost below counts p.dim right-hand sides
    kw = dict(method=method, rtol=1e-8, atol=1e-12, default_monitors=False, dense_output=False, reduce=False)
    analytic = integrate(JacobianSpy(p), x0, 10.0, **kw)
    fd = integrate(GradientFlow(p), x0, 10.0, jacobian=False, **kw)
    assert analytic.meta["jacobian"] == "analytic" and fd.meta["jacobian"] == "finite differences"
    assert analytic.stats.njev > 0 and JacobianSpy.calls >= analytic.stats.njev - 1
    # each finite-difference Jacobian costs at least dim right-hand sides
    assert fd.stats.rhs_calls - analytic.stats.rhs_calls >= 0.9 * fd.stats.njev * p.dim
    assert np.linalg.norm(uvt(p, analytic.final) - uvt(p, fd.final)) < 1e-6


def test_loss_below_event_stops_at_the_crossing(small):
    p, x0 = small
    run = integrate(GradientFlow(p), x0, 50.0, rtol=1e-10, atol=1e-13, events=[loss_below(p, 1e-4)])
    t_star = run.stats.stopped_at
    assert run.t[-1] == t_star < 50.0
    assert run.events["loss_below_0.0001"] == (t_star,)
    assert p.loss(run.final) == pytest.approx(1e-4, rel=1e-6)
    assert np.all(run.monitors["loss"][:-1] > 1e-4)


def test_non_terminal_events_and_dense_output(small):
    p, x0 = small
    half = 0.5 * p.target.sigma[0]

    def top_singular_value_crosses_half(t, x):
        U, V = p.unpack(x)
        return np.linalg.norm(U @ V.T, 2) - half

    grid = np.linspace(0, 6, 13)
    run = integrate(GradientFlow(p), x0, 6.0, method="RK45", rtol=1e-10, atol=1e-13, t_eval=grid,
                    events=[Event(top_singular_value_crosses_half, direction=1)], dense_output=True)
    (t_hit,) = run.events["top_singular_value_crosses_half"]
    assert run.t[-1] == 6.0
    assert np.linalg.norm(uvt(p, run.at(t_hit)), 2) == pytest.approx(half, rel=1e-7)
    np.testing.assert_allclose(run.at(grid), run.x, rtol=1e-8, atol=1e-10)
    assert run.at(3.0).shape == (p.dim,)
    with pytest.raises(ValueError, match="t must lie in"):
        run.at(7.0)


class GradientAscent(GradientFlow):
    """ẋ = +∇f blows up in finite time: the solver must fail."""

    def __call__(self, t, x):
        return self.problem.grad(x)


def test_failed_solve_raises_with_the_time_reached(small):
    p, x0 = small
    assert GradientAscent(p).stage_kernel((p.dim,)) is None  # its own __call__, not −∇f's bound kernel
    with pytest.raises(IntegrationError, match=r"DOP853 failed at t = .* of t1 = 100") as info:
        integrate(GradientAscent(p), 3 * x0, 100.0)
    err = info.value
    assert 0 < err.t_reached < 100
    assert err.partial.t[-1] <= err.t_reached and np.all(np.isfinite(err.partial.x))


def test_symmetric_problem_integrates(small):
    s = SymmetricFactorization.random(m=6, rank=2, width=2, condition=2.0, seed=0)
    run = integrate(GradientFlow(s), init.gaussian(s, 0.1, seed=0), 30.0, rtol=1e-10, atol=1e-12)
    assert run.monitors["distance"][-1] < 1e-8
    np.testing.assert_array_equal(run.U, run.V)


@pytest.mark.parametrize("kwargs, match", [
    (dict(method="Euler"), "method must be .auto. or one of"),
    (dict(rtol=0.0), "rtol must be positive"),
    (dict(atol=-1.0), "atol must be positive"),
    (dict(max_step=0.0), "max_step must be positive"),
    (dict(t_end=-1.0), "t_span must run forward for a flow"),
    (dict(t_end=float("inf")), "t_span must end at a finite time unless a terminal event"),
    (dict(t_end=float("nan")), "t_span must start at a finite time"),
    (dict(t_eval=[0.0, 2.0, 1.0]), "t_eval must be a non-empty, strictly increasing"),
    (dict(t_eval=[0.0, 5.0]), r"t_eval must lie in \[t_start, t_end\]"),
    (dict(events=[3]), r"events\[0\] must be a callable"),
    (dict(monitors=[1]), "monitors must be a dict"),
    (dict(x0=np.zeros(5)), r"x0 must have shape \(42,\)"),
    (dict(x0=np.full(42, np.nan)), "x0 must be finite"),
])
def test_bad_integrate_input_raises(small, kwargs, match):
    p, x0 = small
    args = dict(x0=x0, t_end=1.0)
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        integrate(GradientFlow(p), args.pop("x0"), args.pop("t_end"), **args)
