"""Planning a sweep: a base configuration, axes over its fields, replicates and reductions -> the
resolved configuration of every run, its seeds and the hash that names its stored result."""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from ...flows.checks import positive_int
from .. import setups
from ..config import check_keys
from ..provenance import code_version
from .reductions import DEFAULT_REDUCTIONS, REDUCTIONS
from .schema import FIELDS, SPAWN, SWEEP_KEYS, applicable, complete, read_config


@contextmanager
def _located(where: str):
    """Prefix the message of a TypeError or ValueError raised in the block with ``where``."""
    try:
        yield
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{where}: {exc}") from exc


def _known(name: str, where: str) -> None:
    if name in setups.RENAMED:
        raise ValueError(f"{where}: field {name!r} is now called {setups.RENAMED[name]!r}")
    if name not in FIELDS:
        raise ValueError(f"{where}: unknown field {name!r}; fields are {sorted(FIELDS)}")


def _check_value(name: str, value, where: str):
    """The normalized value of field ``name``, or an error that says where it was set."""
    _known(name, where)
    with _located(where):
        return FIELDS[name].check(value, name)


def _check_axis(name: str, values, where: str, seen: dict) -> list:
    """The normalized values of an axis over field ``name``; ``seen`` maps fields to where they were set."""
    _known(name, where)
    if name in seen:
        raise ValueError(f"{where}: field {name!r} is already set in {seen[name]}")
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError(f"{where}: an axis must be a non-empty list of values, got {values!r}")
    seen[name] = where
    return [_check_value(name, v, f"{where}[{j}]") for j, v in enumerate(values)]


