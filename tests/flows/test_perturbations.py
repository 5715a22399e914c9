"""The perturbed gradient flow, its perturbation models, and GD with perturbations."""

import json

import numpy as np
import pytest

from pgflow.flows import (DivergenceError, GradientFlow, MatrixFactorization, SymmetricFactorization, gradient_descent,
                          init, integrate)
from pgflow.flows.descent import minibatch_gradient_descent
from pgflow.flows.dynamics import PerturbedGradientFlow
from pgflow.flows.perturbations import (DIRECTIONS_KEPT, DiscretizationError, FixedPerturbation, FunctionPerturbation,
                                        MinibatchSensingError, RandomPerturbation, SensingError, measurement_noise)
from pgflow.flows.piecewise import integrate_piecewise
from pgflow.flows.seeds import batch_indices, child_rng
from pgflow.flows.sensing import MatrixSensing

RTOL, ATOL = 1e-10, 1e-13


@pytest.fixture(scope="module")
def fact():
    return MatrixFactorization.random(8, 6, 2, 3, condition=2.0, seed=0)


@pytest.fixture(scope="module")
def sens():
    return MatrixSensing.random(8, 6, 2, 3, 60, condition=2.0, noise=0.05, seed=0)


def models(problem, sensing=None):
    """Every perturbation model, residual form, on ``problem`` (the sensing ones need ``sensing``)."""
    m, n = problem.target.shape
    E0 = np.random.default_rng(5).standard_normal((m, n))
    grid = np.linspace(0.0, 3.0, 7)
    out = {"fixed": FixedPerturbation(0.1 * E0),
           "function_of_t": FunctionPerturbation(lambda t, x: 0.1 * np.sin(t) * E0, state_dependent=False),
           "function_of_state": FunctionPerturbation(lambda t, x: 0.1 * np.tanh(x[0]) * E0),
           "random_op": RandomPerturbation(problem, 0.3, 0.01, grid, seed=1, norm="op"),
           "random_fro": RandomPerturbation(problem, 0.3, 0.01, grid, seed=2, norm="fro")}
    if sensing is not None:
        out.update({"sensing": SensingError(sensing), "sensing_noisy": SensingError(sensing, noise=True),
                    "noise": measurement_noise(sensing),
                    "minibatch": MinibatchSensingError(sensing, 20, grid, seed=3, noise=True)})
    return out


def imbalance_rate(flow, x):
    """d/dt (UᵀU − VᵀV) along the flow at x."""
    p = flow.problem
    U, V = p.unpack(x)
    dU, dV = p.unpack(flow(0.7, x))
    return U.T @ dU + dU.T @ U - V.T @ dV - dV.T @ V


def test_zero_perturbation_reproduces_gradient_flow_exactly(fact):
    x0 = init.gaussian(fact, 0.2, seed=1)
    t = np.linspace(0, 5, 11)
    gf = integrate(GradientFlow(fact), x0, 5.0, t_eval=t, rtol=RTOL, atol=ATOL)
    for form, zero in (("residual", np.zeros(fact.target.shape)), ("additive", np.zeros(fact.dim))):
        run = integrate(PerturbedGradientFlow(fact, FixedPerturbation(zero), form), x0, 5.0, t_eval=t,
                        rtol=RTOL, atol=ATOL)
        np.testing.assert_array_equal(run.x, gf.x)
        assert np.all(run.monitors["perturbation_norm"] == 0)
    for method in ("Radau", "BDF"):  # the analytic Jacobian with E = 0 is GF's
        a = integrate(GradientFlow(fact), x0, 2.0, method=method, t_eval=[2.0])
        b = integrate(PerturbedGradientFlow(fact, FixedPerturbation(np.zeros(fact.dim)), "additive"), x0, 2.0,
                      method=method, t_eval=[2.0])
        assert b.meta["jacobian"] == "analytic"
        np.testing.assert_array_equal(a.x, b.x)


