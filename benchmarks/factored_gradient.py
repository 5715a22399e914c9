"""Factored gradient against the dense m×n residual, m = n = 1000, k = 20, r = 10.

The dense baseline is what one writes first: R = Σ − UVᵀ, then (−RV, −RᵀU), with Σ stored dense.
"""

from __future__ import annotations

import numpy as np

from benchmarks._timing import compare, table
from pgflow.flows import MatrixFactorization, init


def main(m: int = 1000, n: int = 1000, k: int = 20, r: int = 10) -> dict:
    problem = MatrixFactorization.random(m=m, n=n, rank=r, width=k, condition=10.0, seed=0)
    x = init.gaussian(problem, 0.1, seed=1)
    Sigma = problem.target.dense()
    out = np.empty_like(x)

    def dense():
        U, V = problem.unpack(x)
        R = Sigma - U @ V.T
        return problem.pack(-R @ V, -R.T @ U)

    np.testing.assert_allclose(problem.grad(x), dense(), rtol=1e-9, atol=1e-9)
    t = compare({"factored": lambda: problem.grad(x, out=out), "dense": dense}, repeats=9, number=5)
    ratio = t["dense"] / t["factored"]
    print(f"gradient of ½‖UVᵀ − Σ‖²_F at m = {m}, n = {n}, k = {k}, r = {r} (median of 9 × 5 calls)")
    print(table([("factored Φ(σ ⊙ ΨᵀV) − U(VᵀV)", f"{1e3 * t['factored']:.3f}", "1.0"),
                 ("dense m×n residual", f"{1e3 * t['dense']:.3f}", f"{ratio:.1f}")],
                ("gradient", "ms/call", "× factored")))
    print(f"ratio dense / factored: {ratio:.1f}x")
    return {"factored_ms": 1e3 * t["factored"], "dense_ms": 1e3 * t["dense"], "ratio": ratio}


if __name__ == "__main__":
    main()
