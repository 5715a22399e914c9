"""Per-step overhead of ``gradient_descent`` beyond its matrix products, at small sizes.

Baseline: a hand-written loop doing exactly the gradient's matrix products (those of
``MatrixFactorization``'s gradient) into preallocated buffers, and the update; nothing else. The difference per step is pgflow's overhead (unpacking,
the step rule, the finiteness check, recording).
"""

from __future__ import annotations

import numpy as np

from benchmarks._timing import compare, table
from pgflow.flows import MatrixFactorization, gradient_descent, init
from pgflow.flows.blas import limit


def main(n_steps: int = 20_000) -> dict:
    rows, overheads = [], {}
    for m, r, k in ((20, 3, 5), (100, 5, 10)):
        problem = MatrixFactorization.random(m=m, n=m, rank=r, width=k, condition=10.0, seed=0)
        x0 = init.gaussian(problem, 1e-3, seed=1)
        eta = 0.25 / problem.target.sigma[0]
        t = problem.target
        q = k + r
        # the products of MatrixFactorization's gradient: W = [Uᵀ; Φᵀ], [Vᵀ; −σΨᵀ]; M = W·[U; V];
        # ∇ = Wᵀ·(M swapped), all into preallocated buffers
        W = np.empty((2, q, m))
        W[0, k:], W[1, k:] = t.Phi.T, -(t.Psi * t.sigma).T
        M = np.empty((2, q, k))

        def baseline():
            x = x0.copy()
            X = x.reshape(2, m, k)
            G = np.empty((2, m, k))
            for _ in range(n_steps):
                np.copyto(W[:, :k], X.mT)
                np.matmul(W, X, out=M)
                np.matmul(W.mT, M[::-1], out=G)
                G *= eta
                X -= G
            return x

        def ours():
            return gradient_descent(problem, x0, eta, n_steps, save_every=n_steps, default_monitors=False, reduce=False).x[-1]

        np.testing.assert_allclose(ours(), baseline(), rtol=1e-9, atol=1e-12)
        with limit(1):
            times = compare({"baseline": baseline, "gradient_descent": ours}, repeats=5)
        per_base, per_ours = times["baseline"] / n_steps, times["gradient_descent"] / n_steps
        overheads[m] = per_ours - per_base
        rows.append((f"{m}×{m}, k = {k}", f"{1e6 * per_base:.2f}", f"{1e6 * per_ours:.2f}",
                     f"{1e6 * overheads[m]:.2f}", f"{per_ours / per_base:.2f}"))
    print(f"µs per GD step, median of 5 runs of {n_steps} steps, 1 BLAS thread")
    print(table(rows, ("problem", "matrix products only", "gradient_descent", "overhead", "ratio")))
    return overheads


if __name__ == "__main__":
    main()
