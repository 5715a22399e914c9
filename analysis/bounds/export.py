"""Reports as tidy data: one row per claim, run and saved state, written as CSV or JSON."""

from __future__ import annotations

import csv
import json
import math
import os

import numpy as np

from ...flows.files import atomic_path

TIDY_COLUMNS = ("claim", "run", "time", "lhs", "rhs", "slack", "holds", "nonsmooth")
"""Columns of :func:`tidy_rows`: the claim's label, the run's label, the saved time, both sides, the
slack (≥ 0 where the claim holds on the state), whether it holds there, and whether a one-sided
derivative was used there (a nonsmooth point)."""


def tidy_rows(reports) -> list[dict]:
    """One dict per claim, run and checked saved state (those where the claim's hypotheses hold), with
    the keys :data:`TIDY_COLUMNS`.

    Parameters
    ----------
    reports : sequence of Report

    Returns
    -------
    list of dict
        Numbers as Python floats (non-finite ones kept: NaN, ±inf), flags as bools.
    """
    rows = []
    for rep in reports:
        for s in rep.series:
            nonsmooth = s.nonsmooth if s.nonsmooth is not None else np.zeros(len(s.t), dtype=bool)
            applies = s.applies if s.applies is not None else np.ones(len(s.t), dtype=bool)
            for i in np.flatnonzero(applies):  # states outside the claim's hypotheses are not checked
                rows.append({"claim": rep.claim.label, "run": s.label, "time": float(s.t[i]), "lhs": float(s.lhs[i]),
                             "rhs": float(s.rhs[i]), "slack": float(s.slack[i]), "holds": bool(s.slack[i] >= 0),
                             "nonsmooth": bool(nonsmooth[i])})
    return rows


def _json_number(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN or infinity; the row's "holds" is false there
    return value


def write_report(reports, path) -> str:
    """Write the tidy rows of ``reports`` to ``path`` (``.csv`` or ``.json``), atomically.

    CSV: a header of :data:`TIDY_COLUMNS`, floats in full precision (``repr``), ``true``/``false``.
    JSON: a list of objects with those keys; a non-finite number is written as null.

    Returns
    -------
    str
        The path written.

    Raises
    ------
    ValueError
        ``path`` does not end in .csv or .json.
    """
    path = os.fspath(path)
    kind = os.path.splitext(path)[1].lower()
    if kind not in (".csv", ".json"):
        raise ValueError(f"--out must name a .csv or .json file, got {path!r}")
    rows = tidy_rows(reports)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        if kind == ".json":
            json.dump([{k: _json_number(v) for k, v in row.items()} for row in rows], fh, indent=1, allow_nan=False)
            fh.write("\n")
        else:
            writer = csv.writer(fh)
            writer.writerow(TIDY_COLUMNS)
            for row in rows:
                writer.writerow([("true" if row[c] else "false") if isinstance(row[c], bool)
                                 else repr(row[c]) if isinstance(row[c], float) else row[c] for c in TIDY_COLUMNS])
    return path
