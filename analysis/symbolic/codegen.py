"""Numeric evaluation: a sympy expression compiled into batched numpy code.

sympy's ``lambdify`` is not used because its printers have no ``Trace``, print scalar factors of a
``MatMul`` as ``.dot(2)``, and transpose with ``.T``, which cannot batch: here every matrix may carry
leading batch axes (the saved states of a trajectory, shape (T, m, k)), transposes swap the last two
axes, and scalars are carried as (..., 1, 1) so they broadcast against matrices.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import sympy as sp
from sympy import (HadamardProduct, Identity, Inverse, MatAdd, MatMul, MatPow, MatrixSymbol, Trace, Transpose,
                   ZeroMatrix)

from .catalogue import as_expr
from .spectral import MatrixFunction, _col
from .vocabulary import DIMS, shape_of

def _tr(X):
    return np.trace(X, axis1=-2, axis2=-1)[..., None, None]


def _tr2(X, Y):  # tr(XY) without forming XY
    return np.sum(X * np.swapaxes(Y, -1, -2), axis=(-2, -1))[..., None, None]


def _fro2(X):
    return np.sum(X * X, axis=(-2, -1))[..., None, None]


def _T_np(X):
    return np.swapaxes(X, -1, -2)


def _mpow(X, p):
    return np.linalg.matrix_power(X, p)


_RUNTIME = {"_tr": _tr, "_tr2": _tr2, "_fro2": _fro2, "_T": _T_np, "_mpow": _mpow,
            "_inv": np.linalg.inv, "_eye": lambda a: np.eye(int(a)), "_zeros": lambda a, b: np.zeros((int(a), int(b))),
            "_sqrt": np.sqrt, "_abs": np.abs, "_sign": np.sign, "_exp": np.exp, "_log": np.log, "_col": _col,
            "_max": lambda *a: functools.reduce(np.maximum, a), "_min": lambda *a: functools.reduce(np.minimum, a)}
_SCALAR_FUNCS = {sp.Abs: "_abs", sp.sign: "_sign", sp.exp: "_exp", sp.log: "_log"}


class _Codegen:
    """Python source for one expression; every distinct non-leaf subexpression gets one variable."""

    def __init__(self):
        self.lines: list[str] = []
        self.memo: dict = {}
        self.leaves: dict = {}  # identifier -> sympy leaf
        self.kernels: dict = {}

    def ref(self, e) -> str:
        if e in self.memo:
            return self.memo[e]
        code = self.code(e)
        if isinstance(e, (sp.Symbol, MatrixSymbol)) or e.is_Number:
            return code
        var = f"_v{len(self.lines)}"
        self.lines.append(f"    {var} = {code}")
        self.memo[e] = var
        return var

    def leaf(self, e) -> str:
        name = e.name
        if not name.isidentifier() or name.startswith("_"):
            raise ValueError(f"leaf name {name!r} is not a plain identifier")
        if self.leaves.setdefault(name, e) != e:
            raise ValueError(f"two different leaves are both called {name!r}: {self.leaves[name]!r} and {e!r}")
        return name

    def code(self, e) -> str:
        ref = self.ref
        if isinstance(e, (MatrixSymbol, sp.Symbol)):
            return self.leaf(e)
        if e.is_Integer:
            return str(int(e))
        if e.is_Number:
            return repr(float(e))
        if isinstance(e, Identity):
            return f"_eye({ref(e.shape[0])})"
        if isinstance(e, ZeroMatrix):
            return f"_zeros({ref(e.shape[0])}, {ref(e.shape[1])})"
        if isinstance(e, (MatAdd, sp.Add)):
            return " + ".join(ref(a) for a in e.args)
        if isinstance(e, MatMul):
            coeff, mats = e.as_coeff_matrices()
            prod = " @ ".join(ref(a) for a in mats)
            return prod if coeff == 1 else f"{ref(coeff)} * ({prod})"
        if isinstance(e, (sp.Mul, HadamardProduct)):
            return " * ".join(ref(a) for a in e.args)
        if isinstance(e, Transpose):
            return f"_T({ref(e.arg)})"
        if isinstance(e, Trace):
            X = e.arg
            if isinstance(X, MatMul) and X.as_coeff_matrices()[0] == 1 and len(X.args) >= 2:
                first, rest = X.args[0], X.args[1:]
                if len(rest) == 1 and (first == rest[0].T or rest[0] == first.T):
                    return f"_fro2({ref(rest[0] if first == rest[0].T else first)})"
                return f"_tr2({ref(first)}, {ref(rest[0] if len(rest) == 1 else MatMul(*rest))})"
            return f"_tr({ref(X)})"
        if isinstance(e, MatPow) and e.exp.is_Integer:
            return f"_mpow({ref(e.base)}, {int(e.exp)})"
        if isinstance(e, Inverse):
            return f"_inv({ref(e.arg)})"
        if isinstance(e, sp.Pow):
            if e.exp == sp.Rational(1, 2):
                return f"_sqrt({ref(e.base)})"
            return f"({ref(e.base)}) ** ({ref(e.exp)})"
        if isinstance(e, (sp.Max, sp.Min)):
            return f"{'_max' if isinstance(e, sp.Max) else '_min'}({', '.join(ref(a) for a in e.args)})"
        if isinstance(e, MatrixFunction):
            key = f"_k_{type(e).__name__}"
            self.kernels[key] = type(e).kernel
            return f"_col({key}({', '.join(ref(a) for a in e.args)}))"
        if type(e) in _SCALAR_FUNCS:
            return f"{_SCALAR_FUNCS[type(e)]}({ref(e.args[0])})"
        raise TypeError(f"cannot evaluate {e} ({type(e).__name__}) numerically")


def _size(dim, sizes: dict) -> int | None:
    """A symbolic size such as m − r at concrete sizes, or None if some size is unknown."""
    value = sp.sympify(dim).xreplace({d: sp.Integer(int(v)) for d, v in sizes.items()})
    return int(value) if value.is_Integer else None


@dataclass(frozen=True, eq=False)
class Compiled:
    """A sympy expression compiled into batched numpy code (see :func:`compile_expr`).

    Attributes
    ----------
    expr : sympy expression
    shape : tuple or None
        Symbolic shape (None for a scalar).
    leaves : dict
        Identifier -> leaf (MatrixSymbol or Symbol) the function needs, sizes m, n, k, r included.
    source : str
        The generated Python code.
    """

    expr: sp.Basic
    shape: tuple | None
    leaves: dict
    source: str
    fn: object

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
            a = np.asarray(values[name], dtype=np.float64)
            if isinstance(leaf, MatrixSymbol):
                if a.ndim < 2:
                    raise ValueError(f"{name} must be a matrix of shape (..., {leaf.shape[0]}, {leaf.shape[1]}), "
                                     f"got shape {a.shape}")
                for sym, size in zip(leaf.shape, a.shape[-2:]):
                    if sym in DIMS:
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
        out = np.asarray(self.fn(**env), dtype=np.float64)
        if self.shape is None:
            return np.array(np.broadcast_to(out, batch + (1, 1))[..., 0, 0])
        rows, cols = (_size(s_, sizes) for s_ in self.shape)
        return np.array(np.broadcast_to(out, batch + (rows, cols)))


@functools.lru_cache(maxsize=512)
def compile_expr(expr) -> Compiled:
    """Compile a sympy expression (scalar or matrix) into a batched numpy function.

    Each distinct subexpression is computed once (so the residual Σ − UVᵀ is formed once however
    often it appears); tr(XY) and ‖X‖²_F are evaluated without forming the product. Results are
    cached per expression.

    Examples
    --------
    >>> from pgflow.analysis.symbolic import QUANTITIES
    >>> f = compile_expr(QUANTITIES["imbalance_sq"].expr)
    >>> float(f(U=np.eye(3, 2), V=np.zeros((2, 2))))
    2.0
    """
    expr = sp.sympify(expr)
    shape = shape_of(expr)
    gen = _Codegen()
    result = gen.ref(expr)
    for d in expr.atoms(MatrixSymbol):  # sizes the matrices need even when they cancel out of the code
        gen.leaf(d)
    args = sorted(gen.leaves)
    source = f"def _compiled({', '.join(args)}):\n" + "\n".join(gen.lines) + f"\n    return {result}\n"
    namespace = {**_RUNTIME, **gen.kernels}
    exec(compile(source, "<pgflow.analysis.symbolic>", "exec"), namespace)
    leaves = {**gen.leaves, **{d.name: d for d in expr.free_symbols & set(DIMS)}}
    return Compiled(expr, shape, leaves, source, namespace["_compiled"])


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
