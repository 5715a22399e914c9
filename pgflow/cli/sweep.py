"""``pgflow sweep``: a grid of runs from a TOML config, on all local cores or a Dask cluster.

CONFIG is a TOML file, or the name of an example shipped with pgflow (``figure6``: recovery error
of matrix sensing against the number of measurements and the init scale). Its sections:

``[sweep]``
    ``seed`` (root of every run's seeds), ``replicates`` (runs per grid cell), ``reductions``.
``[base]``
    Fields of every run (``--list-fields`` prints them); unset fields keep their defaults.
``[grid]``
    Product axes: ``field = [values]``.
``[[zip]]``
    A zipped axis (repeatable): ``field = [values]`` lines of equal length, varied together.
``[output]``
    ``folder``.
``[plot]``
    Optional phase diagram of ``value`` over axes ``x`` and ``y``, reduced over replicates by
    ``reduce`` ("median", "mean", "min", "max"), with a logarithmic colour scale if ``log_value``.

Writes into the output folder: ``runs/<run id>.json`` per run, atomically and with a checksum as
each finishes (a re-run skips them, so an interrupted sweep resumes where it stopped; a corrupt or
hand-edited one is moved to ``runs/corrupt/`` and its run computed again); ``table.csv``, every run
in grid order; and with [plot], ``phase_diagram.png``. Failed runs (diverging GD, failed solves)
are rows with status "failed" and their error; they do not stop the sweep. A run whose worker
process dies (killed, out of memory) is run once more; if it dies again it is reported by name, the
other runs go on, and the command exits with status 1 (run it again to retry that run).
"""

from __future__ import annotations

import argparse
import json
import os
import textwrap

import numpy as np

from ..analysis.config import check_keys, read_bytes
from ..analysis.sweeps import (DEFAULT_REDUCTIONS, EXAMPLES, EXECUTORS, FIELDS, REDUCTIONS, SWEEP_KEYS, Sweep, example_path,
                               phase_diagram, read_config, run_sweep)
from ..analysis.text import table
from ..figures.output import save_figure
from ..flows.checks import positive_int
from .errors import CommandFailed, check_folder

REDUCERS = {"median": np.median, "mean": np.mean, "min": np.min, "max": np.max}
PLOT_DEFAULTS = {"x": None, "y": None, "value": "recovery_error", "reduce": "median", "log_value": True, "title": ""}
PLOT_FILE = "phase_diagram.png"


def config_path(config: str) -> str:
    """A TOML path, or the path of the shipped example of that name."""
    if config in EXAMPLES and not os.path.exists(config):
        return example_path(config)
    if not os.path.exists(config) and os.sep not in config and not config.endswith(".toml"):
        raise FileNotFoundError(f"config {config}: no such file, and no shipped example of that name (the "
                                f"examples are {', '.join(EXAMPLES)})")
    return config


def plot_options(config: dict, sweep: Sweep, source: str) -> dict | None:
    """The [plot] section with its defaults, or None without one."""
    if "plot" not in config:
        return None
    check_keys(config["plot"], PLOT_DEFAULTS, f"{source}: [plot]")
    options = {**PLOT_DEFAULTS, **config["plot"]}
    axes = list(sweep.axis_fields)
    for key in ("x", "y"):
        if options[key] not in axes:
            raise ValueError(f"{source}: plot.{key} must be one of the axis fields {axes}, got {options[key]!r}")
    if options["reduce"] not in REDUCERS:
        raise ValueError(f"{source}: plot.reduce must be one of {list(REDUCERS)}, got {options['reduce']!r}")
    return options


