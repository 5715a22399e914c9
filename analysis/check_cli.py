"""``pgflow check``: run a claim file on a configured ensemble and print the report table.

A claim file is TOML or a Python module.

TOML::

    [ensemble]                      # every key optional; see ENSEMBLE_DEFAULTS
    m = 8
    dynamics = ["gf", "gd", "pgf_residual"]
    [ensemble.perturbation]         # for PGF runs: a RandomPerturbation, redrawn on `pieces` pieces
    rho = 0.1
    xi0 = 0.01

    [params]                        # values for the parameters a claim declares but leaves unset
    eps = 0.01

    [[claim]]
    use = "imbalance_conserved"     # a claim of analysis.claims.CATALOGUE ...

    [[claim]]                       # ... or a new one (the fields of analysis.bounds.Claim)
    name = "loss halves"
    statement = "loss <= initial(loss)"
    dynamics = ["gf"]

Python: a module defining ``CLAIMS`` (Claim objects or catalogue names) and optionally ``ENSEMBLE``
and ``PARAMS`` (dicts with the keys above).

The exit status is 0 when every claim comes out as expected (``expect``), 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
from dataclasses import replace

import numpy as np

from . import bounds, claims
from ._config import read_toml
from .discretization import number_of_steps

EXAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "claims_example.toml")

ENSEMBLE_DEFAULTS = {
    "m": 8, "n": 6, "rank": 2, "width": 2, "condition": 2.0, "target_seed": 0,
    "seeds": 5, "init": "gaussian", "scale": 1e-2,
    "t_end": 10.0, "n_save": 101, "method": "DOP853", "rtol": 1e-10, "atol": 1e-12,
    "dynamics": ["gf", "gd", "pgf_residual"], "step_size": None,
    "perturbation": {"rho": 0.1, "xi0": 0.01, "pieces": 40, "norm": "op"},
}
"""Ensemble configuration defaults. ``seeds``: a count (seeds 0..N−1) or a list of init seeds.
``step_size``: η for GD and the modified flow, dividing t_end (default: the largest such η ≤ 1/(5σ₁)).
``init``: "gaussian" or "balanced"."""

_CLAIM_FIELDS = {"statement", "name", "tol", "rtol", "params", "dynamics", "expect", "description", "quantities"}


def _config(ensemble: dict) -> dict:
    unknown = sorted(set(ensemble) - set(ENSEMBLE_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown [ensemble] key(s) {unknown}; known: {sorted(ENSEMBLE_DEFAULTS)}")
    config = {**ENSEMBLE_DEFAULTS, **ensemble}
    pert = dict(config["perturbation"])
    unknown = sorted(set(pert) - set(ENSEMBLE_DEFAULTS["perturbation"]))
    if unknown:
        raise ValueError(f"unknown [ensemble.perturbation] key(s) {unknown}; known: "
                         f"{sorted(ENSEMBLE_DEFAULTS['perturbation'])}")
    config["perturbation"] = {**ENSEMBLE_DEFAULTS["perturbation"], **pert}
    bad = sorted(set(config["dynamics"]) - set(bounds.S.DYNAMICS))
    if bad:
        raise ValueError(f"[ensemble] dynamics must be among {bounds.S.DYNAMICS}, got {bad}")
    if config["init"] not in ("gaussian", "balanced"):
        raise ValueError(f"[ensemble] init must be 'gaussian' or 'balanced', got {config['init']!r}")
    return config


def build_runs(ensemble: dict | None = None) -> list[bounds.Run]:
    """The runs of an ensemble: every seed × every dynamics, on one random target.

    Parameters
    ----------
    ensemble : dict, optional
        Keys of :data:`ENSEMBLE_DEFAULTS`.

    Returns
    -------
    list of Run
        Seed s starts from ``init.<init>(problem, scale, seed=s)`` and its PGF perturbation is a
        :class:`flows.perturbations.RandomPerturbation` with ``seed=s``: the initial state, the target
        and the perturbation's pieces draw from separate streams of s (:func:`flows._checks.seed_rng`),
        so they stay independent even when s equals ``target_seed``.
    """
    from flows import GradientFlow, MatrixFactorization, ModifiedFlow, PerturbedGradientFlow, gradient_descent, init
    from flows import integrate, integrate_piecewise, perturbations

    c = _config(ensemble or {})
    problem = MatrixFactorization.random(m=c["m"], n=c["n"], rank=c["rank"], width=c["width"],
                                         condition=c["condition"], seed=c["target_seed"])
    seeds = list(range(c["seeds"])) if isinstance(c["seeds"], int) else list(c["seeds"])
    if c["step_size"] is None:  # the largest η ≤ 1/(5σ₁) that reaches t_end in whole steps
        eta = c["t_end"] / math.ceil(5 * float(problem.target.sigma[0]) * c["t_end"])
    else:
        eta = c["step_size"]
    n_steps = number_of_steps(eta, c["t_end"], "step_size")
    record = max(1, n_steps // (c["n_save"] - 1))
    grid = np.linspace(0.0, c["t_end"], c["n_save"])
    solver = {"method": c["method"], "rtol": c["rtol"], "atol": c["atol"]}
    pert = c["perturbation"]
    runs = []
    for s in seeds:
        x0 = getattr(init, c["init"])(problem, c["scale"], seed=s)
        provenance = {"seed": s}
        for dyn in c["dynamics"]:
            label = f"{dyn} seed {s}"
            if dyn == "gd":
                traj = gradient_descent(problem, x0, eta, n_steps, record_every=record, provenance=provenance)
                runs.append(bounds.Run.of(traj, problem, label=label))
                continue
            if dyn.startswith("pgf"):
                form = dyn.split("_", 1)[1]
                model = perturbations.RandomPerturbation(
                    problem, pert["rho"], pert["xi0"], np.linspace(0.0, c["t_end"], pert["pieces"], endpoint=False),
                    s, norm=pert["norm"] if form == "residual" else "fro", form=form)
                flow = PerturbedGradientFlow(problem, model, form)
                traj = integrate_piecewise(flow, x0, c["t_end"], t_eval=grid, provenance=provenance, **solver)
            else:
                flow = GradientFlow(problem) if dyn == "gf" else ModifiedFlow(problem, eta)
                traj = integrate(flow, x0, c["t_end"], t_eval=grid, provenance=provenance, **solver)
            runs.append(bounds.Run.of(traj, flow, label=label))
    return runs


def _claim(entry, index: int) -> bounds.Claim:
    if isinstance(entry, bounds.Claim):
        return entry
    if isinstance(entry, str):
        return claims.get(entry)
    if not isinstance(entry, dict):
        raise TypeError(f"claim {index} must be a table, a Claim or a catalogue name, got {type(entry).__name__}")
    entry = dict(entry)
    use = entry.pop("use", None)
    unknown = sorted(set(entry) - _CLAIM_FIELDS)
    if unknown or (use is None and "statement" not in entry):
        raise ValueError(f"claim {index}: needs 'statement' (or 'use'); unknown field(s) {unknown}; "
                         f"fields: {sorted(_CLAIM_FIELDS)}")
    if use is None:
        return bounds.Claim(**entry)
    base = claims.get(use)
    return replace(base, params={**base.params, **entry.pop("params", {})}, **entry)


def load(path) -> tuple[list[bounds.Claim], dict, dict]:
    """Claims, ensemble config and parameter values from a TOML file or a Python module."""
    path = os.fspath(path)
    if path.endswith(".toml"):
        data = read_toml(path, {"ensemble", "params", "claim"}, arrays=("claim",))
        entries, ensemble, params = data.get("claim", []), data.get("ensemble", {}), data.get("params", {})
    elif path.endswith(".py"):
        spec = importlib.util.spec_from_file_location("pgflow_claims", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if not hasattr(module, "CLAIMS"):
            raise ValueError(f"{path} must define CLAIMS (a list of Claim objects or catalogue names)")
        entries, ensemble, params = module.CLAIMS, getattr(module, "ENSEMBLE", {}), getattr(module, "PARAMS", {})
    else:
        raise ValueError(f"a claim file must end in .toml or .py, got {path}")
    if not entries:
        raise ValueError(f"{path} defines no claims")
    return [_claim(e, i) for i, e in enumerate(entries)], dict(ensemble), dict(params)


def register(subparsers) -> None:
    p = subparsers.add_parser("check", help="check claimed bounds on an ensemble of GF/PGF/GD runs",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", nargs="?", default=EXAMPLE, help="claim file, .toml or .py (default: the shipped example)")
    p.add_argument("--seeds", type=int, default=None, help="override the ensemble's number of seeds")
    p.add_argument("--claim", action="append", default=None, metavar="NAME",
                   help="check only this claim (repeatable)")
    p.add_argument("--plots", default=None, metavar="DIR", help="write one PNG per claim into DIR")
    p.add_argument("--list", action="store_true", help="list the claim catalogue and exit")
    p.set_defaults(handler=check_command)


def check_command(args) -> int:
    if args.list:
        for name, claim in claims.CATALOGUE.items():
            print(f"{name:28s} {','.join(claim.dynamics or ('any',)):22s} {claim.text}")
        return 0
    chosen, ensemble, params = load(args.file)
    if args.claim:
        missing = sorted(set(args.claim) - {c.label for c in chosen})
        if missing:
            raise SystemExit(f"pgflow check: no claim named {missing} in {args.file}")
        chosen = [c for c in chosen if c.label in args.claim]
    if args.seeds is not None:
        ensemble["seeds"] = args.seeds
    runs = build_runs(ensemble)
    reports = bounds.check_all(chosen, runs, params=params)
    print(bounds.table(reports))
    if args.plots:
        from flows._io import save_figure
        os.makedirs(args.plots, exist_ok=True)
        for rep in reports:
            slug = "".join(ch if ch.isalnum() else "_" for ch in rep.claim.label)[:60]
            save_figure(rep.plot(), os.path.join(args.plots, f"{slug}.png"))
    failed = [r.claim.label for r in reports if not r.as_expected]
    if failed:
        print(f"\n{len(failed)} claim(s) not as expected: {', '.join(failed)}")
    return 1 if failed else 0
