"""The fields of a sweep's run configuration and the TOML sections of a sweep file.

A run configuration is a flat dict over :data:`FIELDS`: the fields of :data:`pgflow.analysis.setups.FIELDS`
(problem, initial state, seeds, dynamics, perturbation) plus the parameters of the reductions. The
seed fields may also be "spawn": drawn from the sweep's root seed and the run's grid position.
"""

from __future__ import annotations

from importlib import resources

from ...flows.checks import positive
from .. import setups
from ..config import read_toml
from ..setups import Field, between

SPAWN = "spawn"
SEED_FIELDS = ("problem_seed", "init_seed", "perturbation_seed")


def _seed(value, name):
    return SPAWN if value == SPAWN else setups.seed(value, name)


def _step_sizes(value, name):
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be a list of step sizes, got {type(value).__name__}")
    values = [positive(v, f"{name}[{i}]") for i, v in enumerate(value)]
    if len(set(values)) < 2:
        raise ValueError(f"{name} must hold at least two distinct step sizes, got {value!r}")
    return values


FIELDS: dict[str, Field] = {
    **{name: field for name, field in setups.FIELDS.items() if name not in SEED_FIELDS},
    # parameters of the reductions (see REDUCTIONS)
    "eps": Field(1e-3, positive, "time_to_eps: the recovery error to reach"),
    "fraction": Field(0.5, between(0.0, 1.0, open_high=True),
                      "emergence_times: singular value i emerges at fraction·σᵢ"),
    "order_step_sizes": Field([0.04, 0.02, 0.01], _step_sizes,
                              "order: the GD step sizes whose errors against GF are fitted"),
    **{name: Field(SPAWN, _seed, setups.FIELDS[name].help + ": an integer, or \"spawn\" (from the sweep's "
                   "root seed and the run's grid position)") for name in SEED_FIELDS},
}
"""Every field of a run configuration: name -> :class:`~pgflow.analysis.setups.Field`."""

SWEEP_KEYS = ("seed", "replicates", "reductions")
SECTIONS = ("sweep", "base", "grid", "zip", "output", "plot")


def read_config(path) -> dict:
    """A sweep config from a TOML file: sections [sweep], [base], [grid], [[zip]], [output], [plot].

    Only the section names are checked here; :meth:`Sweep.from_config` checks the rest.
    """
    return read_toml(path, SECTIONS, arrays=("zip",))


EXAMPLES = {"figure6": "sweep_figure6.toml"}
"""Sweep configs shipped with pgflow: name -> file in ``pgflow/analysis/examples``."""


def example_path(name: str) -> str:
    """The path of the shipped example sweep ``name`` (see :data:`EXAMPLES`)."""
    if name not in EXAMPLES:
        raise ValueError(f"unknown example sweep {name!r}; the examples are {', '.join(EXAMPLES)}")
    return str(resources.files("pgflow.analysis") / "examples" / EXAMPLES[name])
