"""analysis.stability: sharpness by Lanczos, the critical step 1/σ₁, departure from the flow, period 2."""

import numpy as np
import pytest

from pgflow.analysis.compare import compare
from pgflow.analysis.stability import (Departure, SharpnessTrace, balanced_minimum, critical_step_size, departure,
                                       minimum_sharpness, oscillation_period, sharpness, sharpness_along)
from pgflow.flows import (DivergenceError, GradientFlow, MatrixFactorization, SymmetricFactorization, gradient_descent,
                          init, integrate)
from pgflow.flows.sensing import MatrixSensing

SIGMA = 2.0


def mode_problem():
    """One balanced spectral mode: 1×1 factorization with Σ = σ."""
    return MatrixFactorization.random(m=1, n=1, rank=1, width=1, singular_values=[SIGMA], seed=0)


def mode_map(u, eta):
    """Exact GD on a balanced mode (docs/math/closed-forms.md)."""
    return u * (1 + eta * (SIGMA - u)) ** 2


# ---------------------------------------------------------------- sharpness


@pytest.mark.parametrize("problem", [
    MatrixFactorization.random(m=6, n=5, rank=2, width=2, condition=3.0, seed=0),
    SymmetricFactorization.random(m=9, rank=2, width=2, condition=3.0, seed=0),
    MatrixSensing.random(m=5, n=4, rank=1, width=2, n_measurements=30, seed=0)], ids=["mf", "sym", "sensing"])
def test_lanczos_sharpness_matches_the_dense_hessian(problem):
    assert problem.dim >= 16  # the Lanczos path, not the small-problem dense path
    for seed in range(3):
        x = init.gaussian(problem, 0.7, seed=seed)
        dense = np.linalg.eigvalsh(problem.hessian(x))[-1]
        assert abs(sharpness(problem, x) - dense) <= 1e-10 * abs(dense)


def test_sharpness_at_global_minima_is_the_sum_of_squared_factor_norms():
    p = MatrixFactorization.random(m=6, n=5, rank=2, width=2, condition=3.0, seed=1)
    star = balanced_minimum(p)
    assert p.loss(star) < 1e-28
    assert abs(sharpness(p, star) - 2 * p.target.sigma[0]) <= 1e-10
    U, V = p.unpack(star)
    A = np.diag([3.0, 0.4])  # (UA, VA⁻ᵀ) is another global minimum, sharper and unbalanced
    other = p.pack(U @ A, V @ np.linalg.inv(A).T)
    assert p.loss(other) < 1e-26
    assert abs(sharpness(p, other) - minimum_sharpness(p, other)) <= 1e-10 * minimum_sharpness(p, other)
    assert minimum_sharpness(p, other) > 2 * p.target.sigma[0] + 1


def test_critical_step_size_is_one_over_sigma_one():
    for p in (MatrixFactorization.random(m=6, n=5, rank=2, width=3, condition=4.0, seed=2),
              SymmetricFactorization.random(m=9, rank=2, width=2, condition=4.0, seed=2), mode_problem()):
        assert abs(critical_step_size(p) - 1 / p.target.sigma[0]) <= 1e-12 / p.target.sigma[0]
    with pytest.raises(ValueError, match="width .* at least the target's rank"):
        balanced_minimum(MatrixFactorization.random(m=6, n=5, rank=3, width=2, seed=0))


def test_sharpness_along_gd_with_its_threshold():
    p = MatrixFactorization.random(m=6, n=5, rank=2, width=2, condition=2.0, seed=0)
    eta = 0.4 / p.target.sigma[0]
    gd = gradient_descent(p, init.balanced(p, 0.1, seed=1), eta, 200)
    trace = sharpness_along(p, gd, stride=30)
    assert isinstance(trace, SharpnessTrace) and trace.threshold == 2 / eta
    np.testing.assert_array_equal(trace.t, gd.t[[0, 30, 60, 90, 120, 150, 180, 200]])
    # from a small balanced start GD ends near a balanced minimum (λ_max = 2σ₁ < 2/η), off it only
    # by GD's O(η²) imbalance drift
    end = gd.final
    assert abs(trace.sharpness[-1] - minimum_sharpness(p, end)) <= 1e-8 * trace.sharpness[-1]
    assert abs(trace.sharpness[-1] - 2 * p.target.sigma[0]) < 1e-3 and trace.sharpness.max() < trace.threshold
    assert sharpness_along(p, integrate(GradientFlow(p), gd.x[0], 1.0), stride=5).step_size is None


# ---------------------------------------------------------------- a balanced mode: ησ < 1, = 1..2, > 2


@pytest.mark.parametrize("s", [0.5, 0.9])
def test_balanced_mode_converges_below_eta_sigma_one(s):
    p = mode_problem()
    eta = s / SIGMA
    gd = gradient_descent(p, init.spectral(p, [0.1]), eta, 600)
    assert oscillation_period(gd) == 1 and gd.monitors["loss"][-1] < 1e-26
    x = gd.final
    assert abs(sharpness(p, x) - minimum_sharpness(p, x)) <= 1e-8 * minimum_sharpness(p, x)
    assert abs(sharpness(p, x) - 2 * SIGMA) <= 1e-8 and sharpness(p, x) < 2 / eta


