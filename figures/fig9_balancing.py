"""Figure 9 — a loss of your own: the balancing regularizer shrinks the imbalance UᵀU − VᵀV.

The problem is written as a formula, f_λ(U, V) = ½‖UVᵀ − Σ‖²_F + (λ/8)‖UᵀU − VᵀV‖²_F
(:meth:`pgflow.analysis.symbolic.FormulaProblem.balanced`): its gradient is derived symbolically,
compiled to factored numpy code and checked against the loss once. Along the gradient flow of f_λ
the imbalance D = UᵀU − VᵀV obeys

    Ḋ = −(λ/2)(PD + DP),   P = UᵀU + VᵀV,

because the factorization term conserves D; so d/dt‖D‖²_F = −2λ tr(DPD) ≤ −2λ λ_min(P)‖D‖²_F:
for λ = 0 the imbalance is conserved, for λ > 0 it decays at least at the rate λ λ_min(P). The
regularizer vanishes on balanced minimizers, so every λ reaches UVᵀ = Σ: it changes the path,
not the answer (here the balanced paths get there faster). Gradient descent with a small step
(markers) follows the flow.
"""

from __future__ import annotations

import sys

import numpy as np

from ..analysis.symbolic import FormulaProblem
from ..flows import GradientFlow, LowRankTarget, gradient_descent, init, integrate

from . import gallery, style

NAME = "fig9_balancing"
TITLE = "your own loss: the balancing regularizer"
CONFIG = {"m": 20, "n": 15, "rank": 3, "width": 3, "condition": 3.0, "scale": 0.3, "t_end": 20.0,
          "lams": [0.0, 0.1, 1.0], "step_size": 0.01, "rtol": 1e-10, "points": 201, "seed": 0}
QUICK = {"m": 6, "n": 5, "rank": 2, "width": 2, "t_end": 10.0, "points": 51}


def compute(config, rng):
    """‖UᵀU − VᵀV‖_F and ‖UVᵀ − Σ‖_F along GF and GD of f_λ for each λ, from one start, and the
    decay-rate bound λ·λ_min(UᵀU + VᵀV) along the flow."""
    c = config
    target = LowRankTarget.random(c["m"], c["n"], c["rank"], condition=c["condition"], seed=int(rng.integers(2**31)))
    init_seed = int(rng.integers(2**31))
    t = np.linspace(0.0, c["t_end"], c["points"])
    eta = c["step_size"]
    every = int(round((t[1] - t[0]) / eta))   # GD iterates on the same grid: t = kη
    lams = np.asarray(c["lams"], dtype=float)
    out = {key: np.empty((lams.size, t.size)) for key in ("gf_imbalance", "gf_distance", "gd_imbalance",
                                                           "gd_distance", "rate_bound")}
    for i, lam in enumerate(lams):
        problem = FormulaProblem.balanced(target, c["width"], lam)
        x0 = init.gaussian(problem, c["scale"], seed=init_seed)
        gf = integrate(GradientFlow(problem), x0, c["t_end"], rtol=c["rtol"], t_eval=t)
        gd = gradient_descent(problem, x0, eta, int(round(c["t_end"] / eta)), save_every=every)
        out["gf_imbalance"][i], out["gf_distance"][i] = gf.monitors["imbalance_fro"], gf.monitors["distance"]
        out["gd_imbalance"][i], out["gd_distance"][i] = gd.monitors["imbalance_fro"], gd.monitors["distance"]
        U, V = gf.U, gf.V
        out["rate_bound"][i] = lam * np.linalg.eigvalsh(U.mT @ U + V.mT @ V)[:, 0]
    return {"t": t, "lams": lams, **out}


def plot(data, config):
    """(a) ‖UᵀU − VᵀV‖_F over time per λ (GF lines, GD markers, the decay bound dotted);
    (b) ‖UVᵀ − Σ‖_F over time."""
    fig, (ax, ax_dist) = style.figure(2, height=3.9)
    t, lams = data["t"], data["lams"]
    colors = style.colors(lams.size)
    marks = slice(0, None, max(1, t.size // 20))
    for i, lam in enumerate(lams):
        label = "λ = 0: conserved" if lam == 0 else f"λ = {lam:g}"
        ax.semilogy(t, style.positive(data["gf_imbalance"][i]), color=colors[i], label=f"GF, {label}")
        if lam > 0:   # ‖D(t)‖ ≤ ‖D(0)‖ exp(−∫ λ λ_min(P) dt), the trapezoidal rule on the grid
            rate = data["rate_bound"][i]
            decay = np.concatenate([[0.0], np.cumsum(0.5 * (rate[1:] + rate[:-1]) * np.diff(t))])
            ax.semilogy(t, data["gf_imbalance"][i][0] * np.exp(-decay), ":", color=colors[i])
        ax.semilogy(t[marks], style.positive(data["gd_imbalance"][i][marks]), "o", mfc="none", color=colors[i])
        ax_dist.semilogy(t, style.positive(data["gf_distance"][i]), color=colors[i], label=f"GF, λ = {lam:g}")
        ax_dist.semilogy(t[marks], style.positive(data["gd_distance"][i][marks]), "o", mfc="none", color=colors[i])
    for a in (ax, ax_dist):
        a.plot([], [], "o", mfc="none", color="0.4", label=f"GD, η = {config['step_size']:g}")
    ax.plot([], [], ":", color="0.4", label="‖D(0)‖ exp(−∫λ λ_min(UᵀU + VᵀV) dt)")
    ax.set(xlabel="time t (GD: t = kη)", ylabel="‖UᵀU − VᵀV‖_F",
           title="½‖UVᵀ − Σ‖² + (λ/8)‖UᵀU − VᵀV‖²: imbalance")
    ax.legend(loc="lower left")
    ax_dist.set(xlabel="time t (GD: t = kη)", ylabel="‖UVᵀ − Σ‖_F", title="every λ reaches UVᵀ = Σ (the balanced ones faster)")
    ax_dist.legend(loc="lower left")
    style.panel_labels(ax, ax_dist)
    return fig


main = gallery.main_for(__name__)

if __name__ == "__main__":
    sys.exit(main())
