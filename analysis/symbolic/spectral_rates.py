r"""Right-derivatives of singular values and eigenvalues, correct at repeated values (numpy only).

Where the values are simple, d/dt σ_i(X) = u_iᵀẊv_i and d/dt λ_i(X) = w_iᵀ sym(Ẋ) w_i. At a
*cluster* of equal values these formulas depend on an arbitrary choice of basis inside the
eigenspace and are wrong (for ‖U‖ at σ₁(U) = σ₂(U) they can give −0.53 where the true
right-derivative is +0.67). The one-sided rule (Lewis & Overton 1996, *Eigenvalue optimization*,
Acta Numerica 5) is used instead: for a cluster of p equal eigenvalues of a symmetric S with
orthonormal eigenbasis W (columns), λ_{a+j}(S + hṠ) = λ + h μ_j + o(h) for h → 0⁺, with
μ₁ ≤ … ≤ μ_p the eigenvalues of the p×p block Wᵀ sym(Ṡ) W. For a cluster of equal positive singular
values with paired bases U_p, V_p the block is sym(U_pᵀẊV_p) (its eigenvalues, in decreasing
order, are the rates of σ_a, …, σ_{a+p−1}); for the cluster at zero the rates are the singular
values of U₀ᵀẊV₀, with U₀, V₀ the *full* left and right null spaces (of a non-square X they
include the |m − n| directions that have no singular value).

A cluster is a maximal run of values whose consecutive gaps are at most the tolerance
``max(CLUSTER_RTOL · max|value|, ZERO_RTOL · scale)``, where ``scale`` bounds the size of the terms
X is computed from (for UᵀU − VᵀV: ‖UᵀU‖ + ‖VᵀV‖; see :func:`pgflow.analysis.symbolic.spectral.magnitude`).
Below the first bound the eigenvectors are too inaccurate for the simple-value formula; below the
second the values are rounding noise (X = UᵀU − VᵀV at a balanced state, Φ⊥ᵀU at an aligned one
are zero up to 1e-16·scale, with singular vectors of pure noise). Values in one cluster are treated
as repeated (near-repeated values get the rate of the cluster, which is the slope seen over any
step longer than the gap), and the state is flagged *nonsmooth*. A value within the tolerance of 0
is a cluster at zero (|x| has a kink there).
"""

from __future__ import annotations

import numpy as np

CLUSTER_RTOL = 1e-8
"""Gap (relative to the largest |value|) at or below which two singular values or eigenvalues are
treated as repeated."""

ZERO_RTOL = 1e-12
"""Gap (relative to the size of the terms the matrix is computed from) below which values are
rounding noise: such values are one cluster, and such a value is zero."""


def sym(X):
    """(X + Xᵀ)/2 over the last two axes."""
    return 0.5 * (X + np.swapaxes(X, -1, -2))


def _runs(values: np.ndarray, tol: float, stop: int):
    """(start, end) of the maximal runs of values[:stop] with consecutive gaps ≤ tol."""
    out, i = [], 0
    while i < stop:
        j = i + 1
        while j < stop and abs(values[j - 1] - values[j]) <= tol:
            j += 1
        out.append((i, j))
        i = j
    return out


def _singular_one(X, dX, tol, floor=0.0):
    """Right-derivatives of the singular values (decreasing order) of one matrix."""
    q = min(X.shape)
    u, s, vt = np.linalg.svd(X, full_matrices=True)
    v = vt.T
    rates = np.empty(q)
    zero = np.flatnonzero(s <= tol)
    z0 = int(zero[0]) if zero.size else q
    for a, b in _runs(s, tol, z0):
        block = u[:, a:b].T @ dX @ v[:, a:b]
        rates[a:b] = np.linalg.eigvalsh(sym(block))[::-1]
    if z0 < q:  # the null spaces, with the directions a non-square X has no singular value for
        sv = np.linalg.svd(u[:, z0:].T @ dX @ v[:, z0:], compute_uv=False)[:q - z0]
        rates[z0:] = np.where(sv > floor, sv, 0.0)  # Ẋ at rounding level moves a zero value by nothing
    return rates


def _floor(scale, batch) -> np.ndarray:
    """ZERO_RTOL·|scale| on the batch shape (scale: a number or an array of shape batch)."""
    return ZERO_RTOL * np.broadcast_to(np.abs(np.asarray(scale, dtype=float)), batch)


