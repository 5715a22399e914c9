"""How far one machine goes: the exact subspace reduction (``reduce="auto"``, the default) at m = n = 10³ to 10⁵.

k = 20, r = 10, κ = 10, Gaussian start of scale 1e-4 (case (c) of docs/performance.md at every size), DOP853
over the transient t ∈ [0, 30] on a 101-point grid. Each check of issue 19, side by side in one run:

1. m = n = 1000: the default call against the same call with ``reduce=False`` (default monitors in both),
   interleaved, at rtol 1e-6 and 1e-9; the grid states' largest error against a full tight reference
   (rtol 1e-13), per state relative to ‖x_ref(t)‖₂, and as ‖UVᵀ − (UVᵀ)_ref‖_F / ‖Σ‖_F.
2. The default call's share spent in monitors at m = 1000.
3. The default call at m = n = 2·10⁴ against the one at 10³ (in this process, interleaved). Then time and
   peak memory per size, each size in its own process (peak resident memory, the address space capped at
   ``MEMORY_CAP`` so that a mistake cannot take the shared machine): the default call at
   m = n ∈ {10³, 10⁴, 2·10⁴, 10⁵}, ``reduce=False`` where it fits (10³, 10⁴).
4. Reduced GD against full GD over 2,000 steps at m = 1000: the largest relative difference of the iterates
   and the time per step.
5. The default ``gradient_descent`` call (reduced, at most 1,001 saved states, default monitors) against the
   lean call (``save_every=n_steps, default_monitors=False``), per step, 20,000 steps.

``python -m benchmarks scale`` (about 3 minutes on 2 cores).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

import numpy as np

from benchmarks._timing import compare, table
from pgflow.flows import GradientFlow, MatrixFactorization, gradient_descent, init, integrate
from pgflow.flows.problems import lowrank_frobenius

RANK, WIDTH, CONDITION, SCALE, T_END, GRID_POINTS = 10, 20, 10.0, 1e-4, 30.0, 101
MEMORY_CAP = 6 * 2 ** 30  # bytes of address space a child process may map (numpy and BLAS reserve much more than they touch)
SIZES = (1000, 10_000, 20_000, 100_000)
FULL_SIZES = (1000, 10_000)  # reduce=False where it fits: at 10⁵ the saved states alone would be 3.2 GB


def problem_and_start(m: int, seed: int = 0):
    """The m = n problem of the benchmark (its target kept factored: no m×n matrix) and its start."""
    problem = MatrixFactorization.random(m=m, n=m, rank=RANK, width=WIDTH, condition=CONDITION, seed=seed)
    return problem, init.gaussian(problem, SCALE, seed=seed + 1)


def errors(problem, run, reference) -> tuple[float, float]:
    """Largest ‖x − x_ref‖₂/‖x_ref‖₂ and ‖UVᵀ − (UVᵀ)_ref‖_F/‖Σ‖_F over the grid, one state at a time."""
    state, product = 0.0, 0.0
    for x, y in zip(run.states(), reference.states()):
        state = max(state, float(np.linalg.norm(x - y) / np.linalg.norm(y)))
        (U, V), (Ur, Vr) = problem.factors(x), problem.factors(y)
        product = max(product, float(lowrank_frobenius(np.hstack([U, -Ur]), np.hstack([V, Vr]))))
    return state, product / problem.target.frobenius_norm


def child(m: int, reduce: bool, rtol: float) -> dict:
    """One default call (or ``reduce=False``) at size m in this process: times, counts, peak RSS."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
    problem, x0 = problem_and_start(m)
    grid = np.linspace(0.0, T_END, GRID_POINTS)
    start = time.perf_counter()
    run = integrate(GradientFlow(problem), x0, T_END, t_eval=grid, rtol=rtol, reduce="auto" if reduce else False)
    seconds = time.perf_counter() - start
    return {"m": m, "reduced": run.meta["reduced"], "seconds": seconds, "monitor_seconds": run.stats.monitor_time,
            "nfev": run.stats.nfev, "dim": run.meta["full_dim"], "reduced_dim": run.meta["reduced_dim"],
            "final_loss": float(run.monitors["loss"][-1]), "monitors": sorted(run.monitors),
            "peak_rss": peak_rss()}


