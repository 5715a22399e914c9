"""``method="auto"``: is a flow stiff? Rates from the factorization's structure, or from the Jacobian."""

from __future__ import annotations

import numpy as np

# method="auto" thresholds, from benchmarks/stiff.py and benchmarks/auto_method.py on 2 cores:
# above this ratio of fast to slow rate, LSODA with the analytic Jacobian beats DOP853 (3-20x) ...
STIFFNESS_RATIO = 50.0
# ... unless the run is so short that an explicit solver needs only a few hundred stability-bound steps
STIFF_SPAN = 500.0
# a dense Jacobian beyond this dimension costs more memory and LU time than stiffness saves
DENSE_JACOBIAN_LIMIT = 5000


# --------------------------------------------------------------------------------------------------

def stiffness(problem, x0) -> tuple[float, float]:
    """Cheap estimates of the fastest and slowest rates of the flow started at ``x0``.

    The fast rate bounds λ_max(∇²f) along the whole run: max(‖U₀‖² + ‖V₀‖², ‖D‖₂ + 2σ₁) with the
    imbalance D = U₀ᵀU₀ − V₀ᵀV₀, which gradient flow conserves (at a minimum λ_max = ‖U‖² + ‖V‖²).
    The slow rate is σ_r, the smallest singular value of the target, which sets the time scale of the
    last mode to be learned.

    Parameters
    ----------
    problem : factorization-type problem (with ``factors`` and ``target``)
    x0 : ndarray, shape (dim,) or (B, dim)

    Returns
    -------
    fast, slow : float
        For a batch, the fast rate is the largest over the members.
    """
    U, V = problem.factors(x0)
    D = np.swapaxes(U, -1, -2) @ U - np.swapaxes(V, -1, -2) @ V
    spectral = lambda A: np.linalg.norm(A, 2, axis=(-2, -1))  # noqa: E731
    sigma = problem.target.sigma
    fast = np.maximum(spectral(U) ** 2 + spectral(V) ** 2, spectral(D) + 2 * sigma[0])
    return float(np.max(fast)), float(sigma[-1])


def jacobian_radius(fun, t0: float, y0: np.ndarray, *, iterations: int = 12, seed: int = 0) -> float:
    """The spectral radius of ∂fun/∂y at (t0, y0), estimated by power iteration on finite-difference
    Jacobian-vector products (``iterations`` + 1 evaluations of ``fun``; no factorization, no matrix).

    A few iterations give the order of magnitude, which is all the stiffness test needs.
    """
    y0 = np.asarray(y0)
    if y0.size == 0:
        return 0.0
    f0 = np.asarray(fun(t0, y0))
    v = np.random.default_rng(seed).standard_normal(y0.shape)
    v /= np.linalg.norm(v)
    h = np.sqrt(np.finfo(float).eps) * (1.0 + float(np.linalg.norm(y0)))
    radius = 0.0
    for _ in range(iterations):
        w = (np.asarray(fun(t0, y0 + h * v)) - f0) / h
        size = float(np.linalg.norm(w))
        if not np.isfinite(size) or size == 0.0:
            return radius if np.isfinite(size) else np.inf
        radius, v = size, w / size
    return radius


def choose_method(flow, x0, t_span: float, t0: float = 0.0) -> tuple[str, str]:
    """The method ``method="auto"`` uses, and why.

    Stiff (fast/slow rate > ``STIFFNESS_RATIO`` and fast rate × span > ``STIFF_SPAN``): LSODA with the
    analytic Jacobian (BDF with a sparse block-diagonal Jacobian for a batch), unless the dense
    Jacobian would exceed ``DENSE_JACOBIAN_LIMIT`` rows or a factorization flow has no Jacobian.
    Otherwise DOP853, the fastest explicit method on these flows at every tolerance measured.

    The rates of a factorization flow come from :func:`stiffness`. Any other flow or plain ODE has
    no such structure: its fast rate is the spectral radius of its Jacobian at the start
    (:func:`jacobian_radius`) and its slow rate 1/span, so it is stiff when an explicit method would
    need more than ``STIFF_SPAN`` stability-bound steps; LSODA then also switches back to a non-stiff
    method by itself where the problem stops being stiff.

    Parameters
    ----------
    flow : flow object (or :class:`ODE`)
    x0 : ndarray, shape (dim,) or (B, dim)
    t_span : float
        The length of the run, t1 − t0 (inf: unbounded).
    t0 : float
        Where the Jacobian of a flow without factorization structure is estimated.

    Returns
    -------
    method, reason : str
    """
    problem = getattr(flow, "problem", None)
    factored = hasattr(problem, "factors") and hasattr(problem, "target")
    if factored:
        fast, slow = stiffness(problem, x0)
        dim = problem.dim
    else:
        fun = flow if np.ndim(x0) == 1 else (lambda t, y: flow(t, y.reshape(np.shape(x0))).reshape(-1))
        if t_span == 0:
            return "DOP853", "nothing to integrate (t1 = t0)"
        if not np.isfinite(t_span):
            return "DOP853", "an unbounded span has no time scale to compare the Jacobian's rates with"
        fast, slow = jacobian_radius(fun, t0, np.ravel(x0)), 1.0 / abs(t_span)
        dim = np.size(x0) if np.ndim(x0) == 1 else np.shape(x0)[-1]
    ratio = fast / slow if slow > 0 else np.inf
    summary = f"fast rate {fast:.3g}, slow rate {slow:.3g}, ratio {ratio:.3g}, fast rate x span {fast * abs(t_span):.3g}"
    if ratio <= STIFFNESS_RATIO or fast * abs(t_span) <= STIFF_SPAN:
        return "DOP853", f"not stiff ({summary})"
    if factored and getattr(flow, "jac", None) is None:
        return "DOP853", f"stiff ({summary}) but the flow has no analytic Jacobian"
    if dim > DENSE_JACOBIAN_LIMIT:
        return "DOP853", f"stiff ({summary}) but dim {dim} is too large for a dense Jacobian"
    if np.ndim(x0) == 2:
        return "BDF", f"stiff ({summary}); batch: BDF with a block-diagonal sparse Jacobian"
    how = "" if getattr(flow, "jac", None) is not None else "; finite-difference Jacobian"
    return "LSODA", f"stiff ({summary}){how}"
