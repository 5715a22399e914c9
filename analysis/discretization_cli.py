"""``pgflow discretization``: GD against its flow and its modified flow, from a TOML config.

Writes into the output folder (each file atomically):

``discretization.csv``
    One row per (variant, reference, step size): the error at t_end, the fitted order ± its
    standard error, the reference's estimated error and whether it is 100× below the GD errors.
``discretization.txt``
    The same table, aligned, under the provenance (problem, init, tolerances, version).
``discretization.png``
    Error at t_end against η with the fitted slopes; error over time; sharpness along GD
    against 2/η.

Exit status 0, or 1 if some reference was not 100× more accurate than the errors it measured
(tighten ``reference_rtol``).
"""

from __future__ import annotations

import csv
import io
import os
import tomllib

import numpy as np

from flows import MatrixFactorization, gradient_descent, init
from flows._io import atomic_path, save_figure
from flows.sensing import MatrixSensing
from flows.trajectory import package_version

from ._config import read_toml
from .discretization import error_vs_step
from .stability import critical_step_size, sharpness_along

DEFAULT_CONFIG = """\
# pgflow discretization: GD with several step sizes against its flow (error O(η)) and its
# modified flow (error O(η²)). Every key is optional; these are the defaults.

[problem]
kind = "factorization"     # "factorization" (½‖UVᵀ − Σ‖²) or "sensing" (Gaussian measurements)
m = 12
n = 10
rank = 2
width = 2
condition = 2.0            # σ = linspace(condition, 1, rank), so σ₁ = condition
seed = 0
measurements = 120         # sensing only: p

[init]
kind = "gaussian"          # "gaussian" or "balanced"
scale = 0.3
seed = 1

[study]
t_end = 2.0
step_sizes = [0.0625, 0.03125, 0.015625, 0.0078125]   # each must divide t_end; below 1/(4σ₁)
variants = ["simultaneous", "alternating"]             # also "scaled" (ScaledGD and its flow)
against = ["flow", "modified"]
measure = "state"          # "state" (‖x_GD − x_ref‖) or "product" (‖U Vᵀ − U_ref V_refᵀ‖_F)
reference_rtol = 1e-12
method = "DOP853"

[output]
folder = "pgflow-output/discretization"
"""

DEFAULTS = tomllib.loads(DEFAULT_CONFIG)
PREFIX = "discretization"


def load_config(path=None) -> dict:
    """The default config, overridden key by key by the TOML file at ``path`` (if given).

    Raises
    ------
    ValueError
        An unknown section or key (a typo would otherwise be silently ignored), or a bad TOML file.
    """
    config = {section: dict(values) for section, values in DEFAULTS.items()}
    if path is None:
        return config
    for section, values in read_toml(path, config).items():
        for key, value in values.items():
            if key not in config[section]:
                raise ValueError(f"config {path}: unknown key {key!r} in [{section}]; keys are "
                                 f"{sorted(config[section])}")
            config[section][key] = value
    return config


def build_problem(cfg: dict):
    """The problem and initial state described by the [problem] and [init] sections."""
    p, i = cfg["problem"], cfg["init"]
    shape = dict(m=p["m"], n=p["n"], rank=p["rank"], width=p["width"], condition=p["condition"], seed=p["seed"])
    if p["kind"] == "factorization":
        problem = MatrixFactorization.random(**shape)
    elif p["kind"] == "sensing":
        problem = MatrixSensing.random(**shape, n_measurements=p["measurements"])
    else:
        raise ValueError(f"problem.kind must be 'factorization' or 'sensing', got {p['kind']!r}")
    if i["kind"] == "gaussian":
        x0 = init.gaussian(problem, i["scale"], seed=i["seed"])
    elif i["kind"] == "balanced":
        x0 = init.balanced(problem, i["scale"], seed=i["seed"])
    else:
        raise ValueError(f"init.kind must be 'gaussian' or 'balanced', got {i['kind']!r}")
    return problem, x0


def run_study(cfg: dict) -> dict:
    """Every (variant, against) study of the config, and the sharpness along the largest-η GD runs.

    Returns
    -------
    dict with ``problem``, ``x0``, ``studies`` {(variant, against): DiscretizationStudy},
    ``sharpness`` {variant: SharpnessTrace}, ``critical_step_size``.
    """
    s = cfg["study"]
    problem, x0 = build_problem(cfg)
    for key in ("variants", "against", "step_sizes"):
        if not isinstance(s[key], list) or not s[key]:
            raise ValueError(f"study.{key} must be a non-empty list, got {s[key]!r}")
    studies = {(variant, against): error_vs_step(problem, x0, s["step_sizes"], s["t_end"], against=against,
                                                 variant=variant, measure=s["measure"],
                                                 reference_rtol=s["reference_rtol"], method=s["method"])
               for variant in s["variants"] for against in s["against"]}
    eta = max(s["step_sizes"])
    n_steps = int(round(s["t_end"] / eta))
    sharp = {variant: sharpness_along(problem, gradient_descent(problem, x0, eta, n_steps, variant=variant),
                                      every=max(1, n_steps // 50))
             for variant in s["variants"]}
    return {"problem": problem, "x0": x0, "studies": studies, "sharpness": sharp,
            "critical_step_size": critical_step_size(problem)}


COLUMNS = ("variant", "against", "measure", "step_size", "n_steps", "error_t_end", "order", "order_stderr",
           "reference_error", "reference_ok")


def table_rows(studies) -> list[dict]:
    rows = []
    for (variant, against), st in studies.items():
        for j, eta in enumerate(st.step_sizes):
            rows.append({"variant": variant, "against": against, "measure": st.measure, "step_size": eta,
                         "n_steps": st.meta["gradient_descent"][j]["n_steps"], "error_t_end": st.errors[j],
                         "order": st.order, "order_stderr": st.order_stderr,
                         "reference_error": st.reference_error[j], "reference_ok": st.reference_ok})
    return rows


def _csv_text(rows) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: repr(float(v)) if isinstance(v, (float, np.floating)) else v for k, v in row.items()})
    return buf.getvalue()


