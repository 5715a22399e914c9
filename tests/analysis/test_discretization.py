"""analysis.discretization and the flows it measures GD against (ModifiedFlow, ScaledGradientFlow)."""


import numpy as np
import pytest
import scipy.integrate
import scipy.linalg

from pgflow.analysis.discretization import (ASYMPTOTIC_TOL, DiscretizationStudy, error_vs_step, fit_order, imbalance,
                                            imbalance_rate, imbalance_step, local_slopes, suggest_step_sizes)
from pgflow.flows import (DivergenceError, GradientFlow, IntegrationError, MatrixFactorization, SymmetricFactorization,
                          gradient_descent, init, integrate)
from pgflow.flows.dynamics import scaled_gradient
from pgflow.flows.dynamics import ModifiedFlow, ScaledGradientFlow
from pgflow.flows.sensing import MatrixSensing

EPS = np.finfo(float).eps


@pytest.fixture(scope="module")
def mf():
    p = MatrixFactorization.random(m=7, n=5, rank=2, width=2, condition=2.0, seed=0)
    return p, init.gaussian(p, 0.3, seed=1)


@pytest.fixture(scope="module")
def sensing():
    p = MatrixSensing.random(m=6, n=5, rank=2, width=2, n_measurements=40, condition=2.0, seed=0)
    return p, init.gaussian(p, 0.3, seed=1)


# ---------------------------------------------------------------- fit_order


def _linear_system_errors(step):
    A = np.array([[-1.0, 2.0, 0.0], [-2.0, -1.0, 0.5], [0.0, 0.3, -0.5]])
    y0 = np.array([1.0, 0.5, -1.0])
    T = 1.0
    exact = scipy.linalg.expm(A * T) @ y0
    hs = T / np.array([10, 20, 40, 80, 160])
    errs = []
    for h in hs:
        y = y0.copy()
        for _ in range(int(round(T / h))):
            y = step(A, y, h)
        errs.append(np.linalg.norm(y - exact))
    return hs, np.array(errs)


def test_fit_order_euler_is_one_and_heun_is_two():
    euler = fit_order(*_linear_system_errors(lambda A, y, h: y + h * A @ y))
    heun = fit_order(*_linear_system_errors(lambda A, y, h: y + 0.5 * h * (A @ y + A @ (y + h * A @ y))))
    assert 0.9 <= euler.order <= 1.1 and 1.9 <= heun.order <= 2.1
    assert euler.order_stderr < 0.05 and heun.order_stderr < 0.05


def test_fit_order_recovers_an_exact_power_law_and_its_stderr():
    h = np.array([0.1, 0.05, 0.025, 0.0125])
    fit = fit_order(h, 3.0 * h ** 1.5)
    assert abs(fit.order - 1.5) < 1e-12 and abs(fit.coefficient - 3.0) < 1e-10 and fit.order_stderr < 1e-12
    np.testing.assert_allclose(fit(h), 3.0 * h ** 1.5, rtol=1e-12)
    noisy = 3.0 * h ** 1.5 * np.exp([0.1, -0.1, 0.1, -0.1])
    x, y = np.log(h), np.log(noisy)
    slope, cov = np.polyfit(x, y, 1, cov=True)
    fit = fit_order(h, noisy)
    assert np.isclose(fit.order, slope[0]) and np.isclose(fit.order_stderr, np.sqrt(cov[0, 0]))
    assert np.isnan(fit_order([0.1, 0.2], [1.0, 2.0]).order_stderr)  # two points: no uncertainty estimate


@pytest.mark.parametrize("h, err", [([0.1], [1.0]), ([0.1, 0.1], [1.0, 2.0]), ([0.1, -0.2], [1.0, 2.0]),
                                    ([0.1, 0.2], [0.0, 2.0]), ([0.1, 0.2], [1.0]), ([0.1, np.nan], [1.0, 2.0])])
def test_fit_order_bad_input(h, err):
    with pytest.raises(ValueError):
        fit_order(h, err)


