"""Run the figure scripts: config → cached data → figure → PNG + PDF, with progress.

A figure script is a module with

``NAME``, ``TITLE``
    File stem (``fig1_incremental``) and a one-line title.
``CONFIG``, ``QUICK``
    The full config (a JSON-able dict, ``seed`` included) and the keys ``--quick`` overrides.
``compute(config, rng) -> dict of str -> ndarray``
    All the numerics; ``rng = numpy.random.default_rng(config["seed"])``.
``plot(data, config) -> matplotlib.figure.Figure``
    Matplotlib only (the style is applied around it).
``main(argv=None)``
    ``main = gallery.main_for(__name__)``: ``python -m figures.fig1_incremental [--quick] [--out DIR]``.

``MEASURED`` (optional, default False)
    True when compute() measures this machine (figure 7's wall times) rather than computing numbers
    that are the same everywhere.

Cache. compute()'s arrays are stored as ``<cache>/<NAME>-<key>.npz`` (atomically), the key being
the SHA-256 of the config (JSON, sorted keys), the package version and the script's own source,
so a changed config, version or computation never reuses stale data. The figures that compute are
byte-identical even when recomputed (tests check this).

Measurements. A ``MEASURED`` figure's data is not recomputed: it is drawn from a stored measurement,
``<out>/data/<NAME>.npz`` or else the copy shipped with the package (``figures/data/`` of a
checkout, committed), as long as that measurement was taken with the same config and the same
compute() (both are stamped in the file). So ``pgflow figures`` from a clean checkout rewrites figure
7 with the committed wall times, byte for byte, and changes no tracked file. ``remeasure=True``
(``python -m pgflow.figures.fig7_solvers --remeasure``) measures afresh and stores the measurement in
``<out>/data/``, which for the default output folder of a checkout is the committed file. A config
with no stored measurement (``--quick``, or an edited config) is measured and cached like any other.

Quick runs. ``--quick`` (tiny sizes) writes to its own folder, ``figures/quick/`` (ignored by git),
unless ``--out`` says otherwise, and stamps "quick" on every image, so that a smoke run never
overwrites or passes for the gallery.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import inspect
import io
import json
import os
import platform
import sys
import textwrap
import time
import tokenize
import zipfile
from dataclasses import dataclass

import numpy as np

from ..analysis.provenance import code_version
from ..flows.files import atomic_path
from . import style
from .output import save_figure

# Every figure of the gallery, in order: ``pgflow figures --only N`` takes the 1-based position.
FIGURES = ("fig1_incremental", "fig2_discretization", "fig3_imbalance", "fig4_perturbed", "fig5_ye_du",
           "fig6_sensing", "fig7_solvers", "fig8_edge_of_stability", "fig9_balancing")
FORMATS = ("png", "pdf")
DEFAULT_OUT = "figures"
CACHE_FOLDER = ".cache"   # inside the output folder unless told otherwise
QUICK_FOLDER = "quick"    # inside DEFAULT_OUT: where --quick writes unless told otherwise
DATA_FOLDER = "data"      # measurements (MEASURED figures): inside the output folder and the package
PACKAGED_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), DATA_FOLDER)
# The keys of a stored measurement that are not compute()'s arrays (compute's keys never start with "_").
_STAMP, _ABOUT = "_stamp", "_about"


def module(figure):
    """The script of a figure given by number (1-based), name (``fig3_imbalance``) or module."""
    if inspect.ismodule(figure):
        return figure
    if isinstance(figure, int) or (isinstance(figure, str) and figure.isdigit()):
        i = int(figure)
        if not 1 <= i <= len(FIGURES):
            raise ValueError(f"figure numbers run from 1 to {len(FIGURES)}, got {i}")
        figure = FIGURES[i - 1]
    if figure not in FIGURES:
        raise ValueError(f"unknown figure {figure!r}; the figures are {', '.join(FIGURES)}")
    return importlib.import_module(f"{__package__}.{figure}")


def config_of(script, quick: bool = False) -> dict:
    """The script's config, with its ``QUICK`` overrides applied when ``quick``."""
    return {**script.CONFIG, **(script.QUICK if quick else {})}


def cache_key(script, config: dict) -> str:
    """SHA-256 (hex, 16 digits) of the config, the library's code version and the script's source."""
    source = inspect.getsource(script)
    blob = json.dumps({"figure": script.NAME, "config": config, "version": code_version(),
                       "source": hashlib.sha256(source.encode()).hexdigest()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def output_folder(out: str | None, quick: bool = False) -> str:
    """The output folder: ``out`` when given, else ./figures, or ./figures/quick for a quick run."""
    if out is not None:
        return os.fspath(out)
    return os.path.join(DEFAULT_OUT, QUICK_FOLDER) if quick else DEFAULT_OUT


def _load(path) -> dict | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):  # missing or unreadable: compute afresh
        return None


def _store(path, data: dict) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **data)


