"""Figure 8 — edge of stability: sharpness against 2/η along gradient descent, for steps around 1/σ₁.

GD with step η is linearly stable at a minimum only if the sharpness λ_max(∇²f) is at most 2/η,
and every global minimum of the factorization loss has sharpness ‖U‖² + ‖V‖² ≥ 2σ₁ (equality at
the balanced ones, docs/math/invariants.md). (a)–(b) From a small init the sharpness rises as the factors grow;
for ησ₁ < 1 it settles at 2σ₁ < 2/η and the loss goes to zero, for ησ₁ > 1 no minimum is stable:
GD settles on a period-2 orbit whose sharpness alternates across 2/η, and the loss stalls.
(c) A sweep over η: the sharpness of the last iterates (all of them, as dots) against 2/η; beyond
ησ₁ ≈ 1.4 GD diverges (crosses at the top). Sharpness by Lanczos on the Hessian-vector product
(:func:`pgflow.analysis.stability.sharpness`).
"""

from __future__ import annotations

import sys

import numpy as np

from ..analysis.stability import sharpness
from ..flows import DivergenceError, MatrixFactorization, gradient_descent, init

from . import gallery, style

NAME = "fig8_edge_of_stability"
TITLE = "edge of stability: sharpness against 2/η"
CONFIG = {"m": 12, "n": 10, "sigma": [2.0, 1.0], "width": 2, "scale": 1e-2, "n_steps": 120,
          "traced": [0.5, 0.95, 1.05, 1.2], "sweep": [0.5, 1.45, 20], "sweep_steps": 1000, "tail": 8, "seed": 0}
QUICK = {"m": 6, "n": 5, "n_steps": 80, "traced": [0.9, 1.1], "sweep": [0.7, 1.45, 7], "sweep_steps": 400}


def compute(config, rng):
    """Sharpness and loss along GD for the traced ησ₁, and the sharpness of the last iterates of a sweep."""
    c = config
    sigma = np.asarray(c["sigma"], dtype=float)
    problem = MatrixFactorization.random(m=c["m"], n=c["n"], rank=sigma.size, width=c["width"],
                                         singular_values=sigma, seed=int(rng.integers(2**31)))
    x0 = init.gaussian(problem, c["scale"], seed=int(rng.integers(2**31)))
    traced = np.asarray(c["traced"], dtype=float)
    trace, loss = np.empty((traced.size, c["n_steps"] + 1)), np.empty((traced.size, c["n_steps"] + 1))
    for i, factor in enumerate(traced):
        # every step; the full state: at the edge of stability GD is chaotic and magnifies any rounding
        gd = gradient_descent(problem, x0, factor / sigma[0], c["n_steps"], default_monitors=False, save_every=1, reduce=False)
        trace[i] = [sharpness(problem, x) for x in gd.x]
        loss[i] = problem.loss(gd.x)
    swept = np.linspace(*c["sweep"][:2], int(c["sweep"][2]))
    tail = np.full((swept.size, c["tail"]), np.nan)  # NaN: diverged
    for j, factor in enumerate(swept):
        try:
            gd = gradient_descent(problem, x0, factor / sigma[0], c["sweep_steps"], default_monitors=False, save_every=1,
                                  reduce=False)
        except DivergenceError:
            continue
        tail[j] = [sharpness(problem, x) for x in gd.x[-c["tail"]:]]
    return {"sigma": sigma, "traced": traced, "sharpness": trace, "loss": loss, "swept": swept, "tail": tail}


def plot(data, config):
    """(a) sharpness and (b) loss along GD for the traced ησ₁; (c) the sweep's final sharpness against 2/η."""
    fig, (ax_s, ax_l, ax_w) = style.figure(3, height=3.9)
    sigma1, traced = data["sigma"][0], data["traced"]
    shades = style.shades(traced.size, cmap="plasma", hi=0.8)
    k = np.arange(data["sharpness"].shape[1])
    for i, factor in enumerate(traced):
        label = f"ησ₁ = {factor:g}"
        # even and odd steps drawn apart: a period-2 orbit shows as two branches, not a solid band
        for parity in (0, 1):
            ax_s.plot(k[parity::2], data["sharpness"][i, parity::2], color=shades[i], label=None if parity else label)
        ax_s.axhline(2 * sigma1 / factor, color=shades[i], ls="--", lw=1.0)
        ax_l.semilogy(k, style.positive(data["loss"][i]), color=shades[i], label=label)
    ax_s.axhline(2 * sigma1, color="0.5", ls=":", lw=1.0)
    ax_s.set(xlabel="GD step k", ylabel="sharpness λ_max(∇²f(x_k))",
             title="dashed: 2/η; dotted: 2σ₁")
    ax_s.legend(loc="upper right", bbox_to_anchor=(1.0, 0.94))
    ax_l.set(xlabel="GD step k", ylabel="loss f(x_k)", title="loss")
    ax_l.legend(loc="center right")

    swept, tail = data["swept"], data["tail"]
    fine = np.linspace(swept[0], swept[-1], 200)
    ax_w.plot(fine, 2 * sigma1 / fine, "k--", lw=1.0, label="2/η")
    ax_w.axhline(2 * sigma1, color="0.5", ls=":", lw=1.0, label="2σ₁, sharpness of the balanced minima")
    ok = ~np.isnan(tail[:, 0])
    ax_w.plot(np.repeat(swept[ok], tail.shape[1]), tail[ok].ravel(), ".", color=style.colors(1)[0],
              label=f"sharpness of the last {tail.shape[1]} iterates")
    top = 1.05 * max(np.nanmax(tail), 2 * sigma1 / swept[0])
    ax_w.plot(swept[~ok], np.full((~ok).sum(), top), "x", color=style.colors(2)[1], label="GD diverged")
    ax_w.axvline(1.0, color="0.7", lw=0.8)
    ax_w.set(xlabel="step size ησ₁", ylabel="sharpness λ_max(∇²f)", title="after many steps",
             ylim=(0, 1.1 * top))
    ax_w.legend(loc="lower left")
    style.panel_labels(ax_s, ax_l, ax_w)
    return fig


main = gallery.main_for(__name__)

if __name__ == "__main__":
    sys.exit(main())
