"""Numeric evaluation: a sympy expression compiled into a batched numpy program, without ``exec``.

sympy's ``lambdify`` is not used: it generates Python source and runs it with ``exec``, its
printers have no ``Trace``, print scalar factors of a ``MatMul`` as ``.dot(2)``, and transpose with
``.T``, which cannot batch. Here an expression becomes a straight-line program of numpy closures,
one register per distinct subexpression (so Σ − UVᵀ is formed once however often it appears),
run over the registers in order. Every matrix may carry leading batch axes (the saved states of a
trajectory, shape (T, m, k)), transposes swap the last two axes, and scalars are carried as
(..., 1, 1) so they broadcast against matrices. No source code is generated or executed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import sympy as sp
from sympy import (HadamardProduct, Identity, Inverse, MatAdd, MatMul, MatPow, MatrixSymbol, Trace, Transpose,
                   ZeroMatrix)

from .catalogue import as_expr
from .parsing import as_sympy
from .sensing import OPERATOR, AdjointMeasure, Measure
from .spectral import MatrixFunction, _col
from .vocabulary import DIMS, shape_of


def _tr(X):
    return np.trace(X, axis1=-2, axis2=-1)[..., None, None]


def _tr2(X, Y):  # tr(XY) without forming XY
    return np.sum(X * np.swapaxes(Y, -1, -2), axis=(-2, -1))[..., None, None]


def _fro2(X):
    return np.sum(X * X, axis=(-2, -1))[..., None, None]


def _T(X):
    return X.mT  # a view with the last two axes swapped (batched)


def _sum(*args):
    return functools.reduce(lambda a, b: a + b, args)


def _prod(*args):
    return functools.reduce(lambda a, b: a * b, args)


def _matmul(*args):
    return functools.reduce(lambda a, b: a @ b, args)


def _eye(a):
    return np.eye(int(a))


def _zeros(a, b):
    return np.zeros((int(a), int(b)))


def _is_transpose(a, b) -> bool:
    """Whether a = bᵀ, decided structurally (sympy's ``.T`` re-simplifies the whole expression, which
    costs seconds on a large derivative)."""
    if isinstance(a, Transpose):
        return a.arg == b
    if isinstance(b, Transpose):
        return b.arg == a
    if isinstance(a, MatAdd) and isinstance(b, MatAdd) and len(a.args) == len(b.args):
        remaining = list(b.args)
        for x in a.args:
            match = next((i for i, y in enumerate(remaining) if _is_transpose(x, y)), None)
            if match is None:
                return False
            del remaining[match]
        return True
    if isinstance(a, MatMul) and isinstance(b, MatMul):
        (ca, ma), (cb, mb) = a.as_coeff_matrices(), b.as_coeff_matrices()
        return ca == cb and len(ma) == len(mb) and all(_is_transpose(x, y) for x, y in zip(ma, reversed(mb)))
    return False


def _measure(operator, X):
    """𝒜(X) as a column (..., p, 1) from a dense X (..., m, n)."""
    return operator.apply(X)[..., None]


def _adjoint(operator, z):
    """𝒜*(z) (..., m, n) from a column z (..., p, 1)."""
    return operator.adjoint(z[..., 0])


_SCALAR_FUNCS = {sp.Abs: np.abs, sp.sign: np.sign, sp.exp: np.exp, sp.log: np.log}

OPERATOR_INPUT = "operator"
"""What :attr:`Compiled.leaves` lists for the operator 𝒜, an object passed as is (not an array)."""


class _Program:
    """A straight-line program: register r holds one distinct subexpression, computed by a closure
    from the registers of its arguments."""

    def __init__(self):
        self.steps: list = []  # (register, function, argument registers)
        self.flag_steps: list = []  # (function, argument registers): nonsmooth points of rate kernels
        self.listing: list[str] = []
        self.memo: dict = {}
        self.leaves: dict = {}  # identifier -> sympy leaf
        self.inputs: dict = {}  # identifier -> register
        self.constants: dict = {}  # register -> value
        self.size = 0
        self.result = None  # the register of the whole expression
        self.results: list = []  # the registers of several outputs (:meth:`run_all`)

    def _new(self, text: str) -> int:
        r = self.size
        self.size += 1
        self.listing.append(f"r{r} = {text}")
        return r

    def op(self, fn, args, label: str) -> int:
        r = self._new(f"{label}({', '.join(f'r{a}' for a in args)})")
        self.steps.append((r, fn, tuple(args)))
        return r

    def const(self, value) -> int:
        r = self._new(repr(value))
        self.constants[r] = value
        return r

    def leaf(self, e) -> int:
        name = e.name
        if not name.isidentifier() or name.startswith("_"):
            raise ValueError(f"leaf name {name!r} is not a plain identifier")
        if self.leaves.setdefault(name, e) != e:
            raise ValueError(f"two different leaves are both called {name!r}: {self.leaves[name]!r} and {e!r}")
        if name not in self.inputs:
            self.inputs[name] = self._new(name)
        return self.inputs[name]

    def operator(self) -> int:
        """The register of the operator object 𝒜 (an input named ``A``)."""
        if OPERATOR not in self.inputs:
            self.leaves[OPERATOR] = OPERATOR_INPUT
            self.inputs[OPERATOR] = self._new(OPERATOR)
        return self.inputs[OPERATOR]

    def ref(self, e) -> int:
        if e not in self.memo:
            self.memo[e] = self.build(e)
        return self.memo[e]

    def build(self, e) -> int:
        ref, op = self.ref, self.op
        if isinstance(e, (MatrixSymbol, sp.Symbol)):
            return self.leaf(e)
        if e.is_Integer:
            return self.const(int(e))
        if e.is_Number:
            return self.const(float(e))
        if isinstance(e, Identity):
            return op(_eye, [ref(e.shape[0])], "eye")
        if isinstance(e, ZeroMatrix):
            return op(_zeros, [ref(e.shape[0]), ref(e.shape[1])], "zeros")
        if isinstance(e, (MatAdd, sp.Add)):
            return op(_sum, [ref(a) for a in e.args], "sum")
        if isinstance(e, MatMul):
            coeff, mats = e.as_coeff_matrices()
            prod = op(_matmul, [ref(a) for a in mats], "matmul") if len(mats) > 1 else ref(mats[0])
            return prod if coeff == 1 else op(_prod, [ref(coeff), prod], "mul")
        if isinstance(e, (sp.Mul, HadamardProduct)):
            return op(_prod, [ref(a) for a in e.args], "mul")
        if isinstance(e, Transpose):
            return op(_T, [ref(e.arg)], "T")
        if isinstance(e, Measure):
            return op(_measure, [self.operator(), ref(e.arg)], "A")
        if isinstance(e, AdjointMeasure):
            return op(_adjoint, [self.operator(), ref(e.arg)], "A_adjoint")
        if isinstance(e, Trace):
            X = e.arg
            if isinstance(X, MatMul) and X.as_coeff_matrices()[0] == 1 and len(X.args) >= 2:
                first, rest = X.args[0], X.args[1:]
                half = len(X.args) // 2
                if len(X.args) % 2 == 0 and all(_is_transpose(X.args[i], X.args[-1 - i]) for i in range(half)):
                    # tr(YᵀY) = ‖Y‖²_F, a sum of squares: never negative, even where Y is rounding noise
                    Y = X.args[half] if half == 1 else MatMul(*X.args[half:])
                    return op(_fro2, [ref(Y)], "fro2")
                return op(_tr2, [ref(first), ref(rest[0] if len(rest) == 1 else MatMul(*rest))], "tr2")
            return op(_tr, [ref(X)], "tr")
        if isinstance(e, MatPow) and e.exp.is_Integer:
            p = int(e.exp)
            return op(lambda X: np.linalg.matrix_power(X, p), [ref(e.base)], f"mpow[{p}]")
        if isinstance(e, Inverse):
            return op(np.linalg.inv, [ref(e.arg)], "inv")
        if isinstance(e, sp.Pow):
            if e.exp == sp.Rational(1, 2):
                return op(np.sqrt, [ref(e.base)], "sqrt")
            return op(lambda a, b: a ** b, [ref(e.base), ref(e.exp)], "pow")
        if isinstance(e, (sp.Max, sp.Min)):
            fn = np.maximum if isinstance(e, sp.Max) else np.minimum
            return op(lambda *a, f=fn: functools.reduce(f, a), [ref(a) for a in e.args], type(e).__name__.lower())
        if isinstance(e, MatrixFunction):
            args = [ref(a) for a in e.args]
            kernel = type(e).kernel
            if type(e).flags is not None:
                self.flag_steps.append((type(e).flags, tuple(args)))
            return op(lambda *a, k=kernel: _col(k(*a)), args, e.label)
        if type(e) in _SCALAR_FUNCS:
            return op(_SCALAR_FUNCS[type(e)], [ref(e.args[0])], type(e).__name__.lower())
        raise TypeError(f"cannot evaluate {e} ({type(e).__name__}) numerically")

    def registers(self, env: dict) -> list:
        """Every register's value, from the inputs by name."""
        regs = [None] * self.size
        for r, value in self.constants.items():
            regs[r] = value
        for name, r in self.inputs.items():
            regs[r] = env[name]
        for r, fn, args in self.steps:
            regs[r] = fn(*[regs[a] for a in args])
        return regs

    def run_all(self, env: dict) -> list:
        """The values of the output registers :attr:`results`, unchecked (the hot path of
        :class:`~.problem.FormulaProblem`)."""
        regs = self.registers(env)
        return [regs[r] for r in self.results]

    def run(self, env: dict, flags: bool = False):
        """The result register's value (and, with ``flags``, the OR of the rate kernels' flags)."""
        regs = self.registers(env)
        if not flags:
            return regs[self.result], None
        marks = [np.asarray(fn(*[regs[a] for a in args]), dtype=bool) for fn, args in self.flag_steps]
        return regs[self.result], functools.reduce(np.logical_or, marks, np.zeros((), dtype=bool))


