"""``pgflow check``: run a claim file on a configured ensemble and print the report table.

A claim file is TOML (or, with --allow-python, a Python module).

TOML::

    [ensemble]                      # every key optional; see pgflow.analysis.bounds.ensembles
    m = 8
    dynamics = ["gf", "gd", "pgf_residual"]
    rho = 0.1                       # for PGF runs: a random perturbation of level rho and floor xi0,
    xi0 = 0.01                      # redrawn every perturbation_interval

    [params]                        # values for the parameters a claim declares but leaves unset
    eps = 0.01

    [[claim]]
    use = "imbalance_conserved"     # a claim of pgflow.analysis.claims.CATALOGUE ...

    [[claim]]                       # ... or a new one (the fields of pgflow.analysis.bounds.Claim)
    name = "loss halves"
    statement = "loss <= initial(loss)"
    dynamics = ["gf"]

Python (only with --allow-python: the file is code and runs): a module defining ``CLAIMS`` (Claim
objects or catalogue names) and optionally ``ENSEMBLE`` and ``PARAMS`` (dicts with the keys above).

The exit status is 0 when every claim comes out as expected (``expect``), 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
from importlib import resources

from ..analysis import bounds, claims
from ..analysis.bounds.ensembles import ensemble_runs, load_claim_file
from ..figures.output import save_figure

EXAMPLE = str(resources.files("pgflow.analysis") / "examples" / "claims.toml")


def register(subparsers) -> None:
    p = subparsers.add_parser("check", help="check claimed bounds on an ensemble of GF/PGF/GD runs",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", nargs="?", default=EXAMPLE, help="claim file, .toml or .py (default: the shipped example)")
    p.add_argument("--allow-python", action="store_true", help="run a .py claim file (it is code: only if you "
                   "trust it)")
    p.add_argument("--init-seeds", type=int, default=None, help="override the ensemble's number of init seeds")
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
    chosen, ensemble, params = load_claim_file(args.file, allow_python=args.allow_python)
    if args.claim:
        missing = sorted(set(args.claim) - {c.label for c in chosen})
        if missing:
            raise ValueError(f"no claim named {missing} in {args.file}")
        chosen = [c for c in chosen if c.label in args.claim]
    if args.init_seeds is not None:
        ensemble["init_seeds"] = args.init_seeds
    runs = ensemble_runs(ensemble)
    reports = bounds.check_all(chosen, runs, params=params)
    print(bounds.table(reports))
    if args.plots:
        os.makedirs(args.plots, exist_ok=True)
        for rep in reports:
            slug = "".join(ch if ch.isalnum() else "_" for ch in rep.claim.label)[:60]
            save_figure(rep.plot(), os.path.join(args.plots, f"{slug}.png"))
    failed = [r.claim.label for r in reports if not r.as_expected]
    if failed:
        print(f"\n{len(failed)} claim(s) not as expected: {', '.join(failed)}")
    return 1 if failed else 0
