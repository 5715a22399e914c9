"""Initial states for the falsifier: typical random starts and the adversarial ones where claims break.

Each start kind is a function ``make(problem, rng) -> x0`` (a flat state of ``problem.dim``). Besides
Gaussian starts of every scale, the kinds aim at the places proofs get wrong: balanced and
λ-balanced starts (UᵀU − VᵀV = λI: repeated eigenvalues of the imbalance), strongly unbalanced ones,
starts aligned with the target's singular vectors (the noise parts J, K vanish; equal amplitudes
give repeated singular values), anti-aligned ones (UVᵀ pointing against Σ), starts in the
complements of Φ and Ψ, near-repeated spectra, a zero factor, critical points (the origin, and
saddles: one factor 0, the other orthogonal to the target), rank-deficient factors and large starts.
"""

from __future__ import annotations

import numpy as np

from ...flows import init


def _log_uniform(rng, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _seed(rng) -> int:
    return int(rng.integers(2 ** 31))


def _q(problem) -> int:
    return min(problem.width, problem.target.rank)


def _pack(problem, U, V):
    return problem.pack(U, V)


def _factors(problem):
    (_, (m, k)), (_, (n, _)) = problem.layout
    return m, n, k


def gaussian(problem, rng):
    """i.i.d. entries of a scale between 1e-3 and 1 (log-uniform): the typical start."""
    return init.gaussian(problem, _log_uniform(rng, 1e-3, 1.0), seed=_seed(rng))


def small(problem, rng):
    """A small Gaussian start (scale 1e-5 to 1e-3): the incremental-learning regime."""
    return init.gaussian(problem, _log_uniform(rng, 1e-5, 1e-3), seed=_seed(rng))


def large(problem, rng):
    """A large Gaussian start (scale 1 to 3)."""
    return init.gaussian(problem, _log_uniform(rng, 1.0, 3.0), seed=_seed(rng))


def balanced(problem, rng):
    """U₀ᵀU₀ = V₀ᵀV₀ (the imbalance is 0: every eigenvalue repeated)."""
    return init.balanced(problem, _log_uniform(rng, 1e-3, 1.0), seed=_seed(rng))


def lambda_balanced(problem, rng):
    """U₀ᵀU₀ − V₀ᵀV₀ = λI with λ of either sign (a repeated eigenvalue λ of the imbalance)."""
    scale = _log_uniform(rng, 1e-2, 1.0)
    m, n, k = _factors(problem)
    lam = float(rng.choice([-1.0, 1.0])) * _log_uniform(rng, 1e-3, 1.0) * float(problem.target.sigma[0])
    x = init.lambda_balanced(problem, scale, abs(lam), seed=_seed(rng))
    if lam < 0 and n >= k:  # the mirror image: V₀ᵀV₀ − U₀ᵀU₀ = |λ|I
        U, V = problem.unpack(x)
        if U.shape == V.shape:
            return _pack(problem, V, U)
    return x


def unbalanced(problem, rng):
    """One factor much larger than the other (scales 1 and 1e-3, either way round)."""
    m, n, k = _factors(problem)
    big, tiny = _log_uniform(rng, 0.3, 1.5), _log_uniform(rng, 1e-4, 1e-2)
    a, b = (big, tiny) if rng.random() < 0.5 else (tiny, big)
    return _pack(problem, a * rng.standard_normal((m, k)), b * rng.standard_normal((n, k)))


def _aligned(problem, rng, a, b):
    t = problem.target
    m, n, k = _factors(problem)
    q = len(a)
    U, V = np.zeros((m, k)), np.zeros((n, k))
    U[:, :q] = t.Phi[:, :q] * a
    V[:, :q] = t.Psi[:, :q] * b
    return U, V


def aligned(problem, rng):
    """U₀ = Φ diag(a), V₀ = Ψ diag(b): the noise parts vanish (J = K = 0)."""
    q = _q(problem)
    a = np.array([_log_uniform(rng, 1e-3, 2.0) for _ in range(q)])
    b = a if rng.random() < 0.5 else np.array([_log_uniform(rng, 1e-3, 2.0) for _ in range(q)])
    return _pack(problem, *_aligned(problem, rng, a, b))


def aligned_repeated(problem, rng):
    """Aligned with equal amplitudes: repeated singular values of U, V, UᵀU, VᵀV (nonsmooth points)."""
    q = _q(problem)
    a = np.full(q, _log_uniform(rng, 1e-2, 2.0))
    b = a if rng.random() < 0.5 else np.full(q, _log_uniform(rng, 1e-2, 2.0))
    return _pack(problem, *_aligned(problem, rng, a, b))


def near_repeated(problem, rng):
    """A repeated-spectrum start moved by 1e-7 relative: near-repeated values."""
    x = aligned_repeated(problem, rng)
    return x + 1e-7 * np.linalg.norm(x) / np.sqrt(x.size) * rng.standard_normal(x.size)


def anti_aligned(problem, rng):
    """U₀ = Φ diag(a), V₀ = −Ψ diag(b): UVᵀ points against Σ."""
    q = _q(problem)
    a = np.array([_log_uniform(rng, 1e-3, 1.5) for _ in range(q)])
    U, V = _aligned(problem, rng, a, a)
    return _pack(problem, U, -V)


def orthogonal(problem, rng):
    """Factors in the complements of Φ and Ψ (only noise parts; A = B = 0)."""
    t = problem.target
    m, n, k = _factors(problem)
    scale = _log_uniform(rng, 1e-3, 1.0)
    P_U = np.eye(m) - t.Phi @ t.Phi.T
    P_V = np.eye(n) - t.Psi @ t.Psi.T
    return _pack(problem, scale * P_U @ rng.standard_normal((m, k)), scale * P_V @ rng.standard_normal((n, k)))


def half_aligned(problem, rng):
    """U aligned with Φ, V in the complement of Ψ (signal in one factor only)."""
    t = problem.target
    m, n, k = _factors(problem)
    q = _q(problem)
    a = np.array([_log_uniform(rng, 1e-2, 1.5) for _ in range(q)])
    U, _ = _aligned(problem, rng, a, a)
    V = _log_uniform(rng, 1e-3, 1.0) * (np.eye(n) - t.Psi @ t.Psi.T) @ rng.standard_normal((n, k))
    return _pack(problem, U, V)


def zero_factor(problem, rng):
    """One factor exactly 0 (the gradient flow starts at a saddle in that factor)."""
    m, n, k = _factors(problem)
    scale = _log_uniform(rng, 1e-3, 1.0)
    U, V = scale * rng.standard_normal((m, k)), np.zeros((n, k))
    return _pack(problem, U, V) if rng.random() < 0.5 else _pack(problem, np.zeros((m, k)), scale *
                                                                   rng.standard_normal((n, k)))


def saddle(problem, rng):
    """A critical point that is not a minimum: one factor 0, the other orthogonal to the target's
    singular vectors (∇f = 0: gradient flow stays put)."""
    t = problem.target
    m, n, k = _factors(problem)
    scale = _log_uniform(rng, 1e-3, 1.0)
    U = scale * (np.eye(m) - t.Phi @ t.Phi.T) @ rng.standard_normal((m, k))
    V = scale * (np.eye(n) - t.Psi @ t.Psi.T) @ rng.standard_normal((n, k))
    return _pack(problem, U, np.zeros((n, k))) if rng.random() < 0.5 else _pack(problem, np.zeros((m, k)), V)


def origin(problem, rng):
    """U = V = 0: the critical point every small start begins near."""
    return np.zeros(problem.dim)


def rank_deficient(problem, rng):
    """Factors with two equal columns (a zero singular value, rank-deficient UᵀU and VᵀV)."""
    m, n, k = _factors(problem)
    x = gaussian(problem, rng)
    U, V = (np.array(a) for a in problem.unpack(x))
    if k >= 2:
        U[:, 1], V[:, 1] = U[:, 0], V[:, 0]
    return _pack(problem, U, V)


KINDS = {"gaussian": gaussian, "small": small, "balanced": balanced, "lambda_balanced": lambda_balanced,
         "unbalanced": unbalanced, "aligned": aligned, "aligned_repeated": aligned_repeated,
         "near_repeated": near_repeated, "anti_aligned": anti_aligned, "orthogonal": orthogonal,
         "half_aligned": half_aligned, "zero_factor": zero_factor, "saddle": saddle, "origin": origin,
         "rank_deficient": rank_deficient, "large": large}
"""Start kinds of the falsifier, in the order it tries them."""
