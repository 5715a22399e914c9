import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgflow.flows import MatrixFactorization, SymmetricFactorization, init
from pgflow.flows.seeds import INIT_STREAM, seed_rng


@given(st.integers(2, 8), st.integers(1, 8), st.integers(1, 4), st.floats(-0.5, 3.0), st.integers(0, 10**6))
@settings(max_examples=40, deadline=None)
def test_lambda_balanced_has_exact_imbalance(m, n, k, lam, seed):
    k = min(k, m)
    p = MatrixFactorization.random(m=m, n=n, rank=1, width=k, seed=seed)
    scale = 1.0
    V0 = scale * seed_rng(seed, stream=INIT_STREAM).standard_normal((n, k))  # the draw lambda_balanced makes
    lam_min = max(np.linalg.eigvalsh(V0.T @ V0).min(), 0.0)
    if abs(lam + lam_min) < 1e-12:
        return  # on the boundary rounding decides
    if lam < -lam_min:
        with pytest.raises(ValueError, match="lam must be >= -lambda_min"):
            init.lambda_balanced(p, scale, lam, seed=seed)
        return
    U0, V0 = p.unpack(init.lambda_balanced(p, scale, lam, seed=seed))
    np.testing.assert_allclose(U0.T @ U0 - V0.T @ V0, lam * np.eye(k), atol=1e-12 * (1 + abs(lam) + np.abs(V0.T @ V0).max()))


def test_balanced_and_gaussian_are_reproducible_from_the_seed():
    p = MatrixFactorization.random(m=6, n=5, rank=2, width=3, seed=0)
    np.testing.assert_array_equal(init.gaussian(p, 0.1, seed=4), init.gaussian(p, 0.1, seed=4))
    assert not np.array_equal(init.gaussian(p, 0.1, seed=4), init.gaussian(p, 0.1, seed=5))
    U, V = p.unpack(init.balanced(p, 0.1, seed=2))
    np.testing.assert_allclose(U.T @ U, V.T @ V, atol=1e-15)
    x = init.gaussian(p, 0.5, seed=0)
    assert x.shape == (p.dim,) and 0.3 < x.std() < 0.7


def test_spectral_init_is_aligned_with_the_singular_vectors():
    p = MatrixFactorization.random(m=6, n=5, rank=3, width=4, seed=1)
    U, V = p.unpack(init.spectral(p, [0.1, 0.2], [0.3, 0.4]))
    t = p.target
    np.testing.assert_allclose(t.Phi.T @ U[:, :2], np.diag([0.1, 0.2, 0.0])[:, :2], atol=1e-15)
    np.testing.assert_allclose(t.Psi.T @ V[:, :2], np.diag([0.3, 0.4, 0.0])[:, :2], atol=1e-15)
    assert not U[:, 2:].any() and not V[:, 2:].any()
    s = SymmetricFactorization.random(m=5, rank=2, width=2, seed=0)
    X = s.unpack(init.spectral(s, [1.0, 2.0]))
    np.testing.assert_allclose(X.T @ X, np.diag([1.0, 4.0]), atol=1e-14)


@pytest.mark.parametrize("call, match", [
    (lambda p: init.gaussian(p, 0.0), "scale must be positive"),
    (lambda p: init.gaussian(p, -1.0), "scale must be positive"),
    (lambda p: init.gaussian(p, float("nan")), "scale must be positive and finite"),
    (lambda p: init.gaussian(p, 1.0, seed=None), "seed is required"),
    (lambda p: init.gaussian(p, 1.0, seed=1.5), "seed must be an int"),
    (lambda p: init.spectral(p, [1.0, 1.0, 1.0]), "amplitudes must have between 1 and"),
    (lambda p: init.spectral(p, [1.0, 2.0], [1.0]), r"amplitudes_V must have shape \(2\)"),
    (lambda p: init.lambda_balanced(p, 1.0, float("inf")), "lam must be finite"),
])
def test_bad_init_input_raises(call, match):
    p = MatrixFactorization.random(m=4, n=3, rank=2, width=2, seed=0)
    with pytest.raises((ValueError, TypeError), match=match):
        call(p)


def test_a_target_and_an_init_drawn_with_the_same_seed_are_independent():
    """With plain default_rng(seed) for both, U₀ would lie exactly in col(Φ)."""
    p = MatrixFactorization.random(m=8, n=6, rank=2, width=2, seed=3)
    U0, _ = p.unpack(init.gaussian(p, 1.0, seed=3))
    outside = U0 - p.target.Phi @ (p.target.Phi.T @ U0)
    assert np.linalg.norm(outside) > 0.5 * np.linalg.norm(U0)
    assert p.describe()["target"]["seed"] == 3