# ---------------------------------------------------------------- flows


def test_modified_flow_is_gradient_plus_half_eta_hessian_gradient(mf):
    p, x = mf
    flow = ModifiedFlow(p, 0.05)
    g = p.grad(x)
    np.testing.assert_allclose(flow(0.0, x), -g - 0.025 * p.hvp(x, g), rtol=1e-14)
    batch = np.stack([x, 2 * x])
    np.testing.assert_allclose(flow(0.0, batch)[1], flow(0.0, 2 * x), rtol=1e-13)
    assert flow.jac is None and flow.describe() == {"flow": "ModifiedFlow", "step_size": 0.05,
                                                    "variant": "simultaneous", "order": 1}


def test_second_order_modified_flow_adds_explicit_eulers_eta_squared_term(mf):
    # f₃ = (1/12)F″(F, F) + (1/3)F′F′F with F = −∇f (Hairer, Lubich & Wanner, IX.1): signs written out
    p, x = mf
    eta = 0.05
    g = p.grad(x)
    Hg = p.hvp(x, g)
    expected = -g - 0.5 * eta * Hg - eta**2 * (p.third_derivative(x, g, g) / 12 + p.hvp(x, Hg) / 3)
    flow = ModifiedFlow(p, eta, order=2)
    np.testing.assert_allclose(flow(0.0, x), expected, rtol=1e-14)
    assert flow.dynamics.order == 2 and flow.describe()["order"] == 2


@pytest.mark.parametrize("kind", ["factorization", "symmetric", "sensing"])
def test_one_gd_step_is_fourth_order_from_the_second_order_modified_flow(kind, mf, sensing):
    p = {"factorization": mf[0], "sensing": sensing[0],
         "symmetric": SymmetricFactorization.random(m=6, rank=2, width=2, condition=2.0, seed=0)}[kind]
    x = init.gaussian(p, 0.6, seed=2)
    etas = np.array([0.04, 0.02, 0.01, 0.005])
    local = [np.linalg.norm(gradient_descent(p, x, eta, 1).final
                            - integrate(ModifiedFlow(p, eta, order=2), x, eta, rtol=1e-13, atol=1e-16).final)
             for eta in etas]
    assert 3.7 <= fit_order(etas, local).order <= 4.3


@pytest.mark.parametrize("kind", ["factorization", "sensing"])
def test_gd_is_third_order_from_the_second_order_modified_flow(kind, mf, sensing):
    p, x0 = {"factorization": mf, "sensing": sensing}[kind]
    s = error_vs_step(p, x0, [0.04, 0.02, 0.01, 0.005], t_end=1.0, against="modified2", reference_rtol=1e-13)
    assert s.ok, s.reasons
    assert 2.8 <= s.order <= 3.2


def test_second_order_modified_flow_refuses_what_is_not_derived(mf):
    p, x = mf
    with pytest.raises(ValueError, match="order must be 1 or 2"):
        ModifiedFlow(p, 0.1, order=3)
    with pytest.raises(ValueError, match="order must be 1 or 2"):
        ModifiedFlow(p, 0.1, order=True)
    with pytest.raises(ValueError, match="simultaneous"):
        ModifiedFlow(p, 0.1, "alternating", order=2)
    with pytest.raises(ValueError, match="modified2.*simultaneous"):
        error_vs_step(p, x, [0.02, 0.01], 1.0, against="modified2", variant="alternating")


