"""Figure 3 — the imbalance UᵀU − VᵀV: conserved by gradient flow, drifting under gradient descent.

From a balanced start (U₀ᵀU₀ = V₀ᵀV₀, :func:`pgflow.flows.init.balanced`) GF keeps D = UᵀU − VᵀV at zero
(to rounding), while each GD step changes it by exactly η²(G_UᵀG_U − G_VᵀG_V), G = ∇f (docs/math/invariants.md,
:func:`pgflow.analysis.discretization.imbalance_step`): the drift per step is ∝ η², so after the T/η
steps to a fixed time T it is ∝ η. Markers in (a) are the sums of that exact one-step change,
which lie on the measured drift.
"""

from __future__ import annotations

import sys
from dataclasses import astuple

import numpy as np

from ..analysis.discretization import imbalance, imbalance_step
from ..analysis.fitting import fit_power_law
from ..flows import GradientFlow, MatrixFactorization, gradient_descent, init, integrate

from . import gallery, style

NAME = "fig3_imbalance"
TITLE = "imbalance: conserved by GF, drifting under GD"
CONFIG = {"m": 12, "n": 10, "rank": 2, "width": 2, "condition": 2.0, "scale": 0.3, "t_end": 4.0,
          "step_sizes": [0.08, 0.04, 0.02, 0.01, 0.005], "rtol": 1e-12, "atol": 1e-14, "seed": 0}
QUICK = {"m": 6, "n": 5, "t_end": 2.0, "step_sizes": [0.08, 0.04, 0.02]}


def compute(config, rng):
    """‖D(t)‖_F for GF and each GD step size on a shared grid, the predicted drift, and the drift at T."""
    c = config
    problem = MatrixFactorization.random(m=c["m"], n=c["n"], rank=c["rank"], width=c["width"],
                                         condition=c["condition"], seed=int(rng.integers(2**31)))
    x0 = init.balanced(problem, c["scale"], seed=int(rng.integers(2**31)))
    etas = np.asarray(c["step_sizes"], dtype=float)
    # the shared grid: the times k·η_max of the largest step, which every η_max/2ʲ also visits
    t = etas.max() * np.arange(int(round(c["t_end"] / etas.max())) + 1)
    gf = integrate(GradientFlow(problem), x0, c["t_end"], method="DOP853", rtol=c["rtol"], atol=c["atol"], t_eval=t)
    measured, predicted = np.empty((etas.size, t.size)), np.empty((etas.size, t.size))
    for j, eta in enumerate(etas):
        n_steps = int(round(c["t_end"] / eta))
        gd = gradient_descent(problem, x0, eta, n_steps, save_every=1)  # the drift step by step
        D0 = imbalance(problem, gd.x[0])
        drift = np.array([imbalance(problem, x) - D0 for x in gd.x])
        # the exact identity, summed step by step: D_k − D_0 = Σ_{i<k} η²(G_UᵀG_U − G_VᵀG_V)(x_i)
        summed = np.concatenate([np.zeros((1,) + D0.shape),
                                 np.cumsum([imbalance_step(problem, x, eta) for x in gd.x[:-1]], axis=0)])
        keep = np.rint(t / eta).astype(int)
        measured[j] = np.linalg.norm(drift[keep], axis=(1, 2))
        predicted[j] = np.linalg.norm(summed[keep], axis=(1, 2))
    final = measured[:, -1]
    per_step = final / np.rint(c["t_end"] / etas)
    return {"t": t, "gf": gf.monitors["imbalance_fro"], "gd": measured, "predicted": predicted, "step_sizes": etas,
            "final": final, "per_step": per_step, "fit_final": np.array(astuple(fit_power_law(etas, final))),
            "fit_per_step": np.array(astuple(fit_power_law(etas, per_step)))}


def plot(data, config):
    """(a) ‖UᵀU − VᵀV‖_F over time for GF and each η; (b) the drift at T and per step against η, with fits."""
    fig, (ax, ax_eta) = style.figure(2, height=3.9)
    etas, shades = data["step_sizes"], style.shades(data["step_sizes"].size)
    t = data["t"]
    ax.semilogy(t, style.positive(data["gf"]), color="k", label="gradient flow: zero to rounding")
    for j, eta in enumerate(etas):
        ax.semilogy(t[1:], data["gd"][j, 1:], color=shades[j], label=f"GD, η = {eta:g}")
        ax.semilogy(t[2::5], data["predicted"][j, 2::5], "o", mfc="none", color=shades[j])
    ax.plot([], [], "o", mfc="none", color="0.4", label="Σₖ η²(G_UᵀG_U − G_VᵀG_V), exact")
    ax.set(xlabel="time t (GD: t = kη)", ylabel="‖UᵀU − VᵀV‖_F", title="from a balanced start")
    ax.legend(loc="center right")

    for key, color, what in (("final", style.colors(2)[0], f"drift by t = {config['t_end']:g}"),
                             ("per_step", style.colors(2)[1], "mean drift per step")):
        fit = data[f"fit_{key}"]
        ax_eta.loglog(etas, data[key], "o", color=color, label=f"{what}: {style.slope_text(fit)}")
        style.fitted_slope(ax_eta, etas, fit, color)
    ax_eta.set_xticks(etas, [f"{e:g}" for e in etas], minor=False)
    ax_eta.set_xticks([], minor=True)
    ax_eta.set(xlabel="step size η", ylabel="‖D(t) − D(0)‖_F, D = UᵀU − VᵀV",
               title="GD: ∝ η² per step, ∝ η at a fixed time")
    ax_eta.legend(loc="lower right")
    style.panel_labels(ax, ax_eta)
    return fig


main = gallery.main_for(__name__)

if __name__ == "__main__":
    sys.exit(main())
