"""Exact subspace reduction: reduced runs against full ones, what is (not) reduced and why, and reduced
trajectories that behave like full ones (states, factors, dense output, files, monitors, memory)."""

import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgflow.flows import (DiscretizationError, FixedPerturbation, FunctionPerturbation, GradientFlow,
                          MatrixFactorization, MatrixSensing, ModifiedFlow, PerturbedGradientFlow, RandomPerturbation,
                          ScaledGradientFlow, SymmetricFactorization, Trajectory, gradient_descent, init, integrate,
                          integrate_piecewise, loss_below, monitors)
from pgflow.flows.reduction import LEAK_RTOL, leakage, plan, span_bases

GRID = np.linspace(0.0, 12.0, 25)
TIGHT = dict(method="DOP853", rtol=1e-13, atol=1e-18, t_eval=GRID)


@pytest.fixture(scope="module")
def problem():
    return MatrixFactorization.random(m=40, n=30, rank=2, width=3, condition=3.0, seed=0)


@pytest.fixture(scope="module")
def x0(problem):
    return init.gaussian(problem, 1e-2, seed=1)


def relative(a, b) -> float:
    """Largest ‖a_i − b_i‖ / ‖b_i‖ over saved states."""
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.linalg.norm(a - b, axis=-1) / np.linalg.norm(b, axis=-1)))


def in_spans(problem, x0, seed=7, scale=0.05):
    """A residual-form E = Q_U A Q_Vᵀ inside both spans."""
    Q_U, Q_V = span_bases(problem, x0).matrices
    A = np.random.default_rng(seed).standard_normal((Q_U.shape[1], Q_V.shape[1]))
    return scale * Q_U @ A @ Q_V.T


