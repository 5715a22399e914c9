"""A gradient compiled from a formula against the hand-written factored gradient, m = n = 200, k = 10, r = 5.

The formula side is :class:`pgflow.analysis.symbolic.FormulaProblem` (the loss as a string, its gradient
derived and compiled at these sizes); the hand-written side is :class:`pgflow.flows.MatrixFactorization`'s
gradient (stacked workspaces, no m×n matrix) plus the regularizer's own term written out with numpy:

- balanced, ½‖UVᵀ − Σ‖²_F + (λ/8)‖UᵀU − VᵀV‖²_F: + (λ/2)(U D, −V D), D = UᵀU − VᵀV;
- weight decay, ½‖UVᵀ − Σ‖²_F + (λ/2)(‖U‖²_F + ‖V‖²_F): + λ(U, V);
- plain, ½‖UVᵀ − Σ‖²_F: nothing added.

Both write into a preallocated ``out``, with one BLAS thread (pgflow's default inside ``integrate`` and
``gradient_descent``, :mod:`pgflow.flows.blas`). The issue's bar is a ratio of at most 3.
"""

from __future__ import annotations

import numpy as np

from benchmarks._timing import compare, table
from pgflow.analysis.symbolic import FormulaProblem
from pgflow.flows import MatrixFactorization, init
from pgflow.flows.blas import limit

BAR = 3.0


def _hand(problem: MatrixFactorization, name: str, lam: float):
    """The hand-written gradient of the regularized loss ``name``, into ``out``."""
    def grad(x, out):
        problem.grad(x, out=out)
        if name == "plain":
            return out
        U, V = problem.unpack(x)
        GU, GV = problem.unpack(out)
        if name == "weight_decay":
            out += lam * x
            return out
        D = (lam / 2) * (U.T @ U - V.T @ V)
        GU += U @ D
        GV -= V @ D
        return out
    return grad


def main(m: int = 200, n: int = 200, k: int = 10, r: int = 5, lam: float = 0.1) -> dict:
    plain = MatrixFactorization.random(m=m, n=n, rank=r, width=k, condition=10.0, seed=0)
    x = init.gaussian(plain, 0.1, seed=1)
    rows, ratios = [], {}
    for name in ("balanced", "weight_decay", "plain"):
        if name == "plain":
            formula = FormulaProblem("fro(U*V.T - Sigma)**2/2", plain.target, k)
        else:
            formula = getattr(FormulaProblem, name)(plain.target, k, lam=lam)
        hand, ours, theirs = _hand(plain, name, lam), np.empty_like(x), np.empty_like(x)
        np.testing.assert_allclose(formula.grad(x, out=ours), hand(x, theirs), rtol=1e-12,
                                   atol=1e-12 * np.abs(theirs).max())
        with limit(1):
            t = compare({"hand": lambda: hand(x, theirs), "formula": lambda: formula.grad(x, out=ours)},
                        repeats=9, number=200)
        ratios[name] = t["formula"] / t["hand"]
        rows.append((name, f"{1e6 * t['hand']:.1f}", f"{1e6 * t['formula']:.1f}", f"{ratios[name]:.2f}"))
    print(f"gradient at m = {m}, n = {n}, k = {k}, r = {r} (µs per call, median of 9 × 200 calls, 1 BLAS thread)")
    print(table(rows, ("loss", "hand-written", "from the formula", "ratio")))
    worst = max(ratios.values())
    print(f"largest ratio formula / hand-written: {worst:.2f} (bar: {BAR:g})")
    return {"ratios": ratios, "within_bar": worst <= BAR}


if __name__ == "__main__":
    main()
