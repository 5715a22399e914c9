"""Euler-as-GF (tiny-step gradient descent) against ``integrate`` at equal accuracy.

Case (b): m = n = 200, r = 5, k = 10, κ = 10, init scale 1e-4, t ∈ [0, 20]: the whole transient,
every mode learned. Accuracy is the largest ‖UVᵀ − UVᵀ_ref‖_F / ‖Σ‖_F over 101 times, not only the
endpoint (every run converges to UVᵀ = Σ, so the endpoint says nothing). Euler's error is measured
at three step sizes and fitted as C·ηᵖ; the step size each target accuracy needs is run when it
takes under a minute and otherwise projected from the fit and the measured time per step (said so
in the table).
"""

from __future__ import annotations

import time

import numpy as np

from pgflow.analysis.fitting import fit_power_law
from benchmarks._timing import table
from benchmarks.cases import case, max_error, reference
from pgflow.flows import GradientFlow, gradient_descent, integrate

T_END, N_GRID = 20.0, 101


def euler(problem, x0, eta):
    """GD with step η recorded on the grid; returns (max error, seconds per step)."""
    steps_per_point = int(round(T_END / (N_GRID - 1) / eta))
    n_steps = steps_per_point * (N_GRID - 1)
    start = time.perf_counter()
    run = gradient_descent(problem, x0, step_size=eta, n_steps=n_steps, save_every=steps_per_point, default_monitors=False,
                           reduce=False)
    return run, (time.perf_counter() - start) / n_steps


def main(targets=(1e-3, 1e-6), measured_steps=(4e-4, 2e-4, 1e-4), budget: float = 60.0) -> dict:
    problem, x0 = case("b")
    grid = np.linspace(0, T_END, N_GRID)
    ref = reference(problem, x0, grid)
    etas, errs, per_step = [], [], []
    for eta in measured_steps:
        run, sec = euler(problem, x0, eta)
        etas.append(eta)
        errs.append(max_error(problem, run.x, ref))
        per_step.append(sec)
    fit = fit_power_law(np.array(etas), np.array(errs))
    sec_per_step = float(np.median(per_step))
    print(f"case (b) over t ∈ [0, {T_END:g}]: Euler error = {fit.coefficient:.3g}·η^{fit.order:.3f} "
          f"(± {fit.order_stderr:.3f}), fitted on η = {', '.join(f'{e:g}' for e in etas)} "
          f"(errors {', '.join(f'{e:.2e}' for e in errs)}); {1e6 * sec_per_step:.1f} µs per step")
    rows, ratios = [], {}
    for target in targets:
        eta = (target / fit.coefficient) ** (1 / fit.order)
        n_steps = T_END / eta
        projected = n_steps * sec_per_step
        if projected < budget:
            eta = T_END / (N_GRID - 1) / int(np.ceil(T_END / (N_GRID - 1) / eta))
            run, sec = euler(problem, x0, eta)
            euler_time, euler_err, how = sec * T_END / eta, max_error(problem, run.x, ref), "measured"
        else:
            euler_time, euler_err, how = projected, target, "projected"
        for rtol in np.logspace(-3, -12, 19):
            start = time.perf_counter()
            flow = integrate(GradientFlow(problem), x0, T_END, rtol=rtol, atol=1e-14, t_eval=grid, default_monitors=False,
                             dense_output=False, reduce=False)
            flow_time = time.perf_counter() - start
            flow_err = max_error(problem, flow.x, ref)
            if flow_err <= min(target, euler_err):
                break
        ratios[target] = euler_time / flow_time
        rows.append((f"{target:g}", f"{eta:.2e}", f"{T_END / eta:.3g}", f"{euler_time:.3g} ({how})", f"{euler_err:.2e}",
                     f"{rtol:.1e}", f"{flow_time:.3f}", f"{flow_err:.2e}", f"{ratios[target]:.3g}"))
    print(table(rows, ("target", "Euler η", "steps", "Euler s", "Euler error", "integrate rtol", "integrate s",
                       "integrate error", "Euler / integrate")))
    for target, ratio in ratios.items():
        print(f"ratio Euler-as-GF / integrate at {target:g}: {ratio:.3g}x")
    return ratios


if __name__ == "__main__":
    main()
