r"""The numerical kernels of the closed forms in :mod:`pgflow.flows.exact`.

Exact spectra (eigenvalues as unevaluated sums hi + lo, built from Σ's SVD where the spectrum is
known), the growth weights √(2φ) and ρ of the Riccati solution with exact exponents, the row-wise
stable range of [N; I], and the change of a Gram matrix between two factors. The mathematics:
``docs/math/closed-forms.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg

__all__ = ["Spectrum", "complement", "eigh_spectrum", "gram_change", "growth_weights", "lambda_balanced_spectrum",
           "rowwise_stable_range", "symmetric_target_spectrum", "target_svd", "two_product", "two_sum"]

# Veltkamp's splitting constant 2^27 + 1: splits a double into two halves whose products are exact.
_SPLIT = 134217729.0
# Factors of a target whose Gram matrix departs from I by more than this are re-orthonormalized
# before their σ are used as exact singular values (a LowRankTarget accepts up to 1e-10).
_ORTHONORMAL_TOL = 1e-14


def two_sum(a, b):
    """(s, e) with s = fl(a + b) and s + e = a + b exactly (Knuth); floats or arrays of one shape.

    Examples
    --------
    >>> two_sum(1.0, 1e-17)
    (1.0, 1e-17)
    """
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _split(a):
    c = _SPLIT * a
    hi = c - (c - a)
    return hi, a - hi


def two_product(a, b):
    """(p, e) with p = fl(a·b) and p + e = a·b exactly (Dekker; Python 3.11 has no math.fma).

    Floats or arrays of one shape, |a·b| far from overflow.

    Examples
    --------
    >>> p, e = two_product(0.1, 3.0)          # 0.1·3 is not a double: e holds the rest
    >>> p, e
    (0.30000000000000004, -2.7755575615628914e-17)
    """
    p = a * b
    a_hi, a_lo = _split(a)
    b_hi, b_lo = _split(b)
    return p, ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo


@dataclass(frozen=True, eq=False)
class Spectrum:
    """M = Q diag(ℓ) Qᵀ, each eigenvalue an unevaluated sum ℓᵢ = hi[i] + lo[i].

    ``lo`` carries what one double cannot: the λ-balanced eigenvalue μᵢ = |λ|/2 + dᵢ with
    dᵢ = σᵢ²/(μᵢ + |λ|/2) keeps the gap dᵢ between μᵢ and the complement's |λ|/2 exact to rounding,
    where a rounded μᵢ would be off by up to ½ ulp(μᵢ), which e^{μᵢt} multiplies by t.

    Attributes
    ----------
    Q : ndarray, shape (m, m)
        Orthogonal; column i is the eigenvector of ℓᵢ.
    hi, lo : ndarray, shape (m,)
        ℓ = hi + lo, |lo| ≤ ½ ulp(hi).
    source : str
        "eigh", "target" (a symmetric target's σ) or "Σ's singular values" (M_λ).
    """

    Q: np.ndarray
    hi: np.ndarray
    lo: np.ndarray
    source: str


def eigh_spectrum(M: np.ndarray) -> Spectrum:
    """The spectrum of a symmetric M (m, m) by ``numpy.linalg.eigh`` (errors ~ε‖M‖, lo = 0)."""
    lam, Q = np.linalg.eigh(M)
    return Spectrum(Q=Q, hi=lam, lo=np.zeros_like(lam), source="eigh")


def complement(B: np.ndarray) -> np.ndarray:
    """Orthonormal basis, shape (m, m − r), of col(B)⊥ for B (m, r) with orthonormal columns.

    From a full Householder QR of B, so orthonormal and orthogonal to B to rounding.
    """
    Q_full = scipy.linalg.qr(B, mode="full")[0]
    return Q_full[:, B.shape[1]:]


def target_svd(target) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Φ (m, r), σ (r,), Ψ (n, r) of a target Σ = Φ diag(σ) Ψᵀ, Φ and Ψ orthonormal to rounding.

    A :class:`LowRankTarget` accepts factors orthonormal to 1e-10; the σ it states are then Σ's
    singular values only to that accuracy, and building the spectrum of M_λ from them would be a
    silent 1e-10 error. Such factors are re-orthonormalized: Φ = Q_aR_a, Ψ = Q_bR_b and the SVD of the
    small R_a diag(σ) R_bᵀ.
    """
    Phi, sigma, Psi = target.Phi, target.sigma, target.Psi
    r = sigma.size
    departure = max(np.max(np.abs(Phi.T @ Phi - np.eye(r))), np.max(np.abs(Psi.T @ Psi - np.eye(r))))
    if departure <= _ORTHONORMAL_TOL:
        return Phi, sigma, Psi
    Qa, Ra = np.linalg.qr(Phi)
    Qb, Rb = np.linalg.qr(Psi)
    A, s, Bt = np.linalg.svd((Ra * sigma) @ Rb.T)
    return Qa @ A, s, Qb @ Bt.T


def symmetric_target_spectrum(target) -> Spectrum | None:
    """The spectrum of a symmetric target M = Φ diag(σ) Ψᵀ (m×m) stored with Ψ = Φ up to column
    signs: ±σᵢ on the columns of Φ and 0 on col(Φ)⊥. None when the target does not state it exactly
    (then use :func:`eigh_spectrum`)."""
    Phi, sigma, Psi = target.Phi, target.sigma, target.Psi
    same, flipped = np.all(Psi == Phi, axis=0), np.all(Psi == -Phi, axis=0)
    r = sigma.size
    if not np.all(same | flipped) or np.max(np.abs(Phi.T @ Phi - np.eye(r))) > _ORTHONORMAL_TOL:
        return None
    m = Phi.shape[0]
    hi = np.concatenate([np.where(same, sigma, -sigma), np.zeros(m - r)])
    return Spectrum(Q=np.hstack([Phi, complement(Phi)]), hi=hi, lo=np.zeros(m), source="target")


def lambda_balanced_spectrum(target, lam: float) -> Spectrum:
    """The spectrum of M_λ = [[(λ/2)I, Σ], [Σᵀ, −(λ/2)I]] ((m + n)×(m + n)) from Σ's SVD, without
    an eigensolver.

    On the plane of (φᵢ, 0) and (0, ψᵢ), M_λ is μᵢ[[cos 2θᵢ, sin 2θᵢ], [sin 2θᵢ, −cos 2θᵢ]] with
    μᵢ = hypot(σᵢ, λ/2) and tan 2θᵢ = 2σᵢ/λ, so its eigenvectors are (cos θᵢ φᵢ, sin θᵢ ψᵢ) for +μᵢ
    and (−sin θᵢ φᵢ, cos θᵢ ψᵢ) for −μᵢ; (Φ⊥, 0) has +λ/2 and (0, Ψ⊥) has −λ/2. With c = |λ|/2,
    the larger of cos θᵢ, sin θᵢ is √((μᵢ + c)/(2μᵢ)) (a sum, no cancellation) and the smaller is
    σᵢ/(2μᵢ·larger) (from sin 2θ = σ/μ); μᵢ = c + dᵢ with dᵢ = σᵢ(σᵢ/(μᵢ + c)) kept as the exact
    unevaluated sum of c and dᵢ.
    """
    Phi, sigma, Psi = target_svd(target)
    m, r = Phi.shape
    n = Psi.shape[0]
    c = abs(0.5 * lam)
    mu = np.hypot(sigma, c)
    d = sigma * (sigma / (mu + c))        # μ − |λ|/2 with no cancellation; = σ exactly at λ = 0
    top_hi, top_lo = two_sum(np.full(r, c), d)
    larger = np.sqrt((mu + c) / (2.0 * mu))
    smaller = sigma / (2.0 * mu * larger)
    if lam > 0:
        cos, sin = larger, smaller
    elif lam < 0:
        cos, sin = smaller, larger
    else:
        # θ = π/4 exactly; the two formulas would differ by an ulp and break U = V symmetry.
        cos = sin = np.full(r, math.sqrt(0.5))
    Q = np.zeros((m + n, m + n))
    Q[:m, :r], Q[m:, :r] = Phi * cos, Psi * sin
    Q[:m, r:2 * r], Q[m:, r:2 * r] = -Phi * sin, Psi * cos
    Q[:m, 2 * r:m + r] = complement(Phi)
    Q[m:, m + r:] = complement(Psi)
    hi = np.concatenate([top_hi, -top_hi, np.full(m - r, 0.5 * lam), np.full(n - r, -0.5 * lam)])
    lo = np.concatenate([top_lo, -top_lo, np.zeros(m + n - 2 * r)])
    return Spectrum(Q=Q, hi=hi, lo=lo, source="Σ's singular values")


def growth_weights(hi: np.ndarray, lo: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
    """√(2φ) and ρ = e^{ℓt}/√(2φ) for 2φ = (e^{2ℓt} − 1)/ℓ (= 2t at ℓ = 0), at t > 0, ℓ = hi + lo.

    x = 2ℓt is formed exactly as x_hi + x_lo (Dekker's product): rounded to one double it would put
    a relative error of up to ε|x|/2 into e^{x} (1.7e-13 at x = 3000), different for every eigenvalue,
    where the solution depends on their ratios. With |x_lo| ≤ ½ ulp(x_hi), e^{x} = e^{x_hi}(1 + x_lo)
    and expm1(x) = expm1(x_hi) + e^{x_hi}x_lo to a few ulps.

    Each regime gets the form that neither cancels nor overflows:
    |x| ≤ 1: 2φ = 2t·E(x), E(x) = expm1(x)/x, and ρ² = e^{x}/(2t·E(x));
    x > 1: 2φ = expm1(x)/ℓ and ρ² = ℓ/(1 − e^{−x}) (→ ℓ);
    x < −1: 2φ = expm1(x)/ℓ (→ 1/|ℓ|) and ρ² = e^{x}·ℓ/expm1(x) (→ 0 like e^{x}).

    Parameters
    ----------
    hi, lo : ndarray, shape (m,)
        The eigenvalues ℓ = hi + lo.
    t : float
        t > 0.

    Returns
    -------
    sqrt_two_phi, rho : ndarray, shape (m,)
    """
    with np.errstate(over="ignore", invalid="ignore"):
        x, x_err = two_product(2.0 * hi, t)
        x, x_lo = two_sum(x, x_err + 2.0 * lo * t)
        # x = −∞ (a huge decaying rate) is the exact limit e^{x} = 0; its low part is meaningless
        finite = np.isfinite(x)
        x = np.where(finite, x, -np.inf)
        x_lo = np.where(finite, x_lo, 0.0)
    two_phi = np.empty_like(hi)
    rho = np.empty_like(hi)

    mid = np.abs(x) <= 1
    xm = x[mid]
    E = np.ones_like(xm)
    nonzero = xm != 0
    E[nonzero] = np.expm1(xm[nonzero]) / xm[nonzero]      # x_lo changes E by < ε relative
    two_phi[mid] = 2.0 * t * E
    rho[mid] = np.sqrt(np.exp(xm) / E) / math.sqrt(2.0 * t)

    up = x > 1
    xu, lu, ell = x[up], x_lo[up], hi[up]
    two_phi[up] = (np.expm1(xu) + np.exp(xu) * lu) / ell
    rho[up] = np.sqrt(ell / (-np.expm1(-xu) + np.exp(-xu) * lu))

    down = x < -1
    xd, ld, ell = x[down], x_lo[down], hi[down]
    em = np.expm1(xd) + np.exp(xd) * ld
    two_phi[down] = em / ell
    rho[down] = np.exp(0.5 * xd) * (1.0 + 0.5 * ld) * np.sqrt(ell / em)
    return np.sqrt(two_phi), rho


def rowwise_stable_range(A: np.ndarray) -> np.ndarray:
    """Orthonormal basis, shape (p, k), of col(A) for A (p, k) of full column rank whose rows
    differ wildly in scale.

    Rows sorted by decreasing max-norm plus column pivoting make Householder QR row-wise backward
    stable (Cox & Higham 1998); plain QR would smear the rounding of the largest rows over the small
    ones.
    """
    order = np.argsort(-np.max(np.abs(A), axis=1), kind="stable")
    Q_sorted, R, _ = scipy.linalg.qr(A[order], mode="economic", pivoting=True)
    # A positive diagonal of R fixes the basis; with one column it makes diag(ρ)Q₁ equal to Y/√K,
    # the solution X(t) itself rather than ±X(t).
    Q_sorted *= np.where(np.diag(R) < 0, -1.0, 1.0)
    Q = np.empty_like(Q_sorted)
    Q[order] = Q_sorted
    return Q


def gram_change(X: np.ndarray, Xp: np.ndarray) -> np.ndarray:
    """‖XₚXₚᵀ − XXᵀ‖_F for stacks (T, m, r), without forming an m×m matrix or cancelling.

    X(t) is a factor only up to a right orthogonal factor, so Xₚ is first aligned as A = XO with O the
    polar factor of XᵀXₚ; then with D = Xₚ − A, XₚXₚᵀ − XXᵀ = WCWᵀ for W = [A, D],
    C = [[0, I], [I, I]], whose squared norm tr((WᵀW C)²) is a sum of terms of the size of the change.
    """
    U, _, Vt = np.linalg.svd(np.swapaxes(X, -1, -2) @ Xp)
    A = X @ (U @ Vt)
    W = np.concatenate([A, Xp - A], axis=-1)
    r = X.shape[-1]
    C = np.block([[np.zeros((r, r)), np.eye(r)], [np.eye(r), np.eye(r)]])
    GC = (np.swapaxes(W, -1, -2) @ W) @ C
    return np.sqrt(np.maximum(np.einsum("...ij,...ji->...", GC, GC), 0.0))