@pytest.mark.parametrize("noise", [False, True])
def test_residual_pgf_with_the_sensing_error_is_the_sensing_flow(sens, noise):
    clean = MatrixSensing(sens.target, sens.operator, sens.width,
                          measurements=sens.measurements - sens.noise_vector)
    problem = sens if noise else clean
    base = MatrixFactorization(sens.target, sens.width)
    x0 = init.gaussian(base, 1e-3, seed=2)
    t = np.linspace(0, 20, 21)
    gf = integrate(GradientFlow(problem), x0, 20.0, t_eval=t, rtol=RTOL, atol=ATOL)
    pgf = integrate(PerturbedGradientFlow(base, SensingError(sens, noise=noise)), x0, 20.0, t_eval=t,
                    rtol=RTOL, atol=ATOL)
    scale = np.abs(gf.x).max()
    difference = np.abs(pgf.x - gf.x).max() / scale
    assert difference < 1e-8
    # the run did move: the states differ from the start by far more than the agreement
    assert np.abs(gf.x[-1] - x0).max() / scale > 1e4 * difference
    np.testing.assert_allclose(pgf.monitors["loss"], [base.loss(x) for x in gf.x], rtol=1e-6)


@pytest.mark.parametrize("name", ["fixed", "function_of_t", "function_of_state", "random_op", "random_fro",
                                  "sensing", "sensing_noisy", "noise", "minibatch"])
def test_residual_form_conserves_the_imbalance(fact, sens, name):
    base = MatrixFactorization(sens.target, sens.width)
    perturbation = models(base, sens)[name]
    flow = PerturbedGradientFlow(base, perturbation)
    rng = np.random.default_rng(0)
    for x in rng.standard_normal((3, base.dim)):
        assert np.abs(imbalance_rate(flow, x)).max() < 1e-12 * np.abs(flow(0.7, x)).max() * np.abs(x).max()
    x0 = init.gaussian(base, 0.3, seed=4)
    run = integrate_piecewise(flow, x0, 3.0, t_eval=np.linspace(0, 3, 7), rtol=RTOL, atol=ATOL)
    drift = np.ptp(run.monitors["imbalance_fro"])
    assert drift < 1e-8, drift
    assert np.all(np.isfinite(run.monitors["perturbation_norm"]))


def test_additive_form_does_not_conserve_the_imbalance(fact):
    grid = np.linspace(0.0, 3.0, 7)
    flow = PerturbedGradientFlow(fact, RandomPerturbation(fact, 0.3, 0.05, grid, seed=1, norm="fro",
                                                          form="additive"), form="additive")
    x = np.random.default_rng(0).standard_normal(fact.dim)
    assert np.abs(imbalance_rate(flow, x)).max() > 1e-3
    run = integrate_piecewise(flow, init.gaussian(fact, 0.3, seed=4), 3.0, t_eval=grid, rtol=RTOL, atol=ATOL)
    assert np.ptp(run.monitors["imbalance_fro"]) > 1e-3


@pytest.mark.parametrize("eta", [0.05, 0.2])
def test_gd_is_the_additive_pgf_with_the_discretization_error(fact, eta):
    x0 = init.gaussian(fact, 0.3, seed=1)
    n_steps = 40
    gd = gradient_descent(fact, x0, eta, n_steps)
    flow = PerturbedGradientFlow(fact, DiscretizationError(fact, eta), form="additive")
    run = integrate_piecewise(flow, x0, n_steps * eta, t_eval=gd.t, first_step=eta, rtol=RTOL, atol=ATOL,
                              dense_output=True)
    assert run.meta["pieces"] == n_steps
    np.testing.assert_array_equal(run.t, gd.t)
    assert np.abs(run.x - gd.x).max() <= 20 * np.finfo(float).eps * np.abs(gd.x).max()
    # between the iterates it is GD's piecewise-linear interpolant
    mid = gd.t[:-1] + 0.37 * eta
    np.testing.assert_allclose(run.at(mid), gd.at(mid), rtol=1e-13, atol=1e-14)
    # GD changes the imbalance; so does its embedding
    assert np.ptp(gd.monitors["imbalance_fro"]) > 1e-4
    np.testing.assert_allclose(run.monitors["imbalance_fro"], gd.monitors["imbalance_fro"], rtol=1e-12)
    # e(kη) = 0 at the start of each piece, and grows along it
    assert run.monitors["perturbation_norm"][0] == 0 and np.all(run.monitors["perturbation_norm"][1:] > 0)


