"""Storage of a sweep's runs (one JSON file per run, written atomically and checksummed) and the table
assembled from them.

A run file ``<out>/runs/<run_id>.json`` holds ``run_id``, ``version`` (the code version),
``config`` (the fields that apply to the run), ``row`` and ``checksum``: the SHA-256 of the other
four. Before a sweep reuses a file it checks that the file is readable JSON of that form, that the
checksum matches (an edited number does not) and that the configuration's hash is the file's name.
A file that fails is moved to ``<out>/runs/corrupt/`` and its run computed again.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import numbers
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ...flows.checks import positive_int
from ...flows.export import require
from ...flows.files import atomic_path, remove_orphans
from ..progress import run_bar
from ..provenance import code_version
from .executors import EXECUTORS, KILLED, _available_cores, _dask, _processes, _serial
from .planning import PlannedRun, Sweep, run_id
from .schema import SEED_FIELDS, applicable

TIMING_COLUMNS = ("wall_time",)
RUNS_FOLDER = "runs"
CORRUPT_FOLDER = "corrupt"
TABLE_FILE = "table.csv"
_RECORD_KEYS = {"run_id", "version", "config", "row", "checksum"}
_STATUSES = ("ok", "failed")  # of a stored row (killed runs are not stored)


class CorruptRunFile(ValueError):
    """A run file that cannot be trusted: unreadable, not JSON, not a run record, or changed."""


def _run_path(out, rid: str) -> str:
    return os.path.join(out, RUNS_FOLDER, f"{rid}.json")


def _checksum(record: dict) -> str:
    """SHA-256 of a record's content (every key but the checksum), as canonical JSON."""
    content = {key: record[key] for key in sorted(_RECORD_KEYS - {"checksum"})}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _store(out, planned: PlannedRun, row: dict) -> None:
    record = {"run_id": planned.run_id, "version": code_version(), "config": applicable(planned.config), "row": row}
    record["checksum"] = _checksum(record)
    with atomic_path(_run_path(out, planned.run_id)) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=1)


