r"""Closed-form reference solutions of gradient flow on factorization problems.

The mathematics, why the textbook formulas fail in double precision and how they are evaluated
instead, with the measured accuracy: ``docs/math/closed-forms.md``. In short:

Symmetric flow
    Ẋ = (M − XXᵀ)X, the gradient flow of ¼‖XXᵀ − M‖²_F, has P = XXᵀ solving the matrix Riccati
    equation Ṗ = MP + PM − 2P²: P(t) = Y K⁻¹ Yᵀ, Y = e^{Mt} X₀, K = I + 2 X₀ᵀ (∫₀ᵗ e^{2Ms} ds) X₀.

Asymmetric flow from a λ-balanced init (U₀ᵀU₀ − V₀ᵀV₀ = λI)
    Z = [U; V]/√2 solves the symmetric flow with M_λ = [[(λ/2)I, Σ], [Σᵀ, −(λ/2)I]], so
    UVᵀ = 2P₁₂, UUᵀ = 2P₁₁ and VVᵀ = 2P₂₂.

Scalar (spectral) modes
    ȧ = b(σ − ab), ḃ = a(σ − ab) is the 1×1 case of the λ-balanced flow; balanced (a = b) it
    reduces to u = ab, u̇ = 2u(σ − u).

Evaluation
    In the eigenbasis M = Q diag(ℓ) Qᵀ, X̃ = QᵀX₀, 2φᵢ = (e^{2ℓᵢt} − 1)/ℓᵢ, N = diag(√(2φ)) X̃ and
    ρᵢ = e^{ℓᵢt}/√(2φᵢ) (bounded), a thin QR [N; I] = [Q₁; Q₂] R gives X(t) = Q diag(ρ) Q₁ with no
    inverse; rows sorted by size plus column pivoting make the QR row-wise backward stable (Cox &
    Higham 1998). Long times restart from checkpoints (the flow map is a semigroup) so that e^{ℓ₁h}
    stays below e^{_MAX_GROWTH}. The exponents 2ℓᵢt are exact unevaluated sums (Dekker's product),
    and the spectrum is built from Σ's SVD where it is known (M_λ; a symmetric Φ diag(σ) Φᵀ) rather
    than by an eigensolver, whose eigenvalue errors e^{ℓt} would multiply by t. A start of numerical
    rank r < k is advanced as a rank-r factor, so that it stays rank-deficient like the solution;
    every call estimates the condition number of P(t) in the start and warns
    (:class:`IllConditionedWarning`) above :data:`CONDITION_WARNING`.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass

import numpy as np

from .checks import as_float_array, positive
from .problems import MatrixFactorization, SymmetricFactorization
from .riccati import (Spectrum, eigh_spectrum, gram_change, growth_weights, lambda_balanced_spectrum,
                      rowwise_stable_range, symmetric_target_spectrum)

__all__ = ["CONDITION_WARNING", "IllConditionedWarning", "LambdaBalancedSolution", "balanced_mode",
           "emergence_time", "lambda_balanced_flow", "riccati_factor", "spectral_mode", "symmetric_flow"]

# Largest λ₁h evaluated in one closed-form step: e^{2·256} ≈ 1e222 leaves ample room below the
# float range for √(2φ)·X̃ even when X₀ is large.
_MAX_GROWTH = 256.0
# Most restarts (steps of λ₁h = _MAX_GROWTH) spent on one call: λ₁t up to ~2.6e7.
_MAX_STEPS = 100_000

# U₀ᵀU₀ − V₀ᵀV₀ must equal λI to this accuracy, relative to ‖U₀ᵀU₀‖ + ‖V₀ᵀV₀‖.
_BALANCE_RTOL = 1e-10

_EPS = float(np.finfo(float).eps)
# The condition number is estimated from this many random finite differences of relative step
# 2⁻³⁶ ≈ 1.5e-11: the closed form's rounding (~ε‖P‖) is ≤ 1.5e-5 of the difference, and the response
# is linear up to condition ≈ 1e10 (larger ones come out as lower bounds). Fixed seed: reproducible.
_CONDITION_PROBES = 2
_CONDITION_STEP = 2.0 ** -36
_CONDITION_SEED = 16

CONDITION_WARNING = 1e6
"""Condition number above which the closed forms warn (:class:`IllConditionedWarning`): rounding of
the start alone may then change the result by more than ~1e-10 relative."""


def _T(A):
    return np.swapaxes(A, -1, -2)


# --------------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------------

def _as_times(t) -> tuple[np.ndarray, bool]:
    """Times as a 1-D float array and whether ``t`` was a scalar; raise unless finite and ≥ 0."""
    times = as_float_array(t, "t")
    if times.ndim > 1:
        raise ValueError(f"t must be a scalar or a 1-D array of times, got shape {times.shape}")
    if np.any(times < 0):
        raise ValueError(f"t must be non-negative, got min(t) = {times.min()}")
    return np.atleast_1d(times), times.ndim == 0


def _real(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def _symmetric_matrix(M, name: str = "M") -> np.ndarray:
    M = as_float_array(M, name, ndim=2)
    if M.shape[0] != M.shape[1] or M.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty square matrix, got shape {M.shape}")
    if np.max(np.abs(M - M.T)) > 1e-10 * np.max(np.abs(M)):
        raise ValueError(f"{name} must be symmetric (max|{name} − {name}ᵀ| ≤ 1e-10 max|{name}|)")
    # Only the symmetric part defines the flow; removing rounding asymmetry keeps eigh exact.
    return 0.5 * (M + M.T)


def _factor(X, name: str, rows: int) -> np.ndarray:
    X = as_float_array(X, name, ndim=2)
    if X.shape[0] != rows or X.shape[1] == 0:
        raise ValueError(f"{name} must have shape ({rows}, k) with k ≥ 1, got {X.shape}")
    return X


# --------------------------------------------------------------------------------------------------
# symmetric flow
# --------------------------------------------------------------------------------------------------

def _riccati_step(spec: Spectrum, Xt: np.ndarray, t: float) -> np.ndarray:
    """Exact step of Ẋ = (diag(ℓ) − XXᵀ)X from X(0) = X̃ to X(t), as diag(ρ) Q₁."""
    if t == 0:
        return Xt.copy()
    m, k = Xt.shape
    sqrt_two_phi, rho = growth_weights(spec.hi, spec.lo, t)
    N = sqrt_two_phi[:, None] * Xt
    Q_stack = rowwise_stable_range(np.vstack([N, np.eye(k)]))
    # N(I + NᵀN)⁻¹Nᵀ = Q₁Q₁ᵀ, so diag(ρ)Q₁ is a factor of P(t) in the eigenbasis.
    return rho[:, None] * Q_stack[:m]


def _riccati_eig(spec: Spectrum, X0: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Factors X(t) for M = Q diag(ℓ) Qᵀ at every time, shape (T, m, k).

    Times beyond one safe step h = _MAX_GROWTH/ℓ₁ start from the checkpoint X(jh), j = ⌊t/h⌋, the
    checkpoints being advanced one step at a time (the flow map is a semigroup); times below h are
    evaluated from X₀ directly.
    """
    Q = spec.Q
    Xt0 = Q.T @ X0
    rate = float(spec.hi.max())   # only growing modes threaten overflow
    out = np.empty((times.size,) + X0.shape)
    if rate <= 0:
        for i, t in enumerate(times):
            out[i] = Q @ _riccati_step(spec, Xt0, t)
        return out
    h = _MAX_GROWTH / rate
    growth = rate * float(times.max())
    if not growth <= _MAX_GROWTH * _MAX_STEPS:
        raise ValueError(f"t is too large for the closed form: λ₁·max(t) = {growth:.3g} exceeds "
                         f"{_MAX_GROWTH * _MAX_STEPS:.3g} ({_MAX_STEPS} restarts)")
    last = math.floor(times.max() / h)
    checkpoints = [Xt0]
    for _ in range(last):
        checkpoints.append(_riccati_step(spec, checkpoints[-1], h))
    for i, t in enumerate(times):
        j = min(math.floor(t / h), last)
        # max(·, 0): j·h may round to just above t
        out[i] = Q @ _riccati_step(spec, checkpoints[j], max(t - j * h, 0.0))
    return out


