"""Which monitors a run records: ``monitors=`` adds to the defaults, ``default_monitors=False`` replaces them.

The same rule for integrate, integrate_piecewise, gradient_descent and minibatch GD, solved in full
or in reduced coordinates (where the defaults are evaluated on the reduced states and the caller's
on the lifted ones: the numbers must agree with a full run's).
"""

import numpy as np
import pytest

from pgflow.flows import (GradientFlow, MatrixFactorization, PerturbedGradientFlow, RandomPerturbation,
                          gradient_descent, init, integrate, integrate_piecewise, minibatch_gradient_descent, monitors)
from pgflow.flows.sensing import MatrixSensing

DEFAULTS = {"loss", "grad_norm", "imbalance_fro", "distance", "singular_values"}


@pytest.fixture(scope="module")
def problem():
    # tall enough that reduce="auto" solves in the span of X*, U₀, V₀
    return MatrixFactorization.random(m=30, n=24, rank=2, width=2, condition=2.0, seed=0)


def squared_norm(t, x):
    """‖x‖²: a monitor the defaults do not have, written here, not in pgflow."""
    x = np.asarray(x)
    return float(x @ x)


def runs(problem, **kw):
    x0 = init.gaussian(problem, 0.3, seed=1)
    grid = np.linspace(0.0, 2.0, 5)
    return {
        "integrate reduced": integrate(GradientFlow(problem), x0, 2.0, t_eval=grid, reduce=True, **kw),
        "integrate full": integrate(GradientFlow(problem), x0, 2.0, t_eval=grid, reduce=False, **kw),
        "gd reduced": gradient_descent(problem, x0, 0.05, 40, save_every=10, reduce=True, **kw),
        "gd full": gradient_descent(problem, x0, 0.05, 40, save_every=10, reduce=False, **kw),
    }


def test_own_monitors_are_added_to_the_defaults(problem):
    own = {"sq_norm": squared_norm}
    for name, run in runs(problem, monitors=own).items():
        assert set(run.monitors) == DEFAULTS | {"sq_norm"}, name
        last = np.asarray(run.x[-1])
        assert run.monitors["sq_norm"][-1] == pytest.approx(last @ last, rel=1e-12), name
        # the default loss is the loss of the saved state, reduced or not
        assert run.monitors["loss"][-1] == pytest.approx(problem.loss(np.asarray(run.x[-1])), rel=1e-10), name


def test_default_monitors_false_keeps_only_the_callers(problem):
    own = {"sq_norm": squared_norm}
    for name, run in runs(problem, monitors=own, default_monitors=False).items():
        assert set(run.monitors) == {"sq_norm"}, name
    for name, run in runs(problem, default_monitors=False).items():
        assert run.monitors == {}, name


def test_a_callers_monitor_replaces_the_default_of_its_name(problem):
    for name, run in runs(problem, monitors={"loss": lambda t, x: -1.0}).items():
        assert set(run.monitors) == DEFAULTS, name
        assert np.all(run.monitors["loss"] == -1.0), name


def test_reduced_and_full_runs_record_the_same_numbers(problem):
    own = {"sq_norm": squared_norm}
    r = runs(problem, monitors=own)
    for kind in ("integrate", "gd"):
        reduced, full = r[f"{kind} reduced"], r[f"{kind} full"]
        assert reduced.meta["reduced"] and not full.meta["reduced"]
        for key in DEFAULTS | {"sq_norm"}:
            np.testing.assert_allclose(reduced.monitors[key], full.monitors[key], rtol=1e-6, atol=1e-12,
                                       err_msg=f"{kind}: {key}")


