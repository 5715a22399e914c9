"""pgflow's analysis layer: studies on top of trajectories.

:mod:`.compare` (GD against a flow, aligned in time), :mod:`.discretization` and
:mod:`.discretization_report` (error against step size, fitted orders), :mod:`.stability` (sharpness,
the edge of stability), :mod:`.symbolic` (matrix calculus with exact checks), :mod:`.bounds` and
:mod:`.claims` (claimed inequalities checked on trajectories), :mod:`.sweeps` (grids of runs),
:mod:`.setups` (one description of a run, one builder), and the helpers :mod:`.config` (TOML
files), :mod:`.text` (tables), :mod:`.fitting` (power laws) and :mod:`.provenance` (code versions).
:class:`~pgflow.analysis.symbolic.FormulaProblem` (a problem from a loss formula) is importable from
here too.

The submodules load on first use (``pgflow.analysis.bounds`` or ``from pgflow.analysis import
bounds``): the symbolic ones bring sympy and derive their quantities when imported, which a figure
script, a ``pgflow`` command or a sweep worker that never uses them should not pay for.
"""

import importlib

from .compare import Comparison, compare

_LAZY = frozenset({"bounds", "claims", "config", "discretization", "discretization_report", "fitting", "provenance",
                   "setups", "stability", "sweeps", "symbolic", "text"})
# names re-exported from a lazy submodule: ``from pgflow.analysis import FormulaProblem``
_LAZY_NAMES = {"FormulaProblem": "symbolic"}
__all__ = ["Comparison", "compare", *sorted(_LAZY), *sorted(_LAZY_NAMES)]


def __getattr__(name):
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(f".{_LAZY_NAMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