def _text_report(cfg, result, rows) -> str:
    problem = result["problem"]
    sigma1 = float(problem.target.sigma[0])
    lines = [f"pgflow discretization (version {package_version()})",
             f"problem: {problem.describe()}",
             f"init: {cfg['init']}",
             f"t_end = {cfg['study']['t_end']:g}; reference {cfg['study']['method']} at rtol "
             f"{cfg['study']['reference_rtol']:g}, checked against 100x looser",
             f"1/(4σ₁) = {0.25 / sigma1:.6g}; critical step 2/λ_max at the balanced minimum = "
             f"{result['critical_step_size']:.6g}", ""]
    head = ("variant", "against", "η", "steps", "error(t_end)", "order ± stderr", "reference error", "ok")
    body = [(r["variant"], r["against"], f"{r['step_size']:.6g}", str(r["n_steps"]), f"{r['error_t_end']:.4e}",
             f"{r['order']:.4f} ± {r['order_stderr']:.4f}", f"{r['reference_error']:.2e}",
             "yes" if r["reference_ok"] else "NO") for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    for line in (head, *body):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())
    return "\n".join(lines) + "\n"


def figure(result):
    """Error vs η (log–log, fitted slopes), error over time, sharpness along GD vs 2/η."""
    from matplotlib.figure import Figure

    studies, problem = result["studies"], result["problem"]
    fig = Figure(figsize=(14, 4), layout="constrained")
    ax_order, ax_time, ax_sharp = fig.subplots(1, 3)
    colors = {variant: f"C{i}" for i, variant in enumerate(dict.fromkeys(v for v, _ in studies))}
    for (variant, against), st in studies.items():
        line, color = ("-" if against == "flow" else "--"), colors[variant]
        ax_order.loglog(st.step_sizes, st.errors, line, marker="o", color=color,
                        label=f"{variant} vs {against}: order {st.order:.3f} ± {st.order_stderr:.3f}")
        ax_order.loglog(st.step_sizes, st.fit(st.step_sizes), ":", color=color, lw=0.8)
        # shade by log η: the largest step darkest
        shade = np.log(st.step_sizes / st.step_sizes.min()) / np.log(st.step_sizes.max() / st.step_sizes.min())
        for j, (t, err) in enumerate(zip(st.times, st.errors_over_time)):
            ax_time.semilogy(t[1:], err[1:], line, color=color, alpha=0.3 + 0.7 * shade[j],
                             label=f"{variant} vs {against}" if shade[j] == 1 else None)
    etas = np.unique(np.concatenate([st.step_sizes for st in studies.values()]))
    ax_order.set_xticks(etas, [f"{e:.3g}" for e in etas], minor=False)
    ax_order.set_xticks([], minor=True)
    ax_order.set(xlabel="step size η", ylabel="error at t_end", title="error against step size")
    ax_time.set(xlabel="time t = kη", ylabel="error", title="error over time (darker: larger η)")
    for variant, trace in result["sharpness"].items():
        ax_sharp.semilogy(trace.t, trace.sharpness, color=colors[variant],
                          label=f"{variant} GD, η = {trace.step_size:.4g}")
    eta = next(iter(result["sharpness"].values())).step_size
    ax_sharp.axhline(2.0 / eta, color="k", ls="--", lw=1, label="2/η")
    ax_sharp.axhline(2.0 * problem.target.sigma[0], color="0.6", ls=":", lw=1, label="2σ₁")
    ax_sharp.set(xlabel="time t = kη", ylabel="λ_max(∇²f)", title="sharpness along GD")
    for ax in (ax_order, ax_time, ax_sharp):
        ax.legend(fontsize=7)
    return fig


def write_outputs(cfg, result, folder) -> list[str]:
    """Write the CSV table, the text report and the PNG figure into ``folder``, each atomically."""
    rows = table_rows(result["studies"])
    paths = []
    for suffix, text in (("csv", _csv_text(rows)), ("txt", _text_report(cfg, result, rows))):
        path = os.path.join(folder, f"{PREFIX}.{suffix}")
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        paths.append(path)
    paths.append(save_figure(figure(result), os.path.join(folder, f"{PREFIX}.png")))
    return paths


def register(subparsers) -> None:
    p = subparsers.add_parser("discretization", help="GD against its flow and modified flow: error vs step size, "
                              "fitted order, sharpness; writes a table and a figure", description=__doc__)
    p.add_argument("config", nargs="?", default=None, help="TOML file overriding the defaults "
                   "(see --print-config)")
    p.add_argument("--out", default=None, help=f"output folder (default: {DEFAULTS['output']['folder']})")
    p.add_argument("--print-config", action="store_true", help="print the default config and exit")
    p.set_defaults(handler=discretization_command)


def discretization_command(args) -> int:
    if args.print_config:
        print(DEFAULT_CONFIG, end="")
        return 0
    cfg = load_config(args.config)
    result = run_study(cfg)
    rows = table_rows(result["studies"])
    paths = write_outputs(cfg, result, args.out or cfg["output"]["folder"])
    print(_text_report(cfg, result, rows), end="")
    print("wrote: " + ", ".join(paths))
    bad = [f"{v} vs {a}" for (v, a), st in result["studies"].items() if not st.reference_ok]
    if bad:
        print(f"reference not 100x more accurate than the GD errors for: {', '.join(bad)}; "
              "lower study.reference_rtol")
        return 1
    return 0