@pytest.mark.parametrize("s", [1.05, 1.1, 1.2])
def test_balanced_mode_settles_on_a_period_two_orbit_above_eta_sigma_one(s):
    # the fixed point u = σ has multiplier 1 − 2ησ < −1: it repels, and the map's 2-cycle attracts
    # (up to ησ ≈ 1.24, where the period doubles again)
    p = mode_problem()
    eta = s / SIGMA
    gd = gradient_descent(p, init.spectral(p, [0.1]), eta, 600)
    assert oscillation_period(gd, match_rtol=1e-10) == 2
    u1, u2 = gd.monitors["singular_values"][-2:, 0]
    assert min(u1, u2) < SIGMA < max(u1, u2)
    assert abs(mode_map(u1, eta) - u2) <= 1e-12 * SIGMA and abs(mode_map(mode_map(u1, eta), eta) - u1) <= 1e-12 * SIGMA
    assert gd.monitors["loss"][-2:].min() > 1e-3
    # neither orbit point is a minimum GD could stay at: λ_max at the minimum would be 2σ > 2/η
    assert 2 * SIGMA > 2 / eta


@pytest.mark.parametrize("s", [1.5, 1.9])
def test_balanced_mode_stays_bounded_without_converging_below_eta_sigma_two(s):
    # past the period-doubling cascade: no short cycle, yet u stays in [0, σ + 2/η]
    p = mode_problem()
    eta = s / SIGMA
    gd = gradient_descent(p, init.spectral(p, [0.1]), eta, 1000)
    u = gd.monitors["singular_values"][:, 0]
    assert oscillation_period(gd) is None
    assert np.all(u <= SIGMA + 2 / eta) and gd.monitors["loss"][-100:].max() > 1e-2


@pytest.mark.parametrize("s", [2.05, 2.5])
def test_balanced_mode_diverges_above_eta_sigma_two(s):
    p = mode_problem()
    with pytest.raises(DivergenceError):
        gradient_descent(p, init.spectral(p, [0.1]), s / SIGMA, 3000)


def test_matrix_problem_converges_below_and_oscillates_above_the_critical_step():
    p = MatrixFactorization.random(m=6, n=5, rank=2, width=2, singular_values=[SIGMA, 1.0], seed=0)
    x0 = init.gaussian(p, 0.5, seed=1)
    crit = critical_step_size(p)
    below = gradient_descent(p, x0, 0.95 * crit, 1500, save_every=1)  # a period needs every step
    x = below.final
    assert oscillation_period(below) == 1 and below.monitors["loss"][-1] < 1e-24
    # an unbalanced minimum (Gaussian start): still λ_max = ‖U‖² + ‖V‖², and ≤ 2/η
    assert minimum_sharpness(p, x) > 2 * SIGMA + 1e-3
    assert abs(sharpness(p, x) - minimum_sharpness(p, x)) <= 1e-8 * minimum_sharpness(p, x) < 2 / (0.95 * crit)
    above = gradient_descent(p, x0, 1.1 * crit, 1500, save_every=1)
    assert oscillation_period(above) == 2 and above.monitors["loss"][-2:].min() > 1e-2
    with pytest.raises(DivergenceError):
        gradient_descent(p, x0, 2.1 * crit, 1500)


# ---------------------------------------------------------------- departure and oscillation detection


def test_departure_finds_the_first_step_above_threshold():
    p = MatrixFactorization.random(m=6, n=5, rank=2, width=2, condition=2.0, seed=0)
    x0 = init.gaussian(p, 0.3, seed=1)
    eta = 1.1 / p.target.sigma[0]
    gd = gradient_descent(p, x0, eta, 40)
    flow = integrate(GradientFlow(p), x0, gd.t[-1], t_eval=gd.t, rtol=1e-11, atol=1e-13)
    c = compare(gd, flow)
    d = departure(c, 0.1)
    assert isinstance(d, Departure) and d.distance > 0.1
    assert np.all(c.product_relative[:d.index] <= 0.1) and d.step == d.index and d.t == gd.t[d.index]
    assert departure(c, 0.1, measure="state").index >= 1
    small = gradient_descent(p, x0, 0.01, 100)
    close = compare(small, integrate(GradientFlow(p), x0, 1.0, t_eval=small.t, rtol=1e-11, atol=1e-13))
    assert departure(close, 0.1) is None


def test_detection_bad_input():
    p = mode_problem()
    gd = gradient_descent(p, init.spectral(p, [0.1]), 0.25, 40, save_every=2)
    with pytest.raises(ValueError, match="save_every=1"):
        oscillation_period(gd)
    with pytest.raises(ValueError, match="at least max_period"):
        oscillation_period(gradient_descent(p, init.spectral(p, [0.1]), 0.25, 5))
    with pytest.raises(ValueError, match="tail must be an integer >= 10"):
        oscillation_period(gd, tail=4)
    with pytest.raises(TypeError, match="Comparison"):
        departure(gd, 0.1)
    c = compare(gd, gd)
    with pytest.raises(ValueError, match="threshold must be positive"):
        departure(c, 0.0)
    with pytest.raises(ValueError, match="measure must be"):
        departure(c, 0.1, measure="loss")
    with pytest.raises(ValueError, match="x must have shape"):
        sharpness(p, np.zeros(3))
