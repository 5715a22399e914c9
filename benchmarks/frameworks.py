"""diffrax (JAX) and torchdiffeq (PyTorch) against ``integrate`` on cases (a) and (b), at equal accuracy.

Optional: runs only where they are installed (``pip install '.[bench]'``); neither is ever a core
dependency. Every solver gets the same factored right-hand side, float64, and the same 101 output
times over the transient t ∈ [0, 20]; for each, the loosest tolerance in a fixed ladder that reaches
the target accuracy (largest ‖UVᵀ − UVᵀ_ref‖_F / ‖Σ‖_F over the grid) is timed (median of
``REPEATS``). JAX compile time is reported separately from run time. Plain ``solve_ivp`` with
``-problem.grad`` (DOP853, as ``integrate`` picks here) is the baseline that always runs. Case (a),
m = n = 20, is where fixed costs per call and per step show: the full state (``reduce=False``), as
the frameworks solve it.
"""

from __future__ import annotations

import importlib.util
import time

import numpy as np

from benchmarks._timing import table
from scipy.integrate import solve_ivp

from benchmarks.cases import SIZES, case, max_error, reference
from pgflow.flows import GradientFlow, integrate

T_END, N_GRID, REPEATS = 20.0, 101, 5
LADDER = (1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10, 1e-11, 1e-12)


def _diffrax_solver(problem, x0, grid, solver_name):
    import jax
    jax.config.update("jax_enable_x64", True)
    import diffrax
    import jax.numpy as jnp

    (m, k), (n, _) = problem.layout[0][1], problem.layout[1][1]
    left, PsiT, right, PhiT = (jnp.asarray(a) for a in problem.target._factors)

    def field(t, y, args):
        U, V = y[:m * k].reshape(m, k), y[m * k:].reshape(n, k)
        dU = left @ (PsiT @ V) - U @ (V.T @ V)
        dV = right @ (PhiT @ U) - V @ (U.T @ U)
        return jnp.concatenate([dU.ravel(), dV.ravel()])

    solver = getattr(diffrax, solver_name)()

    @jax.jit
    def solve(y0, rtol, atol):
        sol = diffrax.diffeqsolve(diffrax.ODETerm(field), solver, t0=0.0, t1=T_END, dt0=None, y0=y0,
                                  saveat=diffrax.SaveAt(ts=jnp.asarray(grid)), max_steps=1_000_000,
                                  stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol))
        return sol.ys

    def run(rtol):
        start = time.perf_counter()
        ys = np.asarray(solve(jnp.asarray(x0), rtol, rtol * 1e-4).block_until_ready())
        return ys, time.perf_counter() - start
    return run


def _torchdiffeq_solver(problem, x0, grid, method):
    import torch
    from torchdiffeq import odeint

    torch.set_num_threads(1)
    (m, k), (n, _) = problem.layout[0][1], problem.layout[1][1]
    left, PsiT, right, PhiT = (torch.from_numpy(np.ascontiguousarray(a)) for a in problem.target._factors)

    def field(t, y):
        U, V = y[:m * k].reshape(m, k), y[m * k:].reshape(n, k)
        dU = left @ (PsiT @ V) - U @ (V.T @ V)
        dV = right @ (PhiT @ U) - V @ (U.T @ U)
        return torch.cat([dU.reshape(-1), dV.reshape(-1)])

    def run(rtol):
        start = time.perf_counter()
        with torch.no_grad():
            ys = odeint(field, torch.from_numpy(x0.copy()), torch.from_numpy(grid), method=method, rtol=rtol,
                        atol=rtol * 1e-4).numpy()
        return ys, time.perf_counter() - start
    return run


def _scipy_solver(problem, x0, grid):
    def run(rtol):
        start = time.perf_counter()
        out = solve_ivp(lambda t, y: -problem.grad(y), (0.0, T_END), x0, method="DOP853", t_eval=grid, rtol=rtol,
                        atol=rtol * 1e-4)
        return out.y.T, time.perf_counter() - start
    return run


def _pgflow_solver(problem, x0, grid):
    def run(rtol):
        start = time.perf_counter()
        out = integrate(GradientFlow(problem), x0, T_END, rtol=rtol, atol=rtol * 1e-4, t_eval=grid, default_monitors=False,
                        dense_output=False, reduce=False)  # the frameworks solve the full state too
        return out.x, time.perf_counter() - start
    return run


def main(target: float = 1e-8) -> dict:
    return {which: compare_case(which, target) for which in ("a", "b")}


def compare_case(which: str, target: float) -> dict:
    problem, x0 = case(which)
    grid = np.linspace(0, T_END, N_GRID)
    ref = reference(problem, x0, grid)
    solvers = {"pgflow integrate (auto)": _pgflow_solver(problem, x0, grid),
               "scipy solve_ivp DOP853": _scipy_solver(problem, x0, grid)}
    if importlib.util.find_spec("diffrax"):
        for name in ("Tsit5", "Dopri8"):
            solvers[f"diffrax {name}"] = _diffrax_solver(problem, x0, grid, name)
    else:
        print("diffrax not installed: skipped (pip install '.[bench]')")
    if importlib.util.find_spec("torchdiffeq"):
        for name in ("dopri5", "dopri8"):
            solvers[f"torchdiffeq {name}"] = _torchdiffeq_solver(problem, x0, grid, name)
    else:
        print("torchdiffeq not installed: skipped (pip install '.[bench]')")

    rows, results = [], {}
    for label, run in solvers.items():
        # tolerances are traced arguments: JAX compiles once, on the first call
        _, first = run(LADDER[0])
        _, again = run(LADDER[0])
        compile_time = max(first - again, 0.0)
        for rtol in LADDER:
            ys, seconds = run(rtol)
            err = max_error(problem, ys, ref)
            if err <= target:
                break
        seconds = float(np.median([seconds] + [run(rtol)[1] for _ in range(REPEATS - 1)]))
        results[label] = {"run": seconds, "compile": compile_time, "error": err, "rtol": rtol}
        rows.append((label, f"{rtol:.0e}", f"{err:.1e}", f"{seconds * 1e3:.1f}", f"{compile_time:.2f}"))
    m, r, k = SIZES[which]
    print(f"case ({which}): m = n = {m}, k = {k}, r = {r}, t ∈ [0, {T_END:g}], {N_GRID} output times, target error "
          f"{target:g}, run time median of {REPEATS}")
    print(table(rows, ("solver", "rtol", "max error", "run ms", "compile s")))
    ours = results["pgflow integrate (auto)"]["run"]
    for label, r in results.items():
        if label.startswith("pgflow"):
            continue
        print(f"ratio {label} / pgflow: run {r['run'] / ours:.2f}x, run + compile {(r['run'] + r['compile']) / ours:.2f}x")
    return results


if __name__ == "__main__":
    main()