def test_alternating_correction_is_the_second_order_term_of_the_step(mf):
    # x₊ = x − ηg + η²(0, H_VU G_U) + O(η³): extract the η² term with two step sizes
    p, x = mf
    g = p.grad(x)
    HVU_GU = p.hvp(x, np.r_[g[:7 * 2], np.zeros(5 * 2)])[7 * 2:]
    for eta in (1e-3, 5e-4):
        # the full state: dividing by η² would magnify the rounding of a reduced run's lift (1e-16 / η²)
        step = gradient_descent(p, x, eta, 1, variant="alternating", reduce=False).final
        second = (step - x + eta * g) / eta ** 2
        np.testing.assert_allclose(second[:14], 0, atol=1e-9)
        np.testing.assert_allclose(second[14:], HVU_GU, rtol=5 * eta)  # the O(η) remainder
    expected = -g - 0.05 * p.hvp(x, g)
    expected[14:] += 0.1 * HVU_GU
    np.testing.assert_allclose(ModifiedFlow(p, 0.1, "alternating")(0.0, x), expected, rtol=1e-13)


@pytest.mark.parametrize("variant", ["simultaneous", "alternating", "scaled"])
def test_one_gd_step_is_third_order_from_its_modified_flow(mf, variant):
    p, _ = mf
    x = init.gaussian(p, 0.6, seed=2)
    limit = ScaledGradientFlow(p) if variant == "scaled" else GradientFlow(p)
    etas = np.array([0.02, 0.01, 0.005, 0.0025])
    local_mod, local_flow = [], []
    for eta in etas:
        step = gradient_descent(p, x, eta, 1, variant=variant).final
        local_mod.append(np.linalg.norm(step - integrate(ModifiedFlow(p, eta, variant), x, eta, rtol=1e-13,
                                                         atol=1e-15).final))
        local_flow.append(np.linalg.norm(step - integrate(limit, x, eta, rtol=1e-13, atol=1e-15).final))
    assert 2.8 <= fit_order(etas, local_mod).order <= 3.2
    assert 1.9 <= fit_order(etas, local_flow).order <= 2.1


def test_scaled_flow_is_preconditioned_gradient_and_scaledgd_is_its_euler(mf):
    p, x = mf
    flow = ScaledGradientFlow(p)
    np.testing.assert_array_equal(flow(0.0, x), -scaled_gradient(p, x, p.grad(x)))
    U, V = p.unpack(x)
    GU, GV = p.unpack(p.grad(x))
    np.testing.assert_allclose(p.unpack(flow(0.0, x))[0], -GU @ np.linalg.inv(V.T @ V), rtol=1e-12)
    np.testing.assert_allclose(gradient_descent(p, x, 0.01, 1, variant="scaled").final, x + 0.01 * flow(0.0, x),
                               rtol=1e-15, atol=1e-15)


def test_scaled_flow_jacobian_matches_finite_differences(mf):
    p, x = mf
    flow = ScaledGradientFlow(p)
    w = np.random.default_rng(0).standard_normal(p.dim)
    h = 1e-6
    fd = (flow(0.0, x + h * w) - flow(0.0, x - h * w)) / (2 * h)
    np.testing.assert_allclose(flow.jvp(x, w), fd, rtol=1e-7, atol=1e-8 * np.linalg.norm(fd))
    np.testing.assert_allclose(flow.jac(0.0, x) @ w, flow.jvp(x, w), rtol=1e-12, atol=1e-12)
    run = integrate(flow, x, 0.5, method="Radau", rtol=1e-9, atol=1e-11)
    ref = integrate(flow, x, 0.5, rtol=1e-12, atol=1e-14)
    assert run.stats.njev > 0 and np.linalg.norm(run.final - ref.final) < 1e-7


def test_flows_reject_what_they_cannot_do(mf):
    p, x = mf
    sym = SymmetricFactorization.random(m=4, rank=1, width=1, seed=0)
    with pytest.raises(ValueError, match="two factors"):
        ScaledGradientFlow(sym)
    with pytest.raises(ValueError, match="two factors"):
        ModifiedFlow(sym, 0.1, "alternating")
    with pytest.raises(ValueError, match="variant must be one of"):
        ModifiedFlow(p, 0.1, "heavy-ball")
    with pytest.raises(ValueError, match="step_size must be positive"):
        ModifiedFlow(p, -0.1)
    scaled = ScaledGradientFlow(p)
    np.testing.assert_array_equal(scaled(0.0, np.stack([x, x])), np.stack([scaled(0.0, x)] * 2))
    with pytest.raises(ValueError, match="take one state, not a batch"):
        scaled.jvp(np.stack([x, x]), np.stack([x, x]))


