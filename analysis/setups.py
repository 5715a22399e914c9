"""One description of a run, one builder: a flat dict of named fields -> problem, initial state,
perturbation and dynamics.

Every command (``pgflow run``, ``check``, ``discretization``, ``sweep``), the sweeps and the figure
scripts describe their runs with the fields of :data:`FIELDS` and build them here, so a field has
one name and one meaning everywhere:

problem
    ``problem`` ("factorization", "sensing", "completion"), ``m``, ``n``, ``rank``, ``width``,
    ``condition`` (σ evenly spaced in [1, κ]), ``n_measurements`` (sensing: p), ``observed``
    (completion: the fraction of entries), ``noise`` (standard deviation of each measurement's noise).
initial state
    ``init`` ("gaussian", "balanced") and ``scale``.
seeds
    ``problem_seed`` (the target, and a sensing problem's operator, mask and noise), ``init_seed``
    and ``perturbation_seed``: three independent integer seeds, or all three from one root seed by
    :func:`spawn_seeds`.
dynamics
    ``dynamics`` (a name of :data:`DYNAMICS`), ``t_end``, ``method``, ``rtol``, ``atol`` (the
    solver's tolerances), ``step_size`` and ``variant`` (GD), ``save_every`` (GD: save every this
    many steps).
perturbation
    ``rho``, ``xi0``, ``perturbation_interval``, ``perturbation_norm``: a
    :class:`~pgflow.flows.perturbations.RandomPerturbation` with ‖E‖ = ρ‖Σ − UVᵀ‖ + ξ₀, redrawn every
    ``perturbation_interval``.
"""

from __future__ import annotations

import math

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..flows import (GradientFlow, MatrixCompletion, MatrixFactorization, MatrixSensing, ModifiedFlow,
                     PerturbedGradientFlow, RandomPerturbation, gradient_descent, init, integrate, integrate_piecewise)
from ..flows.checks import positive, positive_int
from ..flows.descent import number_of_steps
from ..flows.dynamics import VARIANTS
from ..flows.integration import METHODS
from .config import check_keys


# --------------------------------------------------------------------------------------------------
# field checks: each returns the normalized value or raises naming the field
# --------------------------------------------------------------------------------------------------

def choice(*options):
    """A check accepting one of ``options`` (strings)."""
    def check(value, name):
        if not isinstance(value, str) or value not in options:
            raise ValueError(f"{name} must be one of {list(options)}, got {value!r}")
        return value
    return check


def non_negative(value, name):
    return positive(value, name, allow_zero=True)


def between(low: float, high: float = math.inf, *, open_high: bool = False):
    """A check for a positive real in [low, high] ((0, …] when low = 0; …) when open_high)."""
    interval = f"{'(' if low == 0 else '['}{low:g}, {high:g}{')' if open_high or high == math.inf else ']'}"

    def check(value, name):
        value = positive(value, name)
        if value < low or value > high or (open_high and value == high):
            raise ValueError(f"{name} must lie in {interval}, got {value}")
        return value
    return check


def seed(value, name):
    """A seed field: a non-negative integer."""
    return positive_int(value, name, minimum=0)


@dataclass(frozen=True)
class Field:
    """One field of a run description: its default, its check, and what it means."""

    default: object
    check: Callable
    help: str