def figure(xs, ys, Z, options: dict):
    """The phase diagram: one cell per (x, y) value pair, coloured by the reduced value."""
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.2 * xs.size + 2.5, 0.7 * ys.size + 1.8), layout="constrained")
    ax = fig.subplots()
    finite = Z[np.isfinite(Z) & (Z > 0)] if options["log_value"] else Z[np.isfinite(Z)]
    norm = LogNorm(finite.min(), finite.max()) if options["log_value"] and finite.size else None
    image = ax.imshow(Z, origin="lower", aspect="auto", norm=norm, cmap="viridis")
    for (j, i), z in np.ndenumerate(Z):  # dark text on viridis's light (yellow) end, light text elsewhere
        ax.text(i, j, f"{z:.2g}", ha="center", va="center", fontsize=7,
                color="k" if np.isfinite(z) and image.norm(z) > 0.6 else "w")
    ax.set_xticks(range(xs.size), [_label(v) for v in xs])
    ax.set_yticks(range(ys.size), [_label(v) for v in ys])
    ax.set(xlabel=options["x"], ylabel=options["y"], title=options["title"] or None)
    fig.colorbar(image, ax=ax, label=f"{options['value']} ({options['reduce']} over replicates)")
    return fig


def _label(value) -> str:
    """An axis value as a tick label: numbers compactly, anything else (a method's name) as it is."""
    return f"{value:g}" if isinstance(value, (int, float, np.number)) else str(value)


def _text_grid(xs, ys, Z, options) -> str:
    head = [f"{options['y']} \\ {options['x']}"] + [_label(v) for v in xs]
    body = [[_label(y)] + ["-" if np.isnan(z) else f"{z:.3g}" for z in row] for y, row in zip(ys, Z)]
    text = table(head, body, align=">" * len(head))
    if np.isnan(Z).any():
        text += f"\n- : no finite {options['value']} in the cell (every run of it failed or is missing)"
    return text


def register(subparsers) -> None:
    p = subparsers.add_parser("sweep", help="a grid of runs from a TOML config, on local cores or a Dask "
                              "cluster; resumable", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", help=f"TOML file, or a shipped example: {', '.join(EXAMPLES)}")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run on the Dask cluster with this scheduler (needs pip install 'pgflow[cluster]')")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="local processes (default: all cores)")
    p.add_argument("--executor", choices=EXECUTORS, default=None,
                   help="default: dask with --scheduler, else processes")
    p.add_argument("--out", default=None, help="output folder (default: [output] folder of the config)")
    p.add_argument("--no-progress", action="store_true", help="no progress line, even on a terminal")
    p.add_argument("--print-config", action="store_true", help="print the config file and exit")
    p.add_argument("--list-fields", action="store_true",
                   help="print every field with its default (a [base] section) and the reductions, and exit")
    p.set_defaults(handler=sweep_command)


GROUPS = {
    "problem": ("problem", "m", "n", "rank", "width", "condition", "n_measurements", "observed", "noise"),
    "initial state": ("init", "scale"),
    "dynamics": ("dynamics", "t_end", "method", "rtol", "atol", "step_size", "variant", "save_every"),
    "perturbation (dynamics pgf_residual, pgf_additive; gd when rho or xi0 > 0)":
        ("rho", "xi0", "perturbation_interval", "perturbation_norm"),
    "parameters of the reductions": ("eps", "fraction", "order_step_sizes"),
    "seeds": ("problem_seed", "init_seed", "perturbation_seed"),
}
"""The sections of ``--list-fields``: title -> fields (a field not listed goes under "other")."""

SWEEP_DEFAULTS = {"seed": 0, "replicates": 1}
SWEEP_HELP = {"seed": "the root seed of every \"spawn\" seed", "replicates": "runs per grid cell"}


def _comment(text: str, indent: str = "# ") -> list[str]:
    return textwrap.wrap(text, width=100, initial_indent=indent, subsequent_indent=indent)


