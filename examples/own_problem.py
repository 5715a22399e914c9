"""A user's own problem: matrix factorization with weight decay, by gradient flow and gradient descent.

A problem is a subclass of :class:`pgflow.flows.Problem` (the documented base class: ``dim``,
``loss(x)`` and ``grad(x, out=None)`` on a flat state x of shape (dim,) or a batch (B, dim)); here
we subclass :class:`pgflow.MatrixFactorization`, which already packs U (m×k) and V (n×k) into x, and
add weight decay:

    f_λ(U, V) = ½‖UVᵀ − Σ‖²_F + (λ/2)(‖U‖²_F + ‖V‖²_F),     ∇f_λ = ∇f + λx.

Overriding ``grad`` is enough: the gradient flow's velocity, the GD step, the ``grad_norm`` monitor
and the implicit solvers' Jacobian all follow from it (pgflow replaces the parent's own fast
derivatives, written for the parent's gradient, by ones derived from the new ``grad``). We also
override ``hvp`` (the parent's exact Hessian product plus λv), so that the Jacobian stays exact
instead of finite differences; :func:`pgflow.check_problem` checks ``grad`` against ``loss`` and
``hvp`` against ``grad``.

Two known answers are checked:

- along the gradient flow the imbalance D = UᵀU − VᵀV obeys Ḋ = −2λD exactly (the factorization
  term conserves it, weight decay shrinks it), so ‖D(t)‖_F = e^{−2λt}‖D(0)‖_F;
- the flow ends at a balanced minimizer whose product UVᵀ has the singular values (σᵢ − λ)₊;

and gradient descent with step η stays O(η) from the flow (first order: halving η halves the gap).

Run::

    python examples/own_problem.py            # m = 30, n = 20, k = 5 to t = 40
    python examples/own_problem.py --small    # what the test suite runs: m = 8, n = 6, k = 3 to t = 25
"""

import sys

import numpy as np

import pgflow
from pgflow import GradientFlow, MatrixFactorization, gradient_descent, init, integrate
from pgflow.analysis import compare

SMALL = "--small" in sys.argv[1:]  # tests/test_examples.py runs every example with --small


class WeightDecayFactorization(MatrixFactorization):
    """½‖UVᵀ − Σ‖²_F + (λ/2)‖x‖², x = (vec U, vec V).

    Parameters
    ----------
    target : LowRankTarget or array_like, shape (m, n)
        Σ.
    width : int
        k, the columns of U (m×k) and V (n×k).
    weight_decay : float
        λ ≥ 0.
    """

    def __init__(self, target, width: int, weight_decay: float):
        super().__init__(target, width)
        if not weight_decay >= 0:
            raise ValueError(f"weight_decay must be ≥ 0, got {weight_decay!r}")
        self.weight_decay = float(weight_decay)

    def loss(self, x):
        """f_λ(x), a float for x of shape (dim,), shape (B,) for a batch (B, dim)."""
        x = np.asarray(x, dtype=float)
        return super().loss(x) + 0.5 * self.weight_decay * np.sum(x * x, axis=-1)

    def grad(self, x, out=None):
        """∇f_λ(x) = ∇f(x) + λx, shaped like x, written into ``out`` when given."""
        out = super().grad(x, out=out)
        out += self.weight_decay * np.asarray(x, dtype=float)
        return out

    def hvp(self, x, v):
        """∇²f_λ(x)·v = ∇²f(x)·v + λv, exact (MatrixFactorization's own product plus the decay)."""
        return MatrixFactorization.hvp(self, x, v) + self.weight_decay * np.asarray(v, dtype=float)

    def describe(self) -> dict:
        return {**super().describe(), "weight_decay": self.weight_decay}


def main():
    m, n, k, t_end = (8, 6, 3, 25.0) if SMALL else (30, 20, 5, 40.0)
    sigma, lam = [3.0, 1.0], 0.1
    plain = MatrixFactorization.random(m=m, n=n, rank=len(sigma), width=k, singular_values=sigma, seed=0)
    problem = WeightDecayFactorization(plain.target, k, weight_decay=lam)
    pgflow.check_problem(problem)  # raises ProblemError naming grad or hvp if they disagreed with loss

    x0 = init.gaussian(problem, scale=0.3, seed=1)
    grid = np.linspace(0.0, t_end, int(round(t_end / 0.1)) + 1)  # every 0.1: where GD's saved iterates land
    flow = integrate(GradientFlow(problem), x0, t_end, rtol=1e-11, t_eval=grid)
    print(f"gradient flow: {flow.stats.method} ({flow.stats.method_reason}), {flow.stats.nfev} evaluations")

    # known answer 1: the imbalance decays as exp(−2λt), exactly
    imbalance = flow.monitors["imbalance_fro"]
    predicted = imbalance[0] * np.exp(-2.0 * lam * flow.t)
    decay_error = np.max(np.abs(imbalance - predicted)) / imbalance[0]
    print(f"‖UᵀU − VᵀV‖_F against e^(−2λt)‖D(0)‖_F: largest relative gap {decay_error:.1e}")
    assert decay_error < 1e-7, decay_error

    # known answer 2: the limit's product has the singular values σᵢ − λ (the rest tend to 0)
    product = np.linalg.svd(flow.U[-1] @ flow.V[-1].T, compute_uv=False)
    print(f"σ(UVᵀ) at t = {t_end:g}: {np.round(product[:3], 5).tolist()}, expected {[s - lam for s in sigma]} and 0")
    np.testing.assert_allclose(product[:2], np.subtract(sigma, lam), atol=1e-3)
    assert product[2] < 0.05 and np.linalg.norm(problem.grad(flow.final)) < 0.05

    # gradient descent from the same start, at two step sizes: first order in η
    gaps = {}
    for eta in (0.02, 0.01):
        gd = gradient_descent(problem, x0, eta, int(round(t_end / eta)), save_every=int(round(0.1 / eta)))
        gaps[eta] = float(np.max(compare(gd, flow).state))  # GD iterate k against the flow at kη
        print(f"gradient descent, η = {eta:g}: final loss {gd.monitors['loss'][-1]:.6f} (flow "
              f"{flow.monitors['loss'][-1]:.6f}), largest distance to the flow {gaps[eta]:.2e}")
    ratio = gaps[0.02] / gaps[0.01]
    print(f"halving η shrinks the gap by {ratio:.2f} (first order: 2)")
    assert 1.7 < ratio < 2.3, ratio
    print("OK: weight decay as expected")


if __name__ == "__main__":
    main()
