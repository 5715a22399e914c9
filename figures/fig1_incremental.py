"""Figure 1 — incremental learning from small initialization.

From a small Gaussian init the singular values of UVᵀ are learned one at a time, each after a
plateau, at times close to the balanced-mode prediction ln(σᵢ/uᵢ(0))/(2σᵢ) (docs/math/proof-quantities.md,
:func:`pgflow.flows.emergence_report`). Gradient flow (DOP853, grid-exact states, emergence located by
events) and gradient descent (t = kη) from the same start; GD learns each value a little later.
"""

from __future__ import annotations

import sys

from ..flows import (GradientFlow, MatrixFactorization, emergence_events, emergence_report, gradient_descent, init,
                   integrate)

from . import gallery, style

NAME = "fig1_incremental"
TITLE = "incremental learning from small init"
CONFIG = {"m": 40, "n": 30, "sigma": [8.0, 4.0, 2.0, 1.0], "width": 10, "scale": 1e-3, "t_end": 10.0,
          "step_size": 0.04, "fraction": 0.5, "save_every": 1, "rtol": 1e-10, "atol": 1e-14, "seed": 0}
QUICK = {"m": 12, "n": 10, "width": 6, "save_every": 2}


def compute(config, rng):
    """GF and GD singular values of UVᵀ over time, measured and predicted emergence times."""
    c = config
    problem = MatrixFactorization.random(m=c["m"], n=c["n"], rank=len(c["sigma"]), width=c["width"],
                                         singular_values=c["sigma"], seed=int(rng.integers(2**31)))
    x0 = init.gaussian(problem, c["scale"], seed=int(rng.integers(2**31)))
    eta, n_steps = c["step_size"], int(round(c["t_end"] / c["step_size"]))
    gd = gradient_descent(problem, x0, eta, n_steps, save_every=c["save_every"])
    gf = integrate(GradientFlow(problem), x0, gd.t[-1], method="DOP853", rtol=c["rtol"], atol=c["atol"],
                   t_eval=gd.t, events=emergence_events(problem, c["fraction"]))
    report_gf = emergence_report(gf, problem, x0, c["fraction"])
    report_gd = emergence_report(gd, problem, x0, c["fraction"])
    return {"t": gd.t, "sv_gf": gf.monitors["singular_values"], "sv_gd": gd.monitors["singular_values"],
            "sigma": report_gf.sigma, "predicted": report_gf.predicted, "measured_gf": report_gf.measured,
            "measured_gd": report_gd.measured}


def plot(data, config):
    """(a) σᵢ(UVᵀ) over time, linear; (b) the same on a log scale; predicted and measured emergence marked."""
    sigma, q = data["sigma"], data["sigma"].size
    fig, axes = style.figure(2, height=3.9)
    colors = style.colors(q)
    level = config["fraction"] * sigma
    for ax in axes:
        for i in range(q):
            ax.plot(data["t"], data["sv_gf"][:, i], color=colors[i])
            ax.plot(data["t"], data["sv_gd"][:, i], "--", color=colors[i])
            ax.axvline(data["predicted"][i], color=colors[i], ls=":", lw=1.0)
            ax.axhline(sigma[i], color="0.6", lw=0.7, zorder=1)
        ax.plot(data["measured_gf"], level, "o", mfc="none", color="k")
        ax.plot(data["measured_gd"], level, "x", color="k")
        ax.set(xlabel="time t (GD: t = kη)", xlim=(0, data["t"][-1]))
    axes[0].set(ylabel="singular values σᵢ(UVᵀ)", title="the staircase")
    axes[1].set(yscale="log", ylabel="σᵢ(UVᵀ), log scale", title="exponential growth, then saturation at σᵢ(Σ)")
    style.panel_labels(*axes)
    f = f"{config['fraction']:g}"
    style.legend(axes[0], [(f"σ{_sub(i + 1)}(UVᵀ), σ{_sub(i + 1)}(Σ) = {s:g}", {"color": c})
                           for i, (s, c) in enumerate(zip(sigma, colors))], loc="center right")
    style.legend(axes[1], [("gradient flow", {"color": "k"}),
                           (f"gradient descent, η = {config['step_size']:g}", {"color": "k", "ls": "--"}),
                           ("predicted emergence ln(σᵢ/uᵢ(0))/(2σᵢ)", {"color": "k", "ls": ":", "lw": 1.0}),
                           (f"GF reaches {f}σᵢ", {"marker": "o", "mfc": "none", "color": "k", "ls": ""}),
                           (f"GD reaches {f}σᵢ", {"marker": "x", "color": "k", "ls": ""}),
                           ("σᵢ(Σ)", {"color": "0.6", "lw": 0.7})], loc="lower right")
    return fig


def _sub(i: int) -> str:
    return str(i).translate(str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉"))


main = gallery.main_for(__name__)

if __name__ == "__main__":
    sys.exit(main())
