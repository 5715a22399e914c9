r"""A factorization problem from a loss formula: :class:`FormulaProblem`.

Write the loss, get a problem that the flows, gradient descent, the monitors, the claims and the
discretization study take like the built-in ones::

    problem = FormulaProblem("fro(U*V.T - Sigma)**2/2 + lam/8*fro(U.T*U - V.T*V)**2", target, width=3,
                             params={"lam": 0.5})

What happens on construction:

1. the formula is read by the safe parser and checked (:func:`.formula.read_formula`);
2. its gradient, Hessian-vector product and third derivative are derived by the package's matrix
   calculus (:func:`.calculus.gradient_of`, :func:`.calculus.directional`);
3. they are compiled at the problem's sizes into numpy programs that use Σ = Φ diag(σ) Ψᵀ through
   its factors and associate products cheaply (:mod:`.factored`): the gradient of
   ½‖UVᵀ − Σ‖² runs as U(VᵀV) − Φ(σ ⊙ ΨᵀV) and never forms an m×n matrix;
4. the derivatives are checked once against the loss by their Taylor remainders
   (:func:`pgflow.flows.base.check_problem`; ``check=False`` skips it).

The formulas of the issue that introduced it are shipped as :data:`FORMULAS` with constructors
:meth:`FormulaProblem.balanced`, :meth:`FormulaProblem.weight_decay` and
:meth:`FormulaProblem.sensing_weight_decay`.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ...flows.base import ensure_consistent
from ...flows.checks import as_float_array, positive_int
from ...flows.operators import is_operator
from ...flows.problems import FactoredProblem, MatrixFactorization
from ...flows.targets import LowRankTarget, as_target
from .codegen import _complement
from .factored import BoundProgram, compile_factored
from .formula import DIRECTIONS, FormulaError, read_formula
from . import vocabulary as voc
from .sensing import OPERATOR, p

FORMULAS = {
    "balanced": "fro(U*V.T - Sigma)**2/2 + lam/8*fro(U.T*U - V.T*V)**2",
    "weight_decay": "fro(U*V.T - Sigma)**2/2 + lam/2*(fro(U)**2 + fro(V)**2)",
    "sensing_weight_decay": "fro(A(U*V.T) - y)**2/2 + lam/2*(fro(U)**2 + fro(V)**2)",
}
"""The shipped losses, each with its parameter λ (``lam``):

balanced
    ½‖UVᵀ − Σ‖²_F + (λ/8)‖UᵀU − VᵀV‖²_F, the balancing regularizer; ∇_U = (UVᵀ − Σ)V + (λ/2)U D,
    ∇_V = (UVᵀ − Σ)ᵀU − (λ/2)V D with D = UᵀU − VᵀV. Along its gradient flow
    Ḋ = −(λ/2)(PD + DP) with P = UᵀU + VᵀV: the factorization term conserves D, the regularizer
    shrinks it (and leaves UVᵀ unchanged: its gradient moves along (UG, VG⁻ᵀ)).
weight_decay
    ½‖UVᵀ − Σ‖²_F + (λ/2)(‖U‖²_F + ‖V‖²_F); ∇ = ∇(½‖UVᵀ − Σ‖²) + λ(U, V), and Ḋ = −2λD.
sensing_weight_decay
    ½‖𝒜(UVᵀ) − y‖² + (λ/2)(‖U‖²_F + ‖V‖²_F); ∇_U = 𝒜*(𝒜(UVᵀ) − y)V + λU,
    ∇_V = 𝒜*(𝒜(UVᵀ) − y)ᵀU + λV.