def test_discretization_error_only_works_piece_by_piece(fact):
    flow = PerturbedGradientFlow(fact, DiscretizationError(fact, 0.1), form="additive")
    with pytest.raises(TypeError, match="integrate_piecewise"):
        integrate(flow, init.gaussian(fact, 0.3, seed=1), 1.0)
    with pytest.raises(TypeError, match="integrate_piecewise"):
        gradient_descent(fact, init.gaussian(fact, 0.3, seed=1), 0.1, 3, perturbation=DiscretizationError(fact, 0.1),
                         perturbation_form="additive")


def test_gd_on_the_factorization_with_the_sensing_error_is_sensing_gd(sens):
    base = MatrixFactorization(sens.target, sens.width)
    x0 = init.gaussian(base, 0.1, seed=3)
    a = gradient_descent(sens, x0, 0.1, 100, save_every=10)
    b = gradient_descent(base, x0, 0.1, 100, save_every=10, perturbation=SensingError(sens, noise=True))
    np.testing.assert_allclose(b.x, a.x, rtol=0, atol=1e-12 * np.abs(a.x).max())
    assert b.dynamics.kind == "gd" and b.dynamics.form == "residual" and b.dynamics.perturbed
    assert np.all(b.monitors["perturbation_norm"] > 0) and "perturbation_bound" not in b.monitors  # none claimed


def test_minibatch_gd_is_gd_with_the_minibatch_sensing_error(sens):
    base = MatrixFactorization(sens.target, sens.width)
    x0 = init.gaussian(base, 0.1, seed=3)
    eta, n_steps = 0.05, 60
    mb = minibatch_gradient_descent(sens, x0, eta, n_steps, batch_size=20, seed=11, save_every=5)
    grid = eta * np.arange(n_steps + 1)
    pgd = gradient_descent(base, x0, eta, n_steps, save_every=5,
                           perturbation=MinibatchSensingError(sens, 20, grid, seed=11, noise=True))
    np.testing.assert_allclose(pgd.x, mb.x, rtol=0, atol=1e-12 * np.abs(mb.x).max())
    full = gradient_descent(sens, x0, eta, n_steps, save_every=5)
    assert np.abs(full.x[-1] - mb.x[-1]).max() > 1e-3  # the batches did make a difference
    again = minibatch_gradient_descent(sens, x0, eta, n_steps, batch_size=20, seed=11, save_every=5)
    np.testing.assert_array_equal(again.x, mb.x)
    assert mb.meta["minibatch_size"] == 20 and mb.meta["minibatch_seed"] == 11
    assert mb.dynamics.variant == "minibatch"


def test_minibatch_gd_recovers_the_target():
    p = MatrixSensing.random(12, 12, 2, 4, 200, singular_values=[2.0, 1.0], seed=0)
    x0 = init.gaussian(p, 1e-4, seed=1)
    run = minibatch_gradient_descent(p, x0, 0.05, 1500, batch_size=100, seed=2, save_every=500)
    # without noise every batch shares the minimizer X*, so mini-batch GD still converges to it
    assert run.monitors["distance"][-1] / p.target.frobenius_norm < 1e-3


def test_random_perturbation_is_reproducible_piecewise_constant_and_sized(fact):
    grid = np.array([0.0, 1.0, 2.0])
    rp = RandomPerturbation(fact, 0.5, 0.1, grid, seed=7, norm="op")
    x = init.gaussian(fact, 0.5, seed=0)
    U, V = fact.unpack(x)
    size = rp.bound(0.0, x)
    assert size == pytest.approx(0.5 * np.linalg.norm(fact.target.dense() - U @ V.T, 2) + 0.1, rel=1e-12)
    for t in (-1.0, 0.0, 0.5, 0.999):
        np.testing.assert_array_equal(rp(t, x), rp(0.0, x))
    assert not np.allclose(rp(1.0, x), rp(0.0, x)) and not np.allclose(rp(5.0, x), rp(1.5, x))
    assert np.linalg.norm(rp(1.5, x), 2) == pytest.approx(size, rel=1e-12)
    same = RandomPerturbation(fact, 0.5, 0.1, grid, seed=7, norm="op")
    np.testing.assert_array_equal(same(1.5, x), rp(1.5, x))
    # piece j's direction comes from child j of SeedSequence(seed), whatever was drawn before
    children = np.random.SeedSequence(7).spawn(3)
    np.testing.assert_array_equal(child_rng(7, 2).standard_normal(4),
                                  np.random.default_rng(children[2]).standard_normal(4))
    fro = RandomPerturbation(fact, 0.5, 0.1, grid, seed=7, norm="fro")
    assert np.linalg.norm(fro(0.0, x)) == pytest.approx(0.5 * fact.residual_norm(x) + 0.1, rel=1e-12)
    assert rp.state_dependent and not RandomPerturbation(fact, 0.0, 0.1, grid, seed=7).state_dependent


