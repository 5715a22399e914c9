"""``pgflow discretization``: GD against its flow and its modified flow, from a TOML config.

Writes into the output folder (each file atomically):

``discretization.csv``
    One row per (variant, reference, step size): the error at t_end (NaN where GD diverged), the
    fitted order ± its standard error, the local slope to the next smaller step size, the study's
    asymptotic and ok flags, the reference's estimated error and whether it is 100× below the GD
    errors.
``discretization.txt``
    The same table, aligned, under the provenance (problem, init, tolerances, version), and per
    study its local slopes and verdict.
``discretization.png``
    Error at t_end against η with the fitted slopes; error over time; sharpness along GD
    against 2/η.

Exit status 0 if every study is ok; 1, with a one-line reason, if some study is not: its local
slopes drift (not asymptotic: take the suggested smaller step sizes), a GD run diverged, or its
reference was not 100× more accurate than the errors it measured (tighten ``reference_rtol``).
"""

from __future__ import annotations

import os
import tomllib

from ..analysis import setups
from ..analysis.config import check_keys, read_toml
from ..analysis.discretization_report import discretization_report
from ..figures.output import save_figure
from ..flows.files import atomic_path

DEFAULT_CONFIG = """\
# pgflow discretization: GD with several step sizes against its flow (error O(η)) and its
# modified flow (error O(η²)). Every key is optional; these are the defaults.

[setup]                    # the fields of pgflow.analysis.setups (pgflow sweep --list-fields explains them)
problem = "factorization"  # "factorization" (½‖UVᵀ − Σ‖²) or "sensing" (Gaussian measurements)
m = 12
n = 10
rank = 2
width = 2
condition = 2.0            # σ = linspace(condition, 1, rank), so σ₁ = condition
n_measurements = 120       # sensing only: p
problem_seed = 0
init = "gaussian"          # "gaussian" or "balanced"
scale = 0.3
init_seed = 1

[study]
t_end = 2.0
step_sizes = [0.0625, 0.03125, 0.015625, 0.0078125]   # each must divide t_end; below 1/(4σ₁)
variants = ["simultaneous", "alternating"]             # also "scaled" (ScaledGD and its flow)
against = ["flow", "modified"]   # also "modified2": the O(η²) modified flow (error O(η³); simultaneous only)
measure = "state"          # "state" (‖x_GD − x_ref‖) or "product" (‖U Vᵀ − U_ref V_refᵀ‖_F)
reference_rtol = 1e-12
method = "DOP853"

[output]
folder = "pgflow-output/discretization"
"""

DEFAULTS = tomllib.loads(DEFAULT_CONFIG)
PREFIX = "discretization"
SETUP_FIELDS = ("problem", "m", "n", "rank", "width", "condition", "n_measurements", "problem_seed", "init", "scale",
                "init_seed")
RENAMED_SECTIONS = {"problem": "setup", "init": "setup"}


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
    data = read_toml(path, set(config) | set(RENAMED_SECTIONS))
    for old, new in RENAMED_SECTIONS.items():
        if old in data:
            raise ValueError(f"config {path}: section [{old}] is now part of [{new}], with the fields "
                             f"{', '.join(SETUP_FIELDS)}")
    for section, values in data.items():
        check_keys(values, config[section], f"config {path}: [{section}]",
                   renamed=setups.RENAMED if section == "setup" else None)
        config[section].update(values)
    return config


def build(cfg: dict):
    """The problem and initial state of the config's [setup]."""
    setup = setups.defaults(**cfg["setup"])
    if setup["problem"] not in ("factorization", "sensing"):
        raise ValueError(f"setup.problem must be 'factorization' or 'sensing', got {setup['problem']!r}")
    setups.check_consistent(setup, "[setup]")
    problem = setups.build_problem(setup)
    return problem, setups.initial_state(problem, setup)


def run_study(cfg: dict, progress: bool | None = None):
    """The :class:`~pgflow.analysis.discretization_report.DiscretizationReport` of a config (with
    progress bars on a terminal, by default)."""
    problem, x0 = build(cfg)
    s = cfg["study"]
    return discretization_report(problem, x0, step_sizes=s["step_sizes"], t_end=s["t_end"], variants=s["variants"],
                                 against=s["against"], measure=s["measure"], reference_rtol=s["reference_rtol"],
                                 method=s["method"], progress=progress)


def write_outputs(cfg, report, folder) -> list[str]:
    """Write the CSV table, the text report and the PNG figure into ``folder``, each atomically."""
    paths = []
    for suffix, text in (("csv", report.csv()), ("txt", report.text(cfg["setup"]))):
        path = os.path.join(folder, f"{PREFIX}.{suffix}")
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        paths.append(path)
    paths.append(save_figure(report.figure(), os.path.join(folder, f"{PREFIX}.png")))
    return paths


def register(subparsers) -> None:
    p = subparsers.add_parser("discretization", help="GD against its flow and modified flow: error vs step size, "
                              "fitted order, sharpness; writes a table and a figure", description=__doc__)
    p.add_argument("config", nargs="?", default=None, help="TOML file overriding the defaults "
                   "(see --print-config)")
    p.add_argument("--out", default=None, help=f"output folder (default: {DEFAULTS['output']['folder']})")
    p.add_argument("--print-config", action="store_true", help="print the default config and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bars, even on a terminal")
    p.set_defaults(handler=discretization_command)


def discretization_command(args) -> int:
    if args.print_config:
        print(DEFAULT_CONFIG, end="")
        return 0
    cfg = load_config(args.config)
    report = run_study(cfg, progress=False if args.no_progress else None)
    paths = write_outputs(cfg, report, args.out or cfg["output"]["folder"])
    print(report.text(cfg["setup"]), end="")
    print("wrote: " + ", ".join(paths))
    bad = report.not_ok()
    if bad:
        print("NOT OK: " + " | ".join(bad))     # one line: what failed, in which study, what to run instead
        return 1
    return 0