def _size(dim, sizes: dict) -> int | None:
    """A symbolic size such as m − r at concrete sizes, or None if some size is unknown."""
    value = as_sympy(dim).xreplace({d: sp.Integer(int(v)) for d, v in sizes.items()})
    return int(value) if value.is_Integer else None


@dataclass(frozen=True, eq=False)
class Compiled:
    """A sympy expression compiled into a batched numpy program (see :func:`compile_expr`).

    Attributes
    ----------
    expr : sympy expression
    shape : tuple or None
        Symbolic shape (None for a scalar).
    leaves : dict
        Identifier -> leaf (MatrixSymbol or Symbol) the function needs, sizes m, n, k, r included.
    source : str
        A readable listing of the program, one register per line (for reading only: it is never
        executed).
    """

    expr: sp.Basic
    shape: tuple | None
    leaves: dict
    source: str
    program: _Program

    def __call__(self, **values) -> np.ndarray:
        """Evaluate on arrays given by leaf name.

        Matrices may carry leading batch axes ((T, m, k) for the saved states of a trajectory); scalar
        leaves may be numbers or arrays of the batch shape (T,). The sizes m, n, k, r are inferred from
        the matrices unless given.

        Returns
        -------
        ndarray, float64
            Shape batch (scalar expression) or batch + (rows, cols) (matrix expression).
        """
        return self._run(values, False)[0]

    def with_flags(self, **values) -> tuple:
        """(value, nonsmooth): the value as :meth:`__call__`, and a boolean array of the batch shape that
        is True where a right-derivative in the expression was taken at a nonsmooth point (a repeated
        or zero singular value, a repeated eigenvalue, |x| or ‖X‖_F at 0): :mod:`.spectral_rates`."""
        return self._run(values, True)

    def _run(self, values: dict, flags: bool) -> tuple:
        unknown = sorted(set(values) - set(self.leaves) - {d.name for d in DIMS})
        if unknown:
            raise TypeError(f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not among the leaves "
                            f"{sorted(self.leaves)} of {self.expr}")
        missing = sorted(set(self.leaves) - set(values) - {d.name for d in DIMS})
        if missing:
            raise TypeError(f"missing value(s) for {', '.join(missing)} to evaluate {self.expr}")
        sizes = {d: values[d.name] for d in DIMS if d.name in values}
        env, batch = {}, ()
        arrays = {}
        for name, leaf in self.leaves.items():
            if name in (d.name for d in DIMS):
                continue
            if leaf is OPERATOR_INPUT:  # the measurement operator: an object, passed as is
                env[name] = values[name]
                continue
            a = np.asarray(values[name], dtype=np.float64)
            if isinstance(leaf, MatrixSymbol):
                if a.ndim < 2:
                    raise ValueError(f"{name} must be a matrix of shape (..., {leaf.shape[0]}, {leaf.shape[1]}), "
                                     f"got shape {a.shape}")
                for sym, size in zip(leaf.shape, a.shape[-2:]):
                    if isinstance(sym, sp.Symbol):  # m, n, k, r, or p (the measurements of y)
                        sizes.setdefault(sym, size)  # the first matrix fixes the size; the check below reports
                batch = np.broadcast_shapes(batch, a.shape[:-2])
            else:
                batch = np.broadcast_shapes(batch, a.shape)
                a = a[..., None, None] if a.ndim else a
            arrays[name] = a
        for name, a in arrays.items():
            leaf = self.leaves[name]
            if isinstance(leaf, MatrixSymbol):
                want = tuple(_size(s_, sizes) for s_ in leaf.shape)
                if None in want or tuple(a.shape[-2:]) != want:
                    raise ValueError(f"{name} must have shape (..., {leaf.shape[0]}, {leaf.shape[1]}) = (..., "
                                     f"{', '.join(map(str, want))}) here, got {a.shape}")
            env[name] = a
        for d in DIMS:
            if d.name in self.leaves:
                if d not in sizes:
                    raise TypeError(f"cannot infer the size {d} to evaluate {self.expr}: pass {d}=")
                env[d.name] = int(sizes[d])
        out, marks = self.program.run(env, flags)
        out = np.asarray(out, dtype=np.float64)
        marks = None if marks is None else np.array(np.broadcast_to(marks, batch))
        if self.shape is None:
            return np.array(np.broadcast_to(out, batch + (1, 1))[..., 0, 0]), marks
        rows, cols = (_size(s_, sizes) for s_ in self.shape)
        return np.array(np.broadcast_to(out, batch + (rows, cols))), marks


