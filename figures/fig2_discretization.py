"""Figure 2 — discretization: gradient descent is first order against its flow, second order against its modified flow.

For each step size η, GD (simultaneous and alternating) runs to a fixed time T from one start and
is compared with a reference solve of GF and of the scheme's modified flow
(:class:`pgflow.flows.ModifiedFlow`, ẋ = −∇f − (η/2)∇²f∇f for simultaneous GD), with
:func:`pgflow.analysis.discretization.error_vs_step`. The fitted slopes of log error against log η are
the orders 1 and 2; each reference's own error (grey) lies at least 100× below what it measures.
Panel (b) divides the error over time by η (against GF) and η² (against the modified flow): the
curves for different η collapse, so the order holds at every time, not only at T.
"""

from __future__ import annotations

import sys
from dataclasses import astuple

import numpy as np

from ..analysis.discretization import error_vs_step
from ..flows import MatrixFactorization, init

from . import gallery, style

NAME = "fig2_discretization"
TITLE = "discretization error against step size"
CONFIG = {"m": 12, "n": 10, "rank": 2, "width": 2, "condition": 2.0, "scale": 0.3, "t_end": 2.0,
          "step_sizes": [0.08, 0.04, 0.02, 0.01, 0.005, 0.0025], "variants": ["simultaneous", "alternating"],
          "reference_rtol": 1e-12, "seed": 0}
QUICK = {"m": 6, "n": 5, "t_end": 1.0, "step_sizes": [0.04, 0.02, 0.01], "variants": ["simultaneous"]}
AGAINST = ("flow", "modified")
_REFERENCE = {"flow": "GF", "modified": "modified flow"}


def compute(config, rng):
    """Errors at T, fitted orders and rescaled errors over time, for each variant and reference.

    Errors over time are sampled at the times k·η_max of the largest step, which every other
    step size (η_max/2ʲ) also visits.
    """
    c = config
    problem = MatrixFactorization.random(m=c["m"], n=c["n"], rank=c["rank"], width=c["width"],
                                         condition=c["condition"], seed=int(rng.integers(2**31)))
    x0 = init.gaussian(problem, c["scale"], seed=int(rng.integers(2**31)))
    shape = (len(c["variants"]), len(AGAINST))
    out = {name: np.empty(shape + (len(c["step_sizes"]),)) for name in ("errors", "reference_error")}
    out["fit"] = np.empty(shape + (3,))
    coarse = None
    for v, variant in enumerate(c["variants"]):
        for a, against in enumerate(AGAINST):
            st = error_vs_step(problem, x0, c["step_sizes"], c["t_end"], against=against, variant=variant,
                               reference_rtol=c["reference_rtol"])
            out["errors"][v, a], out["reference_error"][v, a] = st.errors, st.reference_error
            out["fit"][v, a] = astuple(st.fit)
            if v == 0:
                coarse = st.times[int(np.argmax(st.step_sizes))]
                out[f"over_time_{against}"] = np.array(
                    [np.interp(coarse, t, e) for t, e in zip(st.times, st.errors_over_time)])
    out["t"], out["step_sizes"] = coarse, np.asarray(c["step_sizes"], dtype=float)
    return out


def plot(data, config):
    """(a) error at T against η, log–log, with fitted slopes; (b) error over time divided by ηᵖ."""
    fig, (ax, ax_time) = style.figure(2, height=4.0)
    etas = data["step_sizes"]
    colors = style.colors(len(config["variants"]))
    lines = {"flow": "-", "modified": "--"}
    for v, variant in enumerate(config["variants"]):
        for a, against in enumerate(AGAINST):
            fit = data["fit"][v, a]
            ax.loglog(etas, data["errors"][v, a], lines[against], marker="o", color=colors[v],
                      label=f"{variant} GD vs {_REFERENCE[against]}: {style.slope_text(fit)}")
            style.fitted_slope(ax, etas, fit, colors[v])
    ax.loglog(etas, data["reference_error"].max(axis=(0, 1)), color="0.6", marker=".",
              label="largest error of any reference solve")
    ax.set_xticks(etas, [f"{e:g}" for e in etas], minor=False)
    ax.set_xticks([], minor=True)
    ax.set(xlabel="step size η", ylabel="error at t = T: ‖x_GD − x_ref‖₂",
           title=f"error at T = {config['t_end']:g}; dotted: least-squares fits")
    ax.legend(loc="lower right")

    shades = style.shades(len(etas))
    for against, power in (("flow", 1), ("modified", 2)):
        for j, eta in enumerate(etas):
            ax_time.plot(data["t"][1:], data[f"over_time_{against}"][j, 1:] / eta ** power, lines[against],
                             color=shades[j])
    ax_time.set(xlabel="time t = kη", ylabel="rescaled error ‖x_GD(t) − x_ref(t)‖₂ / ηᵖ",
                title=f"{config['variants'][0]} GD: rescaled errors collapse")
    entries = [(f"η = {eta:g}", {"color": s}) for eta, s in zip(etas, shades)]
    entries += [("vs GF, p = 1", {"ls": "-"}), ("vs modified flow, p = 2", {"ls": "--"})]
    style.legend(ax_time, entries, loc="upper right", ncols=2)
    style.panel_labels(ax, ax_time)
    return fig


main = gallery.main_for(__name__)

if __name__ == "__main__":
    sys.exit(main())
