r"""Factored compilation: a program for expressions in U, V and a low-rank target that never forms an
m×n matrix where the expression allows it.

:func:`compile_factored` compiles expressions at concrete sizes (m, n, k, r, p) in three steps:

1. **Σ by its factors.** Σ = Φ Σ* Ψᵀ (Σ* = diag σ, r×r) when r(m + n) ≤ mn, i.e. when the factors
   are no larger than Σ.
2. **Distribution over large sums.** A product with a factor that is a sum of m×n matrices is
   expanded (:func:`distribute`): (UVᵀ − Σ)V becomes UVᵀV − ΦΣ*ΨᵀV. Sums of small matrices
   (UᵀU − VᵀV, k×k) stay whole: they are cheap and keep their accuracy.
3. **Cheapest association.** Every product chain is evaluated in the order that costs the fewest
   multiplications at the concrete sizes (the matrix-chain recursion; a product of constants such as
   Σ*Ψᵀ is free, made once by :class:`BoundProgram`), every trace tr(F₁⋯F_q) by the cheapest
   rotation and split tr(XY) = Σᵢⱼ X_ij Y_ji. U VᵀV becomes U(VᵀV), ΦΣ*ΨᵀV becomes Φ((Σ*Ψᵀ)V):
   O((m + n)k(k + r)) instead of O(mnk). Terms of a sum with the same tall left factor share one
   product (:func:`collect_left`): λU + U VᵀV becomes U(λI + VᵀV).

Where an m×n matrix is only ever *used*, it is used through its low-rank factors (:func:`lowrank_terms`:
a sum of products, each split at a k- or r-sized inner dimension into L Rᵀ):

* ‖Y‖²_F = tr(YᵀY) of an m×n sum Y = Σᵢ LᵢRᵢᵀ from the small core of the thin QR factors of
  [L₁, L₂, …] and [R₁, R₂, …] (:func:`pgflow.flows.problems.lowrank_core`): O((m + n)q²), and, unlike
  the expanded tr(V VᵀU Uᵀ) − 2tr(…) + ‖σ‖², free of cancellation near a minimum (the loss stays
  accurate to rounding of the residual, not of ‖Σ‖²);
* 𝒜(Y) = ``A.apply_factored([L₁, …], [R₁, …])``;
* 𝒜*(z)W and 𝒜*(z)ᵀW through ``A.adjoint_products(z, ·, ·)``, one call per z for all the products
  the program needs (the gradient's 𝒜*(z)V and 𝒜*(z)ᵀU share it).

Only a term with no small inner dimension (Σ itself when it is kept dense, E, Φ⊥Φ⊥ᵀ) is formed
densely. :attr:`FactoredProgram.shapes` lists every register's shape, so a test can see that none is
m×n.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import sympy as sp
from sympy import Identity, MatAdd, MatMul, MatrixExpr, MatrixSymbol, Trace, Transpose

from ...flows.problems import lowrank_core
from .calculus import flat_product, flat_sum
from .codegen import _T, _Program, _fro2, _is_transpose, _measure, _prod, _tr, _tr2
from .sensing import Measure, is_adjoint_factor, uses_operator, y
from .vocabulary import Phi, Phi_perp, Psi, Psi_perp, Sigma, Sigma_star, k, m, n, r


def _small(d) -> bool:
    """A size that is k, r or a number (an inner dimension worth factoring through)."""
    return _as_size(d).free_symbols <= {k, r}


def is_big(e) -> bool:
    """Whether a matrix expression is m×n-like: neither side is k, r or a number."""
    return isinstance(e, MatrixExpr) and not (_small(e.shape[0]) or _small(e.shape[1]))


def gram_factor(X):
    """Y if X is the product YᵀY (decided structurally, as :func:`.codegen._is_transpose`), else None."""
    if not isinstance(X, MatMul) or X.as_coeff_matrices()[0] != 1 or len(X.args) < 2 or len(X.args) % 2:
        return None
    half = len(X.args) // 2
    if not all(_is_transpose(X.args[i], X.args[-1 - i]) for i in range(half)):
        return None
    return X.args[half] if half == 1 else MatMul(*X.args[half:])


def substitute_target(expr):
    """Σ replaced by Φ Σ* Ψᵀ."""
    return expr.xreplace({Sigma: Phi * Sigma_star * Psi.T})


def distribute(e, memo=None):
    """``e`` with products expanded over their m×n sums and transposes pushed to the leaves.

    tr(YᵀY) of an m×n Y is kept whole (it is evaluated from Y's low-rank factors, see the module
    docstring), as is every sum of small matrices.
    """
    memo = {} if memo is None else memo
    if e in memo:
        return memo[e]
    if not e.args or isinstance(e, (MatrixSymbol, sp.Symbol)):
        out = e
    elif isinstance(e, Trace) and gram_factor(e.arg) is not None and is_big(gram_factor(e.arg)):
        out = e
    elif isinstance(e, Transpose):
        a = distribute(e.arg, memo)
        if isinstance(a, MatAdd):
            out = flat_sum([distribute(Transpose(t), memo) for t in a.args])
        elif isinstance(a, MatMul):
            coeff, mats = a.as_coeff_matrices()
            out = flat_product([coeff, *[distribute(Transpose(f), memo) for f in reversed(mats)]])
        elif isinstance(a, Transpose):
            out = a.arg
        else:
            out = Transpose(a)
    elif isinstance(e, MatMul):
        coeff, mats = e.as_coeff_matrices()
        coeff = distribute(coeff, memo)
        factors = [distribute(f, memo) for f in mats]
        choices = [f.args if isinstance(f, MatAdd) and is_big(f) else (f,) for f in factors]
        out = flat_sum([flat_product([coeff, *combo]) for combo in itertools.product(*choices)])
    elif isinstance(e, MatAdd):
        out = flat_sum([distribute(a, memo) for a in e.args])
    elif isinstance(e, Trace):
        a = distribute(e.arg, memo)
        terms = a.args if isinstance(a, MatAdd) and is_big(a) else (a,)
        out = sp.Add(*[_scaled_trace(t) for t in terms])
    else:
        out = e.func(*[distribute(a, memo) for a in e.args])
    memo[e] = out
    return out


def _scaled_trace(X):
    """tr(cM) as c·tr(M), so that the trace's argument is a plain product."""
    if isinstance(X, MatMul):
        coeff, mats = X.as_coeff_matrices()
        if coeff != 1:
            return coeff * Trace(MatMul(*mats) if len(mats) > 1 else mats[0])
    return Trace(X)


