"""pgflow's analysis layer: comparisons, discretization, symbolic derivatives, bounds, sweeps."""

from . import bounds, claims, discretization, stability, symbolic
from .compare import Comparison, compare

__all__ = ["Comparison", "bounds", "claims", "compare", "discretization", "stability", "symbolic"]
