r"""Linear measurement operators 𝒜: ℝ^{m×n} → ℝ^p for matrix sensing and matrix completion.

Every operator scales its measurements so that E[𝒜*𝒜] = I for its random model, which makes the
sensing loss ½‖𝒜(UVᵀ) − y‖² comparable to the factorization loss ½‖UVᵀ − Σ‖²_F and the sensing
gradient flow a perturbation of the factorization flow by (𝒜*𝒜 − I)(X* − UVᵀ).

Shared protocol (what :class:`pgflow.flows.sensing.MatrixSensing` relies on). Leading batch axes are
allowed everywhere:

``shape``, ``n_measurements``
    (m, n) and p.
``apply(X) -> y``, ``adjoint(y) -> X``
    𝒜(X), shape (..., p), and 𝒜*(y), shape (..., m, n).
``apply_factored(U, V) -> y``
    𝒜(UVᵀ) through the factors where the structure allows it.
``adjoint_products(y, U, V) -> (𝒜*(y) V, 𝒜*(y)ᵀ U)``
    The two products every gradient needs, shapes (..., m, k) and (..., n, k).
``normal(X) -> 𝒜*𝒜(X)``, ``as_matrix() -> (p, m·n)``
    The normal operator and the operator as a (dense or sparse) matrix on row-major vec(X).
``subset(indices) -> operator``
    The operator on some measurements, rescaled by √(p/b) so that it stays unbiased (mini-batches).
``measure(target, noise=0.0, seed=None) -> (y, ξ)``, ``describe() -> dict``
    Measurements y = 𝒜(X*) + ξ of a target with seeded Gaussian noise ξ, and the operator's
    description (for provenance).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse

from .checks import as_float_array, positive, positive_int, renamed
from .seeds import seed_rng
from .problems import lowrank_frobenius
from .targets import as_target

# The (mn, mn) Gram matrix makes the sensing gradient a single product (docs/performance.md, case (e));
# it pays off when it is no larger than the two (p, mn) products it replaces, and is kept below
# this many entries (32 MB) so that "auto" never surprises anyone's memory.
_GRAM_MAX_ENTRIES = 4_000_000


class MeasurementOperator:
    """What every operator shares: shape checks, measurements with noise, mini-batches."""

    shape: tuple[int, int]
    scale: float
    n_measurements: int
    # the (mn, mn) matrix of 𝒜*𝒜 when precomputed (only DenseOperator offers it)
    gram = None

    def _check_matrix(self, X, name: str = "X") -> np.ndarray:
        X = np.asarray(X, dtype=float)
        if X.ndim < 2 or X.shape[-2:] != self.shape:
            raise ValueError(f"{name} must have shape {self.shape} (or (..., *{self.shape})), got {X.shape}")
        return X

    def _check_measurements(self, y, name: str = "y") -> np.ndarray:
        y = np.asarray(y, dtype=float)
        if y.ndim < 1 or y.shape[-1] != self.n_measurements:
            raise ValueError(f"{name} must have last dimension {self.n_measurements} (the number of "
                             f"measurements), got shape {y.shape}")
        return y

    def normal(self, X) -> np.ndarray:
        """𝒜*𝒜(X), shape (..., m, n)."""
        return self.adjoint(self.apply(X))

    def measure(self, target, noise: float = 0.0, seed=None) -> tuple[np.ndarray, np.ndarray]:
        """Measurements y = 𝒜(X*) + ξ with ξᵢ i.i.d. N(0, noise²).

        Parameters
        ----------
        target : LowRankTarget or array_like, shape (m, n)
            X*, applied through its factors.
        noise : float
            Standard deviation of each ξᵢ, ≥ 0.
        seed : int, optional
            Required when ``noise > 0``.

        Returns
        -------
        y, xi : ndarray, shape (p,)
        """
        target = as_target(target)
        if target.shape != self.shape:
            raise ValueError(f"target must have shape {self.shape} to match the operator, got {target.shape}")
        noise = positive(noise, "noise", allow_zero=True)
        if noise > 0 and seed is None:
            raise ValueError("noise > 0 needs a seed (an int): pgflow never draws unseeded noise")
        xi = (noise * seed_rng(seed, "seed").standard_normal(self.n_measurements) if noise > 0
              else np.zeros(self.n_measurements))
        return self.apply_factored(target.Phi * target.sigma, target.Psi) + xi, xi

    def _subset_indices(self, indices) -> tuple[np.ndarray, float]:
        """Validated indices and the factor √(p/b) that keeps E[𝒜_B*𝒜_B] = 𝒜*𝒜."""
        idx = np.asarray(indices)
        if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"indices must be a non-empty 1-D integer array, got {idx!r}")
        p = self.n_measurements
        if idx.min() < 0 or idx.max() >= p:
            raise ValueError(f"indices must lie in [0, {p}), got range [{idx.min()}, {idx.max()}]")
        return idx, float(np.sqrt(p / idx.size))

    def describe(self) -> dict:
        return {"operator": type(self).__name__, "shape": list(self.shape),
                "n_measurements": self.n_measurements}


class DenseOperator(MeasurementOperator):
    r"""𝒜(X)ᵢ = scale·⟨Aᵢ, X⟩ for dense measurement matrices Aᵢ.

    A is stored once as a (p, m·n) matrix with the scale folded in, so ``apply`` and ``adjoint``
    are single matrix products; with ``gram`` the normal operator 𝒜*𝒜 is one (mn, mn) product.

    Parameters
    ----------
    matrices : array_like, shape (p, m, n)
        The Aᵢ.
    scale : float, optional
        Default 1/√p: for Aᵢ with i.i.d. N(0, 1) entries, E[𝒜*𝒜] = I.
    gram : {"auto", True, False}
        Precompute 𝒜*𝒜 as an (mn, mn) matrix. "auto": when mn ≤ 2p (one product then costs no
        more than the two it replaces) and (mn)² ≤ 4·10⁶.

    Examples
    --------
    >>> op = DenseOperator.gaussian((4, 3), 50, seed=0)
    >>> X, y = np.ones((4, 3)), np.arange(50.0)
    >>> bool(np.isclose(op.apply(X) @ y, np.sum(X * op.adjoint(y))))
    True
    """

    def __init__(self, matrices, *, scale: float | None = None, gram="auto"):
        A = as_float_array(matrices, "matrices", ndim=3)
        p, m, n = A.shape
        if min(A.shape) < 1:
            raise ValueError(f"matrices must have shape (p, m, n) with p, m, n >= 1, got {A.shape}")
        scale = 1.0 / np.sqrt(p) if scale is None else positive(scale, "scale")
        self._init(scale * A.reshape(p, m * n), (m, n), scale, gram)

    def _init(self, matrix: np.ndarray, shape, scale: float, gram) -> None:
        """Set up from the scaled (p, mn) matrix (shared by ``__init__`` and :meth:`subset`)."""
        self.matrix = matrix
        self.matrix.setflags(write=False)
        self.shape = tuple(shape)
        self.scale = scale
        if gram == "auto":
            mn = matrix.shape[1]
            gram = mn <= 2 * matrix.shape[0] and mn * mn <= _GRAM_MAX_ENTRIES
        elif not isinstance(gram, bool):
            raise TypeError(f"gram must be 'auto', True or False, got {gram!r}")
        self.gram = matrix.T @ matrix if gram else None

    @classmethod
    def gaussian(cls, shape, n_measurements: int, seed, *, gram="auto") -> "DenseOperator":
        """Aᵢ with i.i.d. N(0, 1) entries from ``seed``, scale 1/√p (so E[𝒜*𝒜] = I)."""
        m, n = _shape(shape)
        p = positive_int(n_measurements, "n_measurements")
        return cls(seed_rng(seed).standard_normal((p, m, n)), gram=gram)

    @property
    def n_measurements(self) -> int:
        return self.matrix.shape[0]

    def apply(self, X) -> np.ndarray:
        X = self._check_matrix(X)
        return X.reshape(X.shape[:-2] + (-1,)) @ self.matrix.T

    def adjoint(self, y) -> np.ndarray:
        y = self._check_measurements(y)
        return (y @ self.matrix).reshape(y.shape[:-1] + self.shape)

    def apply_factored(self, U, V) -> np.ndarray:
        """𝒜(UVᵀ): forming UVᵀ (O(mnk)) is cheaper than any route through the dense Aᵢ."""
        return self.apply(U @ V.mT)

    def adjoint_products(self, y, U, V):
        M = self.adjoint(y)
        return M @ V, M.mT @ U

    def normal(self, X) -> np.ndarray:
        if self.gram is None:
            return super().normal(X)
        X = self._check_matrix(X)
        return (X.reshape(X.shape[:-2] + (-1,)) @ self.gram).reshape(X.shape)

    def as_matrix(self) -> np.ndarray:
        return self.matrix

    def subset(self, indices) -> "DenseOperator":
        idx, w = self._subset_indices(indices)
        # built from the scaled rows directly: dividing the scale out and back in would round
        sub = object.__new__(DenseOperator)
        sub._init(w * self.matrix[idx], self.shape, w * self.scale, False)
        return sub

    def describe(self) -> dict:
        return {**super().describe(), "gram": self.gram is not None}


class RankOneOperator(MeasurementOperator):
    r"""Rank-one measurements Aᵢ = aᵢbᵢᵀ: 𝒜(X)ᵢ = scale·aᵢᵀ X bᵢ.

    Through the factors, 𝒜(UVᵀ)ᵢ = scale·Σ_c (aᵢᵀU_c)(bᵢᵀV_c) and
    𝒜*(y)V = scale·Σᵢ yᵢ aᵢ (bᵢᵀV) cost O(p(m + n)k); no m×n matrix is formed.

    Parameters
    ----------
    left : array_like, shape (p, m)
        The aᵢ as rows.
    right : array_like, shape (p, n)
        The bᵢ as rows.
    scale : float, optional
        Default 1/√p: for Gaussian aᵢ, bᵢ, E[𝒜*𝒜] = I.
    """

    def __init__(self, left, right, *, scale: float | None = None):
        a = as_float_array(left, "left", ndim=2)
        b = as_float_array(right, "right", ndim=2)
        if a.shape[0] != b.shape[0] or min(a.shape + b.shape) < 1:
            raise ValueError(f"left (p, m) and right (p, n) must be non-empty with the same number of "
                             f"rows p, got {a.shape} and {b.shape}")
        self.scale = 1.0 / np.sqrt(a.shape[0]) if scale is None else positive(scale, "scale")
        self.left, self.right = a.copy(), b.copy()
        self.left.setflags(write=False)
        self.right.setflags(write=False)
        self.shape = (a.shape[1], b.shape[1])

    @classmethod
    def gaussian(cls, shape, n_measurements: int, seed) -> "RankOneOperator":
        """aᵢ, bᵢ with i.i.d. N(0, 1) entries from ``seed``, scale 1/√p (so E[𝒜*𝒜] = I)."""
        m, n = _shape(shape)
        p = positive_int(n_measurements, "n_measurements")
        rng = seed_rng(seed)
        return cls(rng.standard_normal((p, m)), rng.standard_normal((p, n)))

    @property
    def n_measurements(self) -> int:
        return self.left.shape[0]

    def apply(self, X) -> np.ndarray:
        X = self._check_matrix(X)
        return self.scale * np.sum((self.left @ X) * self.right, axis=-1)

    def adjoint(self, y) -> np.ndarray:
        y = self._check_measurements(y)
        return (self.left.T * (self.scale * y[..., None, :])) @ self.right

    def apply_factored(self, U, V) -> np.ndarray:
        return self.scale * np.sum((self.left @ U) * (self.right @ V), axis=-1)

    def adjoint_products(self, y, U, V):
        y = self.scale * y[..., :, None]
        return self.left.T @ (y * (self.right @ V)), self.right.T @ (y * (self.left @ U))

    def as_matrix(self) -> np.ndarray:
        return self.scale * np.einsum("pi,pj->pij", self.left, self.right).reshape(self.n_measurements, -1)

    def subset(self, indices) -> "RankOneOperator":
        idx, w = self._subset_indices(indices)
        return RankOneOperator(self.left[idx], self.right[idx], scale=w * self.scale)


class EntrySampling(MeasurementOperator):
    r"""Matrix completion: 𝒜(X)_s = scale·X[rowsₛ, colsₛ] for the observed entries.

    Parameters
    ----------
    shape : (int, int)
        (m, n).
    rows, cols : array_like of int, shape (p,)
        The observed entries (repeats allowed: sampling with replacement).
    scale : float, optional
        Default √(mn/p): for entries sampled uniformly, E[𝒜*𝒜] = I.

    Examples
    --------
    >>> op = EntrySampling.from_mask(np.eye(3, dtype=bool))
    >>> op.n_measurements, op.apply(np.arange(9.0).reshape(3, 3)) / op.scale
    (3, array([0., 4., 8.]))
    """

    def __init__(self, shape, rows, cols, *, scale: float | None = None):
        m, n = _shape(shape)
        if np.size(rows) == 0 and np.size(cols) == 0:
            raise ValueError("the sampling observes no entry: give at least one (rows, cols) pair")
        rows, cols = np.asarray(rows), np.asarray(cols)
        for name, idx, size in (("rows", rows, m), ("cols", cols, n)):
            if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
                raise ValueError(f"{name} must be a 1-D integer array, got {idx!r}")
            if idx.size and (idx.min() < 0 or idx.max() >= size):
                raise ValueError(f"{name} must lie in [0, {size}), got range [{idx.min()}, {idx.max()}]")
        if rows.shape != cols.shape:
            raise ValueError(f"rows and cols must have the same length, got {rows.shape} and {cols.shape}")
        p = rows.size
        self.shape = (m, n)
        self.scale = np.sqrt(m * n / p) if scale is None else positive(scale, "scale")
        self.rows, self.cols = rows.astype(np.intp), cols.astype(np.intp)
        # incidence matrices: the adjoint scatters through them, so repeats add up
        self._row_incidence = _incidence(self.rows, m, self.scale)
        self._col_incidence = _incidence(self.cols, n, self.scale)
        self._flat = _incidence(np.arange(p), p, self.scale, columns=self.rows * n + self.cols, width=m * n)

    @classmethod
    def from_mask(cls, mask, *, scale: float | None = None) -> "EntrySampling":
        """Observe the True entries of a boolean (m, n) ``mask``."""
        mask = np.asarray(mask)
        if mask.dtype != bool or mask.ndim != 2:
            raise ValueError(f"mask must be a 2-D boolean array, got dtype {mask.dtype} and shape {mask.shape}")
        if not mask.any():
            raise ValueError("mask observes nothing: at least one entry must be True")
        rows, cols = np.nonzero(mask)
        return cls(mask.shape, rows, cols, scale=scale)

    @classmethod
    @renamed(fraction="observed")
    def uniform(cls, shape, observed: float, seed) -> "EntrySampling":
        """Observe round(observed·mn) ≥ 1 distinct entries chosen uniformly from ``seed`` (``observed``:
        the fraction of entries, in (0, 1])."""
        m, n = _shape(shape)
        observed = positive(observed, "observed")
        if observed > 1:
            raise ValueError(f"observed must lie in (0, 1], got {observed}")
        p = max(1, int(round(observed * m * n)))
        flat = np.sort(seed_rng(seed).choice(m * n, size=p, replace=False))
        return cls((m, n), flat // n, flat % n)

    @property
    def n_measurements(self) -> int:
        return self.rows.size

    @property
    def mask(self) -> np.ndarray:
        """The observed entries as a boolean (m, n) array."""
        mask = np.zeros(self.shape, dtype=bool)
        mask[self.rows, self.cols] = True
        return mask

    def apply(self, X) -> np.ndarray:
        X = self._check_matrix(X)
        return self.scale * X[..., self.rows, self.cols]

    def adjoint(self, y) -> np.ndarray:
        y = self._check_measurements(y)
        return _sparse_left(self._flat.T, y[..., None])[..., 0].reshape(y.shape[:-1] + self.shape)

    def apply_factored(self, U, V) -> np.ndarray:
        return self.scale * np.einsum("...pk,...pk->...p", U[..., self.rows, :], V[..., self.cols, :])

    def adjoint_products(self, y, U, V):
        y = y[..., :, None]
        return (_sparse_left(self._row_incidence, y * V[..., self.cols, :]),
                _sparse_left(self._col_incidence, y * U[..., self.rows, :]))

    def as_matrix(self):
        """The (p, mn) sampling matrix, sparse."""
        return self._flat

    def subset(self, indices) -> "EntrySampling":
        idx, w = self._subset_indices(indices)
        return EntrySampling(self.shape, self.rows[idx], self.cols[idx], scale=w * self.scale)

    def describe(self) -> dict:
        return {**super().describe(), "fraction_observed": float(np.mean(self.mask))}


def _shape(shape) -> tuple[int, int]:
    if not (isinstance(shape, (tuple, list)) and len(shape) == 2):
        raise ValueError(f"shape must be a pair (m, n), got {shape!r}")
    return positive_int(shape[0], "shape[0]"), positive_int(shape[1], "shape[1]")


def _incidence(rows: np.ndarray, n_rows: int, scale: float, *, columns=None, width=None) -> scipy.sparse.csr_array:
    """The (n_rows, width) CSR matrix with ``scale`` at (rows[s], columns[s]) for each s.

    ``columns`` defaults to s itself and ``width`` to len(rows). The entries of a row keep the order
    of s, as the COO route would leave them, but the arrays are built directly: that route costs
    three times as much, and mini-batches of a completion problem build these every step.
    """
    columns = np.arange(rows.size) if columns is None else columns
    order = np.argsort(rows, kind="stable")
    indptr = np.zeros(n_rows + 1, dtype=np.intp)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
    return scipy.sparse.csr_array((np.full(rows.size, scale), columns[order], indptr),
                                  shape=(n_rows, rows.size if width is None else width))


def _sparse_left(S, Z: np.ndarray) -> np.ndarray:
    """S @ Z for a sparse (q, p) S and Z of shape (..., p, k), batch axes included."""
    p, k = Z.shape[-2:]
    batch = Z.shape[:-2]
    flat = np.moveaxis(Z, -2, 0).reshape(p, -1)
    return np.moveaxis((S @ flat).reshape((S.shape[0],) + batch + (k,)), 0, -2)


def rip_estimate(operator, rank: int, *, n_samples: int = 200, seed) -> float:
    r"""Empirical restricted-isometry constant: max |‖𝒜(X)‖²/‖X‖²_F − 1| over random rank-R X.

    X = GHᵀ with Gaussian G (m×R), H (n×R). This is a *lower* estimate of the true δ_R (a supremum
    over all rank-R matrices), useful to compare operators, not to certify a theorem's hypothesis.

    Parameters
    ----------
    operator : measurement operator
    rank : int
        R ≥ 1, at most min(m, n).
    n_samples : int
        How many random matrices.
    seed : int

    Returns
    -------
    delta : float
    """
    m, n = operator.shape
    rank = positive_int(rank, "rank")
    if rank > min(m, n):
        raise ValueError(f"rank must be <= min(m, n) = {min(m, n)}, got {rank}")
    n_samples = positive_int(n_samples, "n_samples")
    rng = seed_rng(seed)
    G = rng.standard_normal((n_samples, m, rank))
    H = rng.standard_normal((n_samples, n, rank))
    ratio = np.sum(operator.apply_factored(G, H) ** 2, axis=-1) / lowrank_frobenius(G, H) ** 2
    return float(np.max(np.abs(ratio - 1.0)))


def is_operator(obj) -> bool:
    """Whether ``obj`` has the operator protocol (duck-typed, so users can bring their own)."""
    return hasattr(obj, "shape") and hasattr(obj, "n_measurements") and all(
        callable(getattr(obj, name, None))
        for name in ("apply", "adjoint", "apply_factored", "adjoint_products", "normal", "as_matrix", "measure"))


__all__ = ["DenseOperator", "EntrySampling", "MeasurementOperator", "RankOneOperator", "is_operator",
           "rip_estimate"]
