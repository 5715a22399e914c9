"""Measurement operators, matrix sensing and matrix completion."""

import json

import numpy as np
import pytest
import scipy.sparse
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import taylor_slope
from pgflow.flows import GradientFlow, LowRankTarget, gradient_descent, init, integrate
from pgflow.flows.monitors import default as default_monitors
from pgflow.flows.operators import DenseOperator, EntrySampling, RankOneOperator, rip_estimate
from pgflow.flows.sensing import MatrixCompletion, MatrixSensing

sizes = st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 30), st.integers(0, 2**31 - 1))


def operators(m, n, p, seed):
    """One operator of each kind (dense with and without the Gram matrix, rank-one, sampling with repeats)."""
    rng = np.random.default_rng(seed)
    return {"dense": DenseOperator.gaussian((m, n), p, seed, gram=False),
            "dense_gram": DenseOperator.gaussian((m, n), p, seed, gram=True),
            "rank_one": RankOneOperator.gaussian((m, n), p, seed),
            "entries": EntrySampling((m, n), rng.integers(0, m, p), rng.integers(0, n, p))}


@given(sizes)
@settings(max_examples=40, deadline=None)
def test_adjoint_is_the_transpose(size):
    m, n, p, seed = size
    rng = np.random.default_rng(seed + 1)
    X, y = rng.standard_normal((m, n)), rng.standard_normal(p)
    for name, op in operators(m, n, p, seed).items():
        lhs, rhs = op.apply(X) @ y, np.sum(X * op.adjoint(y))
        assert abs(lhs - rhs) <= 1e-12 * (1 + np.linalg.norm(op.apply(X)) * np.linalg.norm(y)), name


@given(sizes, st.integers(1, 4))
@settings(max_examples=40, deadline=None)
def test_products_agree_with_apply_adjoint_and_matrix(size, k):
    m, n, p, seed = size
    rng = np.random.default_rng(seed + 2)
    U, V, y = rng.standard_normal((m, k)), rng.standard_normal((n, k)), rng.standard_normal(p)
    X = U @ V.T
    for name, op in operators(m, n, p, seed).items():
        scale = 1 + np.abs(op.apply(X)).max()
        np.testing.assert_allclose(op.apply_factored(U, V), op.apply(X), atol=1e-12 * scale, err_msg=name)
        np.testing.assert_allclose(op.as_matrix() @ X.ravel(), op.apply(X), atol=1e-12 * scale, err_msg=name)
        M = op.adjoint(y)
        AV, AtU = op.adjoint_products(y, U, V)
        np.testing.assert_allclose(AV, M @ V, atol=1e-12 * (1 + np.abs(M @ V).max()), err_msg=name)
        np.testing.assert_allclose(AtU, M.T @ U, atol=1e-12 * (1 + np.abs(M.T @ U).max()), err_msg=name)
        N = op.normal(X)
        np.testing.assert_allclose(N, op.adjoint(op.apply(X)), atol=1e-12 * (1 + np.abs(N).max()), err_msg=name)


@given(sizes)
@settings(max_examples=40, deadline=None)
def test_sampling_incidences_are_the_canonical_sparse_matrices(size):
    """Built directly, they hold what scipy's COO route gives (so every scatter sums in the same order)."""
    m, n, p, seed = size
    op = operators(m, n, p, seed)["entries"]
    ids = np.arange(p)
    for S, (rows, cols, shape) in ((op._row_incidence, (op.rows, ids, (m, p))),
                                   (op._col_incidence, (op.cols, ids, (n, p))),
                                   (op.as_matrix(), (ids, op.rows * n + op.cols, (p, m * n)))):
        ref = scipy.sparse.csr_array((np.full(p, op.scale), (rows, cols)), shape=shape)
        assert S.shape == ref.shape
        for part in ("indptr", "indices", "data"):
            np.testing.assert_array_equal(getattr(S, part), getattr(ref, part))


