"""``pgflow run``: gradient flow and gradient descent from one start, saved with a summary figure.

Writes into the output folder: ``gradient_flow.npz`` and ``gradient_descent.npz`` (the trajectories,
:meth:`pgflow.flows.Trajectory.load` reads them), ``summary.json`` and ``summary.png``.

GD's step η is ``--step-size``, or by default the largest η ≤ min(1/(5σ₁), 1/λ_max(∇²f(x₀))) that
divides ``--t-end`` into whole steps: 1/(5σ₁) keeps GD stable near the target (where λ_max = 2σ₁ <
2/η), and the sharpness at the start keeps it stable from a large start. The output says which.

If GD diverges, the gradient flow's files are still written, with GD's failure recorded in the
summary (and its trajectory up to the divergence in ``gradient_descent_partial.npz``), and the
command exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np

from ..analysis import setups
from ..analysis.compare import compare
from ..analysis.stability import sharpness
from ..figures.output import save_figure
from ..flows import DivergenceError, GradientFlow, gradient_descent, integrate
from ..flows.checks import positive, positive_int
from ..flows.descent import number_of_steps
from ..flows.files import atomic_path
from .errors import CommandFailed, check_folder

DEFAULTS = {"m": 40, "n": 30, "rank": 3, "width": 5, "condition": 10.0, "scale": 1e-3, "problem_seed": 0,
            "init_seed": 1, "t_end": 12.0, "method": "auto", "rtol": 1e-10, "atol": 1e-14, "step_size": None}
"""The run's fields (names of :data:`pgflow.analysis.setups.FIELDS`) and their defaults here."""

MAX_STEPS = 1_000_000
"""Default budget of GD steps (``--max-steps``): t_end/η beyond it is refused before anything runs."""

