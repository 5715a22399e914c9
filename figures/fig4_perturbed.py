"""Figure 4 — perturbed gradient flow: convergence to a floor set by the perturbation.

Residual-form PGF U̇ = (Σ − UVᵀ + E)V, V̇ = (Σ − UVᵀ + E)ᵀU (docs/math/dynamics.md) with the bounded random
perturbation :class:`pgflow.flows.RandomPerturbation`: on each piece of a time grid E points in a fresh
random direction with size ‖E‖_op = ρ‖Σ − UVᵀ‖_op + ξ₀, the largest a proof of the form
"‖E‖ ≤ ρ‖R‖ + ξ₀" allows. Integrated piece by piece (:func:`pgflow.flows.integrate_piecewise`), so the
solver restarts at every jump. The relative part ρ slows the descent, the absolute part ξ₀ sets
the floor; ‖E(t)‖ as recorded on the saved states sits on its bound.
"""

from __future__ import annotations

import sys

import numpy as np

from ..flows import MatrixFactorization, PerturbedGradientFlow, RandomPerturbation, init, integrate_piecewise

from . import gallery, style

NAME = "fig4_perturbed"
TITLE = "perturbed gradient flow for several perturbation levels"
CONFIG = {"m": 30, "n": 20, "rank": 3, "width": 3, "condition": 3.0, "scale": 1e-2, "t_end": 16.0,
          "piece": 0.25, "rhos": [0.0, 0.5, 1.0, 2.0], "xi0": 1e-3, "n_saved": 160, "rtol": 1e-8, "atol": 1e-10,
          "seed": 0}
QUICK = {"m": 10, "n": 8, "rank": 2, "width": 2, "t_end": 10.0, "piece": 1.0, "rhos": [0.0, 1.0],
         "n_saved": 50}


def compute(config, rng):
    """‖UVᵀ − Σ‖_F, the recorded ‖E‖_op and its bound over time, one row per ρ."""
    c = config
    problem = MatrixFactorization.random(m=c["m"], n=c["n"], rank=c["rank"], width=c["width"],
                                         condition=c["condition"], seed=int(rng.integers(2**31)))
    x0 = init.gaussian(problem, c["scale"], seed=int(rng.integers(2**31)))
    pieces = np.arange(0.0, c["t_end"], c["piece"])
    t = np.linspace(0.0, c["t_end"], c["n_saved"] + 1)
    direction_seed = int(rng.integers(2**31))  # the same directions for every ρ: only the size changes
    out = {name: np.empty((len(c["rhos"]), t.size)) for name in ("distance", "norm", "bound")}
    for i, rho in enumerate(c["rhos"]):
        perturbation = RandomPerturbation(problem, rho, c["xi0"], pieces, seed=direction_seed, norm="op")
        run = integrate_piecewise(PerturbedGradientFlow(problem, perturbation), x0, c["t_end"], t_eval=t,
                                  method="DOP853", rtol=c["rtol"], atol=c["atol"])
        out["distance"][i] = run.monitors["distance"]
        out["norm"][i] = run.monitors["perturbation_norm"]
        out["bound"][i] = run.monitors["perturbation_bound"]
    return out | {"t": t, "rhos": np.asarray(c["rhos"], dtype=float)}


def plot(data, config):
    """(a) ‖UVᵀ − Σ‖_F over time for each ρ; (b) the recorded ‖E(t)‖_op on its bound."""
    fig, (ax, ax_e) = style.figure(2, height=3.9)
    t, shades = data["t"], style.shades(data["rhos"].size, hi=0.8)
    every = max(1, t.size // 25)
    for i, rho in enumerate(data["rhos"]):
        ax.semilogy(t, data["distance"][i], color=shades[i], label=f"ρ = {rho:g}")
        ax_e.semilogy(t[1:], data["bound"][i, 1:], color=shades[i], label=f"bound, ρ = {rho:g}")
        ax_e.semilogy(t[1::every], data["norm"][i, 1::every], "o", mfc="none", color=shades[i])
    xi0 = config["xi0"]
    for a in (ax, ax_e):
        a.axhline(xi0, color="0.5", ls="--", lw=0.9)
        a.set(xlabel="time t", xlim=(0, t[-1]))
    ax.set(ylabel="‖UVᵀ − Σ‖_F", title=f"distance to the target (dashed: ξ₀ = {xi0:g})")
    ax.legend(title="‖E‖_op = ρ‖Σ − UVᵀ‖_op + ξ₀", loc="upper right")
    ax_e.plot([], [], "o", mfc="none", color="0.4", label="recorded ‖E(t)‖_op")
    ax_e.set(ylabel="‖E(t)‖_op", title="the perturbation and its bound ρ‖Σ − UVᵀ‖_op + ξ₀")
    ax_e.legend(loc="upper right", ncols=2)
    style.panel_labels(ax, ax_e)
    return fig


main = gallery.main_for(__name__)

if __name__ == "__main__":
    sys.exit(main())