@pytest.mark.parametrize("norm, form", [("op", "residual"), ("fro", "residual"), ("fro", "additive")])
def test_random_directions_do_not_depend_on_the_visits_and_few_are_kept(fact, norm, form):
    """Piece j's direction is child j's Gaussian, normalized, however the pieces are visited; the
    perturbation keeps at most DIRECTIONS_KEPT of them."""
    J = 40
    shape = fact.target.shape if form == "residual" else (fact.dim,)
    expected = []
    for j in range(J):
        G = child_rng(7, j).standard_normal(shape)
        expected.append(G / (np.linalg.norm(G, 2) if norm == "op" else np.linalg.norm(G)))
    rng = np.random.default_rng(0)
    orders = {"forward": range(J), "backward": range(J - 1, -1, -1),
              "revisits": [i for j in range(J) for i in (j, max(j - 1, 0), j)],
              "scattered": rng.integers(0, J, 3 * J)}
    for name, order in orders.items():
        rp = RandomPerturbation(fact, 0.5, 0.1, np.arange(float(J)), seed=7, norm=norm, form=form)
        for j in order:
            np.testing.assert_array_equal(rp.direction(j), expected[j], err_msg=f"{name}, piece {j}")
            assert len(rp._directions) <= DIRECTIONS_KEPT, name
        assert len(rp._directions) == DIRECTIONS_KEPT
    with pytest.raises(ValueError, match="read-only"):
        rp.direction(0)[0] = 1.0