FIELDS: dict[str, Field] = {
    "problem": Field("factorization", choice("factorization", "sensing", "completion"),
                     "½‖UVᵀ − Σ‖² (factorization), Gaussian sensing of X* with p = n_measurements (sensing), or a "
                     "uniformly observed fraction of the entries (completion)"),
    "m": Field(8, positive_int, "rows of the target"),
    "n": Field(8, positive_int, "columns of the target"),
    "rank": Field(2, positive_int, "rank r of the target"),
    "width": Field(2, positive_int, "width k of the factors U (m×k) and V (n×k)"),
    "condition": Field(1.0, between(1.0), "κ = σ₁/σ_r; the target's singular values are evenly spaced in [1, κ]"),
    "n_measurements": Field(64, positive_int, "sensing: the number of Gaussian measurements p"),
    "observed": Field(0.5, between(0.0, 1.0), "completion: the fraction of entries observed"),
    "noise": Field(0.0, non_negative, "sensing and completion: standard deviation of each measurement's noise"),
    "init": Field("gaussian", choice("gaussian", "balanced"),
                  "initial state: i.i.d. entries of standard deviation scale (gaussian), or U₀ᵀU₀ = V₀ᵀV₀ (balanced)"),
    "scale": Field(1e-3, positive, "entry scale α of the initial state"),
    "problem_seed": Field(0, seed, "seed of the target (and of a sensing problem's operator, mask and noise)"),
    "init_seed": Field(1, seed, "seed of the initial state"),
    "perturbation_seed": Field(2, seed, "seed of the perturbation's random directions"),
    "dynamics": Field("gf", lambda value, name: choice(*DYNAMICS)(value, name),
                      "gf, pgf_residual, pgf_additive (random perturbation of level rho), modified (GD's modified "
                      "flow) or gd (gradient descent; perturbed when rho or xi0 > 0)"),
    "t_end": Field(20.0, positive, "final time (GD: step_size × the number of steps)"),
    "method": Field("auto", choice("auto", *METHODS), "solve_ivp method of the flows"),
    "rtol": Field(1e-8, positive, "relative tolerance of the solver's local error"),
    "atol": Field(1e-10, positive, "absolute tolerance of the solver's local error"),
    "step_size": Field(0.05, positive, "GD step η (and the η of the modified flow)"),
    "variant": Field("simultaneous", choice(*VARIANTS), "GD scheme: simultaneous, alternating or scaled"),
    "save_every": Field(1, positive_int, "GD: save every this many steps"),
    "rho": Field(0.0, non_negative, "perturbation: relative level ρ in ‖E‖ = ρ‖Σ − UVᵀ‖ + ξ₀"),
    "xi0": Field(0.0, non_negative, "perturbation: absolute floor ξ₀"),
    "perturbation_interval": Field(0.1, positive, "perturbation: time between redrawn directions"),
    "perturbation_norm": Field("op", choice("op", "fro"),
                               "perturbation: the norm of E and of Σ − UVᵀ (additive form: always fro)"),
}
"""Every field of a run description: name -> :class:`Field` (default, check, meaning)."""

RENAMED = {"record_every": "save_every", "measurements": "n_measurements", "target_seed": "problem_seed",
           "kind": "problem or init", "seed": "problem_seed, init_seed or perturbation_seed"}
"""Field names of earlier versions -> their names now (refused with the new name in the message)."""


def check_fields(values: dict, where: str, allowed=None) -> dict:
    """``values`` with every field checked and normalized; unknown or renamed fields raise naming ``where``.

    Parameters
    ----------
    values : dict
        Field name -> value.
    where : str
        Where the values were set (a config file's section), for the messages.
    allowed : collection of str, optional
        The fields allowed here (default: all of :data:`FIELDS`).
    """
    check_keys(values, FIELDS if allowed is None else allowed, where, renamed=RENAMED)
    return {name: FIELDS[name].check(value, name) if name in FIELDS else value for name, value in values.items()}


def defaults(**overrides) -> dict:
    """Every field at its default, with ``overrides`` (checked)."""
    values = {name: f.default for name, f in FIELDS.items()}
    values.update(check_fields(overrides, "setup"))
    return values


def spawn_seeds(root: int, key: tuple = ()) -> dict:
    """problem_seed, init_seed and perturbation_seed from one root seed: the first three 32-bit words of
    ``SeedSequence(root, spawn_key=key)`` (``key``: a position, e.g. a run's place in a sweep grid)."""
    words = np.random.SeedSequence(root, spawn_key=tuple(key)).generate_state(3)
    return dict(zip(("problem_seed", "init_seed", "perturbation_seed"), map(int, words)))


def check_consistent(setup: dict, where: str = "") -> None:
    """Constraints between fields (sizes, init, perturbation and dynamics), naming ``where`` if given."""
    c, at = setup, f"{where}: " if where else ""
    if c["rank"] > min(c["m"], c["n"]):
        raise ValueError(f"{at}rank must be <= min(m, n) = {min(c['m'], c['n'])}, got {c['rank']}")
    if c["init"] == "balanced" and c["m"] < c["width"]:
        raise ValueError(f"{at}init = 'balanced' needs m >= width, got m = {c['m']}, width = {c['width']}")
    perturbed = c["rho"] or c["xi0"]
    if c["dynamics"] in ("gf", "modified") and perturbed:
        raise ValueError(f"{at}rho and xi0 perturb dynamics 'pgf_residual', 'pgf_additive' or 'gd', "
                         f"not {c['dynamics']!r}")
    if c["dynamics"] == "gd" and perturbed and c["variant"] != "simultaneous":
        raise ValueError(f"{at}perturbed GD (rho or xi0 > 0) needs variant = 'simultaneous'")
    if c["dynamics"] in ("gd", "modified"):
        number_of_steps(c["step_size"], c["t_end"], "step_size", where)