def test_operators_accept_batches():
    rng = np.random.default_rng(0)
    U, V, y = rng.standard_normal((3, 5, 2)), rng.standard_normal((3, 4, 2)), rng.standard_normal((3, 7))
    for name, op in operators(5, 4, 7, 1).items():
        for b in range(3):
            np.testing.assert_allclose(op.apply_factored(U, V)[b], op.apply_factored(U[b], V[b]), rtol=1e-13)
            np.testing.assert_allclose(op.adjoint(y)[b], op.adjoint(y[b]), rtol=1e-13, atol=1e-15)
            for got, want in zip(op.adjoint_products(y, U, V), op.adjoint_products(y[b], U[b], V[b])):
                np.testing.assert_allclose(got[b], want, rtol=1e-13, atol=1e-15, err_msg=name)


def test_gaussian_operator_is_normalized():
    # E[𝒜*𝒜] = I: averaged over many measurements ‖𝒜X‖² ≈ ‖X‖²
    X = np.random.default_rng(3).standard_normal((6, 5))
    for op in (DenseOperator.gaussian((6, 5), 20000, seed=0), RankOneOperator.gaussian((6, 5), 20000, seed=0)):
        assert np.sum(op.apply(X) ** 2) / np.sum(X ** 2) == pytest.approx(1.0, abs=0.05)
    full = EntrySampling.from_mask(np.ones((6, 5), dtype=bool))
    np.testing.assert_allclose(full.normal(X), X, rtol=1e-14)


def test_rip_estimate():
    full = EntrySampling.from_mask(np.ones((6, 5), dtype=bool))
    assert rip_estimate(full, 2, seed=0) < 1e-13
    many = rip_estimate(DenseOperator.gaussian((8, 8), 2000, seed=0), 2, seed=1)
    few = rip_estimate(DenseOperator.gaussian((8, 8), 40, seed=0), 2, seed=1)
    assert many < 0.2 < few
    assert rip_estimate(RankOneOperator.gaussian((8, 8), 40, seed=0), 2, seed=1) == \
        rip_estimate(RankOneOperator.gaussian((8, 8), 40, seed=0), 2, seed=1)
    with pytest.raises(ValueError, match="seed is required"):
        rip_estimate(full, 2, seed=None)
    with pytest.raises(ValueError, match="rank must be <= min"):
        rip_estimate(full, 6, seed=0)


def sensing(kind, m=6, n=5, rank=2, width=3, seed=0):
    target = LowRankTarget.random(m, n, rank, condition=3.0, seed=seed)
    if kind == "completion":
        return MatrixCompletion(target, 0.7, width, seed=seed + 1)
    if kind == "noisy":
        return MatrixSensing.gaussian(target, 25, width, seed=seed + 1, noise=0.1)
    return MatrixSensing.gaussian(target, {"dense": 25, "dense_big": 100}.get(kind, 25), width, seed=seed + 1,
                                  rank_one=kind == "rank_one", gram={"dense": False}.get(kind, "auto"))


KINDS = ["dense", "dense_big", "rank_one", "completion", "noisy"]


def test_kinds_cover_both_dense_paths():
    assert sensing("dense").operator.gram is None and sensing("dense_big").operator.gram is not None


@pytest.mark.parametrize("kind", KINDS)
def test_taylor_remainder_slopes(kind, rng):
    p = sensing(kind)
    x, v = rng.standard_normal((2, p.dim))
    f0, g0, Hv = p.loss(x), p.grad(x), p.hvp(x, v)
    hs = np.logspace(-2, -4, 7)  # the loss is quartic: at h ~ 0.1 its h⁴ term still bends the slope
    assert 1.9 <= taylor_slope(p.loss, x, v, lambda h: f0 + h * g0 @ v, hs) <= 2.1
    assert 2.9 <= taylor_slope(p.loss, x, v, lambda h: f0 + h * g0 @ v + 0.5 * h * h * v @ Hv, hs) <= 3.1