# ---------------------------------------------------------------- imbalance


@pytest.mark.parametrize("kind", ["factorization", "sensing"])
def test_gd_imbalance_drift_is_exactly_eta_squared_gradient_gram(kind, mf, sensing):
    p, _ = mf if kind == "factorization" else sensing
    x0 = init.gaussian(p, 0.5, seed=3)
    eta = 0.1 / p.target.sigma[0]
    gd = gradient_descent(p, x0, eta, 150)
    D = np.array([imbalance(p, x) for x in gd.x])
    measured = np.diff(D, axis=0)
    predicted = np.array([imbalance_step(p, x, eta) for x in gd.x[:-1]])
    err = np.linalg.norm(measured - predicted, axis=(1, 2))
    # while the step moves D well above its rounding (first 50 steps) the identity holds to 1e-10
    # relative; afterwards the gradient is small and what is left is rounding of D itself
    assert np.max(err[:50] / np.linalg.norm(predicted[:50], axis=(1, 2))) <= 1e-10
    scale = np.max(np.linalg.norm(gd.U, axis=(1, 2)) ** 2 + np.linalg.norm(gd.V, axis=(1, 2)) ** 2)
    assert np.max(err) <= 100 * EPS * scale
    assert np.linalg.norm(D[-1] - D[0]) > 1e3 * np.max(err)  # a real drift, unlike GF


@pytest.mark.parametrize("kind", ["factorization", "sensing"])
def test_modified_flow_imbalance_rate(kind, mf, sensing):
    p, x0 = mf if kind == "factorization" else sensing
    eta = 0.05
    for x in (x0, init.gaussian(p, 1.0, seed=7)):
        U, V = p.unpack(x)
        FU, FV = p.unpack(ModifiedFlow(p, eta)(0.0, x))
        rate = FU.T @ U + U.T @ FU - FV.T @ V - V.T @ FV
        expected = imbalance_rate(p, x, eta)
        np.testing.assert_allclose(rate, expected, atol=1e-12 * np.linalg.norm(expected))
        np.testing.assert_allclose(imbalance_step(p, x, eta), eta * expected, rtol=1e-15)
    # and along a solve: D(T) − D(0) = ∫ η(G_UᵀG_U − G_VᵀG_V) dt, while GF keeps D fixed
    run = integrate(ModifiedFlow(p, eta), x0, 1.0, t_eval=np.linspace(0, 1, 401), rtol=1e-12, atol=1e-14)
    rates = np.array([imbalance_rate(p, x, eta) for x in run.x])
    integral = scipy.integrate.simpson(rates, x=run.t, axis=0)
    drift = imbalance(p, run.final) - imbalance(p, x0)
    np.testing.assert_allclose(drift, integral, atol=1e-8 * np.linalg.norm(drift))


def test_imbalance_of_a_symmetric_problem_is_zero():
    p = SymmetricFactorization.random(m=4, rank=2, width=2, seed=0)
    x = init.gaussian(p, 0.5, seed=1)
    assert not np.any(imbalance(p, x)) and not np.any(imbalance_step(p, x, 0.1))


# ---------------------------------------------------------------- error_vs_step


def _orders(p, x0, etas, t_end, variant="simultaneous", measure="state"):
    out = {}
    for against in ("flow", "modified"):
        study = error_vs_step(p, x0, etas, t_end, against=against, variant=variant, measure=measure)
        assert isinstance(study, DiscretizationStudy)
        assert study.reference_ok and 100 * study.reference_error.max() <= study.errors.min()
        assert np.all(np.diff(study.errors) < 0)  # smaller steps, smaller errors
        out[against] = study
    assert 0.9 <= out["flow"].order <= 1.1, out["flow"].order
    assert 1.8 <= out["modified"].order <= 2.2, out["modified"].order
    assert out["flow"].order_stderr < 0.05 and out["modified"].order_stderr < 0.05
    for study in out.values():   # ησ₁ ≤ 1/8: the local slopes have settled, and nothing is wrong
        assert study.asymptotic and study.ok and study.verdict == "ok" and not study.diverged
    return out


