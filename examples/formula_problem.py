"""A regularized factorization from a formula: the balancing regularizer, by gradient flow and gradient descent.

The loss is written as a string,

    f_λ(U, V) = ½‖UVᵀ − Σ‖²_F + (λ/8)‖UᵀU − VᵀV‖²_F,

and :class:`pgflow.analysis.symbolic.FormulaProblem` reads it with the safe parser, derives its
gradient, Hessian-vector product and third derivative with pgflow's matrix calculus, compiles them
into numpy programs that use Σ = Φ diag(σ) Ψᵀ through its factors, and checks them once against the
loss. The result is a problem like the built-in ones: ``GradientFlow``, ``gradient_descent``, the
monitors and the claims take it as it is.

Known answers. With D = UᵀU − VᵀV (the imbalance) and P = UᵀU + VᵀV, the gradient is
∇_U f_λ = (UVᵀ − Σ)V + (λ/2)U D, ∇_V f_λ = (UVᵀ − Σ)ᵀU − (λ/2)V D, so along the gradient flow

    Ḋ = U̇ᵀU + UᵀU̇ − V̇ᵀV − VᵀV̇ = −(λ/2)(P D + D P)

(the factorization terms cancel, as they do for the plain loss, which conserves D). Hence
d/dt ‖D‖²_F = −2λ tr(D² P), so that d/dt log‖D‖_F lies between −λ λ_max(P) and −λ λ_min(P):

    ‖D(0)‖_F e^{−λ∫₀ᵗ λ_max(P)} ≤ ‖D(t)‖_F ≤ ‖D(0)‖_F e^{−λ∫₀ᵗ λ_min(P)}.

At the limit (k = r, a balanced factorization of Σ) P → 2 Q diag(σ) Qᵀ, whose smallest eigenvalue
2σ_r gives the late decay ‖D(t)‖_F ∝ e^{−2λσ_r t}. The script checks

- the identity d/dt ‖D‖²_F = −2λ tr(D²P) along the flow, as a claim (pgflow differentiates along
  the formula's own gradient, and compares with finite differences of the saved states);
- the two-sided bound above on every saved state, and the late decay rate 2λσ_r;
- that the flow ends at Σ (UVᵀ has the singular values σ) while the plain factorization, from the
  same start, keeps its imbalance;
- that gradient descent with step η stays O(η) from the flow (the discretization study fits the order).

Run::

    python examples/formula_problem.py            # m = 30, n = 20, k = r = 3 to t = 25
    python examples/formula_problem.py --small    # what the test suite runs: m = 8, n = 6, k = r = 2 to t = 12
"""

import sys

import numpy as np
from scipy.integrate import cumulative_trapezoid

from pgflow import GradientFlow, LowRankTarget, MatrixFactorization, gradient_descent, init, integrate
from pgflow.analysis import compare
from pgflow.analysis.bounds import Claim, Run, check
from pgflow.analysis.discretization import error_vs_step
from pgflow.analysis.symbolic import FormulaProblem

SMALL = "--small" in sys.argv[1:]  # tests/test_examples.py runs every example with --small
LOSS = "fro(U*V.T - Sigma)**2/2 + lam/8*fro(U.T*U - V.T*V)**2"


