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
    **{name: Field(SPAWN, _seed, setups.FIELDS[name].help + " (or \"spawn\": from the sweep's root seed and "
                   "the run's grid position)") for name in SEED_FIELDS},
}
"""Every field of a run configuration: name -> :class:`~pgflow.analysis.setups.Field`."""


def applicable(config: dict) -> dict:
    """The fields of a resolved run configuration that can change its result, in their order.

    Left out: a GF or PGF run's GD fields (``step_size``, ``variant``, ``save_every``), GD's solver
    fields (``method``, ``rtol``, ``atol``), an unperturbed run's perturbation fields (``rho``,
    ``xi0``, ``perturbation_*``, ``perturbation_seed``), the fields of the other problems
    (``measurements``, ``observed``, ``noise``) and the parameters of reductions the run does not
    compute. A run file holds only these fields; :func:`complete` gives the others back at their
    defaults, which they cannot affect. A field this function does not know is kept.

    Examples
    --------
    >>> config = complete({"dynamics": "gf", "problem_seed": 1, "init_seed": 2, "reductions": ["nfev"]})
    >>> sorted(set(config) - set(applicable(config)))[:6]
    ['eps', 'fraction', 'n_measurements', 'noise', 'observed', 'order_step_sizes']
    """
    dynamics, problem, reductions = config["dynamics"], config["problem"], config["reductions"]
    perturbed = dynamics in ("pgf_residual", "pgf_additive") or (dynamics == "gd" and bool(config["rho"] or config["xi0"]))
    skip = set()
    if problem != "sensing":
        skip.add("n_measurements")
    if problem != "completion":
        skip.add("observed")
    if problem == "factorization":
        skip.add("noise")
    if dynamics == "gd":  # stepped, not integrated (the order reduction's reference has its own tolerances)
        skip |= {"method", "rtol", "atol"}
    else:
        skip.add("save_every")
        if dynamics != "modified":
            skip.add("step_size")
            if "order" not in reductions:  # the order reduction runs GD in the configured variant
                skip.add("variant")
    if not perturbed:
        skip |= {"rho", "xi0", "perturbation_interval", "perturbation_norm", "perturbation_seed"}
    elif dynamics == "pgf_additive":  # the additive form measures E in the Frobenius norm, always
        skip.add("perturbation_norm")
    for reduction, fields in REDUCTION_FIELDS.items():
        if reduction not in reductions:
            skip.update(fields)
    return {name: value for name, value in config.items() if name not in skip}


REDUCTION_FIELDS = {"time_to_eps": ("eps",), "emergence_times": ("fraction",), "order": ("order_step_sizes",)}
"""The fields that only a reduction reads: reduction name -> its fields."""


def complete(config: dict) -> dict:
    """A run configuration with every field of :data:`FIELDS` it leaves out at its default."""
    return {**{name: field.default for name, field in FIELDS.items()}, **config}


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