def _read_run(path: str, rid: str) -> dict:
    """The row stored in the run file ``path`` of run ``rid``, or :class:`CorruptRunFile` saying why not."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise CorruptRunFile(f"cannot be read ({(exc.strerror or str(exc)).lower()})") from exc
    if not data.strip():
        raise CorruptRunFile("is empty")
    try:
        record = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise CorruptRunFile(f"is not valid JSON (truncated or overwritten?): {exc}") from exc
    if not isinstance(record, dict) or set(record) != _RECORD_KEYS:
        keys = sorted(record) if isinstance(record, dict) else type(record).__name__
        raise CorruptRunFile(f"is not a run record: has {keys}, not {sorted(_RECORD_KEYS)}")
    if record["checksum"] != _checksum(record):
        raise CorruptRunFile("its checksum does not match its content: it was changed after it was written")
    try:
        own = record["run_id"] == rid == run_id(record["config"])
    except Exception:  # a configuration that cannot even be hashed is not this run's
        own = False
    row = record["row"]
    if not own:
        raise CorruptRunFile("holds another run's configuration")
    if not (isinstance(row, dict) and row.get("status") in _STATUSES and isinstance(row.get("error"), str)):
        raise CorruptRunFile("its row is not a run's row")
    return row


def _set_aside(out, path: str, reason: str) -> str:
    """Move a corrupt run file to ``<out>/runs/corrupt/`` (never over an earlier one); say so."""
    folder = os.path.join(out, RUNS_FOLDER, CORRUPT_FOLDER)
    os.makedirs(folder, exist_ok=True)
    stem = os.path.splitext(os.path.basename(path))[0]
    dest, n = os.path.join(folder, f"{stem}.json"), 1
    while os.path.lexists(dest):
        dest, n = os.path.join(folder, f"{stem}.{n}.json"), n + 1
    os.replace(path, dest)
    return f"run file {path} {reason}: moved to {dest}, and the run computed again"


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
        Rows computed by this call and rows whose stored result it reused.
    corrupt : tuple of str
        One message per run file found corrupt, naming it and where it was moved; those runs were
        computed again.
    killed : tuple of str
        The names of the runs whose worker process died on each attempt ("run 3 (scale = 0.1,
        replicate 0)"); their rows have status "killed", and they are not stored.
    """

    columns: tuple
    rows: tuple
    computed: int = 0
    reused: int = 0
    corrupt: tuple = ()
    killed: tuple = ()

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
        """The table as a ``pandas.DataFrame``: one row per run in grid order, the :attr:`columns` as columns
        (needs ``pip install 'pgflow[data]'``).

        A run's missing reductions are NaN. Tidy, so the usual pivots apply: the medians of a phase
        diagram are ``frame.groupby([y, x])[value].median().unstack()`` (pandas skips NaN, i.e. failed
        runs, where :func:`phase_diagram` with ``np.median`` gives NaN).

        Returns
        -------
        pandas.DataFrame
            ``len(self)`` rows.
        """
        pd = require("pandas", "Table.to_pandas")
        return pd.DataFrame([{c: row.get(c, math.nan) for c in self.columns} for row in self.rows],
                            columns=list(self.columns))

    def axis_columns(self) -> tuple:
        """The columns the sweep's axes set: those between "run" and "replicate", in axis order."""
        columns = list(self.columns)
        return tuple(columns[columns.index("run") + 1:columns.index("replicate")])

    def to_xarray(self):
        """The table as an ``xarray.Dataset`` with the grid as dims (needs ``pip install 'pgflow[data]'``).

        One dim per axis of the sweep, named by its field, with the axis values in grid order as its
        coordinate, and ``replicate`` last; every other column is a variable over all dims (integers as
        int64, other numbers as float64 with NaN where a run lacks the column, text as objects). The fields of a zipped axis vary together:
        the first names the dim, the others are coordinates along it.
        ``ds[value].median("replicate")`` gives the numbers of :func:`phase_diagram` (transposed: its Z
        is (y, x)); xarray skips NaN (failed runs) unless ``skipna=False``.

        Returns
        -------
        xarray.Dataset
            Dims (axis₁, …, axis_A, replicate), sizes the axes' lengths and the replicates.
        """
        xr = require("xarray", "Table.to_xarray")
        axes = self.axis_columns()
        keys = {c: [json.dumps(row.get(c), sort_keys=True) for row in self.rows] for c in (*axes, "replicate")}
        # a field whose values follow one to one from the previous axis field's is on the same (zipped) axis
        groups: list = []
        for c in axes:
            if groups and _one_to_one(keys[groups[-1][0]], keys[c]):
                groups[-1].append(c)
            else:
                groups.append([c])
        dims = [g[0] for g in groups] + ["replicate"]
        levels = {d: list(dict.fromkeys(keys[d])) for d in dims}  # values in grid order
        shape = tuple(len(levels[d]) for d in dims)
        where = tuple(np.array([levels[d].index(k) for k in keys[d]], dtype=np.intp) for d in dims)
        cells = np.unique(np.ravel_multi_index(where, shape)).size if self.rows else 0
        if not self.rows or cells != len(self.rows) or math.prod(shape) != len(self.rows):
            raise ValueError(f"the table's {len(self.rows)} rows do not fill a grid of shape {shape} over {dims}")
        coords = {d: _coordinate([json.loads(k) for k in levels[d]]) for d in dims}
        for group in groups:
            for other in group[1:]:
                first = [keys[group[0]].index(k) for k in levels[group[0]]]
                coords[other] = (group[0], _coordinate([self.rows[i].get(other) for i in first]))
        variables = {}
        for c in self.columns:
            if c in coords:
                continue
            values = self.column(c)
            if all(isinstance(row.get(c), numbers.Integral) and not isinstance(row.get(c), bool) for row in self.rows):
                values = values.astype(np.int64)  # run numbers and seeds stay integers (every cell has its run)
            cube = np.empty(shape, dtype=values.dtype)
            cube[where] = values
            variables[c] = (dims, cube)
        return xr.Dataset(variables, coords=coords, attrs={"title": "pgflow sweep table", "dims": json.dumps(dims)})


def _one_to_one(a: list, b: list) -> bool:
    """Whether the values of two columns determine each other, row by row, with more than one value."""
    pairs = set(zip(a, b))
    return len(set(a)) > 1 and len(pairs) == len(set(a)) == len(set(b))