@functools.lru_cache(maxsize=512)
def compile_expr(expr) -> Compiled:
    """Compile a sympy expression (scalar or matrix) into a batched numpy function.

    Each distinct subexpression is computed once (so the residual Σ − UVᵀ is formed once however
    often it appears); tr(XY) and ‖X‖²_F are evaluated without forming the product. Results are
    cached per expression. Nothing is executed as code: the expression becomes a program of numpy
    closures (:class:`Compiled`).

    Parameters
    ----------
    expr : sympy expression or str
        A string is parsed by the safe parser (:mod:`.parsing`): ``"U*V.T"`` is the matrix product,
        and an attribute, import, lambda or dunder is a :class:`~.parsing.ClaimSyntaxError`.

    Examples
    --------
    >>> from pgflow.analysis.symbolic import QUANTITIES
    >>> f = compile_expr(QUANTITIES["imbalance_sq"].expr)
    >>> float(f(U=np.eye(3, 2), V=np.zeros((2, 2))))
    2.0
    """
    if isinstance(expr, str):
        return _compile_text(expr)
    expr = as_sympy(expr)
    shape = shape_of(expr)
    program = _Program()
    program.result = program.ref(expr)
    for d in expr.atoms(MatrixSymbol):  # sizes the matrices need even when they cancel out of the program
        program.leaf(d)
    leaves = {**program.leaves, **{d.name: d for d in expr.free_symbols & set(DIMS)}}
    return Compiled(expr, shape, leaves, "\n".join(program.listing) + f"\nreturn r{program.result}", program)


