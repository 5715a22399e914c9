r"""Sweeps: grids of runs, on all local cores or a Dask cluster, resumable, nothing lost.

A sweep is a *base* run configuration, a grid of *axes* over its fields, a number of replicates per
grid cell, and a list of *reductions* that turn each run into a row of named numbers.

Runs
    A run configuration is a flat dict over :data:`FIELDS`: the fields of
    :data:`pgflow.analysis.setups.FIELDS` (problem sizes, rank, width, condition, measurements,
    noise, init scale, dynamics, method and tolerances, GD step size and variant, perturbation
    level ρ, seeds, ...) and the reductions' parameters. :func:`run_one` builds the problem and the
    initial state and runs the dynamics with :mod:`pgflow.analysis.setups` (gradient flow, the
    perturbed gradient flows with a random perturbation of level ρ, the modified flow, or gradient
    descent, perturbed when ρ or ξ₀ > 0), and applies the reductions. It is a module-level function
    of a dict, so it pickles to local processes and to Dask workers.
Grid
    Product axes vary one field each; a zipped axis varies several fields together (equal lengths).
    Runs are ordered with the last axis fastest and the replicate index innermost.
Seeds
    The three seeds (problem, init, perturbation) of run (i₁, …, i_A, replicate) are the first
    three 32-bit words of ``SeedSequence(seed).spawn(·)[i₁].spawn(·)[i₂]…[replicate]``. Keying by the grid *position*
    rather than the flat run number means that appending values to an axis, or raising
    ``replicates``, leaves every existing run — and its stored result — as it was. The resolved
    seeds are plain integers, recorded in the run's configuration and its row: the run
    reproduces alone, bit for bit, with ``run_one(config)``. A seed field set to an integer (in the
    base or on an axis) is used as given instead.
Storage
    Each finished run is written atomically to ``<out>/runs/<run_id>.json``: the fields of its
    configuration that apply to it (:func:`applicable`: a GF run's file has no ``step_size``, an
    unperturbed run's no ``rho`` or ``perturbation_*``), its row, and a SHA-256 checksum of both.
    ``run_id`` is a hash of those fields and the code version (the package version and a hash of
    the library's sources), so runs that differ only in fields that do not apply share one file,
    a re-run skips runs whose file exists, and a changed configuration never meets a stale result.
    A killed sweep loses only the runs in flight: a kill in the middle of a write leaves at most a
    hidden ``.tmp-*`` file, never read and removed by the next write into that folder. Before a
    stored run is reused its file is checked; a corrupt one (unreadable, truncated, empty, not a
    run record, edited by hand, another run's) is moved to ``<out>/runs/corrupt/``, named in
    :attr:`Table.corrupt`, and its run computed again. The table (``<out>/table.csv``, and a
    pandas DataFrame when pandas is installed) is assembled from those files.
Failures
    A run whose dynamics fail numerically (diverging GD, a failed solve, a singular matrix) is
    stored with ``status = "failed"``, its error message and NaN reductions, and the sweep goes
    on. A run whose worker process dies (killed, out of memory, a crash in native code:
    ``BrokenProcessPool``; ``KilledWorker`` on Dask) is run again once; if it dies again it gets
    ``status = "killed"``, is named in :attr:`Table.killed` and is not stored (the next call
    tries it again), and the other runs go on. Any other exception is a bug or a bad
    configuration: it stops the sweep (the runs already stored are kept). Configuration errors
    are caught before anything runs, naming the field.
Executors
    "serial" (in this process), "processes" (default; one single-process ``concurrent.futures``
    pool per worker with the forkserver or spawn start method, all cores, so that a dead worker
    costs only its own run) and "dask" (``dask.distributed.Client`` at a scheduler address;
    ``pip install .[cluster]``; an unreachable address raises ConnectionError at once). Every run
    limits BLAS to one thread, in every executor, so the executors compute the same numbers and
    do not oversubscribe the cores. The worker processes re-import the script that started the
    sweep, so a script must start it under ``if __name__ == "__main__":`` (:class:`MainGuardError`
    says so otherwise). Progress (count, rate, ETA) is a tqdm bar on stderr, by default only on a
    terminal.
Timing
    ``wall_time`` (seconds of the whole run, in the worker) is the only column that differs from one
    execution to the next; it is listed in :data:`TIMING_COLUMNS` and left out by
    ``Table.csv(timing=False)``.

The package's modules: :mod:`.schema` (fields, TOML sections), :mod:`.reductions` (reductions and
:func:`run_one`), :mod:`.planning` (:class:`Sweep`), :mod:`.executors` and :mod:`.storage` (run files,
:class:`Table`, :func:`run_sweep`).

Examples
--------
>>> import tempfile
>>> sweep = Sweep(base={"m": 6, "n": 5, "rank": 2, "width": 2, "t_end": 30.0},
...               grid={"scale": [1e-3, 1e-1]}, replicates=2, reductions=("recovery_error", "nfev"))
>>> table = run_sweep(sweep, tempfile.mkdtemp(), executor="serial")
>>> len(table), table.columns[:4]
(4, ('run', 'scale', 'replicate', 'problem_seed'))
>>> bool(np.all(table.column("recovery_error") < 1e-3))
True
"""

from .executors import ATTEMPTS, EXECUTORS, KILLED, MainGuardError
from .planning import PlannedRun, Sweep, load_sweep, run_id
from .reductions import DEFAULT_REDUCTIONS, FAILURES, REDUCTIONS, Reduction, RunResult, run_one
from .schema import (EXAMPLES, FIELDS, SECTIONS, SEED_FIELDS, SPAWN, SWEEP_KEYS, applicable, complete, example_path,
                     read_config)
from .storage import CORRUPT_FOLDER, TABLE_FILE, TIMING_COLUMNS, CorruptRunFile, Table, phase_diagram, run_sweep

__all__ = ["ATTEMPTS", "CORRUPT_FOLDER", "CorruptRunFile", "DEFAULT_REDUCTIONS", "EXAMPLES", "EXECUTORS", "FAILURES",
           "FIELDS", "KILLED", "MainGuardError", "PlannedRun", "REDUCTIONS", "Reduction", "RunResult", "SECTIONS",
           "SEED_FIELDS", "SPAWN", "SWEEP_KEYS", "Sweep", "TABLE_FILE", "TIMING_COLUMNS", "Table", "applicable",
           "complete", "example_path", "load_sweep", "phase_diagram", "read_config", "run_id", "run_one", "run_sweep"]
