"""The in-place explicit Runge–Kutta steppers take scipy's steps, and split the error by batch member."""

import tracemalloc

import numpy as np
import pytest
from scipy.integrate import DOP853, RK23, RK45, solve_ivp

from pgflow.flows import GradientFlow, IntegrationError, MatrixFactorization, ModifiedFlow, init, integrate
from pgflow.flows import rk
from pgflow.flows.rk import IN_PLACE, combine

METHODS = (RK23, RK45, DOP853)


@pytest.fixture(scope="module")
def problem():
    return MatrixFactorization.random(m=8, n=6, rank=2, width=3, condition=4.0, seed=0)


def march(solver):
    times = []
    while solver.status == "running":
        solver.step()
        times.append(solver.t)
    return np.array(times)


def pair(problem, method, x0, t_end, **kw):
    flow = GradientFlow(problem)
    fun = lambda t, y: flow(t, y)  # noqa: E731
    return (method(fun, 0.0, x0, t_end, **kw),
            IN_PLACE[method](fun, 0.0, x0, t_end, into=lambda t, y, out: flow(t, y, out=out), **kw))


@pytest.mark.parametrize("method", METHODS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_one_in_place_step_is_scipys_step(problem, method, seed):
    ref, new = pair(problem, method, init.gaussian(problem, 0.3, seed=seed), 10.0, rtol=1e-6, atol=1e-9)
    ref.step(), new.step()
    assert new.t == ref.t and new.nfev == ref.nfev  # the same first step, from the same initial guess
    np.testing.assert_allclose(new.y, ref.y, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(new.stages(), ref.K, rtol=1e-12, atol=1e-14)
    for _ in range(3):
        # the next step size comes from the error estimate, a cancellation: equal to its rounding
        assert new.h_abs == pytest.approx(ref.h_abs, rel=1e-8)
        ref.step(), new.step()
        assert new.t == pytest.approx(ref.t, rel=1e-8) and new.nfev == ref.nfev
        np.testing.assert_allclose(new.y, ref.y, rtol=0, atol=1e-8 * np.abs(ref.y).max())
    t = 0.5 * (ref.t_old + ref.t)
    np.testing.assert_allclose(new.dense_output()(t), ref.dense_output()(t), rtol=0, atol=1e-8 * np.abs(ref.y).max())


@pytest.mark.parametrize("method", METHODS, ids=lambda c: c.__name__)
def test_in_place_runs_are_scipys_runs(problem, method):
    ref, new = pair(problem, method, init.gaussian(problem, 1e-3, seed=1), 30.0, rtol=1e-8, atol=1e-12)
    t_ref, t_new = march(ref), march(new)
    # near the minimum the error estimates fall to rounding level, where the two step sequences part:
    # the counts stay within a few percent and the states within the tolerance
    assert abs(len(t_new) - len(t_ref)) <= 0.03 * len(t_ref) and abs(new.nfev - ref.nfev) <= 0.03 * ref.nfev
    assert np.linalg.norm(new.y - ref.y) < 10 * 1e-8 * np.linalg.norm(ref.y)


@pytest.mark.parametrize("method", METHODS, ids=lambda c: c.__name__)
def test_each_members_error_is_scipys_norm_of_that_member_alone(problem, method):
    flow = GradientFlow(problem)
    X0 = np.stack([init.gaussian(problem, scale, seed=s) for s, scale in enumerate((1e-3, 0.1, 0.5))])
    y0 = X0.reshape(-1)
    rhs = lambda t, y: flow(t, y.reshape(X0.shape)).reshape(-1)  # noqa: E731
    solver = IN_PLACE[method](rhs, 0.0, y0, 10.0, rtol=1e-6, atol=1e-9, batch=3,
                              into=lambda t, y, out: out.__setitem__(slice(None), rhs(t, y)))
    for _ in range(3):
        solver.step()
    h = solver.h_previous
    y_old, y_new = solver.y_old.reshape(3, -1), solver.y.reshape(3, -1)
    K = solver.stages().reshape(solver.n_stages + 1, 3, -1)
    for b in range(3):
        scale = 1e-9 + 1e-6 * np.maximum(np.abs(y_old[b]), np.abs(y_new[b]))
        alone = method._estimate_error_norm(solver, K[:, b], h, scale)
        assert solver.member_error[b] == pytest.approx(alone, rel=1e-9)
    assert np.all(solver.member_error <= 1)


def test_no_member_exceeds_the_tolerance(problem):
    """The shared step is accepted only when every member's own error estimate is ≤ 1."""
    X0 = np.stack([init.gaussian(problem, 10.0 ** -s, seed=s) for s in range(1, 7)])
    for method in ("RK45", "DOP853"):
        batch = integrate(GradientFlow(problem), X0, 15.0, method=method, rtol=1e-8, atol=1e-12, default_monitors=False)
        errors = np.array([run.stats.member_error for run in batch])
        assert np.all(errors > 0.05) and np.all(errors <= 1)


def test_a_flow_without_out_runs_through_a_copy(problem):
    flow = ModifiedFlow(problem, 0.05)
    x0 = init.gaussian(problem, 0.1, seed=4)
    run = integrate(flow, x0, 5.0, method="RK45", rtol=1e-10, atol=1e-12, default_monitors=False, reduce=False)
    ref = solve_ivp(flow, (0.0, 5.0), x0, method="RK45", rtol=1e-10, atol=1e-12)
    assert run.stats.nfev == ref.nfev == run.stats.rhs_calls
    np.testing.assert_allclose(run.final, ref.y[:, -1], rtol=1e-9, atol=1e-12)


def peak_bytes(fn) -> int:
    """Peak memory numpy allocates during fn(), above what was held before."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def test_the_hot_path_allocates_only_the_new_state():
    problem = MatrixFactorization.random(m=300, n=200, rank=4, width=10, seed=0)
    flow = GradientFlow(problem)
    x = init.gaussian(problem, 0.1, seed=1)
    out = np.empty_like(x)
    flow(0.0, x, out=out)  # the first call makes the gradient's workspace
    # into a buffer, the right-hand side allocates nothing the size of a factor
    assert peak_bytes(lambda: flow(0.0, x, out=out)) < 0.1 * x.nbytes
    for method in (RK45, DOP853):
        solver = IN_PLACE[method](flow, 0.0, x, 100.0, rtol=1e-8, atol=1e-12,
                                  into=lambda t, y, out: flow(t, y, out=out))
        solver.step()
        # a step keeps y_new (the old state stays with the previous step's interpolant); scipy's
        # own step allocates 5-6 states' worth of temporaries
        assert x.nbytes <= peak_bytes(solver.step) < 1.3 * x.nbytes


@pytest.mark.parametrize("q", [None, 1, 2])
@pytest.mark.parametrize("n", [50, 3000])  # np.dot below GEMM_FROM, BLAS gemm above
def test_combine_writes_the_weighted_sum_of_rows_in_place(q, n):
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((9, n))[2:7]  # a slice of a larger stage buffer
    coef = rng.standard_normal(5 if q is None else (5, q))
    out = np.empty(n if q is None else (q, n))
    assert combine(coef, rows, out) is out
    np.testing.assert_allclose(out, coef.T @ rows, rtol=1e-13, atol=1e-13)


class NaNAfter:
    """The gradient flow, except that from t = 1 on the right-hand side of one member is NaN."""

    def __init__(self, problem, member=0):
        self.problem, self.flow, self.member = problem, GradientFlow(problem), member

    def __call__(self, t, x, out=None):
        out = self.flow(t, x, out=out)
        if t > 1:
            (out if out.ndim == 1 else out[self.member])[...] = np.nan
        return out

    jac = None

    def monitors(self):
        return {}

    def describe(self):
        return {"flow": "NaNAfter"}


@pytest.mark.parametrize("method", ["RK23", "RK45", "DOP853"])
@pytest.mark.parametrize("batch", [False, True])
def test_a_nan_right_hand_side_fails_the_solve_where_it_starts(problem, method, batch):
    """A NaN error estimate rejects the step (as in scipy), even for one member of a batch."""
    x0 = init.gaussian(problem, 0.3, seed=1)
    x0 = np.stack([x0, 2 * x0, 3 * x0]) if batch else x0
    with pytest.raises(IntegrationError, match=f"{method} failed at t = 1") as info:
        integrate(NaNAfter(problem, member=1), x0, 3.0, method=method, default_monitors=False)
    assert info.value.t_reached == pytest.approx(1.0, abs=1e-6)


def test_combine_refuses_an_output_it_cannot_write_in_place():
    rows, coef = np.ones((3, 4000)), np.ones(3)
    with pytest.raises(ValueError, match="output array is not acceptable"):
        combine(coef, rows, np.empty((4000, 2))[:, 0])


def test_complex_states_are_refused(problem):
    x0 = init.gaussian(problem, 0.3, seed=1).astype(complex)
    with pytest.raises(TypeError, match="y0 must be real"):
        IN_PLACE[RK45](lambda t, y: y, 0.0, x0, 1.0, into=lambda t, y, out: None)


class Overflowing(NaNAfter):
    """A huge constant right-hand side: every stage agrees, so the error estimate is zero and the
    steps grow tenfold, until the state overflows to inf without a NaN anywhere in the estimate."""

    def __call__(self, t, x, out=None):
        out = np.empty(np.shape(x)) if out is None else out
        out[...] = 1e300
        return out


@pytest.mark.parametrize("method", ["RK23", "RK45"])  # DOP853's squared norms overflow first: rejection
@pytest.mark.filterwarnings("ignore:invalid value encountered in scalar divide:RuntimeWarning")  # scipy's first step
def test_a_state_that_overflows_fails_the_solve(problem, method):
    with pytest.raises(IntegrationError, match="the state became non-finite") as info, np.errstate(over="ignore"):
        integrate(Overflowing(problem), init.gaussian(problem, 0.3, seed=1), 1e12, method=method, default_monitors=False)
    assert 1e7 < info.value.t_reached < 1e9  # 1 + 10³⁰⁰·t overflows at t ≈ 1.8·10⁸
    assert np.isfinite(info.value.partial.x).all()


@pytest.mark.parametrize("method", METHODS, ids=lambda c: c.__name__)
def test_every_window_reads_only_stages_already_computed(problem, method):
    """A stage sum must not touch a row its attempt has not written yet: 0 · (a NaN left over from a
    rejected attempt) is NaN. DOP853's reordered buffer also has to read fewer rows than y + K."""
    flow = GradientFlow(problem)
    x0 = init.gaussian(problem, 0.3, seed=1)
    solver = IN_PLACE[method](flow, 0.0, x0, 1.0, into=lambda t, y, out: flow(t, y, out=out))
    solver.step()
    solver.dense_output()
    order = sorted(solver._where, key=solver._where.get)  # the label of each buffer row
    windows = [*enumerate(solver._layout.stage_sums, start=1), (solver.n_stages, solver._new_sum)]
    if method is DOP853:  # its error estimate comes with y_new, in the same window
        assert solver._err_sum is None
        assert sum(w[0].stop - w[0].start for _, w in windows) == 74  # 103 for y + K in stage order
        windows += list(enumerate(rk._dense_windows(type(solver), len(solver._k))[0], start=solver.n_stages + 1))
    else:
        windows.append((solver.n_stages + 1, solver._err_sum))
    for i, (rows, _, _) in windows:
        assert all(j == "y" or j < i for j in order[rows])