def collect_left(terms) -> list:
    """Terms of a sum that start with the same tall factor L (m×k: U, Φ, dU, ...) merged into one,
    Σᵢ cᵢ L Mᵢ = L (Σᵢ cᵢ Mᵢ) (a term cᵢ L counts as cᵢ L I): the sum moves to the small side, so the
    tall product is made once. λU + U VᵀV becomes U(λI + VᵀV)."""
    groups: dict = {}
    for term in terms:
        coeff, mats = term.as_coeff_matrices() if isinstance(term, MatMul) else (sp.Integer(1), [term])
        first = mats[0]
        tall = isinstance(first, MatrixSymbol) and not _small(first.shape[0]) and _small(first.shape[1])
        groups.setdefault(first if tall else term, []).append((term, coeff, mats[1:]))
    out = []
    for key, members in groups.items():
        if len(members) == 1:
            out.append(members[0][0])
            continue
        inner = flat_sum([flat_product([coeff, *(rest or [Identity(key.shape[1])])]) for _, coeff, rest in members])
        out.append(flat_product([key, inner]))
    return out


def lowrank_terms(X, sizes: dict) -> tuple[list, list]:
    """X (m×n) as Σᵢ cᵢ Lᵢ Rᵢᵀ plus the terms that have no small inner dimension.

    Returns
    -------
    pairs : list of (coefficient, left factors, right factors)
        Lᵢ = product of the left factors (m×q), Rᵢ = product of the right factors (n×q); each term
        is split at its smallest k- or r-sized inner dimension.
    rest : list of matrix expressions
        Terms to form densely.
    """
    X = distribute(X)
    pairs, rest = [], []
    for term in (X.args if isinstance(X, MatAdd) else (X,)):
        coeff, mats = term.as_coeff_matrices() if isinstance(term, MatMul) else (sp.Integer(1), [term])
        inner = [(_value(f.shape[1], sizes), j + 1) for j, f in enumerate(mats[:-1]) if _small(f.shape[1])]
        if not inner:
            rest.append(term)
            continue
        j = min(inner)[1]
        pairs.append((coeff, list(mats[:j]), [f.T for f in reversed(mats[j:])]))
    return pairs, rest