def data_for(script, config: dict, cache: str | None = None) -> tuple[dict, bool]:
    """compute()'s arrays for ``config``, from the cache folder when it holds them.

    Returns
    -------
    data : dict of str -> ndarray
    cached : bool
        Whether the data came from the cache.
    """
    path = None if cache is None else os.path.join(cache, f"{script.NAME}-{cache_key(script, config)}.npz")
    if path is not None and (data := _load(path)) is not None:
        return data, True
    data = script.compute(config, np.random.default_rng(config["seed"]))
    bad = [k for k, v in data.items() if not isinstance(v, np.ndarray)]
    if bad:
        raise TypeError(f"{script.NAME}.compute must return arrays only; not arrays: {bad}")
    if path is not None:
        _store(path, data)
    return data, False


def code_text(fn) -> str:
    """The source of a function without its comments and blank lines: what it computes, so that
    editing a comment does not make a stored measurement stale."""
    source = textwrap.dedent(inspect.getsource(fn))
    lines = source.splitlines()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            row, col = token.start
            lines[row - 1] = lines[row - 1][:col]
    return "\n".join(line.rstrip() for line in lines if line.strip())


def measurement_stamp(script, config: dict) -> str:
    """What a stored measurement must have been taken with to be drawn for ``config``: the figure,
    the config and the code of compute() (:func:`code_text`), as JSON. Not the library's version: a
    measurement stays fixed while the library changes, until it is re-measured."""
    compute = hashlib.sha256(code_text(script.compute).encode()).hexdigest()
    return json.dumps({"figure": script.NAME, "config": config, "compute": compute}, sort_keys=True)


def measurement_paths(script, out: str) -> list[str]:
    """Where a stored measurement of ``script`` is looked for, in order: ``<out>/data/``, then the
    package's own ``data/`` (the committed measurement, shipped as package data)."""
    paths = [os.path.join(out, DATA_FOLDER, f"{script.NAME}.npz"), os.path.join(PACKAGED_DATA, f"{script.NAME}.npz")]
    return list(dict.fromkeys(os.path.abspath(p) for p in paths))


def stored_measurement(script, config: dict, out: str) -> tuple[dict | None, str | None]:
    """The stored measurement of a ``MEASURED`` figure for ``config``, and its path; (None, None)
    when no file of :func:`measurement_paths` was taken with this config and compute()."""
    stamp = measurement_stamp(script, config)
    for path in measurement_paths(script, out):
        data = _load(path)
        if data is not None and _STAMP in data and str(data[_STAMP]) == stamp:
            return {k: v for k, v in data.items() if not k.startswith("_")}, path
    return None, None


def store_measurement(script, config: dict, data: dict, out: str) -> str:
    """Write ``data`` as the measurement of ``script`` for ``config`` to ``<out>/data/<NAME>.npz``,
    stamped (:func:`measurement_stamp`) and with where and when it was taken; return the path."""
    about = {"measured": time.strftime("%Y-%m-%d"), "machine": platform.machine(), "cpus": os.cpu_count(),
             "python": platform.python_version(), "numpy": np.__version__, "code": code_version()}
    path = os.path.join(out, DATA_FOLDER, f"{script.NAME}.npz")
    _store(path, {**data, _STAMP: np.array(measurement_stamp(script, config)),
                  _ABOUT: np.array(json.dumps(about, sort_keys=True))})
    return path


@dataclass(frozen=True)
class Rendered:
    """What :func:`render` did: the files written, where the data came from, and the times taken.

    Attributes
    ----------
    paths : tuple of str
        The files written, one per format.
    cached : bool
        The data came from the cache.
    compute_time, plot_time : float
        Seconds spent computing (or loading) the data and drawing and writing the figure.
    measurement : str, optional
        The stored measurement drawn (``MEASURED`` figures), or the one just stored by a re-measurement.
    """

    paths: tuple
    cached: bool
    compute_time: float
    plot_time: float
    measurement: str | None = None


def _stamp_quick(fig) -> None:
    """Mark a quick run's figure, bottom left, so that it is never taken for the gallery's."""
    fig.text(0.004, 0.006, "quick", color="#D55E00", fontsize=11, fontweight="bold", ha="left", va="bottom",
             bbox={"boxstyle": "round,pad=0.25", "facecolor": "white", "edgecolor": "#D55E00"})


