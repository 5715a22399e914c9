"""Factorization problems: loss, gradient, Hessian-vector product and Hessian of one flat state.

The state is one flat float64 vector ``x`` (scipy's ODE solvers need it). Only the problem packs and
unpacks it; the factors it returns are reshaped *views* of ``x``. Every method also accepts a batch
of states ``x`` of shape (B, dim) and then returns batched results.

Factored problems follow the problem protocol of :class:`pgflow.flows.base.Problem` and add (what
:func:`pgflow.flows.integrate`, :func:`pgflow.flows.gradient_descent`, the monitors and the analysis
layer rely on):

``dim``, ``width``, ``target``, ``layout``
    State size, factor width k, the target Σ, and ((name, shape), ...) of the factors in ``x``.
``pack(*factors) -> x``, ``unpack(x) -> factors``, ``factors(x) -> (U, V)``
    ``factors`` always returns a pair: (X, X) for the symmetric problem.
``loss(x)``, ``grad(x, out=None)``, ``hvp(x, v)``, ``hessian(x)``
    f, ∇f, ∇²f·v and the dense ∇²f of shape (dim, dim).
``describe() -> dict``
    What the problem is, for provenance.
"""

from __future__ import annotations

import threading

import numpy as np

from .base import TRUSTED, Problem
from .checks import as_float_array, positive_int
from .targets import LowRankTarget, as_target