def _value(d, sizes: dict) -> int:
    return int(_as_size(d).xreplace({s: sp.Integer(v) for s, v in sizes.items()}))


def _as_size(d):
    return sp.Integer(d) if isinstance(d, int) else d


def _cat(*arrays):
    """Concatenate along the last axis, broadcasting the leading (batch) axes."""
    batch = np.broadcast_shapes(*(a.shape[:-2] for a in arrays))
    return np.concatenate([np.broadcast_to(a, batch + a.shape[-2:]) for a in arrays], axis=-1)


def _lowrank_fro2(L, R):
    """‖L Rᵀ‖²_F, shape (..., 1, 1), from the QR core (:func:`~pgflow.flows.problems.lowrank_core`)."""
    core = lowrank_core(L, R)
    return np.sum(core * core, axis=(-2, -1))[..., None, None]


def _apply_factored(operator, L, R):
    return operator.apply_factored(L, R)[..., None]


def _adjoint_products(operator, z, *multipliers, sides):
    """𝒜*(z)W for the multipliers on the "right" and 𝒜*(z)ᵀW for those on the "left", from one call
    of ``operator.adjoint_products`` with the multipliers of each side side by side."""
    m, n = operator.shape
    batch = np.broadcast_shapes(z.shape[:-2], *(W.shape[:-2] for W in multipliers))
    blocks = {}
    for side, rows in (("left", m), ("right", n)):
        chosen = [W for W, s in zip(multipliers, sides) if s == side]
        # an unused side gets one zero column (some operators cannot take an empty one)
        blocks[side] = _cat(*chosen) if chosen else np.zeros(batch + (rows, 1))
    right, left = operator.adjoint_products(z[..., 0], blocks["left"], blocks["right"])
    products = {"left": left, "right": right}
    out, start = [], {"left": 0, "right": 0}
    for W, side in zip(multipliers, sides):
        width = W.shape[-1]
        out.append(products[side][..., start[side]:start[side] + width])
        start[side] += width
    return out


def _signed_sum(*args, signs):
    out = args[0] if signs[0] > 0 else -args[0]
    for a, sign in zip(args[1:], signs[1:]):  # not in place: a later term may carry more batch axes
        out = out + a if sign > 0 else out - a
    return out


def _matrix_coeff(term):
    """(c, M) with term = c·M for a matrix term (c the numeric part of a product's coefficient)."""
    if isinstance(term, MatMul):
        coeff, mats = term.as_coeff_matrices()
        number, scalar = coeff.as_coeff_Mul()
        rest = flat_product([scalar, *mats])
        return number, rest
    return sp.Integer(1), term


def _chain_order(dims: tuple, free=None) -> tuple[dict, dict]:
    """The matrix-chain recursion: (cost, split) of the cheapest association of a product of
    matrices of shapes dims[i]×dims[i+1], keyed by (first, last) factor.

    ``free(i, j)``: whether the product of factors i..j costs nothing per evaluation (a product of
    constants, computed once when the program is bound: Φ Σ* in Φ Σ* Ψᵀ V).
    """
    q = len(dims) - 1
    cost = {(i, i): 0 for i in range(q)}
    split = {}
    for length in range(2, q + 1):
        for i in range(q - length + 1):
            j = i + length - 1
            cost[i, j], split[i, j] = min((cost[i, s] + cost[s + 1, j] + dims[i] * dims[s + 1] * dims[j + 1], s)
                                          for s in range(i, j))
            if free is not None and free(i, j):
                cost[i, j] = 0
    return cost, split


CONSTANTS = frozenset({Sigma, Phi, Psi, Sigma_star, Phi_perp, Psi_perp, y})
"""Leaves that do not change with the state: products of them are computed once (:class:`BoundProgram`)."""


def is_constant(e) -> bool:
    """Whether an expression depends on constant leaves (and numbers, parameters, sizes) only."""
    return e.atoms(MatrixSymbol) <= CONSTANTS