def test_piecewise_and_plain_integration_agree_on_a_random_perturbation(fact):
    grid = np.linspace(0.0, 2.0, 5)
    flow = PerturbedGradientFlow(fact, RandomPerturbation(fact, 0.2, 0.02, grid, seed=1))
    x0 = init.gaussian(fact, 0.3, seed=4)
    a = integrate_piecewise(flow, x0, 2.0, t_eval=grid, rtol=RTOL, atol=ATOL)
    b = integrate(flow, x0, 2.0, t_eval=grid, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(a.x, b.x, atol=1e-8 * np.abs(a.x).max())
    assert a.stats.nfev < b.stats.nfev  # restarting at the jumps is cheaper than stepping across them
    np.testing.assert_allclose(a.monitors["perturbation_norm"], a.monitors["perturbation_bound"], rtol=1e-12)
    free = integrate_piecewise(flow, x0, 2.0, rtol=RTOL, atol=ATOL, dense_output=True)
    assert np.all(np.diff(free.t) > 0) and free.t[-1] == 2.0 and set(grid) <= set(free.t)
    np.testing.assert_allclose(free.at(grid), a.x, atol=1e-7 * np.abs(a.x).max())


def test_piecewise_integration_keeps_events_and_statistics(fact):
    from pgflow.flows import loss_below
    grid = np.linspace(0.0, 20.0, 5)
    flow = PerturbedGradientFlow(fact, RandomPerturbation(fact, 0.1, 0.0, grid, seed=1))
    x0 = init.gaussian(fact, 0.3, seed=4)
    run = integrate_piecewise(flow, x0, 20.0, events=[loss_below(fact, 1e-3)], rtol=RTOL, atol=ATOL)
    stop = run.stats.stopped_at
    assert run.t[-1] == pytest.approx(stop) and run.monitors["loss"][-1] == pytest.approx(1e-3, rel=1e-5)
    assert run.events["loss_below_0.001"] == (stop,)
    assert run.meta["pieces"] < 5 and run.stats.nfev > 0
    json.dumps(run.meta)


def test_analytic_jacobian_for_state_independent_perturbations(fact):
    m, n = fact.target.shape
    E0 = np.random.default_rng(1).standard_normal((m, n))
    x = np.random.default_rng(2).standard_normal(fact.dim)
    h = 1e-6
    for form, E in (("residual", FunctionPerturbation(lambda t, x: np.cos(t) * E0, state_dependent=False)),
                    ("additive", FixedPerturbation(np.ones(fact.dim)))):
        flow = PerturbedGradientFlow(fact, E, form)
        fd = np.column_stack([(flow(0.3, x + h * e) - flow(0.3, x - h * e)) / (2 * h) for e in np.eye(fact.dim)])
        np.testing.assert_allclose(flow.jac(0.3, x), fd, atol=1e-7 * np.abs(fd).max())
    assert PerturbedGradientFlow(fact, RandomPerturbation(fact, 0.1, 0.0, [0.0], seed=0)).jac is None
    flow = PerturbedGradientFlow(fact, FixedPerturbation(0.1 * E0))
    x0 = init.gaussian(fact, 0.3, seed=4)
    a = integrate(flow, x0, 3.0, method="Radau", t_eval=[3.0], rtol=1e-9, atol=1e-12)
    b = integrate(flow, x0, 3.0, t_eval=[3.0], rtol=1e-11, atol=1e-13)
    assert a.meta["jacobian"] == "analytic"
    np.testing.assert_allclose(a.x, b.x, atol=1e-7)


def test_batched_right_hand_side(fact):
    flow = PerturbedGradientFlow(fact, RandomPerturbation(fact, 0.2, 0.02, [0.0, 1.0], seed=1))
    X = np.random.default_rng(0).standard_normal((3, fact.dim))
    np.testing.assert_array_equal(flow(0.5, X)[1], flow(0.5, X[1]))


def test_fixed_perturbation_in_gd_records_its_size(fact):
    E0 = np.full(fact.target.shape, 0.01)
    run = gradient_descent(fact, init.gaussian(fact, 0.3, seed=1), 0.1, 20, perturbation=FixedPerturbation(E0))
    np.testing.assert_allclose(run.monitors["perturbation_norm"], np.linalg.norm(E0), rtol=1e-14)
    np.testing.assert_allclose(run.monitors["perturbation_bound"], np.linalg.norm(E0), rtol=1e-14)
    assert run.dynamics.perturbation["perturbation"] == "fixed"
    # the GD step is Euler on the perturbed flow
    x0 = init.gaussian(fact, 0.3, seed=1)
    flow = PerturbedGradientFlow(fact, FixedPerturbation(E0))
    np.testing.assert_allclose(run.x[1], x0 + 0.1 * flow(0.0, x0), rtol=1e-15, atol=1e-16)


def test_batch_indices_are_distinct_and_indexed():
    a = batch_indices(3, 5, 100, 30)
    assert len(set(a.tolist())) == 30 and a.max() < 100
    np.testing.assert_array_equal(a, batch_indices(3, 5, 100, 30))
    assert not np.array_equal(a, batch_indices(3, 6, 100, 30))


@pytest.mark.parametrize("call, message", [
    (lambda p: RandomPerturbation(p, -0.1, 0.0, [0.0], seed=0), "rho must be non-negative"),
    (lambda p: RandomPerturbation(p, 0.1, -1.0, [0.0], seed=0), "xi0 must be non-negative"),
    (lambda p: RandomPerturbation(p, 0.1, 0.0, [0.0], seed=None), "seed is required"),
    (lambda p: RandomPerturbation(p, 0.1, 0.0, [0.0], seed=np.random.default_rng(0)), "Generator cannot be used"),
    (lambda p: RandomPerturbation(p, 0.1, 0.0, [1.0, 0.0], seed=0), "strictly increasing"),
    (lambda p: RandomPerturbation(p, 0.1, 0.0, [0.0], seed=0, norm="nuc"), "norm must be one of"),
    (lambda p: RandomPerturbation(p, 0.1, 0.0, [0.0], seed=0, form="additive"), "use norm='fro'"),
    (lambda p: RandomPerturbation(p, 0.1, 0.0, [0.0], seed=0, form="mixed"), "form must be one of"),
    (lambda p: PerturbedGradientFlow(p, FixedPerturbation(np.zeros((8, 6))), form="mixed"), "form must be one of"),
    (lambda p: PerturbedGradientFlow(p, np.zeros((8, 6))), "perturbation must be callable"),
    (lambda p: PerturbedGradientFlow(p, FixedPerturbation(np.zeros(5)))(0.0, np.zeros(p.dim)),
     r"returned shape \(5,\); the residual form needs \(8, 6\)"),
    (lambda p: PerturbedGradientFlow(p, FixedPerturbation(np.zeros((8, 6))), "additive")(0.0, np.zeros(p.dim)),
     "the additive form needs"),
    (lambda p: PerturbedGradientFlow(SymmetricFactorization.random(4, rank=1, width=1), FixedPerturbation(np.zeros((4, 4)))),
     "two factors"),
    (lambda p: FixedPerturbation(np.zeros((2, 2, 2))), "value must be an"),
    (lambda p: FunctionPerturbation(3.0), "fn must be callable"),
    (lambda p: SensingError(p), "must be a sensing problem"),
    (lambda p: DiscretizationError(p, 0.0), "step_size must be positive"),
    (lambda p: gradient_descent(p, np.ones(p.dim), 0.1, 2, variant="alternating",
                                perturbation=FixedPerturbation(np.zeros((8, 6)))), "needs variant='simultaneous'"),
    (lambda p: minibatch_gradient_descent(p, np.ones(p.dim), 0.1, 2, 5, seed=0), "must be a sensing problem"),
])
def test_bad_input(fact, call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call(fact)


@pytest.mark.parametrize("call, message", [
    (lambda s: MinibatchSensingError(s, 61, [0.0], seed=0), "batch_size must be <= the number of measurements 60"),
    (lambda s: MinibatchSensingError(s, 0, [0.0], seed=0), "batch_size must be an integer >= 1"),
    (lambda s: minibatch_gradient_descent(s, np.ones(s.dim), 0.1, 2, 61, seed=0), "batch_size must be <="),
    (lambda s: minibatch_gradient_descent(s, np.ones(s.dim), 0.1, 2, 5, seed=None), "seed is required"),
    (lambda s: SensingError(s, delta=-0.1), "delta must be non-negative"),
])
def test_bad_sensing_perturbation_input(sens, call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call(sens)


def test_sensing_error_bound_with_a_given_delta(sens):
    base = MatrixFactorization(sens.target, sens.width)
    x = init.gaussian(base, 0.3, seed=4)
    E = SensingError(sens, noise=True, delta=0.5)
    noise_size = np.linalg.norm(sens.operator.adjoint(sens.noise_vector), 2)
    assert E.bound(0.0, x) == pytest.approx(0.5 * sens.residual_norm(x) + noise_size, rel=1e-12)
    assert np.isnan(SensingError(sens).bound(0.0, x))
    np.testing.assert_allclose(measurement_noise(sens)(0.0, x), sens.operator.adjoint(sens.noise_vector))
    json.dumps(PerturbedGradientFlow(base, E).describe())


def test_a_diverging_perturbed_gd_run_reports_its_step():
    """An overflow inside a perturbed step must surface as divergence, not as an input error."""
    p = MatrixFactorization.random(m=6, n=5, rank=2, width=2, seed=0)
    x0 = init.gaussian(p, 1.0, seed=1)
    pert = RandomPerturbation(p, 0.5, 0.01, np.arange(0.0, 3001.0), seed=3)
    with pytest.raises(DivergenceError, match="diverged at step"):
        gradient_descent(p, x0, 1.5, 2000, perturbation=pert)


def test_a_non_finite_perturbation_is_named():
    p = MatrixFactorization.random(m=4, n=3, rank=1, width=2, seed=0)
    bad = FunctionPerturbation(lambda t, x: np.full((4, 3), np.nan))
    with pytest.raises(ValueError, match="returned non-finite values at t = 0"):
        PerturbedGradientFlow(p, bad)(0.0, init.gaussian(p, 0.1, seed=1))