@functools.lru_cache(maxsize=128)
def _compile_text(text: str) -> Compiled:
    return compile_expr(as_sympy(text))


def _complement(Q: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the orthogonal complement of the columns of Q, shape (rows, rows − cols)."""
    full = np.linalg.svd(Q, full_matrices=True)[0]
    return full[:, Q.shape[1]:]


def problem_values(problem) -> dict:
    """Numeric values of the target leaves for a factorization problem (Σ dense, Φ, Ψ, Φ⊥, Ψ⊥, Σ*, sizes).

    Raises
    ------
    TypeError
        The problem is not an asymmetric factorization with factors U (m×k), V (n×k) and a target
        with singular vectors (``target.Phi``, ``target.sigma``, ``target.Psi``).
    """
    layout = getattr(problem, "layout", None)
    target = getattr(problem, "target", None)
    if (layout is None or len(layout) != 2 or target is None
            or not all(hasattr(target, a) for a in ("Phi", "sigma", "Psi", "dense"))):
        raise TypeError("analysis.symbolic models the asymmetric factorization f = ½‖UVᵀ − Σ‖²_F: the problem "
                        f"needs two factors (U, V) and a LowRankTarget, got {type(problem).__name__}")
    (_, (m_, k_)), (_, (n_, _)) = layout
    Phi_, Psi_ = np.asarray(target.Phi), np.asarray(target.Psi)
    return {"Sigma": target.dense(), "Phi": Phi_, "Psi": Psi_, "Phi_perp": _complement(Phi_),
            "Psi_perp": _complement(Psi_), "Sigma_star": np.diag(target.sigma), "m": m_, "n": n_, "k": k_,
            "r": len(target.sigma)}


def evaluate(expr, problem, x, **values) -> np.ndarray:
    """Evaluate a quantity or derived expression at state(s) ``x`` of ``problem``.

    Parameters
    ----------
    expr : str, Quantity or sympy expression
    problem : MatrixFactorization
    x : array_like, shape (dim,) or (T, dim)
        Flat state(s), e.g. ``trajectory.x``.
    **values
        Any other leaves by name: ``E`` (shape (m, n) or (T, m, n)), ``E_U``, ``E_V``, ``eta``, ``t``, ….

    Returns
    -------
    ndarray
        Shape () or (T,) for a scalar, (…, rows, cols) for a matrix expression.

    Examples
    --------
    >>> from flows import MatrixFactorization, init
    >>> p = MatrixFactorization.random(m=5, n=4, rank=2, width=2, seed=0)
    >>> x = init.gaussian(p, 0.5, seed=1)
    >>> bool(np.isclose(evaluate("loss", p, x), p.loss(x)))
    True
    """
    fn = compile_expr(as_expr(expr))
    x = np.asarray(x, dtype=np.float64)
    U_, V_ = problem.unpack(x)
    env = {**problem_values(problem), "U": U_, "V": V_, **values}
    wanted = set(fn.leaves) | {d.name for d in DIMS}
    return fn(**{name: v for name, v in env.items() if name in wanted})
