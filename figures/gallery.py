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

Cache. compute()'s arrays are stored as ``<cache>/<NAME>-<key>.npz`` (atomically), the key being
the SHA-256 of the config (JSON, sorted keys), the package version and the script's own source,
so a changed config, version or computation never reuses stale data. Re-rendering from the cache
is what makes a figure whose data holds wall times (figure 7) byte-identical from run to run; the
other figures are byte-identical even when recomputed (tests check both).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import inspect
import json
import os
import sys
import time
import zipfile
from dataclasses import dataclass

import numpy as np

from ..analysis.provenance import code_version
from ..flows.files import atomic_path
from . import style
from .output import save_figure

# Every figure of the gallery, in order: ``pgflow figures --only N`` takes the 1-based position.
FIGURES = ("fig1_incremental", "fig2_discretization", "fig3_imbalance", "fig4_perturbed", "fig5_ye_du",
           "fig6_sensing", "fig7_solvers", "fig8_edge_of_stability")
FORMATS = ("png", "pdf")
DEFAULT_OUT = "figures"
CACHE_FOLDER = ".cache"   # inside the output folder unless told otherwise


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


@dataclass(frozen=True)
class Rendered:
    """What :func:`render` did: the files written, whether the data was cached, and the times taken."""

    paths: tuple
    cached: bool
    compute_time: float
    plot_time: float


def render(figure, out: str = DEFAULT_OUT, *, quick: bool = False, cache: str | None = "default",
           formats=FORMATS) -> Rendered:
    """Compute (or load) a figure's data, plot it and write ``<out>/<NAME>.png`` and ``.pdf``.

    Parameters
    ----------
    figure : int, str or module
        See :func:`module`.
    out : str
        Output folder (created if needed).
    quick : bool
        Use the script's ``QUICK`` config (tiny sizes, for tests and a first look).
    cache : str or None
        Cache folder; "default" is ``<out>/.cache``; None computes afresh and stores nothing.
    formats : sequence of str
        File types to write (each costs a full draw of the figure).
    """
    script = module(figure)
    config = config_of(script, quick)
    cache = os.path.join(out, CACHE_FOLDER) if cache == "default" else cache
    start = time.perf_counter()
    data, cached = data_for(script, config, cache)
    mid = time.perf_counter()
    with style.context():
        fig = script.plot(data, config)
        paths = tuple(save_figure(fig, os.path.join(out, f"{script.NAME}.{fmt}")) for fmt in formats)
    return Rendered(paths=paths, cached=cached, compute_time=mid - start, plot_time=time.perf_counter() - mid)


def render_all(figures=None, out: str = DEFAULT_OUT, *, quick: bool = False, cache: str | None = "default",
               stream=None) -> list[Rendered]:
    """:func:`render` each figure (default: all, in order), printing one line per figure as it goes."""
    stream = sys.stdout if stream is None else stream
    scripts = [module(f) for f in (FIGURES if figures is None else figures)]
    results, start = [], time.perf_counter()
    for i, script in enumerate(scripts, 1):
        print(f"[{i}/{len(scripts)}] {script.NAME}: {script.TITLE} ...", end="", file=stream, flush=True)
        r = render(script, out, quick=quick, cache=cache)
        how = "data from cache" if r.cached else f"computed in {r.compute_time:.1f} s"
        print(f" {how}, drawn in {r.plot_time:.1f} s", file=stream, flush=True)
        results.append(r)
    print(f"{len(results)} figure(s) in {time.perf_counter() - start:.1f} s, written to {out}/ as "
          f"{' and '.join(f.upper() for f in FORMATS)}", file=stream, flush=True)
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--quick, --out, --cache and --no-cache, shared by ``pgflow figures`` and every script's main."""
    parser.add_argument("--quick", action="store_true", help="tiny sizes: the whole gallery in seconds")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: ./{DEFAULT_OUT})")
    parser.add_argument("--cache", default="default", help=f"data cache folder (default: OUT/{CACHE_FOLDER})")
    parser.add_argument("--no-cache", action="store_true", help="recompute everything and store nothing")


def cache_argument(args) -> str | None:
    return None if args.no_cache else args.cache


def main_for(module_name: str):
    """The ``main(argv=None)`` of a figure script, which renders that one figure from the command line:
    ``main = gallery.main_for(__name__)``."""
    def main(argv=None) -> int:
        script = sys.modules[module_name]
        parser = argparse.ArgumentParser(prog=f"python -m {script.__spec__.name}", description=script.__doc__,
                                         formatter_class=argparse.RawDescriptionHelpFormatter)
        add_arguments(parser)
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        render_all([script], args.out, quick=args.quick, cache=cache_argument(args))
        return 0
    return main