def test_reduced_gradient_flow_is_the_full_one_at_tight_tolerance(problem, x0):
    reduced = integrate(GradientFlow(problem), x0, GRID[-1], **TIGHT)
    full = integrate(GradientFlow(problem), x0, GRID[-1], **TIGHT, reduce=False)
    assert reduced.meta["reduced"] and not full.meta["reduced"]
    assert reduced.meta["reduced_dim"] == 2 * (3 + 2) * 3 and reduced.meta["full_dim"] == problem.dim == 210
    assert reduced.meta["reduction_reason"].startswith("exact") and full.meta["reduction_reason"] == "reduce=False"
    assert full.meta["reduced_dim"] is None
    assert relative(reduced.x, full.x) < 1e-12
    for name in full.monitors:
        np.testing.assert_allclose(reduced.monitors[name], full.monitors[name], rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("variant", ["simultaneous", "alternating", "scaled"])
def test_reduced_gd_is_the_full_gd_over_2000_steps(variant):
    # width = rank for ScaledGD, whose preconditioners need full-rank factors all along
    width = 2 if variant == "scaled" else 3
    p = MatrixFactorization.random(m=30, n=25, rank=2, width=width, condition=2.0, seed=3)
    x0 = init.gaussian(p, 0.1, seed=4)
    eta = 0.2 / p.target.sigma[0]
    reduced = gradient_descent(p, x0, eta, 2000, variant=variant, save_every=1)
    full = gradient_descent(p, x0, eta, 2000, variant=variant, save_every=1, reduce=False)
    assert reduced.meta["reduced"] and reduced.stats.nfev == full.stats.nfev
    assert relative(reduced.x, full.x) < 1e-13
    assert reduced.dynamics == full.dynamics


def test_reduced_symmetric_gd_and_flow_are_the_full_ones():
    s = SymmetricFactorization.random(m=30, rank=2, width=3, condition=2.0, seed=5)
    x0 = init.gaussian(s, 0.1, seed=6)
    reduced = gradient_descent(s, x0, 0.1, 2000, save_every=1)
    full = gradient_descent(s, x0, 0.1, 2000, save_every=1, reduce=False)
    assert reduced.meta["reduced_dim"] == (3 + 2) * 3 and relative(reduced.x, full.x) < 1e-13
    a = integrate(GradientFlow(s), x0, GRID[-1], **TIGHT)
    b = integrate(GradientFlow(s), x0, GRID[-1], **TIGHT, reduce=False)
    assert a.meta["reduced"] and relative(a.x, b.x) < 1e-12


def test_scaled_and_modified_flows_are_reduced_exactly(problem, x0):
    for flow in (ScaledGradientFlow(problem), ModifiedFlow(problem, 0.1, "alternating")):
        a = integrate(flow, x0 + 0.3, 3.0, method="DOP853", rtol=1e-12, atol=1e-16, t_eval=GRID[:7])
        b = integrate(flow, x0 + 0.3, 3.0, method="DOP853", rtol=1e-12, atol=1e-16, t_eval=GRID[:7], reduce=False)
        # two solves at rtol 1e-12 (their error norms run over different entries): equal to their accuracy
        assert a.meta["reduced"] and relative(a.x, b.x) < 1e-9
        assert a.dynamics == b.dynamics and a.meta["flow"] == b.meta["flow"]


def test_sensing_is_never_reduced_and_reduce_true_says_why():
    s = MatrixSensing.random(m=10, n=8, rank=2, width=2, n_measurements=60, seed=0)
    x0 = init.gaussian(s, 0.1, seed=1)
    run = integrate(GradientFlow(s), x0, 1.0)
    assert run.meta["reduced"] is False and run.meta["reduced_dim"] is None
    assert "MatrixSensing" in run.meta["reduction_reason"] and "mixes every direction" in run.meta["reduction_reason"]
    with pytest.raises(ValueError, match=r"reduce=True, but this run cannot be reduced: the problem is a MatrixSensing"):
        integrate(GradientFlow(s), x0, 1.0, reduce=True)
    with pytest.raises(ValueError, match=r"reduce=True, but this run cannot be reduced"):
        gradient_descent(s, x0, 0.01, 3, reduce=True)
    assert gradient_descent(s, x0, 0.01, 3).meta["reduced"] is False


def test_nothing_to_gain_and_bad_values_of_reduce():
    p = MatrixFactorization.random(m=6, n=5, rank=2, width=3, seed=0)
    run = integrate(GradientFlow(p), init.gaussian(p, 0.1, seed=1), 1.0)
    assert not run.meta["reduced"] and "is not below min(m, n) = 5" in run.meta["reduction_reason"]
    with pytest.raises(ValueError, match="reduce must be 'auto'"):
        integrate(GradientFlow(p), init.gaussian(p, 0.1, seed=1), 1.0, reduce="yes")
    plain = integrate(lambda t, y: -y, [1.0], 1.0)
    assert not plain.meta["reduced"] and "plain" in plain.meta["reduction_reason"]


def test_a_generic_perturbation_is_never_reduced(problem, x0):
    E = 0.01 * np.random.default_rng(0).standard_normal((40, 30))
    fixed = integrate(PerturbedGradientFlow(problem, FixedPerturbation(E)), x0, 2.0)
    assert not fixed.meta["reduced"] and "leaves the spans" in fixed.meta["reduction_reason"]
    varying = FunctionPerturbation(lambda t, x: np.cos(t) * E)
    run = integrate(PerturbedGradientFlow(problem, varying), x0, 2.0)
    assert not run.meta["reduced"] and "FunctionPerturbation leaves the spans" in run.meta["reduction_reason"]
    random = RandomPerturbation(problem, 0.1, 0.01, np.arange(0.0, 2.0, 0.5), seed=3)
    run = integrate_piecewise(PerturbedGradientFlow(problem, random), x0, 2.0)
    assert not run.meta["reduced"] and "RandomPerturbation" in run.meta["reduction_reason"]
    with pytest.raises(ValueError, match="RandomPerturbation points in random directions"):
        integrate_piecewise(PerturbedGradientFlow(problem, random), x0, 2.0, reduce=True)


def test_a_perturbation_inside_the_spans_is_reduced(problem, x0):
    E = in_spans(problem, x0)
    assert leakage(E, span_bases(problem, x0), "residual") < LEAK_RTOL
    for perturbation in (FixedPerturbation(E), FunctionPerturbation(lambda t, x: np.sin(t) * E)):
        flow = PerturbedGradientFlow(problem, perturbation)
        a = integrate(flow, x0, 6.0, **{**TIGHT, "t_eval": GRID[:13]})
        b = integrate(flow, x0, 6.0, **{**TIGHT, "t_eval": GRID[:13]}, reduce=False)
        assert a.meta["reduced"] and relative(a.x, b.x) < 1e-11
        np.testing.assert_allclose(a.monitors["perturbation_norm"], b.monitors["perturbation_norm"], rtol=1e-12)
        assert a.dynamics == b.dynamics
    gd = gradient_descent(problem, x0, 0.1, 300, perturbation=FixedPerturbation(E), save_every=1)
    full = gradient_descent(problem, x0, 0.1, 300, perturbation=FixedPerturbation(E), save_every=1, reduce=False)
    assert gd.meta["reduced"] and relative(gd.x, full.x) < 1e-13


def later_leak(problem, x0, t_leak):
    """A perturbation inside the spans before ``t_leak`` and with a generic part from there on."""
    inside = in_spans(problem, x0)
    outside = 0.01 * np.random.default_rng(5).standard_normal(problem.target.shape)
    return FunctionPerturbation(lambda t, x: inside + (t >= t_leak) * outside, name="later")


def test_a_perturbation_that_leaves_the_spans_later_is_solved_in_full(problem, x0):
    # inside the spans at the start, so planned reduced; the reduced run meets the leak at t ≥ 1 and the whole
    # run is solved in full instead: the same states as reduce=False, the time of the leak in the reason
    flow = PerturbedGradientFlow(problem, later_leak(problem, x0, 1.0))
    assert plan(flow, x0).reduced
    a = integrate(flow, x0, 3.0, method="DOP853", rtol=1e-10, atol=1e-14, t_eval=GRID[:7])
    b = integrate(flow, x0, 3.0, method="DOP853", rtol=1e-10, atol=1e-14, t_eval=GRID[:7], reduce=False)
    assert not a.meta["reduced"] and a.meta["reduced_dim"] is None
    reason = a.meta["reduction_reason"]
    assert reason.startswith("the perturbation FunctionPerturbation left the spans at t = ") and reason.endswith("solved in full")
    assert 1.0 <= float(reason.split("t = ")[1].split(":")[0]) <= 1.5
    np.testing.assert_array_equal(a.x, b.x)
    with pytest.raises(ValueError, match=r"reduce=True, but this run cannot be reduced: the perturbation FunctionPerturbation left"):
        integrate(flow, x0, 3.0, reduce=True)
    # GD (Euler on the flow: the leak shows at the first step with t ≥ 1) and the piecewise integrator
    gd = gradient_descent(problem, x0, 0.1, 20, perturbation=later_leak(problem, x0, 1.0), save_every=1)
    full = gradient_descent(problem, x0, 0.1, 20, perturbation=later_leak(problem, x0, 1.0), save_every=1,
                            reduce=False)
    assert not gd.meta["reduced"] and "left the spans at t = 1:" in gd.meta["reduction_reason"]
    np.testing.assert_array_equal(gd.x, full.x)
    pieces = integrate_piecewise(flow, x0, 3.0, t_eval=GRID[:7])
    assert not pieces.meta["reduced"] and "left the spans" in pieces.meta["reduction_reason"]
    # a leak below LEAK_RTOL is rounding, and the run stays reduced
    tiny = FunctionPerturbation(lambda t, x: in_spans(problem, x0) * (1 + 1e-3 * t), name="inside")
    assert integrate(PerturbedGradientFlow(problem, tiny), x0, 3.0).meta["reduced"]


def test_a_state_dependent_perturbation_inside_the_spans_stays_reduced_to_convergence():
    # E = 0.1(Σ − UVᵀ) lies in the spans exactly, and shrinks with the residual: near convergence the rounding
    # of the lifted state is a large fraction of ‖E‖ (1e-10 of it at t = 56), which is no leak
    p = MatrixFactorization.random(m=40, n=30, rank=2, width=3, seed=0)
    x0 = init.gaussian(p, 0.1, seed=1)

    def E(t, x):
        U, V = p.factors(x)
        return 0.1 * (p.target.dense() - U @ V.T)

    run = integrate(PerturbedGradientFlow(p, FunctionPerturbation(E)), x0, 80.0, rtol=1e-10, reduce=True)
    assert run.meta["reduced"] and run.monitors["loss"][-1] < 1e-14 * run.monitors["loss"][0]  # converged
    assert gradient_descent(p, x0, 0.05, 2000, perturbation=FunctionPerturbation(E), reduce=True).meta["reduced"]


def test_gd_as_a_piecewise_flow_is_reduced(problem, x0):
    eta = 0.05
    flow = PerturbedGradientFlow(problem, DiscretizationError(problem, eta), "additive")
    t = eta * np.arange(11)
    a = integrate_piecewise(flow, x0, t[-1], t_eval=t, rtol=1e-12, atol=1e-16, error_estimate=True)
    b = integrate_piecewise(flow, x0, t[-1], t_eval=t, rtol=1e-12, atol=1e-16, reduce=False)
    gd = gradient_descent(problem, x0, eta, 10, save_every=1, reduce=False)
    assert a.meta["reduced"] and a.meta["pieces"] == 10 and relative(a.x, b.x) < 1e-12
    assert relative(a.x, gd.x) < 1e-12
    assert np.max(a.error_estimate) < 1e-10 and a.error_estimate_of(problem.loss).shape == (11,)


@pytest.mark.parametrize("rank_deficient", ["zero columns", "inside span Phi", "zero V"])
def test_rank_deficient_starts_keep_the_reduced_size(problem, x0, rank_deficient):
    U, V = problem.unpack(x0.copy())
    if rank_deficient == "zero columns":
        U[:, 1:] = 0.0
    elif rank_deficient == "inside span Phi":
        U = problem.target.Phi @ np.random.default_rng(2).standard_normal((2, 3)) * 1e-2
    else:
        V = np.zeros_like(V)
    start = problem.pack(U, V)
    bases = span_bases(problem, start)
    for Q in bases.matrices:
        assert Q.shape[1] == 5
        np.testing.assert_allclose(Q.T @ Q, np.eye(5), atol=1e-14)
    np.testing.assert_allclose(bases.lift(bases.project(start)), start, rtol=0, atol=1e-16)
    a = integrate(GradientFlow(problem), start, GRID[-1], **TIGHT)
    b = integrate(GradientFlow(problem), start, GRID[-1], **TIGHT, reduce=False)
    assert a.meta["reduced_dim"] == 30 and np.allclose(a.x, b.x, rtol=0, atol=1e-12 * np.abs(b.x).max())


def test_a_reduced_trajectory_behaves_like_a_full_one(problem, x0, tmp_path):
    a = integrate(GradientFlow(problem), x0, GRID[-1], **TIGHT, dense_output=True)
    b = integrate(GradientFlow(problem), x0, GRID[-1], **TIGHT, dense_output=True, reduce=False)
    assert a.reduced is not None and b.reduced is None
    assert a.reduced.coordinates.shape == (25, 30) and a.x.shape == b.x.shape == (25, 210)
    np.testing.assert_array_equal(a.state(0), x0)  # the start itself, as in a full run (Q Qᵀx₀ only to rounding)
    np.testing.assert_array_equal(a.x[0], x0)
    np.testing.assert_array_equal(next(a.states()), x0)
    for i in (0, 7, -1):
        np.testing.assert_allclose(a.state(i), b.state(i), rtol=0, atol=1e-12)
        for F, G in zip(a.factors(i), b.factors(i)):
            np.testing.assert_allclose(F, G, rtol=0, atol=1e-12)
    assert a.factors(3)[0].shape == (40, 3) and a.factors(3)[1].shape == (30, 3)
    np.testing.assert_allclose(a.U, b.U, atol=1e-12)
    np.testing.assert_allclose(a.V, b.V, atol=1e-12)
    np.testing.assert_allclose(a.final, b.final, atol=1e-12)
    times = [0.3, 4.1, 11.9]
    np.testing.assert_allclose(a.at(times), b.at(times), atol=1e-10)
    assert a.at(2.0).shape == (210,)
    np.testing.assert_allclose(np.stack(list(a.states())), a.x)

    path = a.save(tmp_path / "reduced")
    with np.load(path) as data:
        assert "x" not in data.files and data["coordinates"].shape == (25, 30)
        assert data["basis/U"].shape == (40, 5) and data["basis/V"].shape == (30, 5)
    loaded = Trajectory.load(path)
    assert loaded.reduced is not None and loaded.meta["reduced"] is True and np.array_equal(loaded.state(0), x0)
    np.testing.assert_array_equal(loaded.x, a.x)
    for name in a.monitors:
        np.testing.assert_array_equal(loaded.monitors[name], a.monitors[name])
    old = Trajectory.load(b.save(tmp_path / "full"))  # a full run's file keeps the format it always had
    assert old.reduced is None and np.array_equal(old.x, b.x)


def test_reduced_gd_trajectory_interpolates_and_estimates_like_a_full_one(problem, x0):
    a = gradient_descent(problem, x0, 0.1, 50, save_every=5)
    b = gradient_descent(problem, x0, 0.1, 50, save_every=5, reduce=False)
    np.testing.assert_allclose(a.at([0.25, 3.33]), b.at([0.25, 3.33]), rtol=0, atol=1e-14)
    np.testing.assert_allclose(a.error_estimate, b.error_estimate, rtol=1e-12)
    assert a.error_estimate_of(problem.loss).shape == (11,)


def test_monitors_are_evaluated_reduced_and_equal_the_full_ones(problem, x0):
    own = {"loss_full": monitors.loss(problem), "first_entry": lambda t, x: x[0]}
    a = gradient_descent(problem, x0, 0.1, 200, save_every=10, monitors={**monitors.default(problem), **own})
    b = gradient_descent(problem, x0, 0.1, 200, save_every=10, reduce=False)
    for name in b.monitors:
        np.testing.assert_allclose(a.monitors[name], b.monitors[name], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(a.monitors["loss_full"], b.monitors["loss"], rtol=1e-12)
    np.testing.assert_allclose(a.monitors["first_entry"], b.x[:, 0], rtol=1e-12, atol=1e-16)
    default = gradient_descent(problem, x0, 0.1, 200, save_every=10)
    np.testing.assert_allclose(default.monitors["singular_values"], b.monitors["singular_values"], atol=1e-14)


def test_batches_events_callbacks_and_error_estimates_run_reduced(problem, x0):
    X0 = np.stack([x0, init.gaussian(problem, 1e-2, seed=9)])
    batch = integrate(GradientFlow(problem), X0, 6.0, t_eval=GRID[:13], rtol=1e-10)
    assert all(run.meta["reduced"] for run in batch) and batch[1].meta["member"] == 1
    for b, run in enumerate(batch):
        alone = integrate(GradientFlow(problem), X0[b], 6.0, t_eval=GRID[:13], rtol=1e-10, reduce=False)
        assert relative(run.x, alone.x) < 1e-7
    gd = gradient_descent(problem, X0, 0.1, 40, save_every=10)
    gd_full = gradient_descent(problem, X0, 0.1, 40, save_every=10, reduce=False)
    for run, full in zip(gd, gd_full):
        assert run.meta["reduced"] and relative(run.x, full.x) < 1e-13

    seen = []
    stop = loss_below(problem, 1e-3)
    run = integrate(GradientFlow(problem), x0, 50.0, events=stop, callback=lambda t, x: seen.append(x.shape))
    full = integrate(GradientFlow(problem), x0, 50.0, events=stop, reduce=False)
    assert run.meta["reduced"] and set(seen) == {(210,)}
    key = stop.key
    np.testing.assert_allclose(run.events[key], full.events[key], rtol=1e-6)
    assert run.event_states[key].shape == (1, 210)
    assert problem.loss(run.event_states[key][0]) == pytest.approx(1e-3, rel=1e-6)

    est = integrate(GradientFlow(problem), x0, 6.0, t_eval=GRID[:13], rtol=1e-7, error_estimate=True)
    ref = integrate(GradientFlow(problem), x0, 6.0, t_eval=GRID[:13], rtol=1e-13, atol=1e-18, reduce=False)
    true_error = np.linalg.norm(est.x - ref.x, axis=1)
    assert est.meta["reduced"] and np.all(est.error_estimate <= 2 * true_error + 1e-14)
    assert np.all(est.error_estimate >= 0.5 * true_error - 1e-14)
    assert est.error_estimate_of(problem.loss).shape == (13,)


def test_default_gd_saves_a_bounded_record():
    p = MatrixFactorization.random(m=20, n=20, rank=3, width=5, seed=0)
    gd = gradient_descent(p, init.gaussian(p, 1e-3, seed=1), 0.01, 4321)
    assert gd.meta["save_every"] == 5 and len(gd.t) == 866 and gd.t[-1] == pytest.approx(43.21)
    assert len(gradient_descent(p, init.gaussian(p, 1e-3, seed=1), 0.01, 999).t) == 1000


def test_a_large_reduced_run_never_holds_every_full_state(tmp_path):
    """m = n = 3000, 1001 saved states: as full states they would take 1001 × 18,000 × 8 B = 144 MB."""
    p = MatrixFactorization.random(m=3000, n=3000, rank=2, width=3, seed=0)
    x0 = init.gaussian(p, 1e-3, seed=1)
    tracemalloc.start()
    try:
        gd = gradient_descent(p, x0, 0.1, 2000)
        run = integrate(GradientFlow(p), x0, 20.0, t_eval=np.linspace(0, 20, 201), rtol=1e-6)
        kept = (gd.final, run.final, gd.factors(500), gd.save(tmp_path / "gd"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert gd.meta["reduced"] and run.meta["reduced"] and len(gd.t) == 1001 and gd.meta["save_every"] == 2
    assert peak < 15e6 and kept[0].shape == (18000,) and kept[2][0].shape == (3000, 3)
    assert run.monitors["loss"][-1] < 1e-3 * run.monitors["loss"][0]


@given(m=st.integers(4, 9), n=st.integers(4, 9), rank=st.integers(1, 2), width=st.integers(1, 2),
       seed=st.integers(0, 10**6), symmetric=st.booleans())
@settings(max_examples=25, deadline=None)
def test_reduced_runs_are_full_runs_for_any_shape(m, n, rank, width, seed, symmetric):
    if symmetric:
        p = SymmetricFactorization.random(m=m, rank=rank, width=width, condition=2.0, seed=seed)
    else:
        p = MatrixFactorization.random(m=m, n=n, rank=rank, width=width, condition=2.0, seed=seed)
    x0 = init.gaussian(p, 0.3, seed=seed + 1)
    assert plan(GradientFlow(p), x0).reduced == (width + rank < min(p.target.shape))
    a = gradient_descent(p, x0, 0.05, 60, save_every=1)
    b = gradient_descent(p, x0, 0.05, 60, save_every=1, reduce=False)
    assert a.meta["reduced"] == (width + rank < min(p.target.shape))
    np.testing.assert_allclose(a.x, b.x, rtol=0, atol=1e-13 * np.abs(b.x).max())