def _check_run(config: dict, where: str) -> None:
    """Constraints between fields, checked on every run before any runs."""
    setups.check_consistent(config, where)
    if "order" in config["reductions"]:
        for step_size in config["order_step_sizes"]:
            setups.number_of_steps(step_size, config["t_end"], "order_step_sizes", where)


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: its position, the values its axes give it, and its resolved configuration."""

    index: int
    key: tuple
    axes: dict
    config: dict
    run_id: str

    @property
    def name(self) -> str:
        """How messages name the run: "run 3 (scale = 0.1, replicate 1)"."""
        return f"run {self.index} ({_describe(self.axes, self.key[-1])})"


def run_id(config: dict) -> str:
    """The hash naming a run's file: the fields of its resolved configuration that apply to it
    (:func:`~pgflow.analysis.sweeps.schema.applicable`) and the code version (the package version and
    a hash of the library's sources, :func:`pgflow.analysis.provenance.code_version`).

    Fields that cannot change the result are left out, so a configuration and the one stored in its
    run file (which holds only those fields) have the same id, and two runs that differ only in such
    a field (a GF run on a ``step_size`` axis) are one run, computed once.
    """
    text = json.dumps({"config": applicable(complete(config)), "version": code_version()}, sort_keys=True,
                      separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Sweep:
    """A base configuration, axes over its fields, replicates and reductions.

    Parameters
    ----------
    base : dict
        Field -> value (:data:`FIELDS`); unset fields take their defaults, and axes override it.
    grid : dict
        Product axes: field -> non-empty list of values.
    zipped : sequence of dict
        Zipped axes: each a dict field -> list, all lists of one axis of the same length; the fields of
        an axis vary together.
    reductions : sequence of str
        Names in :data:`REDUCTIONS`.
    seed : int
        The root seed of every "spawn" seed.
    replicates : int
        Runs per grid cell (the innermost axis, "replicate").

    Raises
    ------
    ValueError, TypeError
        Naming the field and where it was set: an unknown field or reduction, an empty axis, zipped
        lists of different lengths, a field on two axes, repeated values on an axis, a bad value, or
        a run whose fields contradict each other.
    """

    base: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    zipped: tuple = ()
    reductions: tuple = DEFAULT_REDUCTIONS
    seed: int = 0
    replicates: int = 1
    axes: tuple = field(init=False, repr=False)  # ((fields, (values per field) per position), ...)
    _plan: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        base = {name: _check_value(name, value, f"base.{name}") for name, value in dict(self.base).items()}
        if isinstance(self.zipped, dict):
            raise TypeError("zipped must be a list of dicts (in TOML, [[zip]] tables), got a dict")
        seen = {}  # field -> the axis that sets it (an axis overrides the base)
        grid = {name: _check_axis(name, values, f"grid.{name}", seen) for name, values in dict(self.grid).items()}
        zipped = []
        for i, group in enumerate(self.zipped):
            if not group:
                raise ValueError(f"zip[{i}]: a zipped axis needs at least one field")
            group = {name: _check_axis(name, values, f"zip[{i}].{name}", seen) for name, values in dict(group).items()}
            lengths = {name: len(values) for name, values in group.items()}
            if len(set(lengths.values())) > 1:
                raise ValueError(f"zip[{i}]: zipped fields must have the same length, got "
                                 + ", ".join(f"{name} has {n}" for name, n in lengths.items()))
            zipped.append(group)
        if isinstance(self.reductions, str) or not isinstance(self.reductions, (list, tuple)):
            raise TypeError(f"sweep.reductions must be a list of reduction names, got {self.reductions!r}")
        reductions = tuple(self.reductions)
        for name in reductions:
            if name not in REDUCTIONS:
                raise ValueError(f"sweep.reductions: unknown reduction {name!r}; reductions are {sorted(REDUCTIONS)}")
        if not reductions or len(set(reductions)) < len(reductions):
            raise ValueError(f"sweep.reductions must be a non-empty list without repeats, got {list(reductions)}")
        axes = {f"grid.{name}": ((name,), tuple((v,) for v in values)) for name, values in grid.items()}
        axes |= {f"zip[{i}]": (tuple(group), tuple(zip(*group.values()))) for i, group in enumerate(zipped)}
        for where, (_, values) in axes.items():
            if len(set(map(_canonical, values))) < len(values):
                raise ValueError(f"{where}: repeated values (use replicates for repeated runs)")
        for name, value in (("base", base), ("grid", grid), ("zipped", tuple(zipped)), ("reductions", reductions),
                            ("seed", positive_int(self.seed, "sweep.seed", minimum=0)),
                            ("replicates", positive_int(self.replicates, "sweep.replicates")),
                            ("axes", tuple(axes.values()))):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_plan", self._resolve())

    @property
    def axis_fields(self) -> tuple[str, ...]:
        """Every field an axis sets, in axis order."""
        return tuple(name for names, _ in self.axes for name in names)

    def _resolve(self) -> tuple[PlannedRun, ...]:
        shape = tuple(len(values) for _, values in self.axes) + (self.replicates,)
        plan, by_id = [], {}
        defaults = {name: f.default for name, f in FIELDS.items()}
        for index, key in enumerate(np.ndindex(*shape)):
            key = tuple(int(i) for i in key)
            axes = {name: value for (names, values), i in zip(self.axes, key) for name, value in zip(names, values[i])}
            config = {**defaults, **self.base, **axes, "reductions": list(self.reductions)}
            # SeedSequence(seed, spawn_key=key) is SeedSequence(seed).spawn(·)[key[0]].spawn(·)[key[1]]…
            for name, value in setups.spawn_seeds(self.seed, key).items():
                if config[name] == SPAWN:
                    config[name] = value
            where = f"run {index} ({_describe(axes, key[-1])})"  # PlannedRun.name
            _check_run(config, where)
            full = _canonical(config)  # every field, applicable or not: only replicates can repeat it
            if full in by_id:
                raise ValueError(f"{where} has the same configuration as run {by_id[full]}: with explicit seeds, "
                                 "replicates > 1 repeat the same run")
            by_id[full] = index
            plan.append(PlannedRun(index, key, axes, config, run_id(config)))
        return tuple(plan)

    def runs(self) -> tuple[PlannedRun, ...]:
        """Every run of the sweep, in grid order (last axis fastest, replicate innermost).

        Two runs that differ only in fields that do not apply to them have the same ``run_id``: they
        share one computation and one run file.
        """
        return self._plan

    def __len__(self) -> int:
        return len(self._plan)

    @classmethod
    def from_config(cls, config: dict, source: str = "config") -> "Sweep":
        """The sweep described by the [sweep], [base], [grid] and [[zip]] sections of a config dict."""
        with _located(source):
            s = config.get("sweep", {})
            check_keys(s, SWEEP_KEYS, "[sweep]")
            zipped = config.get("zip", [])
            if not isinstance(zipped, list):
                raise ValueError("zip must be an array of tables, written [[zip]]")
            return cls(base=config.get("base", {}), grid=config.get("grid", {}), zipped=zipped,
                       reductions=s.get("reductions", DEFAULT_REDUCTIONS), seed=s.get("seed", 0),
                       replicates=s.get("replicates", 1))


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True)


def _describe(axes: dict, replicate: int) -> str:
    return ", ".join([f"{k} = {v!r}" for k, v in axes.items()] + [f"replicate {replicate}"])


def load_sweep(path) -> Sweep:
    """The :class:`Sweep` of a TOML config file."""
    return Sweep.from_config(read_config(path), source=f"config {path}")