def _condition(spec: Spectrum, F: np.ndarray, X: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Estimated relative condition number of P(t) = X(t)X(t)ᵀ in F, shape (T,).

    κ(t) = ‖J(t)‖_F ‖F‖_F / ‖P(t)‖_F, J the derivative of P(t) in the start F, so that a relative
    change δ of F changes P(t) by at most about κδ relative (and ‖J‖_F ≥ ‖J‖₂: κ errs high). For z
    uniform on the unit sphere of ℝᵈ (d = F.size), E‖Jz‖² = ‖J‖²_F/d (Kenney & Laub 1994), so
    _CONDITION_PROBES random directions, each a relative step _CONDITION_STEP of the closed form
    itself, estimate it. A finite difference of the exact solution, not a bound, so it sees every
    source of ill-conditioning: a nearly rank-deficient start, or one with almost no component along
    a growing direction. Deterministic (a fixed seed), so the same call gives the same number.
    """
    rng = np.random.default_rng(_CONDITION_SEED)
    size = float(np.linalg.norm(F))
    norm_P = np.linalg.norm(_T(X) @ X, axis=(-2, -1))
    total = np.zeros(times.size)
    for _ in range(_CONDITION_PROBES):
        G = rng.standard_normal(F.shape)
        Xp = _riccati_eig(spec, F + (_CONDITION_STEP * size / np.linalg.norm(G)) * G, times)
        total += gram_change(X, Xp) ** 2
    return np.sqrt(F.size * total / _CONDITION_PROBES) / (_CONDITION_STEP * norm_P)


@dataclass(frozen=True, eq=False)
class _Solved:
    X: np.ndarray            # (T, m, k)
    condition: np.ndarray    # (T,)
    rank: int


def _solve(spec: Spectrum, X0: np.ndarray, times: np.ndarray) -> _Solved:
    """X(t) from X₀ for M = Q diag(ℓ) Qᵀ, propagating X₀'s numerical rank only.

    P(t) depends on X₀ only through X₀X₀ᵀ. Singular values of X₀ at or below max(m, k)·ε·s₁ are
    below the rounding of X₀'s own entries and are taken to be exactly zero: X₀ = A_r diag(s_r) B_rᵀ,
    the closed form advances the thin factor F = A_r diag(s_r) (m, r), and X(t) = F(t)B_rᵀ. An exactly
    rank-deficient start then stays exactly rank-deficient, as the solution does; advancing all k
    columns would seed the missing directions with rounding, which an unstable direction amplifies
    by e^{ℓt} (relative error 0.5 at σ₁t = 100 from identical columns). A full-rank start is
    advanced as given, so for k = 1 X(t) is the solution itself.
    """
    m, k = X0.shape
    out = np.zeros((times.size, m, k))
    s = np.linalg.svd(X0, compute_uv=False)
    rank = int(np.count_nonzero(s > max(m, k) * _EPS * s[0])) if s[0] > 0 else 0
    if rank == 0:
        out[times == 0] = X0
        return _Solved(X=out, condition=np.ones(times.size), rank=0)
    if rank == k:
        F, B = X0, None
    else:
        A, s, Bt = np.linalg.svd(X0, full_matrices=False)
        F, B = A[:, :rank] * s[:rank], Bt[:rank].T
    X = _riccati_eig(spec, F, times)
    condition = _condition(spec, F, X, times)
    out[...] = X if B is None else X @ B.T
    out[times == 0] = X0
    return _Solved(X=out, condition=condition, rank=rank)


def _warn_if_ill_conditioned(condition: np.ndarray, times: np.ndarray, what: str) -> None:
    worst = int(np.argmax(condition))
    if condition[worst] > CONDITION_WARNING:
        warnings.warn(f"{what}: the solution is ill-conditioned in its start, condition number "
                      f"{condition[worst]:.2g} at t = {times[worst]:.6g} (a nearly rank-deficient start, or "
                      f"one with almost no component along a growing direction): a rounding-level change of "
                      f"the start changes P(t) by up to ~{condition[worst] * _EPS:.1e} relative, so the "
                      f"returned value is only that accurate", IllConditionedWarning, stacklevel=3)


class IllConditionedWarning(RuntimeWarning):
    """A closed form's condition number exceeds :data:`CONDITION_WARNING`: rounding-level changes of the
    start change the solution by more than ~1e-10 relative (see the message and ``condition``)."""


def riccati_factor(M, X0, t) -> np.ndarray:
    r"""Exact solution of Ẋ = (M − XXᵀ)X, the gradient flow of ¼‖XXᵀ − M‖²_F.

    Returns a factor X(t) with X(t)X(t)ᵀ = P(t) = Y K⁻¹ Yᵀ, Y = e^{Mt}X₀,
    K = I + 2X₀ᵀ(∫₀ᵗ e^{2Ms} ds)X₀, evaluated stably (see the module docstring): the relative error of
    P stays at rounding level for any σ₁t, where the formula as written fails beyond σ₁t ≈ 20.
    M's eigendecomposition comes from ``numpy.linalg.eigh``; its eigenvalue errors (~ε‖M‖) enter
    e^{Mt} multiplied by t, so when M's spectrum is known exactly :func:`symmetric_flow` and
    :func:`lambda_balanced_flow` are more accurate.

    An X₀ of numerical rank r < k (singular values ≤ max(m, k)·ε·s₁ count as zero) is advanced as a
    rank-r factor, so that an exactly rank-deficient start stays rank-deficient, as the solution does.

    X(t) is unique only up to a right orthogonal factor X(t)O; compare X(t)X(t)ᵀ, not X(t). For a
    single column (k = 1) the returned X(t) is the solution itself, e^{Mt}X₀/√K.

    Parameters
    ----------
    M : array_like, shape (m, m)
        Symmetric; eigenvalues of either sign, any rank.
    X0 : array_like, shape (m, k)
        Initial factor.
    t : float or array_like, shape (T,)
        Times ≥ 0.

    Returns
    -------
    X : ndarray, shape (m, k), or (T, m, k) if ``t`` is an array
        X(0) is X0 itself.

    Warns
    -----
    IllConditionedWarning
        When the estimated condition number of P(t) in X₀ exceeds :data:`CONDITION_WARNING`.

    Examples
    --------
    >>> M = np.diag([2.0, -1.0]); X0 = np.array([[1e-3], [1.0]])
    >>> X = riccati_factor(M, X0, 50.0)
    >>> np.round(X @ X.T, 12) + 0.0
    array([[2., 0.],
           [0., 0.]])
    """
    M = _symmetric_matrix(M, "M")
    X0 = _factor(X0, "X0", M.shape[0])
    times, scalar = _as_times(t)
    solved = _solve(eigh_spectrum(M), X0, times)
    _warn_if_ill_conditioned(solved.condition, times, "riccati_factor")
    return solved.X[0] if scalar else solved.X


def symmetric_flow(problem: SymmetricFactorization, X0, t) -> np.ndarray:
    r"""P(t) = X(t)X(t)ᵀ along the gradient flow of a :class:`SymmetricFactorization`.

    When the target is stored as M = Φ diag(σ) Φᵀ (Ψ = Φ up to column signs, as
    :meth:`SymmetricFactorization.random` makes it), M's spectrum is known exactly (±σᵢ on Φ, 0 on
    col(Φ)⊥) and used instead of an eigensolver; otherwise as :func:`riccati_factor`.

    Parameters
    ----------
    problem : SymmetricFactorization
        Defines M (``problem.target``) and the width k.
    X0 : array_like, shape (m, k) or (dim,)
        Initial factor, or the flat state the initializers of :mod:`pgflow.flows.init` return.
    t : float or array_like, shape (T,)
        Times ≥ 0.

    Returns
    -------
    P : ndarray, shape (m, m), or (T, m, m) if ``t`` is an array

    Warns
    -----
    IllConditionedWarning
        As :func:`riccati_factor`.
    """
    if not isinstance(problem, SymmetricFactorization):
        raise TypeError(f"problem must be a SymmetricFactorization, got {type(problem).__name__}")
    X0 = as_float_array(X0, "X0")
    if X0.ndim == 1:
        X0 = problem.check_state(X0, "X0").reshape(problem.m, problem.width)
    X0 = as_float_array(X0, "X0", shape=(problem.m, problem.width))
    times, scalar = _as_times(t)
    spec = symmetric_target_spectrum(problem.target) or eigh_spectrum(_symmetric_matrix(problem.target.dense()))
    solved = _solve(spec, X0, times)
    _warn_if_ill_conditioned(solved.condition, times, "symmetric_flow")
    X = solved.X[0] if scalar else solved.X
    return X @ _T(X)


# --------------------------------------------------------------------------------------------------
# asymmetric flow from a λ-balanced init
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class LambdaBalancedSolution:
    """Gram blocks of the asymmetric flow, each with a leading time axis if times were an array.

    Attributes
    ----------
    UVt : ndarray, shape (m, n) or (T, m, n)
        U(t)V(t)ᵀ, the product the loss sees.
    UUt : ndarray, shape (m, m) or (T, m, m)
    VVt : ndarray, shape (n, n) or (T, n, n)
    lam : float
        λ with U₀ᵀU₀ − V₀ᵀV₀ = λI (conserved along the flow).
    condition : float or ndarray, shape (T,)
        Estimated relative condition number of P(t) = Z(t)Z(t)ᵀ (Z = [U; V]/√2) in the start: a
        relative change δ of [U₀; V₀] changes the blocks by about condition·δ relative. Rounding of
        the start alone (δ ≈ ε) then limits the accuracy of any method to about condition·ε. Near 1
        for a generic start; large for a nearly rank-deficient one whose weak direction has grown
        (an :class:`IllConditionedWarning` is issued above :data:`CONDITION_WARNING`).
    rank : int
        The numerical rank of [U₀; V₀] advanced by the closed form (singular values ≤
        max(m + n, k)·ε·s₁ count as zero, so an exactly rank-deficient start stays so).
    """

    UVt: np.ndarray
    UUt: np.ndarray
    VVt: np.ndarray
    lam: float
    condition: np.ndarray | float = 1.0
    rank: int = 0


def lambda_balanced_flow(problem: MatrixFactorization, U0, V0, t) -> LambdaBalancedSolution:
    r"""Exact gradient flow U̇ = RV, V̇ = RᵀU (R = Σ − UVᵀ) from a λ-balanced initialization.

    With U₀ᵀU₀ − V₀ᵀV₀ = λI, Z = [U; V]/√2 solves Ż = (M_λ − ZZᵀ)Z for
    M_λ = [[(λ/2)I, Σ], [Σᵀ, −(λ/2)I]], so the Riccati solution gives P = ZZᵀ and
    UVᵀ = 2P₁₂, UUᵀ = 2P₁₁, VVᵀ = 2P₂₂. M_λ's eigendecomposition is built from Σ's SVD, not computed:
    ±hypot(σᵢ, λ/2) on Σ's singular pairs, +λ/2 on (Φ⊥, 0) and −λ/2 on (0, Ψ⊥), with the gaps
    hypot(σᵢ, λ/2) − |λ|/2 = σᵢ²/(hypot(σᵢ, λ/2) + |λ|/2) exact, so that the result stays at rounding
    level for large |λ| too (an eigensolver's eigenvalue errors, ~ε‖M_λ‖, are multiplied by t).

    Parameters
    ----------
    problem : MatrixFactorization
        Defines Σ (m×n) and the width k.
    U0 : array_like, shape (m, k)
    V0 : array_like, shape (n, k)
        λ-balanced: ‖U₀ᵀU₀ − V₀ᵀV₀ − λI‖_F ≤ 1e-10 (‖U₀ᵀU₀‖_F + ‖V₀ᵀV₀‖_F) with λ = tr(U₀ᵀU₀ − V₀ᵀV₀)/k.
        :func:`pgflow.flows.init.lambda_balanced` builds such pairs. A rank-deficient [U₀; V₀]
        (e.g. identical columns) is advanced at its numerical rank, so the solution stays rank-deficient.
    t : float or array_like, shape (T,)
        Times ≥ 0.

    Returns
    -------
    LambdaBalancedSolution
        ``UVt``, ``UUt``, ``VVt`` (with a leading axis of length T if ``t`` is an array), ``lam``,
        ``condition`` (a float, or shape (T,)) and ``rank``.

    Warns
    -----
    IllConditionedWarning
        When ``condition`` exceeds :data:`CONDITION_WARNING` at some time.
    """
    if not isinstance(problem, MatrixFactorization):
        raise TypeError(f"problem must be a MatrixFactorization, got {type(problem).__name__}")
    m, n, k = problem.m, problem.n, problem.width
    U0 = as_float_array(U0, "U0", shape=(m, k))
    V0 = as_float_array(V0, "V0", shape=(n, k))
    GU, GV = U0.T @ U0, V0.T @ V0
    lam = float(np.trace(GU - GV)) / k
    residual = np.linalg.norm(GU - GV - lam * np.eye(k))
    if residual > _BALANCE_RTOL * (np.linalg.norm(GU) + np.linalg.norm(GV)):
        raise ValueError(f"U0 and V0 must be λ-balanced (U0ᵀU0 − V0ᵀV0 = λI); the best λ = {lam:.6g} "
                         f"leaves a residual {residual:.3g}")
    times, scalar = _as_times(t)
    solved = _solve(lambda_balanced_spectrum(problem.target, lam), np.vstack([U0, V0]) / math.sqrt(2.0), times)
    _warn_if_ill_conditioned(solved.condition, times, "lambda_balanced_flow")
    Z = solved.X[0] if scalar else solved.X
    P2 = 2.0 * (Z @ _T(Z))
    condition = float(solved.condition[0]) if scalar else solved.condition
    return LambdaBalancedSolution(UVt=P2[..., :m, m:], UUt=P2[..., :m, :m], VVt=P2[..., m:, m:], lam=lam,
                                  condition=condition, rank=solved.rank)


# --------------------------------------------------------------------------------------------------
# scalar modes
# --------------------------------------------------------------------------------------------------

def balanced_mode(sigma: float, u0: float, t):
    r"""The balanced spectral mode u = ab, u̇ = 2u(σ − u).

    u(t) = σe^{2σt}/(e^{2σt} − 1 + σ/u₀), evaluated as σ/(1 + (σ/u₀ − 1)e^{−2σt}), which neither
    overflows nor cancels: a sigmoid rising from u₀ to σ around t ≈ ln(σ/u₀)/(2σ) when u₀ ≪ σ.

    Parameters
    ----------
    sigma : float
        σ > 0, the singular value of the mode.
    u0 : float
        u(0) > 0.
    t : float or array_like, shape (T,)
        Times ≥ 0.

    Returns
    -------
    u : float or ndarray, shape (T,)
    """
    sigma = positive(sigma, "sigma")
    u0 = positive(u0, "u0")
    times, scalar = _as_times(t)
    gap = (sigma - u0) / u0            # σ/u₀ − 1 without rounding σ/u₀ first
    if not math.isfinite(gap):
        raise ValueError(f"u0 = {u0:.3g} is too small against sigma = {sigma:.3g}: σ/u0 overflows")
    with np.errstate(over="ignore"):   # σt = inf is the limit u = σ, reached through e^{−∞} = 0
        decay = np.exp(-2.0 * sigma * times)
    u = sigma / (1.0 + gap * decay)
    return float(u[0]) if scalar else u


def emergence_time(sigma: float, u0: float, fraction: float = 0.5) -> float:
    r"""Time at which the balanced mode :func:`balanced_mode` reaches u = fraction·σ.

    Solving σ/(1 + (σ/u₀ − 1)e^{−2σt}) = fσ gives
    t = [ln((σ − u₀)/u₀) + ln(f/(1 − f))]/(2σ) ≈ ln(σ/u₀)/(2σ) for f = ½ and u₀ ≪ σ.

    Parameters
    ----------
    sigma : float
        σ > 0.
    u0 : float
        0 < u₀ < fraction·σ (the mode must still have to rise to the level).
    fraction : float
        0 < f < 1.

    Returns
    -------
    t : float
    """
    sigma = positive(sigma, "sigma")
    u0 = positive(u0, "u0")
    fraction = positive(fraction, "fraction")
    if fraction >= 1:
        raise ValueError(f"fraction must lie in (0, 1): the mode only approaches σ, got {fraction}")
    if u0 >= fraction * sigma:
        raise ValueError(f"u0 must be below fraction*sigma = {fraction * sigma:.6g} for the mode to "
                         f"reach that level later, got u0 = {u0:.6g}")
    # log(σ − u₀) − log u₀ rather than log(σ/u₀ − 1): no overflow for tiny u₀.
    return (math.log(sigma - u0) - math.log(u0) + math.log(fraction / (1.0 - fraction))) / (2.0 * sigma)


def spectral_mode(sigma: float, a0: float, b0: float, t):
    r"""The unbalanced spectral mode ȧ = b(σ − ab), ḃ = a(σ − ab), returning a(t) and b(t).

    a² − b² = λ is conserved, and z = (a, b)/√2 solves the 2×1 Riccati flow ż = (M_λ − zzᵀ)z with
    M_λ = [[λ/2, σ], [σ, −λ/2]]. For a single column K is a scalar, so the factor itself (not only
    zzᵀ) is explicit: (a, b)(t) = e^{M_λ t}(a₀, b₀)/√K with K = 1 + (a₀, b₀)(∫₀ᵗ e^{2M_λ s} ds)(a₀, b₀)ᵀ
    (differentiate: the √K keeps the sign continuous, so no orthogonal ambiguity remains; a and b
    may cross zero, e.g. from a₀ < 0 < b₀).

    M_λ = μ[[cos θ, sin θ], [sin θ, −cos θ]] with μ = √(σ² + λ²/4), θ = atan2(σ, λ/2), so its
    eigenvectors are v₊ = (cos θ/2, sin θ/2) and v₋ = (−sin θ/2, cos θ/2) for ±μ. With c± = v±ᵀ(a₀, b₀)
    and J = ∫₀ᵗ e^{−2μs} ds = (1 − e^{−2μt})/(2μ), K = 1 + c₋²J + c₊²e^{2μt}J; K is formed as log K
    (a log-sum of positive terms) so that nothing overflows or cancels at any t.

    Parameters
    ----------
    sigma : float
        σ > 0.
    a0, b0 : float
        Initial amplitudes (any signs).
    t : float or array_like, shape (T,)
        Times ≥ 0.

    Returns
    -------
    a, b : float or ndarray, shape (T,)
    """
    sigma = positive(sigma, "sigma")
    a0 = _real(a0, "a0")
    b0 = _real(b0, "b0")
    times, scalar = _as_times(t)
    lam = a0 * a0 - b0 * b0
    mu = math.hypot(sigma, 0.5 * lam)
    half = 0.5 * math.atan2(sigma, 0.5 * lam)
    cos_h, sin_h = math.cos(half), math.sin(half)
    if lam == 0:
        # θ/2 = π/4 exactly; cos and sin of the rounded π/4 differ by an ulp, which would break a = b.
        cos_h = sin_h = math.sqrt(0.5)
    # c₊ = v₊ᵀ(a₀, b₀) vanishes exactly on the stable manifold a₀ + b₀ = 0 of the saddle at the
    # origin; cos θ/2·a₀ + sin θ/2·b₀ would leave a rounding residue there that e^{μt} blows up.
    # With s = a₀ + b₀, d = a₀ − b₀, g = cos θ/2 + sin θ/2 = √(1 + σ/μ) and cos θ/2 − sin θ/2 =
    # cos θ/g = sd/(2μg): c₊ = (s/2)(g + d²/(2μg)), a sum of same-signed terms.
    s, d = a0 + b0, a0 - b0
    g = math.sqrt(1.0 + sigma / mu)
    c_plus = 0.5 * s * (g + d * d / (2.0 * mu * g))
    c_minus = -sin_h * a0 + cos_h * b0

    # K = 1 + c₋²J + c₊²e^{2μt}J with J = ∫₀ᵗ e^{−2μs} ds. Its growth is divided out before taking
    # logs, L = log(K e^{−2μt}) = log(e^{−2μt}(1 + c₋²J) + c₊²J): subtracting 2μt from log K
    # afterwards would cancel every digit once μt is large.
    with np.errstate(over="ignore"):   # μt = inf is the limit, reached through e^{−∞} = 0
        x = 2.0 * mu * times
    J = -np.expm1(-x) / (2.0 * mu)
    log_base = np.log1p(c_minus * c_minus * J)
    grows = (J > 0) & (c_plus != 0)
    if np.any(grows):
        safe_J = np.where(grows, J, 1.0)
        L = np.logaddexp(log_base - x, 2.0 * math.log(abs(c_plus)) + np.log(safe_J))
    else:
        L = np.zeros_like(times)
    # (c₊e^{μt}, c₋e^{−μt})/√K; without growth (c₊ = 0 or t = 0) K = 1 + c₋²J directly.
    w_plus = np.where(grows, c_plus * np.exp(-0.5 * L), np.where(J > 0, 0.0, c_plus))
    w_minus = np.where(grows, c_minus * np.exp(-x - 0.5 * L), c_minus * np.exp(-0.5 * x - 0.5 * log_base))
    # Rotating back from the eigenbasis; at t = 0 the initial values themselves, unrounded.
    a = np.where(times == 0, a0, cos_h * w_plus - sin_h * w_minus)
    b = np.where(times == 0, b0, sin_h * w_plus + cos_h * w_minus)
    if scalar:
        return float(a[0]), float(b[0])
    return a, b