def fields_text() -> str:
    """Every run field with its default and what it means, as a valid TOML config (its [base] and
    [sweep] sections), and the reductions."""
    lines = _comment("Every field of a sweep's runs at its default, and what it means. Set fields in [base], "
                     "or vary them on an axis: [grid] field = [values], or a [[zip]] of fields varied "
                     "together. A run file keeps only the fields that apply to its run (a GF run has no "
                     "step_size). This text is itself a valid config.") + ["", "[base]"]
    listed = [name for names in GROUPS.values() for name in names]
    groups = {**GROUPS, "other": tuple(name for name in FIELDS if name not in listed)}
    for title, names in groups.items():
        names = [name for name in names if name in FIELDS]
        if not names:
            continue
        lines += ["", f"# --- {title} ---"]
        width = max(len(f"{name} = {json.dumps(FIELDS[name].default)}") for name in names)
        for name in names:
            assignment = f"{name} = {json.dumps(FIELDS[name].default)}"
            help_lines = textwrap.wrap(FIELDS[name].help, width=max(40, 100 - width - 4))
            lines.append(f"{assignment:<{width}}  # {help_lines[0]}")
            lines += [f"{'':<{width}}  # {line}" for line in help_lines[1:]]
    lines += ["", "[sweep]"]
    for key in SWEEP_KEYS:
        if key in SWEEP_DEFAULTS:
            lines.append(f"{key + ' = ' + str(SWEEP_DEFAULTS[key]):<14}  # {SWEEP_HELP[key]}")
    lines.append("# reductions: each adds its columns to the table (default: " + ", ".join(DEFAULT_REDUCTIONS)
                 + ")")
    width = max(map(len, REDUCTIONS))
    for name, reduction in REDUCTIONS.items():
        text = textwrap.wrap(reduction.help, width=100 - width - 6)
        lines += [f"#   {name:<{width}}  {text[0]}"] + [f"#   {'':<{width}}  {line}" for line in text[1:]]
    lines.append(f"reductions = {json.dumps(list(REDUCTIONS))}")
    return "\n".join(lines) + "\n"


def sweep_command(args) -> int:
    if args.list_fields:
        print(fields_text(), end="")
        return 0
    if args.config is None:
        raise ValueError("give a CONFIG: a TOML file, or a shipped example: " + ", ".join(EXAMPLES))
    path = config_path(args.config)
    if args.print_config:
        print(read_bytes(path).decode("utf-8", errors="replace"), end="")
        return 0
    workers = None if args.workers is None else positive_int(args.workers, "--workers")
    config = read_config(path)
    source = f"config {path}"
    sweep = Sweep.from_config(config, source=source)
    output = config.get("output", {})
    check_keys(output, ("folder",), f"{source}: [output]")
    stem = os.path.splitext(os.path.basename(path))[0]
    out = args.out or output.get("folder", os.path.join("pgflow-output", stem))
    if not isinstance(out, str) or not out:
        raise ValueError(f"{source}: output.folder must be a folder name, got {out!r}")
    plot = plot_options(config, sweep, source)
    check_folder(out, "--out" if args.out else f"{source}: output.folder")
    try:
        table = run_sweep(sweep, out, executor=args.executor, workers=workers, scheduler=args.scheduler,
                          progress=False if args.no_progress else None)
    except ConnectionError as exc:  # name the option the address came from
        raise ConnectionError(f"--scheduler: {exc}") from exc
    for note in table.corrupt:
        print(f"corrupt {note}")
    failed = [row for row in table.rows if row["status"] == "failed"]
    print(f"sweep {path}: {len(table)} runs ({table.computed} computed, {table.reused} already stored), "
          f"{len(table) - len(failed) - len(table.killed)} ok, {len(failed)} failed"
          + (f", {len(table.killed)} killed" if table.killed else ""))
    for row in failed[:5]:
        print(f"  run {row['run']} failed: {row['error']}")
    paths = [os.path.join(out, "table.csv")]
    if plot is not None:
        xs, ys, Z = phase_diagram(table, plot["x"], plot["y"], plot["value"], REDUCERS[plot["reduce"]])
        print(f"{plot['value']}, {plot['reduce']} over replicates:")
        print(_text_grid(xs, ys, Z, plot))
        paths.append(save_figure(figure(xs, ys, Z, plot), os.path.join(out, PLOT_FILE)))
    print("wrote: " + ", ".join(paths) + f" and {len(table) - len(table.killed)} run files in "
          f"{os.path.join(out, 'runs')}")
    if table.killed:
        raise CommandFailed(f"{len(table.killed)} run(s) killed twice, not stored: {'; '.join(table.killed)} "
                            "(their worker process died: killed or out of memory); run the command again to retry "
                            "them")
    return 0
