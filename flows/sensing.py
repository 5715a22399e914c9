r"""Matrix sensing and matrix completion: f(U, V) = ½‖𝒜(UVᵀ) − y‖² with y = 𝒜(X*) + ξ.

Both follow the problem protocol of :mod:`pgflow.flows.problems`, so :class:`pgflow.flows.GradientFlow`,
:func:`pgflow.flows.gradient_descent`, :func:`pgflow.flows.integrate`, the monitors and the analytic Jacobian
work unchanged. With R = 𝒜*(y − 𝒜(UVᵀ)) the gradient is ∇_U f = −RV, ∇_V f = −RᵀU, evaluated
through the operator's products (:mod:`pgflow.flows.operators`); ``target`` is X* and ``residual_norm`` is
the recovery error ‖UVᵀ − X*‖_F, not the (unobservable) measurement residual.
"""

from __future__ import annotations

import numpy as np

from .checks import as_float_array, positive, positive_int, renamed
from .seeds import child_rng, seed_record
from .operators import DenseOperator, EntrySampling, RankOneOperator, is_operator
from .base import TRUSTED
from .problems import FactoredProblem, MatrixFactorization, couple_residual
from .targets import LowRankTarget, as_target


class MatrixSensing(FactoredProblem):
    r"""Asymmetric matrix sensing f(U, V) = ½‖𝒜(UVᵀ) − y‖², y = 𝒜(X*) + ξ.

    Gradient: with R = 𝒜*(y − 𝒜(UVᵀ)), ∇_U f = −RV, ∇_V f = −RᵀU. Hessian-vector product: with
    W = ΔU Vᵀ + U ΔVᵀ, H_U = 𝒜*𝒜(W) V − R ΔV, H_V = (𝒜*𝒜(W))ᵀ U − Rᵀ ΔU. All methods accept a
    batch of states (B, dim) except ``hessian``.

    Parameters
    ----------
    target : LowRankTarget or array_like, shape (m, n)
        X*.
    operator : measurement operator
        𝒜 of shape (m, n), e.g. :class:`pgflow.flows.operators.DenseOperator`.
    width : int
        k ≥ 1, columns of U (m×k) and V (n×k).
    noise : float
        Standard deviation of the i.i.d. Gaussian measurement noise ξᵢ, ≥ 0.
    seed : int, optional
        Required when ``noise > 0``: ξ is drawn from its second spawned child (the first one draws
        the operator in :meth:`gaussian` and the mask in :class:`MatrixCompletion`).
    measurements : array_like, shape (p,), optional
        Use these y instead of measuring X* (``noise`` must then be 0); ξ is then y − 𝒜(X*).

    Examples
    --------
    >>> p = MatrixSensing.gaussian(LowRankTarget.random(6, 5, 2, seed=0), 40, width=2, seed=1)
    >>> x = p.pack(*p.target_factors())
    >>> float(p.loss(x)) < 1e-25, float(p.residual_norm(x)) < 1e-14
    (True, True)
    """

    inherits_derivatives = ("negative_grad",)  # FactoredProblem's −∇f calls this class's _grad_rows(negate=True)

    def __init__(self, target, operator, width: int, *, noise: float = 0.0, seed=None, measurements=None):
        target = as_target(target)
        if not is_operator(operator):
            raise TypeError(f"operator must be a measurement operator (see flows.operators), got "
                            f"{type(operator).__name__}")
        if tuple(operator.shape) != target.shape:
            raise ValueError(f"operator must have shape {target.shape} (the target's), got {tuple(operator.shape)}")
        width = positive_int(width, "width")
        noise = positive(noise, "noise", allow_zero=True)
        if measurements is None:
            noise_seed = None if seed is None else child_rng(seed, 1)
            y, xi = operator.measure(target, noise, noise_seed)
        else:
            if noise > 0:
                raise ValueError("give either measurements or noise > 0, not both (the noise is already in y)")
            y, xi = as_float_array(measurements, "measurements", shape=(operator.n_measurements,)).copy(), None
        self._init(target, operator, width, noise, seed, y, xi)

    def _init(self, target: LowRankTarget, operator, width: int, noise: float, seed, y: np.ndarray, xi) -> None:
        """Set up from checked parts: shared by ``__init__`` and :meth:`minibatch`, whose parts come
        from this checked problem (mini-batch GD builds one every step, and the checks cost as much
        as the batch's gradient)."""
        self.target: LowRankTarget = target
        self.operator = operator
        m, n = target.shape
        self.layout = (("U", (m, width)), ("V", (n, width)))
        self.noise = noise
        y.setflags(write=False)
        self.measurements = y
        self._noise_vector = xi
        self.seed = seed
        # With the Gram matrix, R = 𝒜*y − 𝒜*𝒜(UVᵀ) is one (mn, mn) product (docs/performance.md, case (e)).
        self._adjoint_measurements = operator.adjoint(y) if getattr(operator, "gram", None) is not None else None

    @classmethod
    def gaussian(cls, target, n_measurements: int, width: int, seed, *, noise: float = 0.0,
                 rank_one: bool = False, gram="auto") -> "MatrixSensing":
        """Sensing with i.i.d. Gaussian measurements, E[𝒜*𝒜] = I.

        Parameters
        ----------
        target : LowRankTarget or array_like, shape (m, n)
        n_measurements : int
            p.
        width : int
        seed : int
            Its first spawned child draws the operator, the second the noise.
        noise : float
            Standard deviation of each ξᵢ.
        rank_one : bool
            Rank-one Aᵢ = aᵢbᵢᵀ (:class:`RankOneOperator`, O(p(m + n)k) per gradient) instead of
            dense Aᵢ (:class:`DenseOperator`).
        gram : {"auto", True, False}
            Dense operators only: see :class:`DenseOperator`.
        """
        target = as_target(target)
        op_seed = child_rng(seed, 0)
        if rank_one:
            if gram != "auto":
                raise ValueError("gram applies to dense measurements only (rank_one=False)")
            op = RankOneOperator.gaussian(target.shape, n_measurements, op_seed)
        else:
            op = DenseOperator.gaussian(target.shape, n_measurements, op_seed, gram=gram)
        return cls(target, op, width, noise=noise, seed=seed)

    @classmethod
    def random(cls, m: int, n: int, rank: int, width: int, n_measurements: int, *, condition: float = 1.0,
               singular_values=None, noise: float = 0.0, rank_one: bool = False, seed=0) -> "MatrixSensing":
        """Gaussian sensing of a random target, all from ``seed``.

        The target is :meth:`LowRankTarget.random` with ``seed`` itself (the same X* as
        ``MatrixFactorization.random`` with that seed); operator and noise come from spawned children.
        """
        target = LowRankTarget.random(m, n, rank, condition=condition, singular_values=singular_values, seed=seed)
        return cls.gaussian(target, n_measurements, width, seed, noise=noise, rank_one=rank_one)

    m = MatrixFactorization.m
    n = MatrixFactorization.n

    @property
    def noise_vector(self) -> np.ndarray:
        """ξ = y − 𝒜(X*), shape (p,)."""
        if self._noise_vector is None:
            t = self.target
            self._noise_vector = self.measurements - self.operator.apply_factored(t.Phi * t.sigma, t.Psi)
        return self._noise_vector

    def factors(self, x):
        return self.unpack(x)

    def target_factors(self) -> tuple[np.ndarray, np.ndarray]:
        """A balanced exact factorization (Φ√σ, Ψ√σ) of X*, padded with zero columns to the width."""
        t = self.target
        if t.rank > self.width:
            raise ValueError(f"X* has rank {t.rank} > width {self.width}: no exact factorization")
        pad = ((0, 0), (0, self.width - t.rank))
        root = np.sqrt(t.sigma)
        return np.pad(t.Phi * root, pad), np.pad(t.Psi * root, pad)

    def describe(self) -> dict:
        return {"problem": type(self).__name__, "m": self.m, "n": self.n, "width": self.width,
                "target": self.target.describe(), "operator": self.operator.describe(),
                "noise": self.noise, "seed": seed_record(self.seed)}

    def minibatch(self, indices) -> "MatrixSensing":
        """The unbiased mini-batch problem on measurements ``indices``.

        f_B = (p/b)·½Σ_{i∈B}(𝒜(UVᵀ)ᵢ − yᵢ)², written as a sensing problem with the operator
        ``operator.subset(indices)`` and measurements √(p/b)·y_B, so E_B[∇f_B] = ∇f.
        """
        op = self.operator.subset(indices)
        w = np.sqrt(self.operator.n_measurements / op.n_measurements)
        batch = object.__new__(MatrixSensing)
        batch._init(self.target, op, self.width, 0.0, None, w * self.measurements[np.asarray(indices)], None)
        return batch

    def _residual_products(self, U, V, left=None, right=None):
        """(R·right, Rᵀ·left) with R = 𝒜*(y − 𝒜(UVᵀ)); right, left default to V, U."""
        left = U if left is None else left
        right = V if right is None else right
        if self._adjoint_measurements is not None:
            R = self._adjoint_measurements - self.operator.normal(U @ V.mT)
            return R @ right, R.mT @ left
        return self.operator.adjoint_products(self.measurements - self.operator.apply_factored(U, V), left, right)

    def loss(self, x):
        """f = ½‖𝒜(UVᵀ) − y‖²."""
        U, V = self.unpack(x)
        return 0.5 * np.sum((self.operator.apply_factored(U, V) - self.measurements) ** 2, axis=-1)

    def _grad_rows(self, x, out, negate=False):
        """∇f = (−RV, −RᵀU) with R = 𝒜*(y − 𝒜(UVᵀ)) for a stack x (B, dim), into ``out`` (−∇f =
        (RV, RᵀU) if ``negate``)."""
        (U, V), (GU, GV) = self.unpack(x), self.unpack(out)
        RV, RtU = self._residual_products(U, V)
        if negate:
            GU[...], GV[...] = RV, RtU
        else:
            np.negative(RV, out=GU)
            np.negative(RtU, out=GV)
        return out

    def hvp(self, x, v):
        """∇²f·v: H_U = 𝒜*𝒜(W)V − RΔV, H_V = (𝒜*𝒜(W))ᵀU − RᵀΔU, W = ΔUVᵀ + UΔVᵀ (factored)."""
        U, V = self.unpack(x)
        dU, dV = self.unpack(np.asarray(v, dtype=float))
        AW = self.operator.apply_factored(np.concatenate([dU, U], -1), np.concatenate([V, dV], -1))
        SV, StU = self.operator.adjoint_products(AW, U, V)
        RdV, RtdU = self._residual_products(U, V, dU, dV)
        return self.join(SV - RdV, StU - RtdU)

    def third_derivative(self, x, a, b):
        """∇³f[a, b], the derivative of ∇²f·a along b (f is a quartic polynomial): with S = 𝒜*𝒜,
        T_U = S(A_UB_Vᵀ + B_UA_Vᵀ)V + S(A_UVᵀ + UA_Vᵀ)B_V + S(B_UVᵀ + UB_Vᵀ)A_V and T_V the same with
        the adjoint products Sᵀ(·)U, Sᵀ(·)B_U, Sᵀ(·)A_U (factored: three operator applications)."""
        U, V = self.unpack(x)
        AU, AV = self.unpack(np.asarray(a, dtype=float))
        BU, BV = self.unpack(np.asarray(b, dtype=float))
        op = self.operator
        TU, TV = 0.0, 0.0
        for left, right, times_left, times_right in (((AU, BU), (BV, AV), U, V), ((AU, U), (V, AV), BU, BV),
                                                     ((BU, U), (V, BV), AU, AV)):
            SU, SV = op.adjoint_products(op.apply_factored(np.concatenate(left, -1), np.concatenate(right, -1)),
                                         times_left, times_right)
            TU, TV = TU + SU, TV + SV
        return self.join(TU, TV)

    def hessian(self, x) -> np.ndarray:
        """Dense ∇²f, shape (dim, dim): JᵀJ − [[0, R⊗I_k], [Rᵀ⊗I_k, 0]].

        J = 𝒜·∂vec(UVᵀ)/∂x is the (p, dim) Jacobian of the measurements, built from the operator's
        matrix and the Kronecker blocks ∂vec(UVᵀ)/∂U = I_m ⊗ V, ∂vec(UVᵀ)/∂V_jb = U_:b ⊗ e_j.
        """
        U, V = self.unpack(np.asarray(x, dtype=float))
        if U.ndim != 2:
            raise ValueError("hessian takes a single state of shape (dim,)")
        m, k = U.shape
        n = V.shape[0]
        dX = np.hstack([np.kron(np.eye(m), V), np.einsum("ib,jc->ijcb", U, np.eye(n)).reshape(m * n, n * k)])
        J = np.asarray(self.operator.as_matrix() @ dX)
        R = self.operator.adjoint(self.measurements - self.operator.apply_factored(U, V))
        return couple_residual(J.T @ J, -R, k)