def main():
    m, n, t_end, sigma = (8, 6, 12.0, [3.0, 1.0]) if SMALL else (30, 20, 25.0, [4.0, 2.0, 1.0])
    k, lam = len(sigma), 0.5
    target = LowRankTarget.random(m, n, len(sigma), singular_values=sigma, seed=0)
    problem = FormulaProblem(LOSS, target, k, params={"lam": lam})
    print(f"loss: {problem.formula.text}, λ = {lam}")
    program = problem.program("grad")  # what the compiled gradient computes, register by register
    assert all(min(shape) <= 2 * k for shape in program.program.shapes.values())  # no m×n matrix
    print(f"compiled gradient: {len(program.steps)} numpy steps per evaluation, none of them m×n")

    x0 = init.gaussian(problem, scale=0.5, seed=1)
    grid = np.linspace(0.0, t_end, int(round(t_end / 0.01)) + 1)
    flow = integrate(GradientFlow(problem), x0, t_end, rtol=1e-11, t_eval=grid)

    # known answer 1: the identity d/dt ‖D‖² = −2λ tr(D²P), checked symbolically along this formula's flow
    identity = Claim("derivative(imbalance_sq) == -2*lam*trace(imbalance*imbalance*(UtU + VtV))",
                     params={"lam": lam}, rel_allowance=1e-9)
    report = check(identity, Run.of(flow, GradientFlow(problem)))
    print(report.summary().splitlines()[0])
    assert report.holds and not report.disagreements, report.summary()

    # known answer 2: ‖D‖ between e^{−λ∫λ_max(P)} and e^{−λ∫λ_min(P)}, and the late rate 2λσ_r
    U, V = flow.U, flow.V
    D, P = U.mT @ U - V.mT @ V, U.mT @ U + V.mT @ V
    decay = np.log(np.linalg.norm(D, axis=(1, 2)) / np.linalg.norm(D[0]))
    eigenvalues = np.linalg.eigvalsh(P)
    fastest = -lam * cumulative_trapezoid(eigenvalues[:, -1], flow.t, initial=0.0)
    slowest = -lam * cumulative_trapezoid(eigenvalues[:, 0], flow.t, initial=0.0)
    margin = min(np.min(decay - fastest), np.min(slowest - decay))  # 0 at t = 0, where all three are 0
    assert margin > -1e-6, margin  # the trapezoid rule on a grid of 0.01 is good to about 1e-7
    print(f"log(‖D(t)‖/‖D(0)‖) at t = {t_end:g}: {decay[-1]:.3f}, within [−λ∫λ_max(P), −λ∫λ_min(P)] = "
          f"[{fastest[-1]:.3f}, {slowest[-1]:.3f}] (and so on every saved state)")
    late = flow.t >= t_end / 2
    rate = -np.polyfit(flow.t[late], decay[late], 1)[0]
    print(f"late decay rate of ‖D‖: {rate:.6f}, expected 2λσ_r = {2 * lam * sigma[-1]:g}")
    assert abs(rate - 2 * lam * sigma[-1]) < 1e-3, rate

    # known answer 3: the limit is Σ, balanced; the plain factorization keeps its imbalance
    product = np.linalg.svd(flow.U[-1] @ flow.V[-1].T, compute_uv=False)[:k]
    plain = integrate(GradientFlow(MatrixFactorization(target, k)), x0, t_end, rtol=1e-11, t_eval=grid)
    kept = plain.monitors["imbalance_fro"]
    print(f"σ(UVᵀ) at t = {t_end:g}: {np.round(product, 6).tolist()}; ‖D‖ {flow.monitors['imbalance_fro'][-1]:.1e} "
          f"(plain factorization: {kept[-1]:.4f}, from {kept[0]:.4f})")
    np.testing.assert_allclose(product, sigma, rtol=1e-4)
    np.testing.assert_allclose(kept, kept[0], rtol=1e-8)

    # gradient descent from the same start; the discretization study runs it at three step sizes against the flow
    gd = gradient_descent(problem, x0, 0.01, int(round(t_end / 0.01)), save_every=10)
    gap = float(np.max(compare(gd, flow).state))  # GD iterate j against the flow at jη
    print(f"gradient descent, η = 0.01: final loss {gd.monitors['loss'][-1]:.3e} "
          f"(flow {flow.monitors['loss'][-1]:.3e}), largest distance to the flow {gap:.2e}")
    assert gap < 0.05, gap
    study = error_vs_step(problem, x0, [0.04, 0.02, 0.01], t_end)
    print(f"distance of GD to the flow at t = {t_end:g} for η = 0.04, 0.02, 0.01: "
          f"{', '.join(f'{e:.2e}' for e in study.errors)}; fitted order {study.order:.2f} (first order: 1)")
    assert study.ok and abs(study.order - 1.0) < 0.15, study.reasons
    print("OK: the balancing regularizer from a formula, as derived")


if __name__ == "__main__":
    main()
