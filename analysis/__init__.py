"""pgflow's analysis layer: comparisons, discretization, symbolic derivatives, bounds, sweeps."""