class FactoredProgram(_Program):
    """A :class:`~.codegen._Program` built at concrete sizes: cheapest association, low-rank use of
    m×n sums, fused operator products (see the module docstring).

    Parameters
    ----------
    sizes : dict
        Size symbol (m, n, k, r, p) -> int.

    Attributes
    ----------
    shapes : dict
        Register -> (rows, cols) of every matrix it holds.
    """

    def __init__(self, sizes: dict):
        super().__init__()
        self.sizes = dict(sizes)
        self.shapes: dict = {}
        self.adjoint_groups: dict = {}  # z -> (register, sides, argument registers)

    def op(self, fn, args, label: str) -> int:
        key = (fn, tuple(args))  # the same function of the same registers is computed once
        if key not in self.memo:
            self.memo[key] = super().op(fn, args, label)
        return self.memo[key]

    def dims(self, e) -> tuple[int, int]:
        return tuple(_value(d, self.sizes) for d in e.shape)

    def ref(self, e) -> int:
        if e not in self.memo:
            self.memo[e] = self.build(e)
            if isinstance(e, MatrixExpr):
                self.shapes.setdefault(self.memo[e], self.dims(e))
        return self.memo[e]

    def build(self, e) -> int:
        if isinstance(e, MatMul):
            coeff, mats = e.as_coeff_matrices()
            return self.chain(list(mats), coeff)
        if isinstance(e, MatAdd) and not _small(e.shape[0]) and len(collect_left(e.args)) < len(e.args):
            return self.ref(flat_sum(collect_left(e.args)))
        if isinstance(e, (MatAdd, sp.Add)):
            return self.signed_sum(e.args)
        if isinstance(e, sp.Mul) and len(e.args) == 2:
            return self.op(np.multiply, [self.ref(a) for a in e.args], "mul")
        if isinstance(e, Trace):
            return self.trace(e.arg)
        if isinstance(e, Measure):
            return self.measure(e.arg)
        return super().build(e)

    # products

    def signed_sum(self, terms) -> int:
        """Σ terms, a term −c·M (c > 0 a number) subtracted as c·M: no negation pass."""
        signed = []
        for term in terms:
            coeff, rest = term.as_coeff_Mul() if not isinstance(term, MatrixExpr) else _matrix_coeff(term)
            if coeff.is_Number and coeff < 0:
                if coeff != -1:
                    rest = flat_product([-coeff, rest]) if isinstance(rest, MatrixExpr) else -coeff * rest
                signed.append((-1, self.ref(rest)))
            else:
                signed.append((1, self.ref(term)))
        signed.sort(key=lambda item: -item[0])  # start from a term that is added
        signs, args = zip(*signed)
        if len(args) == 2 and signs[0] > 0:
            return self.op(np.add if signs[1] > 0 else np.subtract, list(args), "add" if signs[1] > 0 else "sub")
        return self.op(functools.partial(_signed_sum, signs=signs), list(args), f"sum{list(signs)}")

    def chain(self, mats: list, coeff=sp.Integer(1)) -> int:
        """The register of coeff × the product of ``mats``, in the cheapest association; the scalar
        multiplies the smaller operand of the last product."""
        key = ("chain", coeff, *mats)
        if key in self.memo:
            return self.memo[key]
        scale = None if coeff == 1 else self.ref(coeff)
        if len(mats) == 1:
            out = self.ref(mats[0])
            out = out if scale is None else self.op(np.multiply, [scale, out], "mul")
        elif any(is_adjoint_factor(f) for f in mats):
            out = self._adjoint_chain(mats, max(i for i, f in enumerate(mats) if is_adjoint_factor(f)))
            out = out if scale is None else self.op(np.multiply, [scale, out], "mul")
        else:
            dims = (self.dims(mats[0])[0],) + tuple(self.dims(f)[1] for f in mats)
            _, split = _chain_order(dims, self._free(mats))

            def build(i, j):
                if i == j:
                    return self.ref(mats[i])
                sub = ("chain", sp.Integer(1), *mats[i:j + 1])
                if sub not in self.memo:
                    self.memo[sub] = self._matmul(build(i, split[i, j]), build(split[i, j] + 1, j),
                                                  (dims[i], dims[j + 1]))
                return self.memo[sub]

            q, s = len(mats) - 1, split[0, len(mats) - 1]
            left, right = build(0, s), build(s + 1, q)
            if scale is not None:  # c·(L R) as (cL)R or L(cR), whichever operand is smaller
                if dims[0] <= dims[q + 1]:
                    left = self.op(np.multiply, [scale, left], "mul")
                else:
                    right = self.op(np.multiply, [scale, right], "mul")
            out = self._matmul(left, right, (dims[0], dims[q + 1]))
        self.memo[key] = out
        return out

    def _matmul(self, left: int, right: int, shape: tuple) -> int:
        out = self.op(np.matmul, [left, right], "matmul")
        self.shapes[out] = shape
        return out

    def _adjoint_chain(self, mats: list, i: int) -> int:
        """P·𝒜*(z)·Q (or 𝒜*(z)ᵀ): the operator multiplies the product of Q (or, with Q empty, the
        transposed product of P, and the result is transposed back)."""
        before, factor, after = mats[:i], mats[i], mats[i + 1:]
        if after:
            product = self.adjoint_product(factor, self.chain(after))
            if not before:
                return product
            stand_in = MatrixSymbol(f"_r{product}", *factor.shape[:1], after[-1].shape[1])
            self.memo[stand_in] = product  # the product is a register now: a leaf-like factor of the rest
            return self.chain([*before, stand_in])
        flipped = self.adjoint_product(factor.T, self.chain([f.T for f in reversed(before)]))
        return self.op(_T, [flipped], "T")

    def adjoint_product(self, factor, W: int) -> int:
        """𝒜*(z)·W (``factor`` = 𝒜*(z)) or 𝒜*(z)ᵀ·W (its transpose), fused per z (:func:`_adjoint_products`)."""
        transposed = isinstance(factor, Transpose)
        z = (factor.arg if transposed else factor).arg
        if z not in self.adjoint_groups:
            self.adjoint_groups[z] = (self._new(f"adjoint_products[{z}]"), [], [self.operator(), self.ref(z)])
        group, sides, args = self.adjoint_groups[z]
        sides.append("left" if transposed else "right")
        args.append(W)
        index = len(sides) - 1
        out = self.op(lambda products, i=index: products[i], [group], f"item[{index}]")
        self.shapes[out] = (self.sizes[n if transposed else m], self.shapes.get(W, (0, 0))[1])
        return out

    def trace(self, X) -> int:
        """tr X: ‖Y‖²_F for X = YᵀY (through Y's low-rank factors when Y is m×n), else the cheapest
        rotation and split tr(F₁⋯F_j · F_{j+1}⋯F_q) = Σ (F₁⋯F_j) ⊙ (F_{j+1}⋯F_q)ᵀ."""
        Y = gram_factor(X)
        if Y is not None:
            if is_big(Y):
                pairs, rest = lowrank_terms(Y, self.sizes)
                if pairs and not rest:
                    return self.op(_lowrank_fro2, list(self.lowrank_factors(pairs)), "lowrank_fro2")
                return self.op(_fro2, [self.ref(distribute(Y))], "fro2")
            return self.op(_fro2, [self.ref(Y)], "fro2")
        if not isinstance(X, MatMul) or X.as_coeff_matrices()[0] != 1:
            return self.op(_tr, [self.ref(X)], "tr")
        mats = list(X.args)
        best = None
        for i in range(len(mats)):
            rotated = mats[i:] + mats[:i]
            for j in range(1, len(mats)):
                left, right = rotated[:j], rotated[j:]
                rows, cols = self.dims(left[0])[0], self.dims(left[-1])[1]
                cost = self._cost(left) + self._cost(right) + rows * cols
                if best is None or cost < best[0]:
                    best = (cost, left, right)
        _, left, right = best
        return self.op(_tr2, [self.chain(left), self.chain(right)], "tr2")

    def _cost(self, mats: list) -> int:
        dims = (self.dims(mats[0])[0],) + tuple(self.dims(f)[1] for f in mats)
        return _chain_order(dims, self._free(mats))[0][0, len(mats) - 1]

    @staticmethod
    def _free(mats: list):
        """free(i, j) for :func:`_chain_order`: a product of constants that is not m×n-like (an m×n
        constant such as Φ Σ* Ψᵀ is never formed, however cheap once)."""
        constant = [is_constant(f) and not uses_operator(f) for f in mats]

        def free(i, j):
            return all(constant[i:j + 1]) and (_small(mats[i].shape[0]) or _small(mats[j].shape[1]))
        return free

    # the low-rank uses of m×n sums

    def lowrank_factors(self, pairs) -> tuple[int, int]:
        """Registers of L = [c₁L₁, c₂L₂, …] and R = [R₁, R₂, …] for the pairs of :func:`lowrank_terms`."""
        lefts, rights = [], []
        for coeff, left, right in pairs:
            L = self.chain(left)
            lefts.append(L if coeff == 1 else self.op(_prod, [self.ref(coeff), L], "mul"))
            rights.append(self.chain(right))
        if len(pairs) == 1:
            return lefts[0], rights[0]
        return self.op(_cat, lefts, "cat"), self.op(_cat, rights, "cat")

    def measure(self, X) -> int:
        """𝒜(X): ``apply_factored`` on X's low-rank terms, ``apply`` on the rest (formed densely)."""
        pairs, rest = lowrank_terms(X, self.sizes)
        parts = []
        if pairs:
            parts.append(self.op(_apply_factored, [self.operator(), *self.lowrank_factors(pairs)], "apply_factored"))
        if rest:
            parts.append(self.op(_measure, [self.operator(), self.ref(flat_sum(rest))], "A"))
        return parts[0] if len(parts) == 1 else self.op(np.add, parts, "sum")

    # assembling

    def finalize(self) -> "FactoredProgram":
        """Emit the fused operator products and order the steps so that each runs after its arguments."""
        for z, (register, sides, args) in self.adjoint_groups.items():
            self.steps.append((register, functools.partial(_adjoint_products, sides=tuple(sides)), tuple(args)))
            self.listing[register] = (f"r{register} = adjoint_products[{', '.join(sides)}]"
                                      f"({', '.join(f'r{a}' for a in args)})")
        made_by = {step[0]: step for step in self.steps}
        ordered, done = [], set()
        for step in self.steps:
            stack = [(step, False)]
            while stack:
                (register, _, args), expanded = stack.pop()
                if register in done:
                    continue
                if expanded:
                    done.add(register)
                    ordered.append(made_by[register])
                    continue
                stack.append((made_by[register], True))
                stack += [(made_by[a], False) for a in args if a in made_by and a not in done]
        self.steps = ordered
        return self


