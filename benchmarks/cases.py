"""The benchmark cases of docs/performance.md, built reproducibly from seeds.

(a) m = n = 20, r = 3, k = 5; (b) m = n = 200, r = 5, k = 10; (c) m = n = 1000, r = 10, k = 20;
all κ = 10, Gaussian init of scale 1e-4. (d3) like (a) with U₀ ≈ 3 and V₀ ≈ 1e-6 (stiff);
(mild) like (a) with U₀ × 100 and V₀ / 100 (unbalanced by scaling, not stiff).
"""

from __future__ import annotations

import numpy as np

from pgflow.flows import GradientFlow, MatrixFactorization, init, integrate

SIZES = {"a": (20, 3, 5), "b": (200, 5, 10), "c": (1000, 10, 20)}


def case(name: str, seed: int = 0):
    """(problem, x0) for a named case."""
    m, r, k = SIZES.get(name, SIZES["a"])
    problem = MatrixFactorization.random(m=m, n=m, rank=r, width=k, condition=10.0, seed=seed)
    x0 = init.gaussian(problem, 1e-4, seed=seed + 1)
    if name == "d3":
        rng = np.random.default_rng(seed + 1)
        x0 = problem.pack(3 + 0.1 * rng.standard_normal((m, k)), 1e-6 * rng.standard_normal((m, k)))
    elif name == "mild":
        U, V = problem.unpack(x0)
        x0 = problem.pack(100 * U, V / 100)
    return problem, x0


def uvt(problem, X):
    U, V = problem.factors(X)
    return U @ np.swapaxes(V, -1, -2)


def reference(problem, x0, grid, rtol=1e-13):
    """UVᵀ on ``grid`` from a tight solve (the default auto method, grid-exact states)."""
    run = integrate(GradientFlow(problem), x0, grid[-1], rtol=rtol, atol=1e-18, t_eval=grid, default_monitors=False,
                    dense_output=False, reduce=False)
    return uvt(problem, run.x)


def max_error(problem, X, ref):
    """Largest ‖UVᵀ − UVᵀ_ref‖_F / ‖Σ‖_F over the grid (the whole transient, not just the end)."""
    return float(np.max(np.linalg.norm(uvt(problem, X) - ref, axis=(1, 2))) / problem.target.frobenius_norm)