def test_factorization_gd_is_first_order_from_gf_and_second_from_the_modified_flow(mf):
    p, x0 = mf
    etas = np.array([1, 1 / 2, 1 / 4, 1 / 8]) / (8 * p.target.sigma[0])  # below 1/(4σ₁)
    studies = _orders(p, x0, etas, 1.0)
    s = studies["flow"]
    assert [len(t) for t in s.times] == [17, 33, 65, 129]
    np.testing.assert_allclose(s.times[0], etas[0] * np.arange(17), rtol=1e-15)
    np.testing.assert_array_equal([e[-1] for e in s.errors_over_time], s.errors)
    assert s.errors_over_time[0][0] == 0 and "loss" in s.comparisons[0].monitors
    # the one reference on the merged grid gives what a separate solve on each GD grid gives
    for eta, err in zip(etas[[0, -1]], s.errors[[0, -1]]):
        gd = gradient_descent(p, x0, eta, int(round(1.0 / eta)))
        own = integrate(GradientFlow(p), x0, 1.0, t_eval=gd.t, rtol=1e-12, atol=1e-14)
        assert abs(np.linalg.norm(gd.final - own.final) - err) <= 1e-9 * err
    # the flow reference is solved once; the modified flow once per η (plus the 100x looser checks)
    assert len(s.meta["reference"]["solves"]) == 1 and len(studies["modified"].meta["reference"]["solves"]) == 4
    meta = studies["modified"].meta
    assert meta["problem"] == p.describe() and meta["version"] and meta["wall_time"] > 0
    assert meta["reference"]["rtol"] == 1e-12 and all(g["nfev"] > 0 for g in meta["gradient_descent"])
    _orders(p, x0, etas, 1.0, measure="product")


def test_sensing_gd_is_first_order_from_gf_and_second_from_the_modified_flow(sensing):
    p, x0 = sensing
    etas = np.array([1, 1 / 2, 1 / 4, 1 / 8]) / (8 * p.target.sigma[0])
    _orders(p, x0, etas, 1.0)


def test_alternating_gd_orders(mf):
    p, x0 = mf
    etas = np.array([1, 1 / 2, 1 / 4, 1 / 8]) / (8 * p.target.sigma[0])
    _orders(p, x0, etas, 1.0, variant="alternating")


def test_scaled_gd_orders_against_its_own_flow(mf):
    p, _ = mf
    x0 = init.gaussian(p, 1.0, seed=1)  # ScaledGD's step is relative to (VᵀV)⁻¹: keep the factors O(1)
    _orders(p, x0, np.array([1 / 8, 1 / 16, 1 / 32, 1 / 64]), 1.0, variant="scaled")


def test_loose_reference_is_flagged(mf):
    p, x0 = mf
    etas = np.array([1, 1 / 2]) / (8 * p.target.sigma[0])
    study = error_vs_step(p, x0, etas, 0.5, against="modified", reference_rtol=1e-4, method="RK23")
    assert not study.reference_ok and study.meta["reference_margin"] < 100
    assert study.meta["reference"]["method"] == "RK23"