SAVED = 200
"""About this many saved states per trajectory."""


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def register(subparsers) -> None:
    p = subparsers.add_parser("run", help="integrate a default problem with GF and GD; write results and a figure",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for key, value in DEFAULTS.items():
        if key == "step_size":
            p.add_argument("--step-size", type=float, default=None,
                           help="GD step η (default: the largest η <= min(1/(5σ₁), 1/sharpness at x₀) that "
                                "divides --t-end)")
        else:
            p.add_argument(_option(key), type=type(value), default=value,
                           help=f"{setups.FIELDS[key].help} (default: {value})")
    p.add_argument("--max-steps", type=int, default=MAX_STEPS,
                   help=f"refuse a run of more GD steps than this (default: {MAX_STEPS})")
    p.add_argument("--seed", type=int, default=None, help=argparse.SUPPRESS)  # renamed: refused with the new names
    p.add_argument("--out", default="pgflow-output", help="output folder (default: pgflow-output)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars, even on a terminal")
    p.set_defaults(handler=run_command)


def check_parameters(params: dict) -> dict:
    """``params`` (the keys of :data:`DEFAULTS`) checked one by one, each error naming its option."""
    checked = {}
    for key, value in params.items():
        if key == "step_size":
            checked[key] = None if value is None else positive(value, "--step-size")
        else:
            checked[key] = setups.FIELDS[key].check(value, _option(key))
    setup = setups.defaults(**{k: v for k, v in checked.items() if k not in ("t_end", "step_size")},
                            problem="factorization", init="gaussian")
    setups.check_consistent(setup)
    return checked


def default_step_size(problem, x0, t_end: float) -> tuple[float, str]:
    """The default GD step and how it was chosen: the largest η ≤ min(1/(5σ₁), 1/λ_max(∇²f(x₀)))
    that divides ``t_end`` into whole steps.

    Near the target the sharpness is 2σ₁, so η ≤ 1/(5σ₁) is well inside GD's stability limit 2/λ;
    a large start can be sharper than that, and then 1/λ_max(∇²f(x₀)) bounds η.
    """
    sigma1 = float(problem.target.sigma[0])
    with np.errstate(over="ignore", invalid="ignore"):
        start = sharpness(problem, x0)
    if not np.isfinite(start):
        raise ValueError("the sharpness at the initial state is not finite: use a smaller --scale, or give "
                         "--step-size")
    if start > 5 * sigma1:
        limit, rule = 1 / start, f"1/λ_max(∇²f(x₀)) = 1/{start:.4g}"
    else:
        limit, rule = 1 / (5 * sigma1), f"1/(5σ₁) = 1/(5·{sigma1:.4g})"
    n_steps = max(1, math.ceil(t_end / limit * (1 - 1e-12)))
    return t_end / n_steps, f"the largest η <= {rule} that divides t_end = {t_end:g}"


def run(m, n, rank, width, condition, scale, problem_seed, init_seed, t_end, method, rtol, atol, step_size=None,
        max_steps=MAX_STEPS, progress: bool = False):
    """Integrate GF and run GD from one Gaussian start (``progress``: a tqdm bar for each, on stderr).

    Returns
    -------
    problem, flow_trajectory, gd_trajectory, step_rule
        ``step_rule`` says how η was chosen.

    Raises
    ------
    ValueError
        A bad parameter (naming its option), a step size that does not divide ``t_end``, or more
        than ``max_steps`` GD steps.
    pgflow.flows.DivergenceError
        GD diverged; ``.flow`` is then set to the flow's trajectory, and ``.problem``,
        ``.step_rule`` to the run's problem and step rule.
    """
    params = check_parameters(dict(m=m, n=n, rank=rank, width=width, condition=condition, scale=scale,
                                   problem_seed=problem_seed, init_seed=init_seed, t_end=t_end, method=method,
                                   rtol=rtol, atol=atol, step_size=step_size))
    max_steps = positive_int(max_steps, "--max-steps")
    setup = setups.defaults(problem="factorization", m=m, n=n, rank=rank, width=width, condition=condition,
                            init="gaussian", scale=scale, problem_seed=problem_seed, init_seed=init_seed)
    problem = setups.build_problem(setup)
    x0 = setups.initial_state(problem, setup)
    t_end = params["t_end"]
    with np.errstate(over="ignore", invalid="ignore"):  # a start too large to evaluate is refused below
        start_loss = float(problem.loss(x0))
    if not np.isfinite(start_loss):
        raise ValueError(f"--scale {scale:g}: the loss at the initial state overflows; use a smaller --scale")
    if params["step_size"] is None:
        eta, rule = default_step_size(problem, x0, t_end)
    else:
        eta, rule = params["step_size"], "--step-size"
    if t_end / eta > max_steps:  # before number_of_steps: a huge count is a budget, not a rounding, problem
        raise ValueError(f"--t-end {t_end:g} with η = {eta:.4g} takes {t_end / eta:.3g} GD steps, more than "
                         f"--max-steps {max_steps}: shorten --t-end or raise "
                         + ("--step-size or --max-steps" if rule == "--step-size" else
                            f"--max-steps (η is {rule}; --step-size sets it)"))
    n_steps = number_of_steps(eta, t_end, "--step-size")
    save_every = max(1, n_steps // SAVED)
    # GF on GD's saved times k·η (GD also saves its last step), so the two compare state by state
    grid = eta * np.array(sorted(set(range(0, n_steps + 1, save_every)) | {n_steps}), dtype=np.float64)
    provenance = {"problem_seed": problem_seed, "init_seed": init_seed, "init": f"gaussian(scale={scale:g})",
                  "step_rule": rule}
    flow = integrate(GradientFlow(problem), x0, grid[-1], method=method, rtol=rtol, atol=atol, t_eval=grid,
                     provenance=provenance, progress=progress)
    try:
        gd = gradient_descent(problem, x0, step_size=eta, n_steps=n_steps, save_every=save_every,
                              provenance=provenance, progress=progress)
    except DivergenceError as exc:
        exc.flow, exc.problem, exc.step_rule, exc.step_size = flow, problem, rule, eta
        raise
    return problem, flow, gd, rule


def summary_figure(problem, flow, gd):
    """Loss, singular values of UVᵀ, and imbalance over time for GF and GD (GD's up to where it stopped)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 3.8), layout="constrained")
    axes = fig.subplots(1, 3)
    for run, style, label in ((flow, "-", "GF"), (gd, "--", f"GD, η = {gd.dynamics.step_size:.3g}")):
        if len(run.t) == 0:
            continue
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


def _flow_summary(flow) -> dict:
    return {"method": flow.stats.method, "rtol": flow.meta["rtol"], "atol": flow.meta["atol"],
            "nfev": flow.stats.nfev, "njev": flow.stats.njev, "nlu": flow.stats.nlu, "steps": flow.stats.steps,
            "wall_time": flow.stats.wall_time, "final_loss": float(flow.monitors["loss"][-1])}


def run_command(args) -> int:
    if args.seed is not None:
        raise ValueError("--seed is now --problem-seed (the target) and --init-seed (the initial state)")
    out = args.out
    check_folder(out, "--out")  # before the work, not after it
    params = {k: getattr(args, k) for k in DEFAULTS}
    diverged = None
    try:
        problem, flow, gd, rule = run(**params, max_steps=args.max_steps,
                                      progress=sys.stderr.isatty() and not args.no_progress)
    except DivergenceError as exc:
        if not hasattr(exc, "flow"):
            raise
        diverged, problem, flow, gd, rule = exc, exc.problem, exc.flow, exc.partial, exc.step_rule
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:  # what check_folder cannot foresee (/proc, a full disk)
        raise type(exc)(f"--out {out}: cannot create the folder: {(exc.strerror or str(exc)).lower()}") from exc
    paths = [flow.save(os.path.join(out, "gradient_flow.npz"))]
    eta = gd.dynamics.step_size
    if diverged is None:
        paths.append(gd.save(os.path.join(out, "gradient_descent.npz")))
        descent = {"status": "ok", "step_size": eta, "step_rule": rule, "n_steps": gd.stats.steps,
                   "wall_time": gd.stats.wall_time, "final_loss": float(gd.monitors["loss"][-1])}
    else:
        stale = os.path.join(out, "gradient_descent.npz")
        if os.path.exists(stale):  # an earlier run's GD must not pass for this one's
            os.unlink(stale)
        if len(gd.t):
            paths.append(gd.save(os.path.join(out, "gradient_descent_partial.npz")))
        descent = {"status": "diverged", "step_size": eta, "step_rule": rule, "diverged_at_step": diverged.step,
                   "error": str(diverged)}
    summary = {"parameters": {**params, "step_size": eta}, "gradient_flow": _flow_summary(flow),
               "gradient_descent": descent,
               "max_distance_UVt": float(np.max(compare(gd, flow).product)) if diverged is None else None,
               "version": flow.meta["version"]}
    with atomic_path(os.path.join(out, "summary.json")) as tmp, open(tmp, "w") as fh:
        json.dump(summary, fh, indent=2)
    paths.append(os.path.join(out, "summary.json"))
    paths.append(save_figure(summary_figure(problem, flow, gd), os.path.join(out, "summary.png")))
    g = summary["gradient_flow"]
    print(f"problem: {problem.m}×{problem.n}, rank {problem.target.rank}, width {problem.width}, "
          f"κ = {problem.target.condition:g}, init scale {params['scale']:g}, problem seed {params['problem_seed']}, "
          f"init seed {params['init_seed']}")
    print(f"gradient flow ({g['method']}, rtol {g['rtol']:g}): final loss {g['final_loss']:.3e}, "
          f"nfev {g['nfev']}, {g['wall_time']:.3f} s")
    print(f"gradient descent: η = {eta:.4g} ({rule})")
    if diverged is None:
        print(f"gradient descent ({descent['n_steps']} steps): final loss {descent['final_loss']:.3e}, "
              f"{descent['wall_time']:.3f} s")
        print(f"largest ‖UVᵀ(GF) − UVᵀ(GD)‖_F on the shared grid: {summary['max_distance_UVt']:.3e}")
    print("wrote: " + ", ".join(paths))
    if diverged is not None:
        raise CommandFailed(f"gradient descent diverged at step {diverged.step} with η = {eta:.4g} (try a smaller "
                            f"--step-size); the gradient flow's results and the summary are in {out}")
    return 0
