"""pgflow's analysis layer: comparisons, discretization, symbolic derivatives, bounds, sweeps."""

from . import discretization, stability
from .compare import Comparison, compare

__all__ = ["Comparison", "compare", "discretization", "stability"]