def _coordinate(values: list) -> np.ndarray:
    """An axis' values as a coordinate: numbers as numbers, anything else (lists, text) as objects."""
    if all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
        return np.asarray(values)
    out = np.empty(len(values), dtype=object)
    out[:] = [json.dumps(v) if isinstance(v, (list, dict)) else v for v in values]
    return out


def _assemble(plan, rows: dict, reused: set, corrupt: list, killed: list) -> Table:
    table = []
    for planned in plan:
        seeds = {name: planned.config[name] for name in SEED_FIELDS}
        table.append({"run": planned.index, **planned.axes, "replicate": planned.key[-1], **seeds,
                      **rows[planned.run_id], "run_id": planned.run_id})
    columns = tuple(dict.fromkeys(c for row in table for c in row))
    # timing and free text last, after the reductions' columns of every row (emergence columns vary with rank)
    tail = ("wall_time", "error", "run_id")
    columns = tuple(c for c in columns if c not in tail) + tail
    n_reused = sum(p.run_id in reused for p in plan)
    n_killed = sum(row["status"] == KILLED for row in table)
    return Table(columns, tuple(table), computed=len(plan) - n_reused - n_killed, reused=n_reused,
                 corrupt=tuple(corrupt), killed=tuple(killed))


def run_sweep(sweep: Sweep, out, *, executor: str | None = None, workers: int | None = None,
              scheduler=None, progress: bool | None = None) -> Table:
    """Run every run of ``sweep`` not yet stored under ``out``; return the whole table.

    Parameters
    ----------
    sweep : Sweep
    out : path
        Folder of the results: ``runs/<run_id>.json`` per run and ``table.csv``. Runs already there
        (same configuration, same code version) are not run again; a run file that is corrupt
        (unreadable, truncated, empty, changed by hand) is moved to ``runs/corrupt/`` and its run
        computed again (:attr:`Table.corrupt` says which). Temporary files that killed writers left
        in these folders are removed.
    executor : {"serial", "processes", "dask"}, optional
        Default: "dask" when ``scheduler`` is given, else "processes". With "processes" from a
        script, the sweep must be started under ``if __name__ == "__main__":`` (the workers re-import
        the script).
    workers : int, optional
        Local processes (default: every core this process may use). Not for "dask": a cluster
        has its own workers.
    scheduler : str or dask.distributed.Client, optional
        The scheduler's address ("tcp://host:8786") or a connected client.
    progress : bool, optional
        Show count, rate and ETA on stderr (tqdm); default: only on a terminal.

    Returns
    -------
    Table
        Every run in grid order. A run whose worker process died on both of its attempts has
        status "killed" (:attr:`Table.killed`) and is not stored: the next call tries it again.

    Raises
    ------
    MainGuardError
        "processes" started by a script's top-level code without ``if __name__ == "__main__":``.
    ConnectionError
        The Dask scheduler cannot be reached.
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
    if os.path.exists(out) and not os.path.isdir(out):
        raise NotADirectoryError(f"out {out}: is a file, not a folder")
    for folder in (out, os.path.join(out, RUNS_FOLDER)):
        remove_orphans(folder)
    plan = sweep.runs()
    runs = {p.run_id: p for p in reversed(plan)}  # one per run id, the first in grid order
    rows, corrupt, killed = {}, [], []
    for rid in dict.fromkeys(p.run_id for p in plan):  # in grid order
        path = _run_path(out, rid)
        if os.path.lexists(path):
            try:
                rows[rid] = _read_run(path, rid)
            except CorruptRunFile as exc:
                corrupt.append(_set_aside(out, path, str(exc)))
    reused = set(rows)
    pending = [p for p in plan if runs[p.run_id] is p and p.run_id not in rows]
    if pending:
        results = (_serial(pending) if executor == "serial" else _processes(pending, workers)
                   if executor == "processes" else _dask(pending, scheduler))
        with run_bar(len(pending), "sweep", progress) as bar:
            for planned, row in results:
                if row["status"] == KILLED:
                    killed.append(planned.name)
                else:
                    _store(out, planned, row)
                rows[planned.run_id] = row
                bar.update(1)
    table = _assemble(plan, rows, reused, corrupt, killed)
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