class MatrixCompletion(MatrixSensing):
    r"""Matrix completion: sensing with the entry-sampling operator 𝒜(X) = √(mn/p)·X_Ω.

    f(U, V) = (mn/2p)‖P_Ω(UVᵀ − X*)‖²_F (plus noise on the observed entries), scaled so that
    E[𝒜*𝒜] = I under uniform sampling.

    Parameters
    ----------
    target : LowRankTarget or array_like, shape (m, n)
    observed : boolean array_like of shape (m, n), or float in (0, 1]
        The mask Ω, or the fraction of entries to observe uniformly at random (needs ``seed``).
    width : int
    seed : int, optional
        Draws Ω (for a fraction) and, independently, the noise.
    noise : float
        Standard deviation of the noise on each observed entry (needs ``seed``).
    """

    def __init__(self, target, observed, width: int, seed=None, *, noise: float = 0.0):
        target = as_target(target)
        if np.ndim(observed) == 0:
            if seed is None:
                raise ValueError("observing a random fraction of entries needs a seed (an int)")
            op = EntrySampling.uniform(target.shape, observed, child_rng(seed, 0))
        else:
            mask = np.asarray(observed)
            if mask.shape != target.shape:
                raise ValueError(f"observed must be a boolean mask of shape {target.shape} or a fraction, "
                                 f"got shape {mask.shape}")
            op = EntrySampling.from_mask(mask)
        super().__init__(target, op, width, noise=noise, seed=seed)

    @classmethod
    @renamed(fraction="observed")
    def random(cls, m: int, n: int, rank: int, width: int, observed: float, *, condition: float = 1.0,
               singular_values=None, noise: float = 0.0, seed=0) -> "MatrixCompletion":
        """Uniformly observed entries of a random target, from ``seed`` (target as in :meth:`MatrixSensing.random`).

        ``observed`` is the fraction of entries observed, in (0, 1] (as for the constructor and the
        ``observed`` field of a run description).
        """
        target = LowRankTarget.random(m, n, rank, condition=condition, singular_values=singular_values, seed=seed)
        return cls(target, observed, width, seed, noise=noise)


TRUSTED.update({MatrixSensing, MatrixCompletion})  # their derivatives are tested, not re-checked