def test_error_vs_step_bad_input(mf):
    p, x0 = mf
    with pytest.raises(ValueError, match="whole steps"):
        error_vs_step(p, x0, [0.03, 0.02], 1.0)
    with pytest.raises(ValueError, match="against must be one of"):
        error_vs_step(p, x0, [0.05, 0.025], 1.0, against="exact")
    with pytest.raises(ValueError, match="measure must be one of"):
        error_vs_step(p, x0, [0.05, 0.025], 1.0, measure="loss")
    with pytest.raises(ValueError, match="at least two distinct"):
        error_vs_step(p, x0, [0.05, 0.05], 1.0)
    with pytest.raises(ValueError, match="step_sizes.* must be positive"):
        error_vs_step(p, x0, [0.05, -0.025], 1.0)
    with pytest.raises(ValueError, match="x0 must have shape"):
        error_vs_step(p, x0[:-1], [0.05, 0.025], 1.0)


# ---------------------------------------------------------------- local slopes, regime, verdict


def test_local_slopes_are_the_pairwise_slopes(mf):
    # by hand: errors 16e-4, 4e-4, 2e-4 at η = 0.4, 0.2, 0.1 -> slopes log(4)/log(2) = 2, log(2)/log(2) = 1
    np.testing.assert_allclose(local_slopes([0.4, 0.2, 0.1], [16e-4, 4e-4, 2e-4]), [2.0, 1.0], rtol=1e-14)
    # consecutive in order of decreasing η, whatever the order given; NaN next to a missing error
    np.testing.assert_allclose(local_slopes([0.1, 0.4, 0.2], [2e-4, 16e-4, 4e-4]), [2.0, 1.0], rtol=1e-14)
    np.testing.assert_array_equal(np.isnan(local_slopes([0.4, 0.2, 0.1], [16e-4, np.nan, 2e-4])), [True, True])
    p, x0 = mf
    etas = np.array([1, 1 / 2, 1 / 4, 1 / 8]) / (8 * p.target.sigma[0])
    study = error_vs_step(p, x0, etas, 1.0, against="modified")
    e = study.errors
    by_hand = [np.log(e[j + 1] / e[j]) / np.log(etas[j + 1] / etas[j]) for j in range(3)]
    assert study.local_slopes.shape == (3,)
    np.testing.assert_allclose(study.local_slopes, by_hand, rtol=1e-13)
    assert np.max(np.abs(study.local_slopes - study.order)) <= ASYMPTOTIC_TOL and study.asymptotic


@pytest.mark.parametrize("against", ["flow", "modified"])
def test_pre_asymptotic_study_is_flagged(mf, against):
    """ησ₁ up to 1.2: the fit returns an order with a small standard error, but the local slopes drift
    (0.88 → 1.05 against GF, 1.98 → 2.24 against the modified flow), so the study is not asymptotic."""
    p, x0 = mf
    etas = np.array([0.6, 0.3, 0.15, 0.075])            # σ₁ = 2
    study = error_vs_step(p, x0, etas, 2.4, against=against)
    assert study.reference_ok and not study.diverged     # nothing else is wrong
    assert not study.asymptotic and not study.ok
    assert np.max(np.abs(study.local_slopes - study.order)) > 2 * ASYMPTOTIC_TOL
    assert study.reasons[0].startswith("not asymptotic") and "not asymptotic" in study.verdict
    # the suggestion: halving from the largest η ≤ 1/(4σ₁) that divides t_end, as data and in the verdict
    np.testing.assert_allclose(study.suggested_step_sizes, [0.12, 0.06, 0.03, 0.015], rtol=1e-15)
    assert "[0.12, 0.06, 0.03, 0.015]" in study.verdict
    redo = error_vs_step(p, x0, study.suggested_step_sizes, 2.4, against=against)
    assert redo.asymptotic and redo.ok