class BoundProgram:
    """A :class:`FactoredProgram` with some inputs fixed (the target's factors, the parameters, the
    operator): every register that depends on those alone is computed once, here, and each
    :meth:`run` computes only what depends on the remaining inputs (the state).

    Parameters
    ----------
    program : FactoredProgram
    values : dict
        Input name -> value, for the inputs that stay fixed.
    """

    def __init__(self, program: FactoredProgram, values: dict):
        regs = [None] * program.size
        known = set(program.constants)
        for reg, value in program.constants.items():
            regs[reg] = value
        for name, reg in program.inputs.items():
            if name in values:
                regs[reg] = values[name]
                known.add(reg)
        self.steps = []
        for step in program.steps:
            reg, fn, args = step
            if all(a in known for a in args):
                regs[reg] = fn(*[regs[a] for a in args])
                known.add(reg)
            else:
                self.steps.append(step)
        self.template = regs
        self.inputs = {name: reg for name, reg in program.inputs.items() if name not in values}
        self.results = list(program.results)
        self.program = program

    def run(self, **state) -> list:
        """The outputs' values from the remaining inputs (by name); unchecked, for the hot path."""
        regs = list(self.template)
        for name, reg in self.inputs.items():
            regs[reg] = state[name]
        for reg, fn, args in self.steps:
            regs[reg] = fn(*[regs[a] for a in args])
        return [regs[reg] for reg in self.results]


@functools.lru_cache(maxsize=64)
def compile_factored(outputs: tuple, sizes: tuple, sigma_factored: bool = True) -> FactoredProgram:
    """Compile expressions into one :class:`FactoredProgram` at concrete sizes.

    Parameters
    ----------
    outputs : tuple of sympy expressions
        The program's results, in order (:meth:`~.codegen._Program.run_all`).
    sizes : tuple of (size symbol, int)
        m, n, k, r (and p with an operator).
    sigma_factored : bool
        Replace Σ by Φ Σ* Ψᵀ (the inputs are then Phi, Psi and Sigma_star = diag σ, not Sigma).

    Returns
    -------
    FactoredProgram
        Its inputs (:attr:`inputs`) are named as the leaves, ``A`` for the operator.
    """
    program = FactoredProgram(dict(sizes))
    memo: dict = {}
    prepared = [distribute(substitute_target(e) if sigma_factored else e, memo) for e in outputs]
    program.results = [program.ref(e) for e in prepared]
    return program.finalize()
