"""Trajectories as tidy data: xarray Datasets, netCDF files and pandas DataFrames.

:meth:`Trajectory.to_xarray <pgflow.flows.trajectory.Trajectory.to_xarray>`,
:meth:`~pgflow.flows.trajectory.Trajectory.to_pandas` and ``Trajectory.save("run.nc")`` /
``Trajectory.load("run.nc")`` are built on this module. It works on the arrays a trajectory writes to
its ``.npz`` file (``t``, ``x``, ``meta`` — the JSON of :meth:`Trajectory.record
<pgflow.flows.trajectory.Trajectory.record>` —, ``monitor/<name>``, ``event_states/<name>``,
``error_estimate``), so a netCDF file and an ``.npz`` file hold the same things and load the same way.

The Dataset of a trajectory with T saved states:

coordinate ``time`` (T,)
    The saved times (GD: k·η).
the state
    A problem with factors has one variable per factor: ``U`` (time, row, rank) and ``V``
    (time, col, rank) for an asymmetric problem, ``X`` (time, row, rank) for a symmetric one.
    A state without factors (a plain ODE's ``y``, a user's problem's ``x``) is one variable
    (time, state).
monitors
    One variable each, (time,) or (time, ``<name>_index``) (e.g. ``singular_values``).
``error_estimate`` (time,)
    When the trajectory carries one.
``event_states_<i>`` (``event_<i>_occurrence``, state)
    The states at which the i-th event was located (the attribute ``event_states`` names the events).
attributes
    JSON text (netCDF attributes hold only numbers and strings): ``meta``, ``layout``, ``dynamics``,
    ``stats``, ``accuracy``, ``events``, and ``monitors``/``event_states`` (which variables are
    which), beside plain ones for a glance (``pgflow_version``, ``dynamics_kind``, ``method``).

pandas and xarray are optional: ``pip install 'pgflow[data]'`` (netCDF files also need an engine,
netCDF4 or h5netcdf, installed by that extra; without one, xarray writes netCDF3 through scipy).
"""

from __future__ import annotations

import importlib
import json
import os

import numpy as np

from .files import atomic_path

__all__ = ["NETCDF_SUFFIX", "ArrayFile", "arrays_from_dataset", "dataset_from_arrays", "monitors_frame",
           "read_netcdf", "require", "write_netcdf"]

NETCDF_SUFFIX = ".nc"
"""A path with this suffix is saved and loaded as netCDF; any other as ``.npz``."""

_TITLE = "pgflow trajectory"
_RECORD_ATTRS = ("meta", "layout", "dynamics", "stats", "accuracy", "events")


def require(module: str, what: str):
    """Import an optional dependency of the ``data`` extra, or raise an ImportError that says how to install it.

    Parameters
    ----------
    module : str
        "pandas" or "xarray" (or any module the extra installs).
    what : str
        What needs it, for the message ("Trajectory.to_xarray").

    Returns
    -------
    module

    Raises
    ------
    ImportError
        The module is not installed; the message names it and ``pip install 'pgflow[data]'``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{what} needs {module}, which is not installed: pip install 'pgflow[data]' "
                          f"(the optional extra with pandas, xarray and a netCDF engine)") from exc


class ArrayFile(dict):
    """Arrays by name, as ``numpy.load`` gives them for an ``.npz`` file: ``files`` lists the names,
    and it is a context manager (closing nothing), so :meth:`Trajectory.load
    <pgflow.flows.trajectory.Trajectory.load>` reads both kinds of file alike."""

    @property
    def files(self) -> list:
        return list(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _state_dims(layout) -> list[tuple[str, tuple[str, ...]]]:
    """(block name, its dims after ``time``) for every block of a trajectory's layout."""
    if len(layout) == 1 and layout[0][1][1] == 1:
        return [(layout[0][0], ("state",))]
    if len(layout) == 1:
        return [(layout[0][0], ("row", "rank"))]
    if len(layout) == 2 and layout[0][1][1] == layout[1][1][1]:
        return [(layout[0][0], ("row", "rank")), (layout[1][0], ("col", "rank"))]
    # another shape of layout (none of pgflow's problems has one): each block its own dims
    return [(name, (f"{name}_row", f"{name}_col")) for name, _ in layout]