def lowrank_core(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """R_A R_Bᵀ from thin QR factors A = Q_A R_A, B = Q_B R_B: a small matrix with the singular values of
    A Bᵀ, so norms and spectra of A Bᵀ cost O((m + n) p²) and never form the m×n product.

    Parameters
    ----------
    A : ndarray, shape (..., m, p)
    B : ndarray, shape (..., n, p)

    Returns
    -------
    ndarray, shape (..., min(m, p), min(n, p))
    """
    return np.linalg.qr(A, mode="r") @ np.linalg.qr(B, mode="r").mT


def lowrank_frobenius(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """‖A Bᵀ‖_F without forming A Bᵀ (see :func:`lowrank_core`).

    Unlike tr((AᵀA)(BᵀB)), this does not cancel catastrophically when A Bᵀ is small against A and B
    (a residual near a minimum).
    """
    return np.linalg.norm(lowrank_core(A, B), axis=(-2, -1))


def distance_factors(U: np.ndarray, V: np.ndarray, target: LowRankTarget) -> tuple[np.ndarray, np.ndarray]:
    """(A, B) with A Bᵀ = UVᵀ − Σ: A = [U, −Φ diag σ], B = [V, Ψ] (batched over leading axes of U, V)."""
    Phi_s = np.broadcast_to(target.Phi * target.sigma, U.shape[:-2] + target.Phi.shape)
    Psi = np.broadcast_to(target.Psi, V.shape[:-2] + target.Psi.shape)
    return np.concatenate([U, -Phi_s], -1), np.concatenate([V, Psi], -1)


def couple_residual(H: np.ndarray, M: np.ndarray, k: int) -> np.ndarray:
    """Add M ⊗ I_k to the U–V blocks of a (dim, dim) matrix H and (M ⊗ I_k)ᵀ to the V–U blocks, in place.

    The Hessian's residual term is −R ⊗ I_k (R = Σ − UVᵀ, or 𝒜*(y − 𝒜(UVᵀ)) for sensing); a
    residual-form perturbation E adds E ⊗ I_k to the flow's Jacobian.
    """
    mk = M.shape[0] * k
    C = np.kron(M, np.eye(k))
    H[:mk, mk:] += C
    H[mk:, :mk] += C.T
    return H


def target_workspace(target: LowRankTarget, k: int, B: int, stacked: bool):
    """Workspaces (W, M) of the factored gradients: W holds, per state, [·, Φ] and [·, −Ψσ] (m × (k + r)
    and n × (k + r)), whose first k columns are left for a factor, and M the (k + r)×k products Wᵀ·factor.

    The factor is copied in row by row, as it lies in the state; the products read W transposed as a view
    (BLAS's transpose flag), so no copy transposes anything.

    ``stacked``: W of shape (B, 2, m, k + r) (needs m = n), else a pair of (B, m, k + r), (B, n, k + r);
    M of shape (B, 2, k + r, k), or (2, B, k + r, k) to go with the pair.
    """
    blocks = []
    for right in (target.Phi, -(target.Psi * target.sigma)):
        W = np.empty((B, right.shape[0], k + right.shape[1]))
        W[:, :, k:] = right
        blocks.append(W)
    q = k + target.rank
    if stacked:
        return np.stack(blocks, axis=1), np.empty((B, 2, q, k))
    return blocks, np.empty((2, B, q, k))


def factor_gradient(Wa, Wb, B, Mb, out, negate: bool = False):
    """One factor's part of the factored gradient, out ← Wa (Wbᵀ B) (or its negative), with the
    :func:`target_workspace` buffers whose first k columns already hold the factors.

    ∇_U f = Wu (Wvᵀ V) with Wa = Wu = [U, Φ], Wb = Wv = [V, −Ψσ], B = V; ∇_V f likewise with the
    roles swapped. Mb receives Wbᵀ B, (k + r)×k per state; −∇f negates it, not the larger result.
    """
    np.matmul(Wb.mT, B, out=Mb)
    if negate:
        np.negative(Mb, out=Mb)
    return np.matmul(Wa, Mb, out=out)


def negative_grad(problem, x, out=None):
    """−∇f(x) into ``out``: the problem's ``negative_grad`` (a :class:`~pgflow.flows.base.Problem`
    always has one, trusted only for its own ``grad``), else ``grad`` negated in place (a duck-typed
    problem)."""
    if hasattr(problem, "negative_grad"):
        return problem.negative_grad(x, out=out)
    out = problem.grad(x, out=out)
    np.negative(out, out=out)
    return out


# batch sizes whose gradient workspaces a thread keeps (a workspace holds (k + r)/k × a batch)
WORKSPACES_PER_THREAD = 4


class FactoredProblem(Problem):
    """Packing of named factor blocks into one flat state; subclasses supply the calculus.

    Subclasses assign ``layout`` once, ((name, (rows, cols)), ...); the slices are cached then,
    because ``unpack`` runs in every right-hand side.
    """

    @property
    def layout(self) -> tuple[tuple[str, tuple[int, int]], ...]:
        return self._layout

    @layout.setter
    def layout(self, layout) -> None:
        self._layout = tuple((name, tuple(shape)) for name, shape in layout)
        blocks, start = [], 0
        for _, (a, b) in self._layout:
            blocks.append((slice(start, start + a * b), (a, b)))
            start += a * b
        self._blocks, self._dim = tuple(blocks), start

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def width(self) -> int:
        return self.layout[0][1][1]

    def slices(self) -> dict[str, slice]:
        """Where each factor lives in ``x``."""
        return {name: sl for (name, _), (sl, _) in zip(self.layout, self._blocks)}

    def unpack(self, x):
        """Factors as reshaped views of ``x`` (shape (dim,) or (B, dim))."""
        if not isinstance(x, np.ndarray) or x.dtype != np.float64:
            x = np.asarray(x, dtype=np.float64)
        if x.shape[-1] != self._dim:
            raise ValueError(f"x must have last dimension {self._dim} (the state size), got shape {x.shape}")
        lead = x.shape[:-1]
        if len(self._blocks) == 1:
            return x.reshape(lead + self._blocks[0][1])
        return tuple(x[..., sl].reshape(lead + shape) for sl, shape in self._blocks)

    def pack(self, *factors) -> np.ndarray:
        """Flat float64 state from the factors (in ``layout`` order); a batch if they are stacked.

        Checks shapes and finiteness (this is how user input enters); the hot paths use :meth:`join`.
        """
        if len(factors) != len(self.layout):
            names = ", ".join(name for name, _ in self.layout)
            raise TypeError(f"pack takes {len(self.layout)} factor(s) ({names}), got {len(factors)}")
        checked = []
        for F, (name, shape) in zip(factors, self.layout):
            F = as_float_array(F, name)
            if F.shape[-2:] != shape or F.ndim not in (2, 3):
                raise ValueError(f"{name} must have shape {shape} (or (B, *{shape})), got {F.shape}")
            checked.append(F)
        if len({F.shape[:-2] for F in checked}) != 1:
            raise ValueError("all factors must share the same batch shape")
        return self.join(*checked)

    @staticmethod
    def join(*factors) -> np.ndarray:
        """Concatenate factor blocks into a flat state, unchecked: for results computed from a valid
        state, where an overflow must surface as non-finite values (for the solver or the divergence
        check to report), not as an input error."""
        return np.concatenate([F.reshape(F.shape[:-2] + (-1,)) for F in factors], axis=-1)

    def grad(self, x, out=None):
        """∇f at x (shape (dim,) or (B, dim)), written into ``out`` (same shape) if given.

        The subclass's ``_grad_rows(X, out, negate)`` computes it for a C-contiguous (B, dim) stack; a
        single state is a stack of one.
        """
        return self._gradient(x, out, negate=False)

    def negative_grad(self, x, out=None):
        """−∇f at x, the velocity of the gradient flow, as :meth:`grad` (equal to ``-grad(x)`` bit for bit).

        The sign rides on the small (k + r)×k middle factors of the gradient's products, so the flow
        makes no negation pass over the state.
        """
        return self._gradient(x, out, negate=True)

    def negative_grad_kernel(self, shape: tuple[int, ...]):
        """−∇f as ``into(t, y, out)`` on flat, C-contiguous arrays of states of ``shape`` ((dim,) or (B, dim)),
        with the checks of :meth:`negative_grad` done once here, not at every call (a solver's stage loop
        calls it a dozen times a step); None when this class's −∇f is not :meth:`negative_grad` (a class
        with a gradient of its own, whose derived −∇f goes through its ``grad``).
        """
        if type(self).negative_grad is not FactoredProblem.negative_grad or \
                any(name in vars(self) for name in ("negative_grad", "grad", "_grad_rows")):  # e.g. patched in a test
            return None
        if len(shape) not in (1, 2) or shape[-1] != self._dim:
            raise ValueError(f"shape must be ({self._dim},) or (B, {self._dim}), got {shape}")
        rows, grad_rows = (-1, self._dim), self._grad_rows

        def into(t, y, out):
            grad_rows(y.reshape(rows), out.reshape(rows), True)
        return into

    def _gradient(self, x, out, negate: bool):
        x = np.asarray(x, dtype=np.float64)
        if x.ndim not in (1, 2) or x.shape[-1] != self._dim:
            raise ValueError(f"x must have shape ({self._dim},) or (B, {self._dim}), got {x.shape}")
        if out is None:
            out = np.empty(x.shape)
        elif out.shape != x.shape:
            raise ValueError(f"out must have the shape of x, {x.shape}, got {out.shape}")
        elif out.dtype != np.float64:
            raise TypeError(f"out must be a float64 array, got dtype {out.dtype}")
        rows = np.ascontiguousarray(x).reshape(-1, self._dim)
        if out.flags.c_contiguous:
            self._grad_rows(rows, out.reshape(rows.shape), negate)
        else:
            out[...] = self._grad_rows(rows, np.empty(rows.shape), negate).reshape(out.shape)
        return out

    def _workspace(self, B: int, stacked: bool):
        """The :func:`target_workspace` buffers for a stack of B states, from the current target.

        They are written, so each thread has its own (dropped with the thread); a thread keeps those
        of its last ``WORKSPACES_PER_THREAD`` layouts (batch size, stacked), rebuilt when ``target``
        has been replaced.
        """
        key = (B, stacked)
        try:
            target, work = self._work.by_size[key]
            if target is self.target:
                return work
        except (AttributeError, KeyError):
            pass
        cache = vars(self.__dict__.setdefault("_work", threading.local())).setdefault("by_size", {})
        cache.pop(key, None)
        while len(cache) >= WORKSPACES_PER_THREAD:
            del cache[next(iter(cache))]  # the oldest
        cache[key] = self.target, target_workspace(self.target, self.width, B, stacked)
        return cache[key][1]

    def __getstate__(self):
        return {key: value for key, value in self.__dict__.items() if key != "_work"}

    def residual_norm(self, x) -> np.ndarray:
        """‖UVᵀ − Σ‖_F (‖XXᵀ − M‖_F for a symmetric problem), accurate even near a minimum (see
        :func:`lowrank_frobenius`)."""
        return lowrank_frobenius(*distance_factors(*self.factors(x), self.target))

    def hvp_operator(self, x):
        """∇²f(x) as a ``scipy.sparse.linalg.LinearOperator`` (for Lanczos, CG)."""
        from scipy.sparse.linalg import LinearOperator
        return LinearOperator((self.dim, self.dim), matvec=lambda v: self.hvp(x, v.ravel()), dtype=float)


class MatrixFactorization(FactoredProblem):
    r"""Asymmetric matrix factorization f(U, V) = ½‖UVᵀ − Σ‖²_F.

    With the residual R = Σ − UVᵀ the gradient is ∇_U f = −RV, ∇_V f = −RᵀU, evaluated in factored
    form: RV = Φ(σ ⊙ ΨᵀV) − U(VᵀV) costs O((m + n) k (k + r)) and never forms an m×n matrix.

    Parameters
    ----------
    target : LowRankTarget or array_like, shape (m, n)
        Σ; a dense array is factored once by its SVD.
    width : int
        k ≥ 1, the number of columns of U (m×k) and V (n×k).

    Examples
    --------
    >>> p = MatrixFactorization.random(m=5, n=4, rank=2, width=3, seed=0)
    >>> x = p.pack(np.ones((5, 3)), np.zeros((4, 3)))
    >>> bool(np.isclose(p.loss(x), 0.5 * p.target.frobenius_norm ** 2))
    True
    """

    inherits_derivatives = ("negative_grad",)  # FactoredProblem's −∇f calls this class's _grad_rows(negate=True)

    def __init__(self, target, width: int):
        self.target: LowRankTarget = as_target(target)
        width = positive_int(width, "width")
        m, n = self.target.shape
        self.layout = (("U", (m, width)), ("V", (n, width)))

    @classmethod
    def random(cls, m: int, n: int, rank: int, width: int, *, condition: float = 1.0,
               singular_values=None, seed=0) -> "MatrixFactorization":
        """Problem with a random target from :meth:`LowRankTarget.random` (same arguments)."""
        return cls(LowRankTarget.random(m, n, rank, condition=condition,
                                        singular_values=singular_values, seed=seed), width)

    @property
    def m(self) -> int:
        return self.target.m

    @property
    def n(self) -> int:
        return self.target.n

    def factors(self, x):
        return self.unpack(x)

    def describe(self) -> dict:
        return {"problem": type(self).__name__, "m": self.m, "n": self.n, "width": self.width,
                "target": self.target.describe()}

    # f = LOSS_SCALE·‖UVᵀ − Σ‖²_F: the loss and distance monitors share one residual norm through it
    LOSS_SCALE = 0.5

    def loss(self, x):
        """f = ½‖UVᵀ − Σ‖²_F."""
        return self.LOSS_SCALE * self.residual_norm(x) ** 2

    def _grad_rows(self, x, out, negate=False):
        """∇f = (−RV, −RᵀU) = (U VᵀV − ΣV, V UᵀU − ΣᵀU) for a stack x (B, dim), into ``out`` (−∇f
        if ``negate``).

        With the workspaces Wu = [U, Φ] (m × (k + r)) and Wv = [V, −Ψσ] (n × (k + r)),

            Wuᵀ U = [UᵀU; ΦᵀU],   Wvᵀ V = [VᵀV; −σΨᵀV],
            ∇_U = Wu (Wvᵀ V) = U VᵀV − ΣV,   ∇_V = Wv (Wuᵀ U) = V UᵀU − ΣᵀU:

        Σ's factors ride inside the Gram products, so there is no subtraction pass and no temporary.
        The factors enter the workspaces as plain row copies and Wᵀ is a view (BLAS transposes it), so
        no copy transposes a factor (that transposed copy was 22% of a right-hand side at m = n = 1000).
        Small products cost about one BLAS call each, whatever their size: four stacked products
        (two when m = n, U and V then sharing one stack) take half the time of the eight products and
        two subtractions of the plain formula at m = n = 20, and 10-20% less at m = n = 1000.
        −∇f negates the middle factors M = W·factor (exact in floating point, like negating the result,
        but (k + r)/m of its size).
        """
        B, (m, k), (n, _) = len(x), self.layout[0][1], self.layout[1][1]
        W, M = self._workspace(B, stacked=m == n)
        if m == n:
            X = x.reshape(B, 2, m, k)
            np.copyto(W[..., :k], X)
            np.matmul(W.mT, X, out=M)
            if negate:
                np.negative(M, out=M)
            np.matmul(W, M[:, ::-1], out=out.reshape(B, 2, m, k))
            return out
        (Wu, Wv), (Mu, Mv), (U, V), (GU, GV) = W, M, self.unpack(x), self.unpack(out)
        np.copyto(Wu[..., :k], U)
        np.copyto(Wv[..., :k], V)
        factor_gradient(Wu, Wv, V, Mv, GU, negate)
        factor_gradient(Wv, Wu, U, Mu, GV, negate)
        return out

    PARTIAL_GRAD_COST = 0.5

    def partial_grad(self, x, block: str, out=None):
        """∇_U f = U VᵀV − ΣV or ∇_V f = V UᵀU − ΣᵀU alone: the one half of :meth:`_grad_rows`'s products
        that the block needs (same products, so the same numbers), half the cost of a gradient.

        Parameters
        ----------
        x : ndarray, shape (dim,) or (B, dim)
        block : {"U", "V"}
        out : ndarray, shape (m, k) or (B, m, k) for U, (n, k) or (B, n, k) for V, optional

        Returns
        -------
        ndarray, the block's gradient (``out`` if given)
        """
        if block not in ("U", "V"):
            raise ValueError(f"block must be 'U' or 'V', got {block!r}")
        x = np.asarray(x, dtype=np.float64)
        if x.ndim not in (1, 2) or x.shape[-1] != self.dim:
            raise ValueError(f"x must have shape ({self.dim},) or (B, {self.dim}), got {x.shape}")
        rows = np.ascontiguousarray(x).reshape(-1, self.dim)
        k = self.width
        U, V = self.unpack(rows)
        (Wu, Wv), (Mu, Mv) = self._workspace(len(rows), stacked=False)
        np.copyto(Wu[..., :k], U)
        np.copyto(Wv[..., :k], V)
        shape = (U if block == "U" else V).shape
        G = np.empty(shape) if out is None else out.reshape(shape)
        if block == "U":
            factor_gradient(Wu, Wv, V, Mv, G)
        else:
            factor_gradient(Wv, Wu, U, Mu, G)
        if out is None:
            return G if x.ndim == 2 else G[0]
        if not np.may_share_memory(G, out):  # out could not be viewed as a stack: copy back
            out[...] = G.reshape(out.shape)
        return out

    def hvp(self, x, v):
        """∇²f(x)·v with W = ΔU Vᵀ + U ΔVᵀ: H_U = W V − R ΔV, H_V = Wᵀ U − Rᵀ ΔU (factored)."""
        U, V = self.unpack(x)
        dU, dV = self.unpack(np.asarray(v, dtype=float))
        HU = dU @ (V.mT @ V) + U @ (dV.mT @ V) + U @ (V.mT @ dV) - self.target.times(dV)
        HV = dV @ (U.mT @ U) + V @ (dU.mT @ U) + V @ (U.mT @ dU) - self.target.transpose_times(dU)
        return self.join(HU, HV)

    def third_derivative(self, x, a, b):
        """∇³f[a, b]: the derivative of ∇²f·a along b, constant in Σ (f is a quartic polynomial).

        With a = (A_U, A_V) and b = (B_U, B_V),
        T_U = A_U(B_VᵀV + VᵀB_V) + B_U(A_VᵀV + VᵀA_V) + U(A_VᵀB_V + B_VᵀA_V),
        T_V = A_V(B_UᵀU + UᵀB_U) + B_V(A_UᵀU + UᵀA_U) + V(A_UᵀB_U + B_UᵀA_U).
        """
        U, V = self.unpack(x)
        AU, AV = self.unpack(np.asarray(a, dtype=float))
        BU, BV = self.unpack(np.asarray(b, dtype=float))
        return self.join(_third_block(U, V, AU, AV, BU, BV), _third_block(V, U, AV, AU, BV, BU))

    def hessian(self, x) -> np.ndarray:
        """Dense ∇²f, shape (dim, dim), assembled from Kronecker blocks.

        H_UU = I_m ⊗ VᵀV, H_VV = I_n ⊗ UᵀU, and H_UV[(i,a),(j,b)] = U_ib V_ja − R_ij δ_ab.
        """
        U, V = self.unpack(np.asarray(x, dtype=float))
        if U.ndim != 2:
            raise ValueError("hessian takes a single state of shape (dim,)")
        m, k = U.shape
        n = V.shape[0]
        H_UV = np.einsum("ib,ja->iajb", U, V).reshape(m * k, n * k)
        H = np.block([[np.kron(np.eye(m), V.T @ V), H_UV], [H_UV.T, np.kron(np.eye(n), U.T @ U)]])
        return couple_residual(H, U @ V.T - self.target.dense(), k)


def _third_block(U, V, AU, AV, BU, BV):
    """The U block of ∇³f[a, b] for f = ½‖UVᵀ − Σ‖²: the derivative along b of
    (A_UVᵀ + UA_Vᵀ)V + (UVᵀ − Σ)A_V, i.e.
    A_U(B_VᵀV + VᵀB_V) + B_U(A_VᵀV + VᵀA_V) + U(A_VᵀB_V + B_VᵀA_V); the V block swaps the roles."""
    return (AU @ (BV.mT @ V + V.mT @ BV) + BU @ (AV.mT @ V + V.mT @ AV)
            + U @ (AV.mT @ BV + BV.mT @ AV))


class SymmetricFactorization(FactoredProblem):
    r"""Symmetric factorization f(X) = ¼‖XXᵀ − M‖²_F, whose gradient flow is Ẋ = (M − XXᵀ)X.

    Parameters
    ----------
    target : LowRankTarget or array_like, shape (m, m)
        The symmetric M (eigenvalues of either sign; stored as its SVD).
    width : int
        k ≥ 1, the number of columns of X (m×k).
    """

    inherits_derivatives = ("negative_grad",)  # FactoredProblem's −∇f calls this class's _grad_rows(negate=True)

    def __init__(self, target, width: int):
        self.target: LowRankTarget = as_target(target)
        m, n = self.target.shape
        if m != n:
            raise ValueError(f"target must be square for a symmetric factorization, got shape {(m, n)}")
        probe = np.random.default_rng(0).standard_normal((m, 2))
        if not np.allclose(self.target.times(probe), self.target.transpose_times(probe),
                           atol=1e-10 * self.target.sigma[0] * np.linalg.norm(probe)):
            raise ValueError("target must be symmetric (M = Mᵀ)")
        width = positive_int(width, "width")
        self.layout = (("X", (m, width)),)

    @classmethod
    def random(cls, m: int, n: int | None = None, rank: int = 1, width: int = 1, *,
               condition: float = 1.0, singular_values=None, seed=0) -> "SymmetricFactorization":
        """Positive semi-definite M = Φ diag(σ) Φᵀ with Haar Φ; ``n`` must equal ``m`` if given."""
        if n is not None and n != m:
            raise ValueError(f"n must equal m for a symmetric problem, got m={m}, n={n}")
        t = LowRankTarget.random(m, m, rank, condition=condition, singular_values=singular_values, seed=seed)
        return cls(LowRankTarget(t.Phi, t.sigma, t.Phi, seed=seed), width)

    @property
    def m(self) -> int:
        return self.target.m

    n = m

    def factors(self, x):
        X = self.unpack(x)
        return X, X

    def describe(self) -> dict:
        return {"problem": type(self).__name__, "m": self.m, "width": self.width,
                "target": self.target.describe()}

    LOSS_SCALE = 0.25  # f = LOSS_SCALE·‖XXᵀ − M‖²_F (see MatrixFactorization.LOSS_SCALE)

    def loss(self, x):
        """f = ¼‖XXᵀ − M‖²_F."""
        return self.LOSS_SCALE * self.residual_norm(x) ** 2

    def _grad_rows(self, x, out, negate=False):
        """∇f = (XXᵀ − M)X = X(XᵀX) − MX for a stack x (B, dim), into ``out`` (−∇f if ``negate``):
        with M = Φ diag σ Ψᵀ, ∇f = [X, Φ] ([X, −Ψσ]ᵀ X), as in
        :meth:`MatrixFactorization._grad_rows` with U = V = X."""
        B, (m, k) = len(x), self.layout[0][1]
        W, M = self._workspace(B, stacked=True)
        X = x.reshape(B, m, k)
        np.copyto(W[..., :k], X[:, None])
        np.matmul(W[:, 1].mT, X, out=M[:, 1])
        if negate:
            np.negative(M[:, 1], out=M[:, 1])
        np.matmul(W[:, 0], M[:, 1], out=out.reshape(B, m, k))
        return out

    def hvp(self, x, v):
        """∇²f·Δ = Δ(XᵀX) + X(ΔᵀX) + X(XᵀΔ) − MΔ."""
        X = self.unpack(x)
        D = self.unpack(np.asarray(v, dtype=float))
        H = D @ (X.mT @ X) + X @ (D.mT @ X) + X @ (X.mT @ D) - self.target.times(D)
        return self.join(H)

    def third_derivative(self, x, a, b):
        """∇³f[a, b] = A(BᵀX + XᵀB) + B(AᵀX + XᵀA) + X(AᵀB + BᵀA), the derivative of ∇²f·a along b."""
        X = self.unpack(x)
        A = self.unpack(np.asarray(a, dtype=float))
        B = self.unpack(np.asarray(b, dtype=float))
        return self.join(_third_block(X, X, A, A, B, B))

    def hessian(self, x) -> np.ndarray:
        """Dense ∇²f: I ⊗ XᵀX + [X_ib X_ja] + (XXᵀ − M) ⊗ I."""
        X = self.unpack(np.asarray(x, dtype=float))
        if X.ndim != 2:
            raise ValueError("hessian takes a single state of shape (dim,)")
        m, k = X.shape
        return (np.kron(np.eye(m), X.T @ X) + np.einsum("ib,ja->iajb", X, X).reshape(m * k, m * k)
                + np.kron(X @ X.T - self.target.dense(), np.eye(k)))


TRUSTED.update({MatrixFactorization, SymmetricFactorization})  # their derivatives are tested, not re-checked