def test_piecewise_flows_keep_their_perturbation_monitors(problem):
    x0 = init.gaussian(problem, 0.3, seed=1)
    flow = PerturbedGradientFlow(problem, RandomPerturbation(problem, 0.1, 0.0, np.linspace(0.0, 1.0, 3), seed=3))
    own = {"sq_norm": squared_norm}
    added = integrate_piecewise(flow, x0, 1.0, t_eval=np.linspace(0, 1, 3), monitors=own)
    lean = integrate_piecewise(flow, x0, 1.0, t_eval=np.linspace(0, 1, 3), monitors=own, default_monitors=False)
    assert set(added.monitors) == DEFAULTS | {"sq_norm", "perturbation_norm", "perturbation_bound"}
    assert set(lean.monitors) == {"sq_norm", "perturbation_norm", "perturbation_bound"}
    np.testing.assert_array_equal(lean.monitors["sq_norm"], added.monitors["sq_norm"])


def test_minibatch_gd_follows_the_same_rule():
    p = MatrixSensing.random(m=6, n=5, rank=2, width=2, n_measurements=60, seed=0)
    x0 = init.gaussian(p, 0.3, seed=1)
    own = {"norm": lambda t, x: float(np.linalg.norm(x))}
    added = minibatch_gradient_descent(p, x0, 0.01, 10, 20, seed=4, monitors=own)
    lean = minibatch_gradient_descent(p, x0, 0.01, 10, 20, seed=4, monitors=own, default_monitors=False)
    assert set(added.monitors) == DEFAULTS | {"norm"} and set(lean.monitors) == {"norm"}
    np.testing.assert_array_equal(added.monitors["norm"], lean.monitors["norm"])


def test_a_plain_ode_records_its_state_norm_unless_told_not_to():
    run = integrate(lambda t, y: -y, [3.0, 4.0], 1.0, t_eval=[0.0, 1.0], rtol=1e-10, atol=1e-12)
    assert run.monitors["state_norm"] == pytest.approx([5.0, 5.0 * np.exp(-1.0)], rel=1e-8)
    assert integrate(lambda t, y: -y, [3.0, 4.0], 1.0, default_monitors=False).monitors == {}


@pytest.mark.parametrize("bad", [0, "no", None, 1.0])
def test_default_monitors_must_be_a_bool(problem, bad):
    x0 = init.gaussian(problem, 0.3, seed=1)
    with pytest.raises(TypeError, match="default_monitors must be True or False"):
        integrate(GradientFlow(problem), x0, 1.0, default_monitors=bad)
    with pytest.raises(TypeError, match="default_monitors must be True or False"):
        gradient_descent(problem, x0, 0.1, 2, default_monitors=bad)
    with pytest.raises(TypeError, match="default_monitors must be True or False"):
        integrate(GradientFlow(problem), x0, 1.0, default_monitors=bad, reduce=True)


def test_chosen_is_the_one_rule(problem):
    mine = {"loss": monitors.grad_norm(problem), "extra": monitors.distance(problem)}
    both = monitors.chosen(problem, mine)
    assert set(both) == DEFAULTS | {"extra"} and both["loss"] is mine["loss"]
    assert monitors.chosen(problem, mine, default_monitors=False) == mine
    assert monitors.chosen(None) == {"state_norm": monitors.state_norm}
    with pytest.raises(TypeError, match="monitors must be a dict"):
        monitors.chosen(problem, [monitors.loss(problem)])


# The default monitors against independent computations: the dense m×n UVᵀ − Σ, numpy's SVD of the dense UVᵀ
# and the problem's own (factored) gradient, state by state. The monitors read UVᵀ's spectrum from U R_Vᵀ (or
# from the k×k core R_U R_Vᵀ when m ≥ 2k) and, for problems with m·n ≤ (m + n)(k + r) (the reduced ones), the
# gradient norm from the formed residual R as ‖(RV, RᵀU)‖; they are compared to rounding relative to each
# quantity's scale (σ₁ for the spectrum).

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pgflow.flows import SymmetricFactorization  # noqa: E402

KINDS = {"asym": MatrixFactorization, "sym": SymmetricFactorization}


