"""Figure 5 — Ye & Du's symmetrization: the quantities their proof tracks, along gradient descent.

Exact parameterization (width k = rank d), small random init, η = 1/(3σ₁) (their step-size
condition). In the coordinates of Σ's singular vectors U and V split into their top d×k blocks
and the rest J, K; A = (U + V)/2 is the symmetric part, B = (U − V)/2 the asymmetric part
(docs/math/proof-quantities.md, :func:`pgflow.flows.proof_monitors.ye_du`). (a) ‖A‖ grows to √σ₁ and stays below √(2σ₁)
(AAᵀ ⪯ 2Σ), λ_min(AAᵀ) climbs from O(ε²) to σ_d; (b) ‖B‖_F stays O(ε) and ‖J‖, ‖K‖ never
increase, decaying to rounding once the target is learned.
"""

from __future__ import annotations

import sys

import numpy as np

from ..flows import MatrixFactorization, gradient_descent, init, monitors, proof_monitors

from . import gallery, style

NAME = "fig5_ye_du"
TITLE = "Ye & Du's symmetrization along GD"
CONFIG = {"m": 40, "n": 30, "sigma": [3.0, 2.0, 1.0], "scale": 1e-3, "step_factor": 1 / 3, "n_steps": 300,
          "seed": 0}
QUICK = {"m": 10, "n": 8, "n_steps": 200}
TRACKED = ("A_norm", "AAt_lambda_min", "B_fro", "J_norm", "K_norm", "distance")


def compute(config, rng):
    """The tracked quantities at every GD step, and σ."""
    c = config
    sigma = np.asarray(c["sigma"], dtype=float)
    problem = MatrixFactorization.random(m=c["m"], n=c["n"], rank=sigma.size, width=sigma.size,
                                         singular_values=sigma, seed=int(rng.integers(2**31)))
    x0 = init.gaussian(problem, c["scale"], seed=int(rng.integers(2**31)))
    eta = c["step_factor"] / sigma.max()
    tracked = {**proof_monitors.ye_du(problem), "distance": monitors.distance(problem)}
    gd = gradient_descent(problem, x0, eta, c["n_steps"], monitors={k: tracked[k] for k in TRACKED},
                          default_monitors=False, save_every=1)
    return {"step": np.arange(gd.t.size, dtype=float), "sigma": sigma, **{k: gd.monitors[k] for k in TRACKED}}


def plot(data, config):
    """(a) ‖A‖ and λ_min(AAᵀ) with their bounds; (b) ‖B‖_F, ‖J‖, ‖K‖ and the distance to Σ, per GD step."""
    fig, (ax_a, ax_b) = style.figure(2, height=3.9)
    k, sigma = data["step"], data["sigma"]
    c = style.colors(6)
    ax_a.semilogy(k, data["A_norm"], color=c[0], label="‖A‖")
    ax_a.semilogy(k, data["AAt_lambda_min"], color=c[1], label="λ_min(AAᵀ)")
    ax_a.axhline(np.sqrt(2 * sigma[0]), color=c[0], ls="--", lw=0.9, label="√(2σ₁): AAᵀ ⪯ 2Σ")
    ax_a.axhline(sigma[-1], color=c[1], ls=":", lw=0.9, label="σ_d, the limit of λ_min(AAᵀ)")
    ax_a.set(ylabel="‖A‖ and λ_min(AAᵀ), A = (U + V)/2", title="the symmetric part grows, bounded")
    ax_a.legend(loc="lower right")
    ax_b.semilogy(k, data["B_fro"], color=c[2], label="‖B‖_F, B = (U − V)/2")
    ax_b.semilogy(k, data["J_norm"], color=c[3], label="‖J‖ (U outside col(Σ))")
    ax_b.semilogy(k, data["K_norm"], "--", color=c[4], label="‖K‖ (V outside row(Σ))")
    ax_b.semilogy(k, data["distance"], color="k", lw=1.0, label="‖UVᵀ − Σ‖_F")
    ax_b.set(ylabel="norm", title="the asymmetric part stays O(ε); J, K never grow")
    ax_b.legend(loc="lower left")
    for ax in (ax_a, ax_b):
        ax.set(xlabel=f"GD step k (η = 1/({1 / config['step_factor']:.3g}σ₁), init scale ε = {config['scale']:g})",
               xlim=(0, k[-1]))
    style.panel_labels(ax_a, ax_b)
    return fig


main = gallery.main_for(__name__)

if __name__ == "__main__":
    sys.exit(main())
