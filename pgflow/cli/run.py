"""``pgflow run``: gradient flow and gradient descent from one start, saved with a summary figure."""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from ..analysis import setups
from ..analysis.compare import compare
from ..figures.output import save_figure
from ..flows import GradientFlow, gradient_descent, integrate
from ..flows.files import atomic_path

DEFAULTS = {"m": 40, "n": 30, "rank": 3, "width": 5, "condition": 10.0, "scale": 1e-3, "problem_seed": 0,
            "init_seed": 1, "t_end": 12.0, "method": "DOP853", "rtol": 1e-10, "atol": 1e-14, "step_size": None}
"""The run's fields (names of :data:`pgflow.analysis.setups.FIELDS`) and their defaults here."""


def register(subparsers) -> None:
    p = subparsers.add_parser("run", help="integrate a default problem with GF and GD; write results and a figure",
                              description=__doc__)
    for key, value in DEFAULTS.items():
        if key == "step_size":
            p.add_argument("--step-size", type=float, default=None, help="GD step η (default: 1/(10 σ₁))")
        else:
            p.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value,
                           help=f"{setups.FIELDS[key].help} (default: {value})")
    p.add_argument("--seed", type=int, default=None, help=argparse.SUPPRESS)  # renamed: refused with the new names
    p.add_argument("--out", default="pgflow-output", help="output folder (default: pgflow-output)")
    p.set_defaults(handler=run_command)


def run(m, n, rank, width, condition, scale, problem_seed, init_seed, t_end, method, rtol, atol, step_size=None):
    """Integrate GF and run GD (η = 1/(10σ₁) by default) from one Gaussian start.

    Returns
    -------
    problem, flow_trajectory, gd_trajectory
    """
    setup = setups.defaults(problem="factorization", m=m, n=n, rank=rank, width=width, condition=condition,
                            init="gaussian", scale=scale, problem_seed=problem_seed, init_seed=init_seed)
    setups.check_consistent(setup)
    problem = setups.build_problem(setup)
    x0 = setups.initial_state(problem, setup)
    eta = 0.1 / problem.target.sigma[0] if step_size is None else step_size
    n_steps = int(round(t_end / eta))
    provenance = {"problem_seed": problem_seed, "init_seed": init_seed, "init": f"gaussian(scale={scale:g})"}
    grid = eta * np.arange(0, n_steps + 1, max(1, n_steps // 200))
    flow = integrate(GradientFlow(problem), x0, grid[-1], method=method, rtol=rtol, atol=atol, t_eval=grid,
                     provenance=provenance)
    gd = gradient_descent(problem, x0, step_size=eta, n_steps=n_steps, save_every=max(1, n_steps // 200),
                          provenance=provenance)
    return problem, flow, gd


def summary_figure(problem, flow, gd):
    """Loss, singular values of UVᵀ, and imbalance over time for GF and GD."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 3.8), layout="constrained")
    axes = fig.subplots(1, 3)
    for run, style, label in ((flow, "-", "GF"), (gd, "--", f"GD, η = {gd.dynamics.step_size:.3g}")):
        axes[0].semilogy(run.t, run.monitors["loss"], style, label=label)
        sv = run.monitors["singular_values"][:, :problem.target.rank]
        for i in range(sv.shape[1]):
            axes[1].plot(run.t, sv[:, i], style, color=f"C{i}", label=label if i == 0 else None)
        axes[2].semilogy(run.t, np.maximum(run.monitors["imbalance_fro"], 1e-300), style, label=label)
    for s in problem.target.sigma:
        axes[1].axhline(s, color="0.7", lw=0.8, zorder=0)
    axes[0].set(xlabel="time t (GD: kη)", ylabel="loss f = ½‖UVᵀ − Σ‖²_F", title="loss")
    axes[1].set(xlabel="time t (GD: kη)", ylabel="σᵢ(UVᵀ)", title="singular values (grey: σᵢ(Σ))")
    axes[2].set(xlabel="time t (GD: kη)", ylabel="‖UᵀU − VᵀV‖_F", title="imbalance")
    for ax in axes:
        ax.legend(fontsize=8)
    return fig


def run_command(args) -> int:
    if args.seed is not None:
        raise ValueError("--seed is now --problem-seed (the target) and --init-seed (the initial state)")
    params = {k: getattr(args, k) for k in DEFAULTS}
    problem, flow, gd = run(**params)
    out = args.out
    os.makedirs(out, exist_ok=True)
    paths = [flow.save(os.path.join(out, "gradient_flow.npz")), gd.save(os.path.join(out, "gradient_descent.npz"))]
    summary = {
        "parameters": params,
        "gradient_flow": {"method": flow.stats.method, "rtol": flow.meta["rtol"], "atol": flow.meta["atol"],
                          "nfev": flow.stats.nfev, "njev": flow.stats.njev, "nlu": flow.stats.nlu,
                          "steps": flow.stats.steps, "wall_time": flow.stats.wall_time,
                          "final_loss": float(flow.monitors["loss"][-1])},
        "gradient_descent": {"step_size": gd.dynamics.step_size, "n_steps": gd.stats.steps,
                             "wall_time": gd.stats.wall_time, "final_loss": float(gd.monitors["loss"][-1])},
        "max_distance_UVt": float(np.max(compare(gd, flow).product)),
        "version": flow.meta["version"],
    }
    with atomic_path(os.path.join(out, "summary.json")) as tmp, open(tmp, "w") as fh:
        json.dump(summary, fh, indent=2)
    paths.append(os.path.join(out, "summary.json"))
    fig = summary_figure(problem, flow, gd)
    paths.append(save_figure(fig, os.path.join(out, "summary.png")))
    g, d = summary["gradient_flow"], summary["gradient_descent"]
    print(f"problem: {problem.m}×{problem.n}, rank {problem.target.rank}, width {problem.width}, "
          f"κ = {problem.target.condition:g}, init scale {params['scale']:g}, problem seed {params['problem_seed']}, "
          f"init seed {params['init_seed']}")
    print(f"gradient flow ({g['method']}, rtol {g['rtol']:g}): final loss {g['final_loss']:.3e}, "
          f"nfev {g['nfev']}, {g['wall_time']:.3f} s")
    print(f"gradient descent (η = {d['step_size']:.4g}, {d['n_steps']} steps): final loss {d['final_loss']:.3e}, "
          f"{d['wall_time']:.3f} s")
    print(f"largest ‖UVᵀ(GF) − UVᵀ(GD)‖_F on the shared grid: {summary['max_distance_UVt']:.3e}")
    print("wrote: " + ", ".join(paths))
    return 0