def test_suggested_step_sizes_divide_t_end_and_go_below_a_failure():
    s = suggest_step_sizes([0.6, 0.3, 0.15], t_end=2.0, sigma1=2.0, asymptotic=False)
    np.testing.assert_array_equal(s, [0.125, 0.0625, 0.03125, 0.015625])
    s = suggest_step_sizes([0.6, 0.3, 0.15, 0.075, 0.0375], t_end=1.0, sigma1=3.0, asymptotic=False)
    assert s.size == 5 and np.all(s * 3.0 <= 0.25) and s[0] == 1.0 / 12
    np.testing.assert_allclose(1.0 / s, np.round(1.0 / s), rtol=1e-12)        # whole steps
    # already below 1/(4σ₁) but still drifting: one halving further; below half a diverged η
    np.testing.assert_array_equal(suggest_step_sizes([0.1, 0.05, 0.025], 1.0, 2.0, False),
                                  [0.05, 0.025, 0.0125, 0.00625])
    np.testing.assert_array_equal(suggest_step_sizes([0.1, 0.05, 0.025], 1.0, 2.0, True), [0.1, 0.05, 0.025, 0.0125])
    assert suggest_step_sizes([0.1, 0.05, 0.025], 1.0, 2.0, True, diverged=[0.1])[0] == 0.05


def test_diverging_step_is_recorded_not_raised(mf):
    p, _ = mf
    x0 = init.gaussian(p, 1.0, seed=0)                    # sharpness ≈ 19 at the start
    etas = np.array([0.5, 0.25, 0.125, 0.0625])
    with pytest.raises(DivergenceError):                  # GD itself raises at η = 0.5 ...
        gradient_descent(p, x0, 0.5, 4)
    study = error_vs_step(p, x0, etas, 2.0)               # ... the study records it and goes on
    assert list(study.diverged) == [0.5] and "diverged at step 3" in study.diverged[0.5]
    assert np.isnan(study.errors[0]) and np.all(np.isfinite(study.errors[1:]))
    assert np.isnan(study.reference_error[0]) and study.comparisons[0] is None and study.times[0].size == 0
    assert study.meta["gradient_descent"][0]["diverged"] == study.diverged[0.5]
    assert study.fit.order == fit_order(etas[1:], study.errors[1:]).order
    assert np.isnan(study.local_slopes[0]) and np.all(np.isfinite(study.local_slopes[1:]))
    assert not study.ok and study.reasons[0] == "GD diverged at η = 0.5" and "η = 0.5" in study.verdict
    assert study.suggested_step_sizes[0] <= 0.25
    # every run diverging: still no exception, and no order
    study = error_vs_step(p, init.gaussian(p, 3.0, seed=0), [1.0, 0.5], 20.0)
    assert set(study.diverged) == {1.0, 0.5} and np.all(np.isnan(study.errors)) and np.isnan(study.order)
    assert not study.ok and not study.asymptotic and not study.reference_ok
    assert study.reasons == ("GD diverged at η = 1, 0.5",
                             "0 finite errors: at least 3 are needed to see whether the local slopes have settled")


def test_failed_modified_flow_solve_is_recorded_not_raised(mf, monkeypatch):
    import pgflow.analysis.discretization as discretization
    p, x0 = mf
    real = discretization.integrate

    def failing(flow, *args, **kwargs):   # the modified flow of the largest η blows up
        if isinstance(flow, ModifiedFlow) and flow.step_size == 1 / 16:
            raise IntegrationError("modified flow blew up", 0.3, None)
        return real(flow, *args, **kwargs)

    monkeypatch.setattr(discretization, "integrate", failing)
    etas = np.array([1, 1 / 2, 1 / 4, 1 / 8]) / 16
    study = error_vs_step(p, x0, etas, 1.0, against="modified")
    assert np.isnan(study.errors[0]) and np.all(np.isfinite(study.errors[1:])) and not study.diverged
    assert study.meta["reference"]["failed"] == {1 / 16: "modified flow blew up"}
    assert not study.ok and "the modified flow's solve failed at η = 0.0625" in study.verdict


def test_two_step_sizes_cannot_be_asymptotic(mf):
    p, x0 = mf
    study = error_vs_step(p, x0, np.array([1, 1 / 2]) / 16, 1.0)
    assert study.reference_ok and study.local_slopes.shape == (1,) and not study.asymptotic and not study.ok
    assert "at least 3" in study.verdict
