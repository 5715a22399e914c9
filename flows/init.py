"""Initial states, all returned as flat float64 vectors of length ``problem.dim``.

Every random initializer draws from its own stream of ``seed`` (a child of
``numpy.random.SeedSequence(seed)``) and nothing else, so an init and a target drawn with the same
seed are independent.
"""

from __future__ import annotations

import numpy as np

from .checks import as_float_array, positive
from .seeds import INIT_STREAM, seed_rng
from .problems import SymmetricFactorization
from .targets import haar_columns


def gaussian(problem, scale: float, seed=0) -> np.ndarray:
    """Every factor entry i.i.d. N(0, scale²).

    Parameters
    ----------
    problem : problem object
    scale : float
        Standard deviation α > 0 of each entry (small α: the small-initialization regime).
    seed : int

    Returns
    -------
    x0 : ndarray, shape (dim,)
    """
    scale = positive(scale, "scale")
    return scale * seed_rng(seed, stream=INIT_STREAM).standard_normal(problem.dim)


def lambda_balanced(problem, scale: float, lam: float, seed=0) -> np.ndarray:
    """An init with U₀ᵀU₀ − V₀ᵀV₀ = λI exactly (to rounding).

    V₀ is Gaussian with entry scale ``scale``; U₀ = Q (V₀ᵀV₀ + λI)^{1/2} with Q an m×k matrix with
    orthonormal columns (Haar), so U₀ᵀU₀ = V₀ᵀV₀ + λI.

    Parameters
    ----------
    problem : MatrixFactorization-like problem with factors U (m×k), V (n×k), m ≥ k
    scale : float
        Entry scale of V₀.
    lam : float
        λ; must satisfy λ ≥ −λ_min(V₀ᵀV₀). λ = 0 gives a balanced init.
    seed : int

    Returns
    -------
    x0 : ndarray, shape (dim,)
    """
    if isinstance(problem, SymmetricFactorization):
        raise TypeError("lambda_balanced needs an asymmetric problem (factors U and V)")
    scale = positive(scale, "scale")
    lam = float(lam)
    if not np.isfinite(lam):
        raise ValueError(f"lam must be finite, got {lam}")
    (_, (m, k)), (_, (n, _)) = problem.layout
    if m < k:
        raise ValueError(f"lambda_balanced needs m >= width (U₀ has orthonormal-times-square form), got m={m}, width={k}")
    rng = seed_rng(seed, stream=INIT_STREAM)
    V0 = scale * rng.standard_normal((n, k))
    w, Q_V = np.linalg.eigh(V0.T @ V0)
    w = np.maximum(w, 0.0)  # V₀ᵀV₀ is positive semi-definite; negative eigenvalues are rounding
    if np.any(w + lam < 0):
        raise ValueError(f"lam must be >= -lambda_min(V0ᵀV0) = {-w.min():.3g}, got {lam}")
    root = (Q_V * np.sqrt(w + lam)) @ Q_V.T
    U0 = haar_columns(rng, m, k) @ root
    return problem.pack(U0, V0)


def balanced(problem, scale: float, seed=0) -> np.ndarray:
    """A balanced init, U₀ᵀU₀ = V₀ᵀV₀ (:func:`lambda_balanced` with λ = 0)."""
    return lambda_balanced(problem, scale, 0.0, seed)


def spectral(problem, amplitudes, amplitudes_V=None) -> np.ndarray:
    """An init aligned with Σ's singular vectors: U₀ = Φ diag(a), V₀ = Ψ diag(b) (first columns).

    The flow then decouples into scalar modes ȧᵢ = bᵢ(σᵢ − aᵢbᵢ), ḃᵢ = aᵢ(σᵢ − aᵢbᵢ)
    (see :mod:`pgflow.flows.exact`). Columns beyond ``len(amplitudes)`` are zero and stay zero.

    Parameters
    ----------
    problem : problem object
    amplitudes : array_like, shape (q,), q ≤ min(width, rank)
        a, the amplitudes of U₀ (of X₀ for the symmetric problem).
    amplitudes_V : array_like, shape (q,), optional
        b, the amplitudes of V₀; defaults to a (balanced modes).

    Returns
    -------
    x0 : ndarray, shape (dim,)
    """
    a = as_float_array(amplitudes, "amplitudes", ndim=1)
    q = a.shape[0]
    if not 1 <= q <= min(problem.width, problem.target.rank):
        raise ValueError(f"amplitudes must have between 1 and min(width, rank) = "
                         f"{min(problem.width, problem.target.rank)} entries, got {q}")
    b = a if amplitudes_V is None else as_float_array(amplitudes_V, "amplitudes_V", shape=(q,))
    t = problem.target

    def aligned(basis, amp, rows):
        F = np.zeros((rows, problem.width))
        F[:, :q] = basis[:, :q] * amp
        return F

    if isinstance(problem, SymmetricFactorization):
        if amplitudes_V is not None:
            raise TypeError("amplitudes_V does not apply to a symmetric problem")
        return problem.pack(aligned(t.Phi, a, t.m))
    return problem.pack(aligned(t.Phi, a, t.m), aligned(t.Psi, b, t.n))