def peak_rss() -> int:
    """This process's peak resident memory in bytes: VmHWM, counted from its exec (ru_maxrss would keep the
    peak of the parent it was forked from); ru_maxrss where /proc is missing."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def in_process(m: int, reduce: bool, rtol: float = 1e-6) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.scale", "child", str(m), str(int(reduce)), repr(rtol)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def check_speed_and_accuracy() -> dict:
    """Checks 1 and 2 at m = n = 1000."""
    problem, x0 = problem_and_start(1000)
    grid = np.linspace(0.0, T_END, GRID_POINTS)
    flow = GradientFlow(problem)
    reference = integrate(flow, x0, T_END, method="DOP853", rtol=1e-13, t_eval=grid, default_monitors=False, reduce=False)
    rows, out = [], {}
    for rtol in (1e-6, 1e-9):
        runs, shares = {}, []

        def default_call():
            start = time.perf_counter()
            runs["default"] = integrate(flow, x0, T_END, t_eval=grid, rtol=rtol)
            shares.append(runs["default"].stats.monitor_time / (time.perf_counter() - start))

        calls = {"default": default_call,
                 "reduce=False": lambda: runs.__setitem__("full", integrate(flow, x0, T_END, t_eval=grid, rtol=rtol,
                                                                           reduce=False))}
        times = compare(calls, repeats=3)
        default, full = runs["default"], runs["full"]
        (state_d, product_d), (state_f, product_f) = errors(problem, default, reference), errors(problem, full, reference)
        ratio = times["reduce=False"] / times["default"]
        share = float(np.median(shares))
        rows.append((f"{rtol:.0e}", f"{times['default']:.3f}", f"{times['reduce=False']:.3f}", f"{ratio:.1f}",
                     f"{state_d / rtol:.2f}", f"{state_f / rtol:.2f}", f"{product_d:.1e}", f"{product_f:.1e}",
                     f"{100 * share:.1f}%"))
        out[rtol] = {"ratio": ratio, "state_error_over_rtol": state_d / rtol, "monitor_share": share}
    print(f"m = n = 1000, k = {WIDTH}, r = {RANK}: the default call (reduced, dim {default.meta['reduced_dim']}) against "
          f"reduce=False (dim {problem.dim}), default monitors in both, {GRID_POINTS} grid states to t = {T_END:g} "
          f"(median of 3, interleaved; monitors: median share of the call); errors against DOP853 at rtol 1e-13, full")
    print(table(rows, ("rtol", "default s", "reduce=False s", "ratio (≥ 8)", "state err / rtol (≤ 10)",
                       "full's / rtol", "UVᵀ err default", "UVᵀ err full", "monitors / default call (≤ 10%)")))
    return out


def check_sizes() -> dict:
    """Check 3: the 2·10⁴ call against the 10³ one side by side, then one process per size."""
    grid = np.linspace(0.0, T_END, GRID_POINTS)
    calls = {}
    for m in (1000, 20_000):
        problem, x0 = problem_and_start(m)
        calls[m] = lambda problem=problem, x0=x0: integrate(GradientFlow(problem), x0, T_END, t_eval=grid, rtol=1e-6)
    times = compare(calls, repeats=5)
    ratio = times[20_000] / times[1000]
    rows, results = [], {}
    for m in SIZES:
        for reduce in (True, False) if m in FULL_SIZES else (True,):
            r = in_process(m, reduce)
            results[(m, reduce)] = r
            rows.append((f"{m:,}", "default" if reduce else "reduce=False", f"{r['dim']:,}",
                         f"{r['reduced_dim']:,}" if r["reduced_dim"] else "-", r["nfev"], f"{r['seconds']:.2f}",
                         f"{r['monitor_seconds']:.3f}", f"{r['peak_rss'] / 2 ** 20:,.0f}", f"{r['final_loss']:.1e}"))
    print(f"one process per size, rtol 1e-6, address space capped at {MEMORY_CAP / 2 ** 30:.0f} GiB "
          f"(monitors: {', '.join(results[(SIZES[-1], True)]['monitors'])})")
    print(table(rows, ("m = n", "call", "dim", "reduced dim", "nfev", "seconds", "monitors s", "peak RSS MiB",
                       "final loss")))
    print(f"default call at m = n = 20,000 / at 1,000, in one process (median of 5, interleaved): {times[20_000]:.3f} s / "
          f"{times[1000]:.3f} s = {ratio:.2f} (≤ 3); peak RSS at 10⁵: "
          f"{results[(100_000, True)]['peak_rss'] / 2 ** 30:.2f} GiB (< 2)")
    return {"ratio_20000": ratio, "peak_rss_100000": results[(100_000, True)]["peak_rss"]}


def check_gd(n_steps: int = 2000) -> dict:
    """Check 4: reduced GD against full GD at m = 1000."""
    problem, x0 = problem_and_start(1000)
    eta = 0.25 / problem.target.sigma[0]
    runs = {}
    times = compare({"reduced": lambda: runs.__setitem__("reduced", gradient_descent(
                         problem, x0, eta, n_steps, save_every=10, default_monitors=False)),
                     "full": lambda: runs.__setitem__("full", gradient_descent(
                         problem, x0, eta, n_steps, save_every=10, default_monitors=False, reduce=False))}, repeats=3)
    gap = max(float(np.linalg.norm(a - b) / np.linalg.norm(b)) for a, b in zip(runs["reduced"].states(),
                                                                              runs["full"].states()))
    print(f"GD at m = n = 1000, {n_steps} steps of η = 0.25/σ₁, iterates every 10 steps: largest relative difference "
          f"reduced vs full {gap:.1e} (≤ 1e-13); µs per step {1e6 * times['reduced'] / n_steps:.0f} reduced, "
          f"{1e6 * times['full'] / n_steps:.0f} full ({times['full'] / times['reduced']:.1f}×)")
    return {"gap": gap, "speedup": times["full"] / times["reduced"]}


def check_gd_defaults(n_steps: int = 20_000) -> dict:
    """Check 5: the default GD call against the lean one, per step."""
    rows, ratios = [], {}
    for m, r, k in ((20, 3, 5), (100, 5, 10), (1000, RANK, WIDTH)):
        problem = MatrixFactorization.random(m=m, n=m, rank=r, width=k, condition=CONDITION, seed=0)
        x0 = init.gaussian(problem, 1e-3, seed=1)
        eta = 0.25 / problem.target.sigma[0]
        times = compare({"default": lambda: gradient_descent(problem, x0, eta, n_steps),
                         "lean": lambda: gradient_descent(problem, x0, eta, n_steps, save_every=n_steps, default_monitors=False)},
                        repeats=5)
        ratios[m] = times["default"] / times["lean"]
        rows.append((f"{m}×{m}, k = {k}, r = {r}", f"{1e6 * times['lean'] / n_steps:.1f}",
                     f"{1e6 * times['default'] / n_steps:.1f}", f"{ratios[m]:.2f}"))
    print(f"gradient_descent, {n_steps} steps: the default call (1,001 saved states, default monitors) against the lean "
          f"call (no monitors, first and last state), median of 5, interleaved")
    print(table(rows, ("problem", "lean µs/step", "default µs/step", "ratio (≤ 1.5)")))
    return ratios


def main() -> dict:
    return {"speed": check_speed_and_accuracy(), "sizes": check_sizes(), "gd": check_gd(),
            "gd_defaults": check_gd_defaults()}


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        print(json.dumps(child(int(sys.argv[2]), bool(int(sys.argv[3])), float(sys.argv[4]))))
    else:
        main()
