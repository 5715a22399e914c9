"""analysis.compare: alignment of GD with the flow, distances in the state, in UVᵀ and in monitors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pgflow.analysis as analysis
from pgflow.analysis.compare import Comparison, compare
from pgflow.flows import (GradientFlow, MatrixFactorization, SymmetricFactorization, Trajectory, gradient_descent, init,
                          integrate, monitors)


@pytest.fixture(scope="module")
def runs():
    p = MatrixFactorization.random(m=7, n=5, rank=2, width=3, condition=3.0, seed=0)
    x0 = init.gaussian(p, 0.3, seed=1)
    gd = gradient_descent(p, x0, step_size=0.02, n_steps=50)
    flow = integrate(GradientFlow(p), x0, 1.0, t_eval=gd.t, rtol=1e-11, atol=1e-13)
    return p, x0, gd, flow


def dense_product_distance(a, b):
    return np.linalg.norm(np.einsum("tik,tjk->tij", a.U, a.V) - np.einsum("tik,tjk->tij", b.U, b.V), axis=(1, 2))


def test_same_grid_is_compared_directly(runs):
    p, _, gd, flow = runs
    c = analysis.compare(gd, flow)
    assert isinstance(c, Comparison) and c.meta["alignment"] == "grid"
    np.testing.assert_array_equal(c.t, gd.t)
    np.testing.assert_allclose(c.state, np.linalg.norm(gd.x - flow.x, axis=1), rtol=1e-14, atol=0)
    np.testing.assert_allclose(c.product, dense_product_distance(gd, flow), rtol=1e-10, atol=1e-14)
    assert set(c.monitors) == set(monitors.default(p)) and not c.meta["skipped_monitors"]
    np.testing.assert_allclose(c.monitors["loss"], np.abs(gd.monitors["loss"] - flow.monitors["loss"]), rtol=1e-14)
    sv = np.linalg.norm(gd.monitors["singular_values"] - flow.monitors["singular_values"], axis=1)
    np.testing.assert_allclose(c.monitors["singular_values"], sv, rtol=1e-14)
    assert c.state[0] == 0 and c.product[0] <= 1e-14 * c.product_scale[0]
    # GD is O(η) from GF: visible but small
    assert 1e-4 < c.product_relative[-1] < 0.1


def test_finer_grid_is_indexed_not_interpolated(runs):
    p, x0, gd, _ = runs
    fine = integrate(GradientFlow(p), x0, 1.0, t_eval=np.linspace(0, 1.0, 201), rtol=1e-11, atol=1e-13)
    c = compare(gd, fine)
    assert c.meta["alignment"] == "grid"
    np.testing.assert_allclose(c.state, np.linalg.norm(gd.x - fine.x[::4], axis=1), rtol=1e-14)


def test_dense_output_alignment_and_monitors(runs):
    p, x0, gd, _ = runs
    flow = integrate(GradientFlow(p), x0, 1.0, method="RK45", rtol=1e-10, atol=1e-12, dense_output=True)
    assert not np.isin(gd.t[1:-1], flow.t).all()
    bare = compare(gd, flow)
    assert bare.meta["alignment"] == "dense" and bare.monitors == {}
    assert set(bare.meta["skipped_monitors"]) == set(gd.monitors)
    np.testing.assert_allclose(bare.state, np.linalg.norm(gd.x - flow.at(gd.t), axis=1), rtol=1e-14)
    c = compare(gd, flow, problem=p)
    assert set(c.monitors) == set(gd.monitors) and not c.meta["skipped_monitors"]
    loss_b = np.array([p.loss(x) for x in flow.at(gd.t)])
    np.testing.assert_allclose(c.monitors["loss"], np.abs(gd.monitors["loss"] - loss_b), rtol=1e-12, atol=1e-16)
    only = compare(gd, flow, monitors={"loss": monitors.loss(p)})
    assert set(only.monitors) == {"loss"} and "distance" in only.meta["skipped_monitors"]


def test_product_distance_is_blind_to_the_orthogonal_symmetry(runs):
    p, _, gd, _ = runs
    Q = np.linalg.qr(np.random.default_rng(3).standard_normal((3, 3)))[0]
    rotated = Trajectory(t=gd.t, x=p.pack(gd.U @ Q, gd.V @ Q), layout=gd.layout)
    c = compare(gd, rotated)
    assert c.state[-1] > 0.1
    assert np.max(c.product_relative) < 1e-13


def test_symmetric_problem_compares_XXt():
    p = SymmetricFactorization.random(m=6, rank=2, width=2, condition=2.0, seed=4)
    x0 = init.gaussian(p, 0.3, seed=5)
    gd = gradient_descent(p, x0, step_size=0.05, n_steps=20)
    flow = integrate(GradientFlow(p), x0, 1.0, t_eval=gd.t, rtol=1e-11, atol=1e-13)
    c = compare(gd, flow)
    X, Y = gd.U, flow.U
    expected = np.linalg.norm(X @ np.swapaxes(X, 1, 2) - Y @ np.swapaxes(Y, 1, 2), axis=(1, 2))
    np.testing.assert_allclose(c.product, expected, rtol=1e-10, atol=1e-15)


@given(st.integers(1, 6), st.integers(1, 6), st.integers(1, 4), st.integers(0, 2**31 - 1))
@settings(max_examples=30, deadline=None)
def test_product_distance_matches_the_dense_difference(m, n, k, seed):
    p = MatrixFactorization.random(m=m, n=n, rank=1, width=k, seed=seed)
    rng = np.random.default_rng(seed)
    t = np.arange(3.0)
    a = Trajectory(t=t, x=rng.standard_normal((3, p.dim)), layout=p.layout)
    b = Trajectory(t=t, x=rng.standard_normal((3, p.dim)), layout=p.layout)
    c = compare(a, b)
    np.testing.assert_allclose(c.product, dense_product_distance(a, b), rtol=1e-10)
    np.testing.assert_allclose(c.product_scale, np.linalg.norm(np.einsum("tik,tjk->tij", b.U, b.V), axis=(1, 2)),
                               rtol=1e-10)


def test_relative_distances_handle_zero_scale():
    p = MatrixFactorization.random(m=3, n=2, rank=1, width=1, seed=0)
    zero = Trajectory(t=np.array([0.0]), x=np.zeros((1, p.dim)), layout=p.layout)
    c = compare(zero, zero)
    assert c.state_relative[0] == 0 and c.product_relative[0] == 0


def test_bad_input(runs):
    p, x0, gd, flow = runs
    with pytest.raises(TypeError, match="a must be a Trajectory"):
        compare(gd.x, flow)
    other = MatrixFactorization.random(m=6, n=5, rank=2, width=3, seed=0)
    with pytest.raises(ValueError, match="same factor layout"):
        compare(gd, Trajectory(t=gd.t, x=np.zeros((len(gd.t), other.dim)), layout=other.layout))
    coarse = integrate(GradientFlow(p), x0, 1.0, t_eval=[0.0, 0.5, 1.0], dense_output=False)
    with pytest.raises(ValueError, match="no dense output"):
        compare(gd, coarse)
    short = integrate(GradientFlow(p), x0, 0.5, dense_output=True)
    with pytest.raises(ValueError, match="b must cover the times of a"):
        compare(gd, short)