@pytest.mark.parametrize("kind", KINDS)
def test_hessian_is_symmetric_equals_hvp_and_finite_differences(kind, rng):
    p = sensing(kind)
    x, v, w = rng.standard_normal((3, p.dim))
    assert abs(w @ p.hvp(x, v) - v @ p.hvp(x, w)) <= 1e-12 * np.linalg.norm(p.hvp(x, v)) * np.linalg.norm(w)
    H = p.hessian(x)
    np.testing.assert_allclose(H, H.T, atol=1e-12 * np.abs(H).max())
    np.testing.assert_allclose(H @ v, p.hvp(x, v), atol=1e-11 * np.abs(H).max() * np.abs(v).max())
    h = 1e-6
    fd = np.column_stack([(p.grad(x + h * e) - p.grad(x - h * e)) / (2 * h) for e in np.eye(p.dim)])
    np.testing.assert_allclose(H, fd, atol=1e-7 * np.abs(fd).max())


@pytest.mark.parametrize("kind", KINDS)
def test_third_derivative_is_the_exact_difference_of_hvp(kind, rng):
    # f is quartic: hvp is quadratic in x and its central difference along b is exact up to rounding
    p = sensing(kind)
    x, a, b = rng.standard_normal((3, p.dim))
    T = p.third_derivative(x, a, b)
    fd = (p.hvp(x + 0.5 * b, a) - p.hvp(x - 0.5 * b, a)) / 1.0
    np.testing.assert_allclose(T, fd, atol=1e-12 * np.abs(fd).max())
    np.testing.assert_allclose(T, p.third_derivative(x, b, a), atol=1e-13 * np.abs(T).max())