def singular_rates(X, dX, scale=0.0, dscale=0.0):
    """Right-derivatives of all singular values of X along Ẋ = dX, batched over leading axes.

    Parameters
    ----------
    X, dX : ndarray, shape (..., rows, cols)
    scale : float or ndarray, shape (...)
        Size of the terms X is computed from (values below ``ZERO_RTOL·scale`` are noise).
    dscale : float or ndarray, shape (...)
        The same for Ẋ: where X is 0, rates below ``ZERO_RTOL·dscale`` are noise and count as 0.

    Returns
    -------
    rates : ndarray, shape (..., q), q = min(rows, cols)
        d⁺/dt σ_j, in the order of the singular values (decreasing).
    s : ndarray, shape (..., q)
        The singular values.
    tol : ndarray, shape (...)
        The cluster tolerance used (``max(CLUSTER_RTOL · σ_max, ZERO_RTOL · scale)``).
    """
    X, dX = np.broadcast_arrays(np.asarray(X, dtype=float), np.asarray(dX, dtype=float))
    batch, (rows, cols) = X.shape[:-2], X.shape[-2:]
    q = min(rows, cols)
    if q == 0:
        return np.zeros(batch + (0,)), np.zeros(batch + (0,)), np.zeros(batch)
    u, s, vt = np.linalg.svd(X, full_matrices=False)
    rates = np.einsum("...iq,...ij,...qj->...q", u, dX, vt)  # u_jᵀ Ẋ v_j, right where σ_j is simple
    tol = np.maximum(CLUSTER_RTOL * s[..., 0], _floor(scale, batch))
    special = (s[..., -1] <= tol)
    if q > 1:
        special |= np.any(s[..., :-1] - s[..., 1:] <= tol[..., None], axis=-1)
    dfloor = _floor(dscale, batch)
    for idx in zip(*np.nonzero(special)) if batch else ([()] if special else []):
        rates[idx] = _singular_one(X[idx], dX[idx], tol[idx], dfloor[idx])
    return rates, s, tol


def eigen_rates(X, dX, scale=0.0):
    """Right-derivatives of the eigenvalues of sym(X) along sym(dX), batched over leading axes.

    ``scale``: as for :func:`singular_rates`.

    Returns
    -------
    rates : ndarray, shape (..., k)
        d⁺/dt λ_j, in increasing order of the eigenvalues.
    w : ndarray, shape (..., k)
        The eigenvalues (increasing).
    tol : ndarray, shape (...)
        ``max(CLUSTER_RTOL · max|λ|, ZERO_RTOL · scale)``.
    """
    S, dS = np.broadcast_arrays(sym(np.asarray(X, dtype=float)), sym(np.asarray(dX, dtype=float)))
    batch = S.shape[:-2]
    w, Q = np.linalg.eigh(S)
    rates = np.einsum("...iq,...ij,...jq->...q", Q, dS, Q)
    tol = CLUSTER_RTOL * np.max(np.abs(w), axis=-1) if w.shape[-1] else np.zeros(batch)
    tol = np.maximum(tol, _floor(scale, batch))
    if w.shape[-1] > 1:
        special = np.any(w[..., 1:] - w[..., :-1] <= tol[..., None], axis=-1)
        for idx in zip(*np.nonzero(special)) if batch else ([()] if special else []):
            wi, Qi = w[idx], Q[idx]
            for a, b in _runs(wi, tol[idx], wi.shape[0]):
                rates[idx + (slice(a, b),)] = np.linalg.eigvalsh(Qi[:, a:b].T @ dS[idx] @ Qi[:, a:b])
    return rates, w, tol


def clustered(values: np.ndarray, tol: np.ndarray, index: int, *, zero_kink: bool) -> np.ndarray:
    """Whether values[..., index] shares a cluster with a neighbour (or, if ``zero_kink``, is within
    the tolerance of 0): the points where the function has only one-sided derivatives."""
    q = values.shape[-1]
    tol = np.asarray(tol)
    out = np.zeros(values.shape[:-1], dtype=bool)
    if q == 0:
        return out
    i = index % q
    if i > 0:
        out |= np.abs(values[..., i - 1] - values[..., i]) <= tol
    if i < q - 1:
        out |= np.abs(values[..., i] - values[..., i + 1]) <= tol
    if zero_kink:
        out |= np.abs(values[..., i]) <= tol
    return out
