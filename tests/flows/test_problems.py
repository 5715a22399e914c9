"""Problems: packing, invariances, derivative checks (Taylor remainders, finite differences)."""

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import taylor_slope
from pgflow.flows import GradientFlow, LowRankTarget, MatrixFactorization, SymmetricFactorization

shapes = st.tuples(st.integers(1, 7), st.integers(1, 7), st.integers(1, 4), st.integers(0, 2**31 - 1))


def make(kind, m, n, width, seed):
    rank = max(1, min(m, n) // 2)
    if kind == "asym":
        return MatrixFactorization.random(m=m, n=n, rank=rank, width=width, condition=3.0, seed=seed)
    return SymmetricFactorization.random(m=m, rank=rank, width=width, condition=3.0, seed=seed)


@pytest.mark.parametrize("kind", ["asym", "sym"])
@given(shapes)
@settings(max_examples=40, deadline=None)
def test_pack_unpack_identity_and_views(kind, shape):
    m, n, k, seed = shape
    p = make(kind, m, n, k, seed)
    x = np.random.default_rng(seed).standard_normal(p.dim)
    factors = p.unpack(x)
    factors = factors if isinstance(factors, tuple) else (factors,)
    assert all(np.shares_memory(F, x) for F in factors)
    np.testing.assert_array_equal(p.pack(*factors), x)


@pytest.mark.parametrize("kind", ["asym", "sym"])
@given(shapes)
@settings(max_examples=40, deadline=None)
def test_loss_invariant_under_right_orthogonal_factor(kind, shape):
    m, n, k, seed = shape
    p = make(kind, m, n, k, seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(p.dim)
    Q = np.linalg.qr(rng.standard_normal((k, k)))[0]
    rotated = p.pack(*(F @ Q for F in (p.unpack(x) if kind == "asym" else (p.unpack(x),))))
    assert p.loss(rotated) == pytest.approx(p.loss(x), rel=1e-12)


@pytest.mark.parametrize("kind", ["asym", "sym"])
@given(shapes)
@settings(max_examples=30, deadline=None)
def test_hvp_is_symmetric_and_equals_dense_hessian(kind, shape):
    m, n, k, seed = shape
    p = make(kind, m, n, k, seed)
    rng = np.random.default_rng(seed)
    x, v, w = rng.standard_normal((3, p.dim))
    scale = np.linalg.norm(p.hvp(x, v)) * np.linalg.norm(w) + np.linalg.norm(p.hvp(x, w)) * np.linalg.norm(v)
    assert abs(w @ p.hvp(x, v) - v @ p.hvp(x, w)) <= 1e-12 * scale
    H = p.hessian(x)
    np.testing.assert_allclose(H, H.T, atol=1e-12 * np.abs(H).max())
    np.testing.assert_allclose(H @ v, p.hvp(x, v), rtol=1e-11, atol=1e-11 * np.abs(H).max() * np.abs(v).max())


@pytest.mark.parametrize("kind", ["asym", "sym"])
def test_taylor_remainder_slopes(kind, rng):
    p = make(kind, 6, 5, 3, 7)
    x, v = rng.standard_normal((2, p.dim))
    f0, g0 = p.loss(x), p.grad(x)
    Hv = p.hvp(x, v)
    slope1 = taylor_slope(p.loss, x, v, lambda h: f0 + h * g0 @ v)
    slope2 = taylor_slope(p.loss, x, v, lambda h: f0 + h * g0 @ v + 0.5 * h * h * v @ Hv)
    assert 1.9 <= slope1 <= 2.1
    assert 2.9 <= slope2 <= 3.1


def test_third_derivative_of_a_scalar_factorization_is_its_closed_form():
    # f(u, v) = ½(uv − s)²: f_uuu = f_vvv = 0, f_uuv = 2v, f_uvv = 2u
    p = MatrixFactorization(np.array([[1.5]]), width=1)
    u, v = 0.7, -1.3
    a, b = np.array([0.3, -2.0]), np.array([1.1, 0.4])
    expected = [2 * v * (a[0] * b[1] + a[1] * b[0]) + 2 * u * a[1] * b[1],
                2 * u * (a[0] * b[1] + a[1] * b[0]) + 2 * v * a[0] * b[0]]
    np.testing.assert_allclose(p.third_derivative(np.array([u, v]), a, b), expected, rtol=1e-15)


@pytest.mark.parametrize("kind", ["asym", "sym"])
@given(shapes)
@settings(max_examples=30, deadline=None)
def test_third_derivative_is_symmetric_and_the_derivative_of_hvp(kind, shape):
    m, n, k, seed = shape
    p = make(kind, m, n, k, seed)
    rng = np.random.default_rng(seed)
    x, a, b, c = rng.standard_normal((4, p.dim))
    T = p.third_derivative(x, a, b)
    scale = np.linalg.norm(a) * np.linalg.norm(b) * (np.linalg.norm(x) + 1.0)
    np.testing.assert_allclose(T, p.third_derivative(x, b, a), atol=1e-13 * scale)
    # ∇³f is a symmetric 3-tensor: ⟨c, T[a, b]⟩ = ⟨a, T[c, b]⟩
    assert abs(c @ T - a @ p.third_derivative(x, c, b)) <= 1e-12 * scale * np.linalg.norm(c)
    # hvp is quadratic in x (f is quartic), so its central difference along b is exact up to rounding
    h = 0.5
    fd = (p.hvp(x + h * b, a) - p.hvp(x - h * b, a)) / (2 * h)
    np.testing.assert_allclose(T, fd, atol=1e-12 * scale)


@pytest.mark.parametrize("kind", ["asym", "sym"])
def test_hessian_equals_finite_differences_of_grad(kind, rng):
    p = make(kind, 5, 4, 2, 3)
    x = rng.standard_normal(p.dim)
    h = 1e-6
    fd = np.column_stack([(p.grad(x + h * e) - p.grad(x - h * e)) / (2 * h) for e in np.eye(p.dim)])
    np.testing.assert_allclose(p.hessian(x), fd, atol=1e-7 * np.abs(fd).max())


def test_factored_gradient_equals_dense_gradient(rng):
    p = MatrixFactorization.random(m=30, n=20, rank=4, width=6, condition=5.0, seed=1)
    x = rng.standard_normal(p.dim)
    U, V = p.unpack(x)
    R = p.target.dense() - U @ V.T
    np.testing.assert_allclose(p.grad(x), p.pack(-R @ V, -R.T @ U), rtol=1e-12, atol=1e-12 * np.abs(R).max())
    assert p.loss(x) == pytest.approx(0.5 * np.sum(R ** 2), rel=1e-12)


def test_loss_is_accurate_next_to_a_minimum():
    """The residual is 1e-9 against factors of size 1: a Gram-trace formula would return rounding noise."""
    p = MatrixFactorization.random(m=8, n=7, rank=2, width=2, condition=4.0, seed=2)
    t = p.target
    U, V = t.Phi * t.sigma, t.Psi.copy()
    V[0, 0] += 1e-9
    exact = np.linalg.norm(U @ V.T - t.dense())
    assert p.residual_norm(p.pack(U, V)) == pytest.approx(exact, rel=1e-6)


@pytest.mark.parametrize("kind", ["asym", "sym"])
def test_batched_states_give_the_rowwise_results(kind, rng):
    p = make(kind, 6, 4, 3, 0)
    X = rng.standard_normal((5, p.dim))
    np.testing.assert_allclose(p.grad(X), np.stack([p.grad(x) for x in X]), rtol=1e-14, atol=1e-13)
    np.testing.assert_allclose(p.loss(X), [p.loss(x) for x in X], rtol=1e-13)
    np.testing.assert_allclose(p.hvp(X, X[::-1]), np.stack([p.hvp(x, v) for x, v in zip(X, X[::-1])]),
                               rtol=1e-13, atol=1e-12)


def test_dense_target_is_factored_once_with_its_numerical_rank(rng):
    A = rng.standard_normal((9, 3)) @ rng.standard_normal((3, 7))
    p = MatrixFactorization(A, width=4)
    assert p.target.rank == 3
    np.testing.assert_allclose(p.target.dense(), A, atol=1e-12)
    np.testing.assert_allclose(p.target.Phi.T @ p.target.Phi, np.eye(3), atol=1e-12)


def test_random_target_has_the_prescribed_spectrum():
    t = LowRankTarget.random(12, 9, 4, condition=8.0, seed=5)
    np.testing.assert_allclose(np.linalg.svd(t.dense(), compute_uv=False)[:4], np.linspace(8, 1, 4), rtol=1e-12)
    assert t.condition == pytest.approx(8.0)
    same = LowRankTarget.random(12, 9, 4, condition=8.0, seed=5)
    np.testing.assert_array_equal(same.Phi, t.Phi)
    t2 = LowRankTarget.random(5, 5, 2, singular_values=[1.0, 3.0], seed=0)
    np.testing.assert_array_equal(t2.sigma, [3.0, 1.0])


@pytest.mark.parametrize("call, match", [
    (lambda: LowRankTarget.random(4, 3, 4), "rank must be <= min"),
    (lambda: LowRankTarget.random(4, 3, 2, condition=0.5), "condition must be >= 1"),
    (lambda: LowRankTarget.random(4, 3, 0), "rank must be an integer >= 1"),
    (lambda: LowRankTarget.random(4, 3, 2, singular_values=[1.0, -1.0]), "singular_values must be positive"),
    (lambda: LowRankTarget.random(4, 3, 2, seed=None), "seed is required"),
    (lambda: MatrixFactorization(np.ones((3, 3)), width=0), "width must be an integer >= 1"),
    (lambda: MatrixFactorization(np.ones(3), width=1), "target must be 2-D"),
    (lambda: MatrixFactorization(np.array([[1.0, np.nan]]), width=1), "target must be finite"),
    (lambda: MatrixFactorization(np.zeros((3, 2)), width=1), "target must be non-zero"),
    (lambda: SymmetricFactorization(np.ones((3, 2)), width=1), "target must be square"),
    (lambda: SymmetricFactorization(np.triu(np.ones((3, 3))), width=1), "target must be symmetric"),
])
def test_bad_problem_input_raises_a_clear_error(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_bad_state_shapes_raise():
    p = MatrixFactorization.random(m=4, n=3, rank=1, width=2, seed=0)
    with pytest.raises(ValueError, match=r"x must have shape \(14,\) or \(B, 14\), got \(13,\)"):
        p.grad(np.zeros(13))
    with pytest.raises(ValueError, match=r"out must have the shape of x, \(14,\), got \(2, 14\)"):
        p.grad(np.zeros(14), out=np.zeros((2, 14)))
    with pytest.raises(ValueError, match=r"U must have shape \(4, 2\)"):
        p.pack(np.zeros((2, 4)), np.zeros((3, 2)))
    with pytest.raises(TypeError, match="pack takes 2 factor"):
        p.pack(np.zeros((4, 2)))


def dense_gradient(p, X):
    """∇f = ((UVᵀ − Σ)V, (UVᵀ − Σ)ᵀU) from the dense residual, for a state or a stack of states."""
    U, V = p.unpack(X)
    R = U @ V.mT - p.target.dense()
    return p.pack(R @ V, R.mT @ U)


@given(shapes, st.integers(1, 5))
@settings(max_examples=40, deadline=None)
def test_batched_gradient_is_the_dense_formula_for_every_output_layout(shape, B):
    m, n, k, seed = shape
    p = make("asym", m, n, k, seed)
    X = np.random.default_rng(seed).standard_normal((B, p.dim))
    expected = dense_gradient(p, X)
    tol = dict(rtol=1e-12, atol=1e-12 * np.abs(expected).max())
    np.testing.assert_allclose(p.grad(X), expected, **tol)
    out = np.empty((B, p.dim))
    assert p.grad(X, out=out) is out
    np.testing.assert_allclose(out, expected, **tol)
    strided = np.zeros((B, 2 * p.dim))[:, ::2]  # not contiguous: the result is copied in
    assert p.grad(X, out=strided) is strided
    np.testing.assert_allclose(strided, expected, **tol)


@pytest.mark.parametrize("kind", ["asym", "sym"])
@given(shapes, st.integers(1, 4))
@settings(max_examples=30, deadline=None)
def test_negative_gradient_is_minus_the_gradient_bit_for_bit(kind, shape, B):
    m, n, k, seed = shape
    p = make(kind, m, n, k, seed)
    X = np.random.default_rng(seed).standard_normal((B, p.dim))
    # negating the small middle factors is exact, like negating the product
    np.testing.assert_array_equal(p.negative_grad(X), -p.grad(X))
    np.testing.assert_array_equal(p.negative_grad(X[0]), -p.grad(X[0]))
    out = np.empty_like(X)
    assert p.negative_grad(X, out=out) is out
    np.testing.assert_array_equal(out, -p.grad(X))
    np.testing.assert_array_equal(GradientFlow(p)(0.0, X), -p.grad(X))


def test_a_problem_with_only_a_gradient_still_flows():
    p = make("asym", 5, 4, 2, 0)

    class GradOnly:  # the minimal problem protocol of flows.dynamics: a grad, no negative_grad
        grad = staticmethod(p.grad)

    x = np.random.default_rng(0).standard_normal(p.dim)
    np.testing.assert_array_equal(GradientFlow(GradOnly())(0.0, x), -p.grad(x))


def test_batch_workspaces_stay_out_of_pickles():
    p = make("asym", 5, 5, 2, 0)
    X = np.random.default_rng(0).standard_normal((3, p.dim))
    before = p.grad(X)
    clone = pickle.loads(pickle.dumps(p))
    assert "_work" in vars(p) and "_work" not in vars(clone)
    np.testing.assert_array_equal(clone.grad(X), before)


def test_gradient_output_must_be_float64_and_follows_a_replaced_target():
    p = make("asym", 6, 4, 2, 0)
    X = np.random.default_rng(1).standard_normal((3, p.dim))
    with pytest.raises(TypeError, match="out must be a float64 array, got dtype float32"):
        p.grad(X, out=np.empty(X.shape, dtype=np.float32))
    p.grad(X)  # builds the workspaces from the first target
    p.target = make("asym", 6, 4, 2, 7).target
    np.testing.assert_allclose(p.grad(X), dense_gradient(p, X), rtol=1e-12, atol=1e-12)