def render(figure, out: str | None = None, *, quick: bool = False, cache: str | None = "default",
           formats=FORMATS, remeasure: bool = False) -> Rendered:
    """Compute (or load) a figure's data, plot it and write ``<out>/<NAME>.png`` and ``.pdf``.

    Parameters
    ----------
    figure : int, str or module
        See :func:`module`.
    out : str, optional
        Output folder (created if needed); default ./figures, or ./figures/quick when ``quick``.
    quick : bool
        Use the script's ``QUICK`` config (tiny sizes, for tests and a first look); the images are
        stamped "quick".
    cache : str or None
        Cache folder; "default" is ``<out>/.cache``; None computes afresh and stores nothing.
    formats : sequence of str
        File types to write (each costs a full draw of the figure).
    remeasure : bool
        For a ``MEASURED`` figure: measure afresh instead of drawing the stored measurement, and
        store the new one in ``<out>/data/`` (see the module docstring). No effect on the others.
    """
    script = module(figure)
    out = output_folder(out, quick)
    config = config_of(script, quick)
    cache = os.path.join(out, CACHE_FOLDER) if cache == "default" else cache
    start = time.perf_counter()
    data, cached, measurement = None, False, None
    if getattr(script, "MEASURED", False):
        if remeasure:
            data = script.compute(config, np.random.default_rng(config["seed"]))
            measurement = store_measurement(script, config, data, out)
        else:
            data, measurement = stored_measurement(script, config, out)
    if data is None:
        data, cached = data_for(script, config, cache)
    mid = time.perf_counter()
    with style.context():
        fig = script.plot(data, config)
        if quick:
            _stamp_quick(fig)
        paths = tuple(save_figure(fig, os.path.join(out, f"{script.NAME}.{fmt}")) for fmt in formats)
    return Rendered(paths=paths, cached=cached, compute_time=mid - start, plot_time=time.perf_counter() - mid,
                    measurement=measurement)


def render_all(figures=None, out: str | None = None, *, quick: bool = False, cache: str | None = "default",
               stream=None, remeasure: bool = False) -> list[Rendered]:
    """:func:`render` each figure (default: all, in order), printing one line per figure as it goes."""
    stream = sys.stdout if stream is None else stream
    out = output_folder(out, quick)
    scripts = [module(f) for f in (FIGURES if figures is None else figures)]
    results, start = [], time.perf_counter()
    for i, script in enumerate(scripts, 1):
        print(f"[{i}/{len(scripts)}] {script.NAME}: {script.TITLE} ...", end="", file=stream, flush=True)
        r = render(script, out, quick=quick, cache=cache, remeasure=remeasure)
        if r.measurement is not None:
            verb = "measured in" if remeasure else "loaded in"
            where = os.path.relpath(r.measurement)
            where = r.measurement if where.startswith("..") else where
            how = f"measurement {verb} {r.compute_time:.1f} s ({where})"
        else:
            how = "data from cache" if r.cached else f"computed in {r.compute_time:.1f} s"
        print(f" {how}, drawn in {r.plot_time:.1f} s", file=stream, flush=True)
        results.append(r)
    print(f"{len(results)} figure(s) in {time.perf_counter() - start:.1f} s, written to {out}/ as "
          f"{' and '.join(f.upper() for f in FORMATS)}", file=stream, flush=True)
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--quick, --out, --cache and --no-cache, shared by ``pgflow figures`` and every script's main."""
    parser.add_argument("--quick", action="store_true",
                        help=f"tiny sizes: the whole gallery in seconds, stamped 'quick', written to "
                             f"./{DEFAULT_OUT}/{QUICK_FOLDER} unless --out is given")
    parser.add_argument("--out", default=None,
                        help=f"output folder (default: ./{DEFAULT_OUT}, or ./{DEFAULT_OUT}/{QUICK_FOLDER} with --quick)")
    parser.add_argument("--cache", default="default", help=f"data cache folder (default: OUT/{CACHE_FOLDER})")
    parser.add_argument("--no-cache", action="store_true",
                        help="recompute everything and store nothing (a measured figure, 7, is still drawn from "
                             "its stored measurement: see python -m pgflow.figures.fig7_solvers --help)")


def cache_argument(args) -> str | None:
    return None if args.no_cache else args.cache


def main_for(module_name: str):
    """The ``main(argv=None)`` of a figure script, which renders that one figure from the command line:
    ``main = gallery.main_for(__name__)``."""
    def main(argv=None) -> int:
        script = sys.modules[module_name]
        # run as ``python -m``, the script's __name__ is "__main__": its spec has the importable name
        name = script.__spec__.name if script.__spec__ is not None else script.__name__
        parser = argparse.ArgumentParser(prog=f"python -m {name}", description=script.__doc__,
                                         formatter_class=argparse.RawDescriptionHelpFormatter)
        add_arguments(parser)
        if getattr(script, "MEASURED", False):
            parser.add_argument("--remeasure", action="store_true",
                                help=f"measure afresh and store the measurement in OUT/{DATA_FOLDER}/ "
                                     f"(default: draw the stored measurement)")
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        render_all([script], args.out, quick=args.quick, cache=cache_argument(args),
                   remeasure=getattr(args, "remeasure", False))
        return 0
    return main