# --------------------------------------------------------------------------------------------------
# builders
# --------------------------------------------------------------------------------------------------

def build_problem(setup: dict):
    """The problem of a setup: target (and operator, mask and noise) from ``problem_seed``."""
    c = setup
    shape = dict(m=c["m"], n=c["n"], rank=c["rank"], width=c["width"])
    common = dict(condition=c["condition"], seed=c["problem_seed"])
    if c["problem"] == "factorization":
        return MatrixFactorization.random(**shape, **common)
    if c["problem"] == "sensing":
        return MatrixSensing.random(**shape, n_measurements=c["n_measurements"], noise=c["noise"], **common)
    if c["problem"] == "completion":
        return MatrixCompletion.random(**shape, observed=c["observed"], noise=c["noise"], **common)
    raise ValueError(f"problem must be 'factorization', 'sensing' or 'completion', got {c['problem']!r}")


def initial_state(problem, setup: dict) -> np.ndarray:
    """x₀ of a setup, from ``init``, ``scale`` and ``init_seed``."""
    make = {"gaussian": init.gaussian, "balanced": init.balanced}[setup["init"]]
    return make(problem, setup["scale"], seed=setup["init_seed"])


def random_perturbation(problem, setup: dict, form: str = "residual") -> RandomPerturbation:
    """The setup's :class:`~pgflow.flows.perturbations.RandomPerturbation` in ``form``: level ``rho``,
    floor ``xi0``, a direction redrawn every ``perturbation_interval`` from ``perturbation_seed``."""
    grid = np.arange(0.0, setup["t_end"], setup["perturbation_interval"])
    norm = setup["perturbation_norm"] if form == "residual" else "fro"
    return RandomPerturbation(problem, setup["rho"], setup["xi0"], grid, setup["perturbation_seed"], norm=norm,
                              form=form)


def _flow(problem, setup):
    return GradientFlow(problem)


def _modified(problem, setup):
    return ModifiedFlow(problem, setup["step_size"], setup["variant"])


def _pgf(form):
    def make(problem, setup):
        return PerturbedGradientFlow(problem, random_perturbation(problem, setup, form), form)
    return make


DYNAMICS: dict[str, Callable | None] = {
    "gf": _flow,
    "pgf_residual": _pgf("residual"),
    "pgf_additive": _pgf("additive"),
    "modified": _modified,
    "gd": None,
}
"""The one table of dynamics names (the names the claim language uses too): name -> builder of its
flow object ``make(problem, setup)``, or None for gradient descent, which is stepped, not integrated."""


def flow_for(problem, setup: dict):
    """The flow object of ``setup["dynamics"]`` (not for "gd")."""
    make = DYNAMICS[setup["dynamics"]]
    if make is None:
        raise ValueError("gradient descent is not a flow: use evolve()")
    return make(problem, setup)


def evolve(problem, x0, setup: dict, *, flow=None, **options):
    """Run the setup's dynamics from ``x0`` to ``t_end``: integrate a flow, or take GD steps.

    Parameters
    ----------
    problem, x0
        From :func:`build_problem` and :func:`initial_state`.
    setup : dict
        Checked fields (:data:`FIELDS`).
    flow : flow object, optional
        The setup's flow if already built (:func:`flow_for`).
    **options
        For a flow: keyword arguments of :func:`pgflow.flows.integrate` (``t_eval``, ``events``,
        ``monitors``, ``dense_output``, ...); perturbed flows are integrated piece by piece
        (:func:`pgflow.flows.integrate_piecewise`). For GD: ``monitors``, ``default_monitors`` and
        ``provenance``.

    Returns
    -------
    pgflow.flows.Trajectory
    """
    c = setup
    if c["dynamics"] == "gd":
        n_steps = number_of_steps(c["step_size"], c["t_end"])
        perturbation = random_perturbation(problem, c) if c["rho"] or c["xi0"] else None
        return gradient_descent(problem, x0, c["step_size"], n_steps, variant=c["variant"],
                                perturbation=perturbation, save_every=c["save_every"], **options)
    flow = flow_for(problem, c) if flow is None else flow
    solve = integrate_piecewise if isinstance(flow, PerturbedGradientFlow) else integrate
    return solve(flow, x0, c["t_end"], method=c["method"], rtol=c["rtol"], atol=c["atol"], **options)