"""

# the programs of a problem: name -> which derivative (see FormulaProblem._outputs)
_PROGRAMS = ("loss", "grad", "grad_U", "grad_V", "hvp", "third")


class FormulaProblem(FactoredProblem):
    r"""A factorization problem f(U, V) given by a formula, with derived and compiled derivatives.

    The state packs U (m×k) and V (n×k) as :class:`~pgflow.flows.MatrixFactorization` does;
    ``target`` is Σ (for a sensing loss: X*, whose distance ‖UVᵀ − X*‖_F the monitors report).

    Parameters
    ----------
    loss : str or sympy expression
        A scalar formula in U, V, Sigma (and Phi, Psi, Sigma_star, Phi_perp, Psi_perp), the sizes m,
        n, k, r, the catalogue quantities, the parameters of ``params`` and, with ``operator``,
        ``A(X)`` and ``y``: e.g. ``"fro(U*V.T - Sigma)**2/2 + lam/2*(fro(U)**2 + fro(V)**2)"``.
        ``fro(X)**2`` is ‖X‖²_F, ``trace``, ``sqrt``, ``exp``, ``log``, ``*`` (matrix product),
        ``.T``, ``+``, ``-``, ``/`` and integer powers are allowed (:mod:`.formula`).
    target : LowRankTarget or array_like, shape (m, n)
        Σ; a dense array is factored once by its SVD.
    width : int
        k ≥ 1.
    params : dict, optional
        Value of every parameter the formula names (``{"lam": 0.1}``), finite floats.
    operator : measurement operator, optional
        𝒜 of shape (m, n) (:mod:`pgflow.flows.operators`), applied by ``A(X)`` in the formula.
    measurements : array_like, shape (p,), optional
        y; default 𝒜(Σ), noise-free.
    check : bool
        Check once that the derived gradient, Hessian-vector product and third derivative agree
        with the loss (:func:`pgflow.flows.base.check_problem`); a problem checked here is not
        checked again by the flows.

    Attributes
    ----------
    formula : Formula
        The checked loss (``formula.text``, ``formula.expr``) and its derivatives.
    params : dict
        Parameter name -> float.

    Raises
    ------
    FormulaError
        A malformed formula, an unknown symbol, a parameter without a value or a value without a
        parameter, a non-scalar loss, shapes that do not conform, a formula without U or V, one
        without a symbolic gradient; the message names the symbol.

    Notes
    -----
    Accuracy: the gradient is a sum of products of factors (U(VᵀV) − Φ(σ ⊙ ΨᵀV) + …), each
    accurate to rounding, as in :class:`~pgflow.flows.MatrixFactorization`; near a minimum, where
    the terms cancel, the gradient's absolute error is about ε‖Σ‖‖V‖. The loss evaluates ‖Y‖²_F of
    an m×n sum Y (the residual UVᵀ − Σ) from the QR core of Y's factors, not from the expanded
    traces, so it keeps its relative accuracy as the residual goes to zero.

    Examples
    --------
    >>> target = LowRankTarget.random(6, 5, rank=2, seed=0)
    >>> problem = FormulaProblem.weight_decay(target, width=2, lam=0.1)
    >>> x = problem.random_state(np.random.default_rng(1))
    >>> plain = MatrixFactorization(target, 2)
    >>> bool(np.allclose(problem.grad(x), plain.grad(x) + 0.1 * x, rtol=1e-13, atol=1e-13))
    True
    """

    inherits_derivatives = ("negative_grad",)  # FactoredProblem's −∇f calls this class's _grad_rows
    PARTIAL_GRAD_COST = 0.5  # one block's program holds about half of the gradient's products

    def __init__(self, loss, target, width: int, *, params=None, operator=None, measurements=None,
                 check: bool = True):
        self.target: LowRankTarget = as_target(target)
        width = positive_int(width, "width")
        rows, cols = self.target.shape
        self.layout = (("U", (rows, width)), ("V", (cols, width)))
        self.operator, self.measurements = _sensing(self.target, operator, measurements)
        self.formula, self.params = read_formula(loss, params, operator=operator is not None)
        if self.operator is not None and not self.formula.operator:
            raise FormulaError("an operator was given but the loss does not apply it", self.formula.text)
        self._programs: dict = {}
        if check:
            ensure_consistent(self)

    # the shipped formulas

    @classmethod
    def balanced(cls, target, width: int, lam: float, **options) -> "FormulaProblem":
        """½‖UVᵀ − Σ‖²_F + (λ/8)‖UᵀU − VᵀV‖²_F (:data:`FORMULAS`)."""
        return cls(FORMULAS["balanced"], target, width, params={"lam": lam}, **options)

    @classmethod
    def weight_decay(cls, target, width: int, lam: float, **options) -> "FormulaProblem":
        """½‖UVᵀ − Σ‖²_F + (λ/2)(‖U‖²_F + ‖V‖²_F) (:data:`FORMULAS`)."""
        return cls(FORMULAS["weight_decay"], target, width, params={"lam": lam}, **options)

    @classmethod
    def sensing_weight_decay(cls, target, operator, width: int, lam: float, *, measurements=None,
                             **options) -> "FormulaProblem":
        """½‖𝒜(UVᵀ) − y‖² + (λ/2)(‖U‖²_F + ‖V‖²_F) (:data:`FORMULAS`), y = 𝒜(Σ) unless given."""
        return cls(FORMULAS["sensing_weight_decay"], target, width, params={"lam": lam}, operator=operator,
                   measurements=measurements, **options)

    # what the problem is

    m = MatrixFactorization.m
    n = MatrixFactorization.n

    def factors(self, x):
        return self.unpack(x)

    def describe(self) -> dict:
        out = {"problem": type(self).__name__, "loss": self.formula.text, "params": dict(self.params), "m": self.m,
               "n": self.n, "width": self.width, "target": self.target.describe()}
        if self.operator is not None:
            out["operator"] = self.operator.describe()
            out["measurements_sha256"] = hashlib.sha256(self.measurements.tobytes()).hexdigest()
        return out

    def random_state(self, rng) -> np.ndarray:
        """Gaussian factors scaled so that ‖UVᵀ‖_F ≈ ‖Σ‖_F: the scale where the loss's terms compete."""
        scale = np.sqrt(self.target.frobenius_norm / np.sqrt(self.m * self.n * self.width))
        return scale * rng.standard_normal(self.dim)

    @property
    def symbolic_gradient(self) -> tuple:
        """(∇_U f, ∇_V f) as sympy expressions: what the claims differentiate along this problem's flows."""
        return self.formula.gradient()

    def symbolic_values(self) -> dict:
        """Values of the leaves of :attr:`symbolic_gradient` beyond the target's: the parameters, and
        the operator ``A`` and the measurements ``y`` (p×1) of a sensing loss."""
        out = dict(self.params)
        if self.operator is not None:
            out.update({OPERATOR: self.operator, "y": self.measurements[:, None]})
        return out

    # the calculus

    def loss(self, x):
        """f(x): a float for x of shape (dim,), shape (B,) for a batch (B, dim)."""
        U, V = self.unpack(x)
        (value,) = self._run("loss", U=U, V=V)
        value = np.broadcast_to(value, U.shape[:-2] + (1, 1))[..., 0, 0]
        return value[()] if U.ndim == 2 else np.array(value)

    def _grad_rows(self, x, out, negate=False):
        """∇f for a stack x (B, dim) into ``out`` (−∇f if ``negate``), from the compiled gradient."""
        U, V = self.unpack(x)
        for G, target in zip(self._run("grad", U=U, V=V), self.unpack(out)):
            if negate:
                np.negative(G, out=target)
            else:
                np.copyto(target, G)
        return out

    def partial_grad(self, x, block: str, out=None):
        """∇_U f or ∇_V f alone, from the block's own program (about half the gradient's products).

        Parameters
        ----------
        x : ndarray, shape (dim,) or (B, dim)
        block : {"U", "V"}
        out : ndarray, shaped like the block ((m, k) or (B, m, k) for U), optional

        Returns
        -------
        ndarray, the block's gradient (``out`` if given)
        """
        if block not in ("U", "V"):
            raise ValueError(f"block must be 'U' or 'V', got {block!r}")
        U, V = self.unpack(x)
        (G,) = self._run(f"grad_{block}", U=U, V=V)
        shape = (U if block == "U" else V).shape
        if out is None:
            return np.array(np.broadcast_to(G, shape))
        out[...] = G
        return out

    def hvp(self, x, v):
        """∇²f(x)·v, exact: the derived directional derivative of the gradient, D∇f(x)[v]."""
        U, V = self.unpack(x)
        dU, dV = self.unpack(np.asarray(v, dtype=float))
        return self._joined("hvp", U=U, V=V, dU=dU, dV=dV)

    def third_derivative(self, x, a, b):
        """∇³f(x)[a, b], exact: the derived derivative of ∇²f·a along b."""
        U, V = self.unpack(x)
        aU, aV = self.unpack(np.asarray(a, dtype=float))
        bU, bV = self.unpack(np.asarray(b, dtype=float))
        return self._joined("third", U=U, V=V, dU=aU, dV=aV, bU=bU, bV=bV)

    def program(self, name: str):
        """The compiled program ``name`` (one of "loss", "grad", "grad_U", "grad_V", "hvp", "third"),
        bound to this problem's target, parameters and operator: a :class:`~.factored.BoundProgram`
        (its ``program.listing`` and ``program.shapes`` show what it computes)."""
        if name not in self._programs:
            if name not in _PROGRAMS:
                raise ValueError(f"program must be one of {_PROGRAMS}, got {name!r}")
            # Σ through its factors when they are no larger than Σ (always, for a low-rank target)
            factored = self.target.rank * (self.m + self.n) <= self.m * self.n
            program = compile_factored(self._outputs(name), tuple(self._sizes().items()), factored)
            fixed = {leaf: self._constant(leaf) for leaf in program.inputs if leaf not in _STATE_NAMES}
            self._programs[name] = BoundProgram(program, fixed)
        return self._programs[name]

    def _outputs(self, name: str) -> tuple:
        f = self.formula
        return {"loss": lambda: (f.expr,), "grad": f.gradient, "grad_U": lambda: f.gradient()[:1],
                "grad_V": lambda: f.gradient()[1:], "hvp": f.hvp, "third": f.third}[name]()

    def _sizes(self) -> dict:
        """Size symbol -> int: m, n, k, r, and p with an operator."""
        sizes = {voc.m: self.m, voc.n: self.n, voc.k: self.width, voc.r: self.target.rank}
        if self.operator is not None:
            sizes[p] = self.operator.n_measurements
        return sizes

    def _constant(self, name: str):
        """The value of a program input that does not change with the state (computed when needed:
        Σ and the complements Φ⊥, Ψ⊥ only for a formula that uses them densely)."""
        t = self.target
        fixed = {**{s.name: v for s, v in self._sizes().items()}, **self.symbolic_values()}
        values = {"Phi": lambda: t.Phi, "Psi": lambda: t.Psi, "Sigma_star": lambda: np.diag(t.sigma),
                  "Sigma": t.dense, "Phi_perp": lambda: _complement(t.Phi), "Psi_perp": lambda: _complement(t.Psi),
                  **{key: (lambda v=v: v) for key, v in fixed.items()}}
        return values[name]()

    def _run(self, name: str, **state) -> list:
        return self.program(name).run(**state)

    def _joined(self, name: str, **state) -> np.ndarray:
        """The program's two blocks as one flat state (a batch when any input is one)."""
        batch = np.broadcast_shapes(*(value.shape[:-2] for value in state.values()))
        blocks = self._run(name, **state)
        return self.join(*(np.broadcast_to(G, batch + shape) for G, (_, shape) in zip(blocks, self.layout)))

    def __getstate__(self):
        # the compiled programs hold closures: rebuilt (from the cache) after unpickling
        return {key: value for key, value in super().__getstate__().items() if key != "_programs"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._programs = {}


_STATE_NAMES = frozenset({"U", "V", *(d.name for d in DIRECTIONS)})


def _sensing(target: LowRankTarget, operator, measurements):
    """(operator, y) checked: y defaults to the noise-free 𝒜(Σ)."""
    if operator is None:
        if measurements is not None:
            raise FormulaError("measurements were given without an operator: pass operator= too")
        return None, None
    if not is_operator(operator):
        raise TypeError(f"operator must be a measurement operator (see pgflow.flows.operators), got "
                        f"{type(operator).__name__}")
    if tuple(operator.shape) != target.shape:
        raise ValueError(f"operator must have shape {target.shape} (the target's), got {tuple(operator.shape)}")
    if measurements is None:
        y = operator.measure(target)[0]
    else:
        y = as_float_array(measurements, "measurements", shape=(operator.n_measurements,)).copy()
    y.setflags(write=False)
    return operator, y


__all__ = ["FORMULAS", "FormulaProblem"]