def dense_monitors(problem, states) -> dict:
    """The default monitors of ``states`` (T, dim) from dense matrices, one state at a time."""
    out = {name: [] for name in DEFAULTS}
    for x in states:
        U, V = problem.factors(x)
        R = U @ V.T - problem.target.dense()
        s = np.linalg.svd(U @ V.T, compute_uv=False)[:problem.width]
        out["loss"].append(problem.LOSS_SCALE * np.sum(R ** 2))
        out["distance"].append(np.linalg.norm(R))
        out["grad_norm"].append(np.linalg.norm(problem.grad(x)))
        out["imbalance_fro"].append(np.linalg.norm(U.T @ U - V.T @ V))
        out["singular_values"].append(np.pad(s, (0, problem.width - len(s))))
    return {name: np.array(v) for name, v in out.items()}


def assert_monitors_match(recorded, dense, rtol=1e-12):
    for name in DEFAULTS:
        scale = np.max(np.abs(dense[name]), axis=-1, keepdims=True) if name == "singular_values" else np.abs(dense[name])
        error = np.abs(recorded[name] - dense[name])
        assert np.all(error <= rtol * scale), f"{name}: {np.max(error / np.where(scale > 0, scale, 1)):.1e} of its scale"


def random_states(problem, seed, scales=(1e-3, 0.3, 2.0)):
    rng = np.random.default_rng(seed)
    return np.stack([scale * rng.standard_normal(problem.dim) for scale in scales])


@pytest.mark.parametrize("kind", list(KINDS))
@given(st.tuples(st.integers(1, 9), st.integers(1, 9), st.integers(1, 5), st.integers(1, 4), st.integers(0, 2**31 - 1)))
@settings(max_examples=40, deadline=None)
def test_default_monitors_match_dense_computations_on_a_stack_and_one_by_one(kind, shape):
    m, n, k, r, seed = shape
    n = m if kind == "sym" else n
    p = KINDS[kind].random(m=m, n=n, rank=min(r, m, n), width=k, condition=3.0, seed=seed)
    X = random_states(p, seed)
    fns = monitors.default(p)
    dense = dense_monitors(p, X)
    stacked = monitors.evaluate(fns, np.arange(len(X)), X)
    alone = {name: np.array([fn(0.0, x) for x in X]) for name, fn in fns.items()}
    assert_monitors_match(stacked, dense)
    assert_monitors_match(alone, dense)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("m, k, r, formed", [(12, 3, 2, False), (6, 4, 2, True), (5, 3, 2, True)])
def test_both_ways_to_the_gradient_norm_match_the_problems_gradient(kind, m, k, r, formed):
    p = KINDS[kind].random(m=m, n=m, rank=r, width=k, seed=7)
    assert monitors._forms_residual(p) is formed  # the shapes cover both sides of the rule
    X = random_states(p, 8)
    recorded = monitors.evaluate({"grad_norm": monitors.grad_norm(p)}, np.arange(len(X)), X)["grad_norm"]
    np.testing.assert_allclose(recorded, np.linalg.norm(p.grad(X), axis=-1), rtol=1e-12)


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_reduced_batch_records_the_monitors_of_its_full_states(kind):
    # reduced in (k + r)×(k + r) coordinates, where R is formed; compared with dense computations on the lifted
    # states, to rounding relative to each monitor's largest value over the run (the gradient falls by 1e6)
    p = KINDS[kind].random(m=40, n=40, rank=3, width=4, condition=3.0, seed=2)
    X0 = np.stack([init.gaussian(p, 1e-2, seed=s) for s in (3, 4)])
    batch = integrate(GradientFlow(p), X0, 8.0, t_eval=np.linspace(0.0, 8.0, 9), rtol=1e-10)
    for run in batch:
        assert run.meta["reduced"]
        dense = dense_monitors(p, run.states())
        for name in DEFAULTS:
            np.testing.assert_allclose(run.monitors[name], dense[name], rtol=1e-9, atol=1e-12 * np.max(dense[name]),
                                       err_msg=name)
