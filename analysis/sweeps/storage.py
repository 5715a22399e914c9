"""Storage of a sweep's runs (one JSON file per run, written atomically) and the table assembled from them."""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ...flows.checks import positive_int
from ...flows.files import atomic_path
from ...flows.version import package_version
from .executors import EXECUTORS, _available_cores, _dask, _processes, _progress, _serial
from .planning import PlannedRun, Sweep
from .schema import SEED_FIELDS

TIMING_COLUMNS = ("wall_time",)
RUNS_FOLDER = "runs"
TABLE_FILE = "table.csv"


def _run_path(out, rid: str) -> str:
    return os.path.join(out, RUNS_FOLDER, f"{rid}.json")


def _store(out, planned: PlannedRun, row: dict) -> None:
    record = {"run_id": planned.run_id, "version": package_version(), "config": planned.config, "row": row}
    with atomic_path(_run_path(out, planned.run_id)) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=1)


def _stored_row(out, rid: str) -> dict:
    with open(_run_path(out, rid), encoding="utf-8") as fh:
        return json.load(fh)["row"]


def _cell(value) -> str:
    """A CSV cell that reads back to the same number: floats by repr, lists as JSON."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return json.dumps(value)
    return str(value)


@dataclass(frozen=True)
class Table:
    """The rows of a sweep, one per run in grid order.

    Attributes
    ----------
    columns : tuple of str
        "run" (grid index), the axis fields, "replicate", the three seeds, "status", the reductions'
        columns, "wall_time", "error", "run_id".
    rows : tuple of dict
        A run's missing columns (another run's emergence modes) read as NaN / empty.
    computed, reused : int
        Runs computed by this call and runs whose stored result it reused.
    """

    columns: tuple
    rows: tuple
    computed: int = 0
    reused: int = 0

    def __len__(self) -> int:
        return len(self.rows)

    def column(self, name: str) -> np.ndarray:
        """One column as an array (float64 when numeric; missing values NaN)."""
        if name not in self.columns:
            raise KeyError(f"no column {name!r}; columns are {list(self.columns)}")
        values = [row.get(name, math.nan) for row in self.rows]
        if all(isinstance(v, numbers.Real) for v in values):
            return np.asarray(values, dtype=np.float64)
        return np.asarray(values, dtype=object)

    def csv(self, timing: bool = True) -> str:
        """The table as CSV text; ``timing=False`` leaves out :data:`TIMING_COLUMNS`, so that two
        executions of one sweep give the same text, number for number."""
        columns = [c for c in self.columns if timing or c not in TIMING_COLUMNS]
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        for row in self.rows:
            writer.writerow([_cell(row[c]) if c in row else "" for c in columns])
        return buf.getvalue()

    def to_pandas(self):
        """The table as a ``pandas.DataFrame`` (needs pandas)."""
        import pandas as pd
        return pd.DataFrame([{c: row.get(c, math.nan) for c in self.columns} for row in self.rows],
                            columns=list(self.columns))


def _assemble(out, plan, computed: int) -> Table:
    rows = []
    for planned in plan:
        seeds = {name: planned.config[name] for name in SEED_FIELDS}
        rows.append({"run": planned.index, **planned.axes, "replicate": planned.key[-1], **seeds,
                     **_stored_row(out, planned.run_id), "run_id": planned.run_id})
    columns = tuple(dict.fromkeys(c for row in rows for c in row))
    # timing and free text last, after the reductions' columns of every row (emergence columns vary with rank)
    tail = ("wall_time", "error", "run_id")
    columns = tuple(c for c in columns if c not in tail) + tail
    return Table(columns, tuple(rows), computed=computed, reused=len(plan) - computed)


def run_sweep(sweep: Sweep, out, *, executor: str | None = None, workers: int | None = None,
              scheduler=None, progress: bool | None = None) -> Table:
    """Run every run of ``sweep`` not yet stored under ``out``; return the whole table.

    Parameters
    ----------
    sweep : Sweep
    out : path
        Folder of the results: ``runs/<run_id>.json`` per run and ``table.csv``. Runs already there
        (same configuration, same package version) are not run again.
    executor : {"serial", "processes", "dask"}, optional
        Default: "dask" when ``scheduler`` is given, else "processes".
    workers : int, optional
        Local processes (default: every core this process may use). Not for "dask": a cluster
        has its own workers.
    scheduler : str or dask.distributed.Client, optional
        The scheduler's address ("tcp://host:8786") or a connected client.
    progress : bool, optional
        Show count, rate and ETA on stderr (tqdm if installed); default: only on a terminal.

    Returns
    -------
    Table

    Raises
    ------
    Exception
        Whatever a run raised that is not a numerical failure (see the module docstring); the runs
        finished before it are stored.
    """
    if not isinstance(sweep, Sweep):
        raise TypeError(f"sweep must be a Sweep, got {type(sweep).__name__}")
    executor = executor or ("dask" if scheduler is not None else "processes")
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {list(EXECUTORS)}, got {executor!r}")
    if (executor == "dask") != (scheduler is not None):
        raise ValueError("scheduler (a Dask scheduler's address) goes with executor 'dask', and only with it")
    if workers is not None and executor != "processes":
        raise ValueError(f"workers applies to executor 'processes', not {executor!r}")
    workers = _available_cores() if workers is None else positive_int(workers, "workers")
    out = os.fspath(out)
    plan = sweep.runs()
    pending = [p for p in plan if not os.path.exists(_run_path(out, p.run_id))]
    if pending:
        results = (_serial(pending) if executor == "serial" else _processes(pending, workers)
                   if executor == "processes" else _dask(pending, scheduler))
        bar = _progress(len(pending), progress)
        try:
            for planned, row in results:
                _store(out, planned, row)
                bar.update(1)
        finally:
            bar.close()
    table = _assemble(out, plan, len(pending))
    with atomic_path(os.path.join(out, TABLE_FILE)) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(table.csv())
    return table


def phase_diagram(table: Table, x: str, y: str, value: str, reduce: Callable = np.median):
    """``value`` reduced over the replicates of each (x, y) cell: the numbers of a phase diagram.

    Failed runs count as NaN; ``reduce`` sees them (``np.median`` then gives NaN for the cell,
    ``np.nanmedian`` skips them).

    Returns
    -------
    xs : ndarray, shape (X,)
        The values of column ``x``, in grid order.
    ys : ndarray, shape (Y,)
    Z : ndarray, shape (Y, X)
        NaN where a cell has no runs.
    """
    for name in (x, y, value):
        if name not in table.columns:
            raise ValueError(f"no column {name!r} in the table; columns are {list(table.columns)}")
    xv, yv, v = table.column(x), table.column(y), table.column(value)
    xs, ys = (np.array(list(dict.fromkeys(values.tolist()))) for values in (xv, yv))  # in grid order
    Z = np.full((ys.size, xs.size), np.nan)
    for j, yy in enumerate(ys):
        for i, xx in enumerate(xs):
            cell = v[(xv == xx) & (yv == yy)]
            if cell.size:
                Z[j, i] = reduce(cell.astype(np.float64))
    return xs, ys, Z
