"""pgflow's analysis layer: comparisons, discretization, symbolic derivatives, bounds, sweeps.

The submodules load on first use (``analysis.bounds`` or ``from analysis import bounds``): the
symbolic ones bring sympy and derive their quantities when imported, which a figure script, a
``pgflow`` command or a sweep worker that never uses them should not pay for.
"""

import importlib

from .compare import Comparison, compare

__all__ = ["Comparison", "bounds", "claims", "compare", "discretization", "stability", "symbolic"]
_LAZY = frozenset({"bounds", "claims", "discretization", "stability", "symbolic"})


def __getattr__(name):
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
