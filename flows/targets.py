"""Low-rank targets Σ = Φ diag(σ) Ψᵀ, kept in factored form.

Every problem applies Σ through its factors, so Σ V = Φ (σ ⊙ Ψᵀ V) costs O((m + n) r k) and no
m×n matrix is ever formed in a gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .checks import as_float_array, positive, positive_int, renamed
from .seeds import TARGET_STREAM, seed_record, seed_rng


@dataclass(frozen=True, eq=False)
class LowRankTarget:
    """A rank-r target Σ = Φ diag(σ) Ψᵀ.

    Parameters
    ----------
    Phi : ndarray, shape (m, r)
        Orthonormal left singular vectors.
    sigma : ndarray, shape (r,)
        Singular values, σ₁ ≥ … ≥ σ_r > 0.
    Psi : ndarray, shape (n, r)
        Orthonormal right singular vectors.
    seed : int or SeedSequence, optional
        The seed that drew Φ and Ψ (recorded for provenance by :meth:`random`).

    Examples
    --------
    >>> Sigma = LowRankTarget.random(m=6, n=5, rank=2, condition=4.0, seed=0)
    >>> Sigma.shape, Sigma.rank, round(Sigma.condition, 12)
    ((6, 5), 2, 4.0)
    """

    Phi: np.ndarray
    sigma: np.ndarray
    Psi: np.ndarray
    seed: object = None

    def __post_init__(self):
        Phi = as_float_array(self.Phi, "Phi", ndim=2)
        sigma = as_float_array(self.sigma, "sigma", ndim=1)
        Psi = as_float_array(self.Psi, "Psi", ndim=2)
        r = sigma.shape[0]
        if r < 1:
            raise ValueError("sigma must hold at least one singular value")
        if Phi.shape[1] != r or Psi.shape[1] != r:
            raise ValueError(f"Phi and Psi must have {r} columns (len(sigma)); got {Phi.shape} and {Psi.shape}")
        if np.any(sigma <= 0) or np.any(np.diff(sigma) > 0):
            raise ValueError(f"sigma must be positive and non-increasing, got {sigma}")
        for name, Q in (("Phi", Phi), ("Psi", Psi)):
            if not np.allclose(Q.T @ Q, np.eye(r), atol=1e-10):
                raise ValueError(f"{name} must have orthonormal columns")
        for name, arr in (("Phi", Phi), ("sigma", sigma), ("Psi", Psi)):
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        # Σ V = (Φ diag σ)(Ψᵀ V) as two products, with contiguous operands: both run in every gradient
        object.__setattr__(self, "_factors", (Phi * sigma, np.ascontiguousarray(Psi.T),
                                              Psi * sigma, np.ascontiguousarray(Phi.T)))

    @property
    def shape(self) -> tuple[int, int]:
        return (self.Phi.shape[0], self.Psi.shape[0])

    @property
    def m(self) -> int:
        return self.Phi.shape[0]

    @property
    def n(self) -> int:
        return self.Psi.shape[0]

    @property
    def rank(self) -> int:
        return self.sigma.shape[0]

    @property
    def condition(self) -> float:
        """κ = σ₁ / σ_r."""
        return float(self.sigma[0] / self.sigma[-1])

    @property
    def frobenius_norm(self) -> float:
        return float(np.linalg.norm(self.sigma))

    def dense(self) -> np.ndarray:
        """Σ as an (m, n) array (for references and small problems only)."""
        return (self.Phi * self.sigma) @ self.Psi.T

    def times(self, V: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Σ V = Φ (σ ⊙ Ψᵀ V) for V of shape (n, k) or (B, n, k), written into ``out`` if given."""
        left, PsiT, _, _ = self._factors
        return np.matmul(left, PsiT @ V, out=out)

    def transpose_times(self, U: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Σᵀ U = Ψ (σ ⊙ Φᵀ U) for U of shape (m, k) or (B, m, k), written into ``out`` if given."""
        _, _, right, PhiT = self._factors
        return np.matmul(right, PhiT @ U, out=out)

    def describe(self) -> dict:
        out = {"shape": list(self.shape), "rank": self.rank, "singular_values": self.sigma.tolist()}
        if self.seed is not None:
            out["seed"] = seed_record(self.seed)
        return out

    @classmethod
    def random(cls, m: int, n: int, rank: int, *, condition: float = 1.0, singular_values=None,
               seed=0) -> "LowRankTarget":
        """Random orthonormal singular vectors (Haar, from ``seed``) and prescribed singular values.

        Parameters
        ----------
        m, n, rank : int
            Σ is m×n of rank ``rank`` ≤ min(m, n).
        condition : float
            κ = σ₁/σ_r; singular values are evenly spaced in [1, κ] unless ``singular_values`` is given.
        singular_values : array_like, shape (rank,), optional
            Explicit σ (sorted decreasingly here).
        seed : int or SeedSequence
            Φ and Ψ come from its target stream (see :func:`pgflow.flows.seeds.seed_rng`).
        """
        m = positive_int(m, "m")
        n = positive_int(n, "n")
        rank = positive_int(rank, "rank")
        if rank > min(m, n):
            raise ValueError(f"rank must be <= min(m, n) = {min(m, n)}, got {rank}")
        if singular_values is None:
            condition = positive(condition, "condition")
            if condition < 1:
                raise ValueError(f"condition must be >= 1, got {condition}")
            sigma = np.linspace(condition, 1.0, rank)
        else:
            sigma = as_float_array(singular_values, "singular_values", shape=(rank,))
            if np.any(sigma <= 0):
                raise ValueError(f"singular_values must be positive, got {sigma}")
            sigma = np.sort(sigma)[::-1]
        rng = seed_rng(seed, stream=TARGET_STREAM)
        Phi = haar_columns(rng, m, rank)
        Psi = haar_columns(rng, n, rank)
        return cls(Phi, sigma, Psi, seed=seed)

    @classmethod
    @renamed(rtol="rank_rtol")
    def from_matrix(cls, M, *, rank_rtol: float | None = None) -> "LowRankTarget":
        """Factor a dense matrix by its SVD, keeping singular values above ``rank_rtol``·σ₁.

        The default ``rank_rtol`` is max(m, n)·ε, the usual numerical-rank threshold.
        """
        M = as_float_array(M, "target", ndim=2)
        if M.size == 0:
            raise ValueError(f"target must be non-empty, got shape {M.shape}")
        Phi, s, PsiT = np.linalg.svd(M, full_matrices=False)
        if rank_rtol is None:
            rank_rtol = max(M.shape) * np.finfo(float).eps
        keep = s > rank_rtol * s[0] if s[0] > 0 else np.zeros_like(s, dtype=bool)
        if not np.any(keep):
            raise ValueError("target must be non-zero")
        return cls(Phi[:, keep], s[keep], PsiT[keep].T)


def haar_columns(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """k orthonormal columns distributed by Haar measure (QR with sign fix)."""
    Q, R = np.linalg.qr(rng.standard_normal((n, k)))
    return Q * np.sign(np.diag(R))


def as_target(target) -> LowRankTarget:
    """A :class:`LowRankTarget` from a target object or any 2-D array (its SVD, computed once)."""
    if isinstance(target, LowRankTarget):
        return target
    return LowRankTarget.from_matrix(target)