def dataset_from_arrays(arrays: dict):
    """The xarray Dataset of a trajectory's arrays (the contents of its ``.npz`` file).

    Parameters
    ----------
    arrays : dict of str -> ndarray
        ``t`` (T,), ``x`` (T, dim), ``meta`` (0-d string: the JSON record, with ``layout``),
        ``monitor/<name>`` (T,) or (T, q), ``event_states/<name>`` (occurrences, dim),
        optionally ``error_estimate`` (T,).

    Returns
    -------
    xarray.Dataset
        See the module docstring.
    """
    xr = require("xarray", "Trajectory.to_xarray")
    record = json.loads(str(arrays["meta"]))
    layout = [(name, tuple(shape)) for name, shape in record["layout"]]
    t, x = np.asarray(arrays["t"]), np.asarray(arrays["x"])
    variables, start = {}, 0
    for (name, dims), (_, (rows, cols)) in zip(_state_dims(layout), layout):
        block = x[:, start:start + rows * cols]
        variables[name] = (("time",) + dims, block if dims == ("state",) else block.reshape(len(t), rows, cols))
        start += rows * cols
    monitors = [key.split("/", 1)[1] for key in arrays if key.startswith("monitor/")]
    for name in monitors:
        if name in variables or name in ("time", "error_estimate"):
            raise ValueError(f"monitor {name!r} has the name of a state variable of the Dataset; rename the monitor")
        value = np.asarray(arrays[f"monitor/{name}"])
        variables[name] = (("time",) if value.ndim == 1 else ("time", f"{name}_index")), value
    if "error_estimate" in arrays:
        variables["error_estimate"] = ("time",), np.asarray(arrays["error_estimate"])
    event_states = {}
    # numbered, not named: an event's name is any string ("<lambda>", "loss_below_1e-06"), a netCDF name is not
    for i, key in enumerate(k for k in arrays if k.startswith("event_states/")):
        event_states[f"event_states_{i}"] = key.split("/", 1)[1]
        variables[f"event_states_{i}"] = (f"event_{i}_occurrence", "state"), np.asarray(arrays[key])
    stats, dynamics = record.get("stats") or {}, record.get("dynamics") or {}
    attrs = {"title": _TITLE, **{key: json.dumps(record.get(key)) for key in _RECORD_ATTRS},
             "monitors": json.dumps(monitors), "event_states": json.dumps(event_states),
             "pgflow_version": str((record.get("meta") or {}).get("version", "")),
             "dynamics_kind": str(dynamics.get("kind", "")), "method": str(stats.get("method", ""))}
    return xr.Dataset(variables, coords={"time": t}, attrs=attrs)


def arrays_from_dataset(ds) -> ArrayFile:
    """The arrays of a trajectory (as in its ``.npz`` file) from a Dataset made by :func:`dataset_from_arrays`.

    Parameters
    ----------
    ds : xarray.Dataset

    Returns
    -------
    ArrayFile

    Raises
    ------
    ValueError
        ``ds`` is not a pgflow trajectory's Dataset (no ``layout`` attribute or a missing factor).
    """
    if ds.attrs.get("title") != _TITLE or "layout" not in ds.attrs:
        raise ValueError("not a pgflow trajectory's Dataset: it has no 'layout' attribute "
                         "(write it with Trajectory.to_xarray or Trajectory.save(path.nc))")
    record = {key: json.loads(ds.attrs[key]) for key in _RECORD_ATTRS if key in ds.attrs}
    layout = [(name, tuple(shape)) for name, shape in record["layout"]]
    t = np.asarray(ds["time"].values, dtype=float)
    blocks = []
    for name, _ in _state_dims(layout):
        if name not in ds:
            raise ValueError(f"the Dataset has no variable {name!r}, a block of its layout {record['layout']}")
        blocks.append(np.asarray(ds[name].values).reshape(len(t), -1))
    out = ArrayFile(t=t, x=np.concatenate(blocks, axis=1), meta=np.array(json.dumps(record)))
    for name in json.loads(ds.attrs.get("monitors", "[]")):
        out[f"monitor/{name}"] = np.asarray(ds[name].values)
    for variable, event in json.loads(ds.attrs.get("event_states", "{}")).items():
        out[f"event_states/{event}"] = np.asarray(ds[variable].values)
    if "error_estimate" in ds:
        out["error_estimate"] = np.asarray(ds["error_estimate"].values)
    return out


def write_netcdf(path, arrays: dict) -> str:
    """Write a trajectory's arrays to a netCDF file, atomically (temporary file, then rename).

    Parameters
    ----------
    path : str or path-like
        Ends in ``.nc``.
    arrays : dict of str -> ndarray
        As for :func:`dataset_from_arrays`.

    Returns
    -------
    str
        The path written.

    Raises
    ------
    TypeError
        The state is complex (netCDF has no complex numbers: save it as ``.npz``).
    """
    path = os.fspath(path)
    if np.iscomplexobj(arrays["x"]):
        raise TypeError(f"cannot save {path}: netCDF has no complex numbers; save a complex trajectory as .npz")
    ds = dataset_from_arrays(arrays)
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp)
    return path


def read_netcdf(path) -> ArrayFile:
    """Read a netCDF file written by :func:`write_netcdf` into memory (the file is closed on return).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    ArrayFile
    """
    xr = require("xarray", "Trajectory.load of a netCDF file")
    with xr.open_dataset(os.fspath(path)) as ds:
        return arrays_from_dataset(ds.load())


def monitors_frame(t, monitors: dict, error_estimate=None, record: dict | None = None):
    """The monitors by time as a pandas DataFrame.

    Parameters
    ----------
    t : ndarray, shape (T,)
    monitors : dict of str -> ndarray, shape (T,) or (T, q)
        A monitor of q columns becomes the columns ``<name>_0`` … ``<name>_{q-1}``.
    error_estimate : ndarray, shape (T,), optional
        Added as the column ``error_estimate``.
    record : dict, optional
        JSON-able provenance (the trajectory's :meth:`record`), kept in ``DataFrame.attrs``.

    Returns
    -------
    pandas.DataFrame
        Index ``time`` (T rows), one column per scalar monitor.
    """
    pd = require("pandas", "Trajectory.to_pandas")
    columns = {}
    for name, value in monitors.items():
        value = np.asarray(value)
        if value.ndim == 1:
            columns[name] = value
        else:
            columns.update({f"{name}_{i}": value[:, i] for i in range(value.shape[1])})
    if error_estimate is not None:
        columns["error_estimate"] = np.asarray(error_estimate)
    frame = pd.DataFrame(columns, index=pd.Index(np.asarray(t, dtype=float), name="time"))
    if record is not None:
        frame.attrs.update(record)
    return frame