@pytest.mark.parametrize("kind", KINDS)
def test_batched_states(kind, rng):
    p = sensing(kind)
    X, Vs = rng.standard_normal((2, 4, p.dim))
    G, L, Hv = p.grad(X), p.loss(X), p.hvp(X, Vs)
    for b in range(4):
        np.testing.assert_allclose(G[b], p.grad(X[b]), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(Hv[b], p.hvp(X[b], Vs[b]), rtol=1e-12, atol=1e-12)
        assert L[b] == pytest.approx(p.loss(X[b]), rel=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_negative_gradient_is_minus_the_gradient_bit_for_bit(kind, rng):
    p = sensing(kind)
    X = rng.standard_normal((3, p.dim))
    np.testing.assert_array_equal(p.negative_grad(X), -p.grad(X))
    np.testing.assert_array_equal(GradientFlow(p)(0.0, X[0]), -p.grad(X[0]))
    with pytest.raises(ValueError, match="x must have shape"):
        p.grad(X[:, 1:])


@pytest.mark.parametrize("kind", KINDS)
def test_loss_invariant_and_zero_at_the_target(kind, rng):
    p = sensing(kind)
    x = rng.standard_normal(p.dim)
    Q = np.linalg.qr(rng.standard_normal((p.width, p.width)))[0]
    U, V = p.unpack(x)
    assert p.loss(p.pack(U @ Q, V @ Q)) == pytest.approx(p.loss(x), rel=1e-12)
    star = p.pack(*p.target_factors())
    assert p.residual_norm(star) < 1e-14
    noise = 0.5 * np.sum(p.noise_vector ** 2)
    assert p.loss(star) == pytest.approx(noise, rel=1e-12, abs=1e-28)


def test_rank_one_operator_gives_the_gradient_of_its_dense_equivalent(rng):
    target = LowRankTarget.random(7, 5, 2, seed=0)
    r1 = RankOneOperator.gaussian((7, 5), 30, seed=1)
    dense = DenseOperator(np.einsum("pi,pj->pij", r1.left, r1.right))
    a, b = MatrixSensing(target, r1, 3), MatrixSensing(target, dense, 3)
    for _ in range(3):
        x, v = rng.standard_normal((2, a.dim))
        np.testing.assert_allclose(a.grad(x), b.grad(x), rtol=1e-12, atol=1e-12 * np.abs(b.grad(x)).max())
        np.testing.assert_allclose(a.hvp(x, v), b.hvp(x, v), rtol=1e-12, atol=1e-12 * np.abs(b.hvp(x, v)).max())
        assert a.loss(x) == pytest.approx(b.loss(x), rel=1e-12)


def test_completion_adjoint_is_the_transpose_and_scatters_the_mask(rng):
    target = LowRankTarget.random(6, 7, 2, seed=0)
    mask = rng.random((6, 7)) < 0.5
    p = MatrixCompletion(target, mask, 2)
    op = p.operator
    X, y = rng.standard_normal((6, 7)), rng.standard_normal(op.n_measurements)
    assert op.apply(X) @ y == pytest.approx(np.sum(X * op.adjoint(y)), rel=1e-12)
    np.testing.assert_array_equal(op.mask, mask)
    np.testing.assert_allclose(op.normal(X), op.scale ** 2 * mask * X, rtol=1e-14)
    assert op.scale == pytest.approx(np.sqrt(42 / mask.sum()))


def test_minibatch_problem_is_unbiased(rng):
    for kind in ("dense_big", "rank_one", "completion", "noisy"):
        p = sensing(kind)
        x = rng.standard_normal(p.dim)
        q = p.operator.n_measurements
        mean = np.mean([p.minibatch([i]).grad(x) for i in range(q)], axis=0)
        np.testing.assert_allclose(mean, p.grad(x), rtol=1e-11, atol=1e-11 * np.abs(p.grad(x)).max())
        whole = p.minibatch(np.arange(q))
        np.testing.assert_allclose(whole.grad(x), p.grad(x), rtol=1e-12, atol=1e-12 * np.abs(p.grad(x)).max())


@given(st.sampled_from(KINDS), st.integers(1, 25), st.integers(0, 2**31 - 1))
@settings(max_examples=40, deadline=None)
def test_minibatch_is_the_checked_problem_on_the_batch(kind, b, seed):
    """minibatch builds from this problem's checked parts: the same numbers as the checked constructor."""
    p = sensing(kind, seed=seed % 1000)
    q = p.operator.n_measurements
    rng = np.random.default_rng(seed)
    idx = rng.choice(q, size=min(b, q), replace=False)
    batch = p.minibatch(idx)
    checked = MatrixSensing(p.target, p.operator.subset(idx), p.width,
                            measurements=np.sqrt(q / idx.size) * p.measurements[idx])
    x, v = rng.standard_normal((2, 3, p.dim))
    for method in ("grad", "loss"):
        np.testing.assert_array_equal(getattr(batch, method)(x), getattr(checked, method)(x))
    np.testing.assert_array_equal(batch.grad(x[0], out=np.empty(p.dim)), checked.grad(x[0]))
    np.testing.assert_array_equal(batch.hvp(x[0], v[0]), checked.hvp(x[0], v[0]))
    np.testing.assert_array_equal(batch.noise_vector, checked.noise_vector)
    assert batch.describe() == checked.describe() and not batch.measurements.flags.writeable
    assert type(batch) is MatrixSensing and batch.operator.gram is None


def test_noise_is_seeded_and_recorded():
    target = LowRankTarget.random(6, 5, 2, seed=0)
    a = MatrixSensing.gaussian(target, 30, 2, seed=4, noise=0.3)
    b = MatrixSensing.gaussian(target, 30, 2, seed=4, noise=0.3)
    clean = MatrixSensing.gaussian(target, 30, 2, seed=4)
    np.testing.assert_array_equal(a.measurements, b.measurements)
    np.testing.assert_allclose(a.measurements - clean.measurements, a.noise_vector, rtol=1e-12, atol=1e-15)
    assert 0.1 < np.std(a.noise_vector) < 0.6 and not np.any(clean.noise_vector)
    given_y = MatrixSensing(target, a.operator, 2, measurements=a.measurements)
    np.testing.assert_allclose(given_y.noise_vector, a.noise_vector, atol=1e-14)
    json.dumps(a.describe())
    assert a.describe()["noise"] == 0.3 and a.describe()["operator"]["n_measurements"] == 30


def test_random_constructors_share_the_factorization_target():
    from pgflow.flows import MatrixFactorization
    mf = MatrixFactorization.random(6, 5, 2, 3, condition=2.0, seed=9)
    s = MatrixSensing.random(6, 5, 2, 3, 40, condition=2.0, seed=9)
    c = MatrixCompletion.random(6, 5, 2, 3, 0.5, condition=2.0, seed=9)
    np.testing.assert_array_equal(s.target.dense(), mf.target.dense())
    np.testing.assert_array_equal(c.target.dense(), mf.target.dense())
    assert c.operator.n_measurements == 15
    again = MatrixCompletion.random(6, 5, 2, 3, 0.5, condition=2.0, seed=9)
    np.testing.assert_array_equal(again.operator.mask, c.operator.mask)


def test_initializers_and_monitors_work_unchanged():
    p = sensing("rank_one")
    x0 = init.spectral(p, [0.1, 0.2])
    x1 = init.balanced(p, 0.1, seed=0)
    U, V = p.unpack(x1)
    np.testing.assert_allclose(U.T @ U, V.T @ V, atol=1e-14)
    values = {name: fn(0.0, x0) for name, fn in default_monitors(p).items()}
    assert values["distance"] == pytest.approx(p.residual_norm(x0))


@pytest.mark.parametrize("rank_one", [False, True])
def test_compressive_gaussian_sensing_recovers_the_target(rank_one):
    m = n = 20
    r, k = 2, 4
    p_meas = 3 * r * (m + n)
    assert p_meas < m * n
    p = MatrixSensing.random(m, n, r, k, p_meas, singular_values=[2.0, 1.0], rank_one=rank_one, seed=0)
    x0 = init.gaussian(p, 1e-6, seed=1)
    norm = p.target.frobenius_norm
    flow = integrate(GradientFlow(p), x0, 60.0, t_eval=[0.0, 30.0, 60.0], rtol=1e-10, atol=1e-14)
    gd = gradient_descent(p, x0, 0.1, 600, save_every=100)
    flow_error = flow.monitors["distance"][-1] / norm
    gd_error = gd.monitors["distance"][-1] / norm
    assert flow_error <= 1e-3 and gd_error <= 1e-3
    # the solver tolerance sits far below the error measured
    assert 1e-10 * np.abs(flow.x[-1]).max() < 1e-2 * flow_error * norm


def test_completion_recovers_the_target():
    p = MatrixCompletion.random(20, 20, 2, 4, 0.5, singular_values=[2.0, 1.0], seed=0)
    x0 = init.gaussian(p, 1e-6, seed=1)
    flow = integrate(GradientFlow(p), x0, 40.0, t_eval=[0.0, 40.0], rtol=1e-10, atol=1e-14)
    assert flow.monitors["distance"][-1] / p.target.frobenius_norm <= 1e-3


def test_implicit_solver_gets_the_analytic_sensing_jacobian():
    p = sensing("dense_big")
    x0 = init.gaussian(p, 0.1, seed=2)
    a = integrate(GradientFlow(p), x0, 5.0, method="Radau", t_eval=[5.0], rtol=1e-9, atol=1e-12)
    b = integrate(GradientFlow(p), x0, 5.0, method="DOP853", t_eval=[5.0], rtol=1e-11, atol=1e-13)
    assert a.meta["jacobian"] == "analytic"
    np.testing.assert_allclose(a.x, b.x, atol=1e-7)


@pytest.mark.parametrize("call, message", [
    (lambda t: MatrixSensing(t, DenseOperator.gaussian((5, 6), 10, seed=0), 2), "operator must have shape"),
    (lambda t: MatrixSensing(t, np.eye(3), 2), "operator must be a measurement operator"),
    (lambda t: MatrixSensing.gaussian(t, 10, 2, seed=0, noise=-1.0), "noise must be non-negative"),
    (lambda t: MatrixSensing(t, DenseOperator.gaussian((6, 5), 10, seed=0), 2, noise=0.1), "noise > 0 needs a seed"),
    (lambda t: MatrixSensing(t, DenseOperator.gaussian((6, 5), 10, seed=0), 2, measurements=np.ones(9)),
     r"measurements must have shape \(10\)"),
    (lambda t: MatrixSensing.gaussian(t, 10, 2, seed=None), "seed is required"),
    (lambda t: MatrixSensing.gaussian(t, 10, 2, seed=0, rank_one=True, gram=True), "gram applies to dense"),
    (lambda t: MatrixCompletion(t, np.zeros((6, 5), dtype=bool), 2), "mask observes nothing"),
    (lambda t: MatrixCompletion(t, np.ones((5, 6), dtype=bool), 2), "boolean mask of shape"),
    (lambda t: MatrixCompletion(t, np.ones((6, 5)), 2), "mask must be a 2-D boolean array"),
    (lambda t: MatrixCompletion(t, 0.5, 2), "needs a seed"),
    (lambda t: MatrixCompletion(t, 1.5, 2, seed=0), r"observed must lie in \(0, 1\]"),
    (lambda t: MatrixCompletion(t, 0.0, 2, seed=0), "observed must be positive"),
])
def test_bad_problem_input(call, message):
    target = LowRankTarget.random(6, 5, 2, seed=0)
    with pytest.raises((ValueError, TypeError), match=message):
        call(target)


@pytest.mark.parametrize("call, message", [
    (lambda: DenseOperator(np.ones((4, 5))), "matrices must be 3-D"),
    (lambda: DenseOperator(np.ones((4, 5, 3)), gram="yes"), "gram must be"),
    (lambda: DenseOperator(np.ones((4, 5, 3)), scale=-1.0), "scale must be positive"),
    (lambda: DenseOperator.gaussian((4, 5), 10, seed=0).apply(np.ones((5, 4))), r"X must have shape \(4, 5\)"),
    (lambda: DenseOperator.gaussian((4, 5), 10, seed=0).adjoint(np.ones(9)), "y must have last dimension 10"),
    (lambda: DenseOperator.gaussian((4,), 10, seed=0), "shape must be a pair"),
    (lambda: RankOneOperator(np.ones((4, 3)), np.ones((5, 2))), "same number of rows"),
    (lambda: RankOneOperator.gaussian((4, 5), 0, seed=0), "n_measurements must be an integer >= 1"),
    (lambda: EntrySampling((3, 3), [0, 3], [0, 1]), r"rows must lie in \[0, 3\)"),
    (lambda: EntrySampling((3, 3), [0, 1], [0]), "same length"),
    (lambda: EntrySampling((3, 3), [], []), "observes no entry"),
    (lambda: EntrySampling((3, 3), [0.5], [1]), "rows must be a 1-D integer array"),
    (lambda: DenseOperator.gaussian((4, 5), 10, seed=0).subset([10]), r"indices must lie in \[0, 10\)"),
    (lambda: DenseOperator.gaussian((4, 5), 10, seed=0).subset([]), "non-empty"),
])
def test_bad_operator_input(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_a_seed_sequence_gives_the_same_problem_twice_and_is_not_consumed():
    t = LowRankTarget.random(6, 5, 2, seed=0)
    ss = np.random.SeedSequence(42)
    a = MatrixSensing.gaussian(t, 20, 2, ss, noise=0.1)
    b = MatrixSensing.gaussian(t, 20, 2, ss, noise=0.1)
    np.testing.assert_array_equal(a.measurements, b.measurements)
    np.testing.assert_array_equal(MatrixCompletion(t, 0.5, 2, seed=ss).operator.rows,
                                  MatrixCompletion(t, 0.5, 2, seed=ss).operator.rows)
    assert ss.n_children_spawned == 0
