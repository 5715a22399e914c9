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

The table's columns: ``holds`` (the verdict: yes, NO, UNRELIABLE when a derivative disagrees with
the finite differences of the saved trajectory, NOT CHECKED when no state meets the claim's
hypotheses), ``must_hold`` (whether the claim is expected to hold: ``expect``), ``as_expected``
(whether the verdict is the expected one), ``nonsmooth`` (states where a one-sided derivative was
used), ``excluded`` (states outside the hypotheses), ``fd check`` (each derivative against the
trajectory). ``--falsify`` searches each claim for a counterexample instead
(:func:`pgflow.analysis.bounds.falsify`); ``--reproducers DIR`` writes a claim file per claim that
reruns its worst case.
``--out report.csv`` (or ``.json``) writes the tidy rows: claim, run, time, lhs, rhs, slack, holds,
nonsmooth.

The exit status is 0 when every claim comes out as expected, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
from importlib import resources

from ..analysis import bounds, claims
from ..analysis.bounds import falsifier
from ..analysis.text import table as text_table
from ..analysis.bounds.ensembles import ensemble_runs, load_claim_file
from ..analysis.bounds.export import write_report
from ..analysis.progress import run_bar
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
    p.add_argument("--out", default=None, metavar="FILE",
                   help="also write the tidy report (claim, run, time, lhs, rhs, slack, holds, nonsmooth: one row "
                        "per claim, run and saved state) to FILE, .csv or .json")
    p.add_argument("--list", action="store_true", help="list the claim catalogue and exit")
    p.add_argument("--falsify", action="store_true",
                   help="instead of checking the ensemble, search for a counterexample to each claim (random and "
                        "adversarial starts, then local optimization of the slack; pgflow.analysis.bounds.falsify)")
    p.add_argument("--budget", type=int, default=None, metavar="N",
                   help="with --falsify: trajectories per claim (default: falsify's default budget)")
    p.add_argument("--reproducers", default=None, metavar="DIR",
                   help="with --falsify: write a claim file reproducing each worst case into DIR (pgflow check "
                        "reruns it)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars, even on a terminal")
    p.set_defaults(handler=check_command)


def check_command(args) -> int:
    if args.list:
        for name, claim in claims.CATALOGUE.items():
            print(f"{name:28s} {','.join(claim.dynamics or ('any',)):22s} {claim.text}")
        return 0
    chosen, ensemble, params = load_claim_file(args.file, allow_python=args.allow_python)
    if (args.budget is not None or args.reproducers) and not args.falsify:
        raise ValueError("--budget and --reproducers go with --falsify")
    if args.claim:
        missing = sorted(set(args.claim) - {c.label for c in chosen})
        if missing:
            raise ValueError(f"no claim named {missing} in {args.file}")
        chosen = [c for c in chosen if c.label in args.claim]
    if args.init_seeds is not None:
        ensemble["init_seeds"] = args.init_seeds
    if args.falsify:
        return falsify_command(chosen, ensemble, params, args)
    if args.out and os.path.splitext(args.out)[1].lower() not in (".csv", ".json"):
        raise ValueError(f"--out must name a .csv or .json file, got {args.out!r}")
    progress = False if args.no_progress else None
    runs = ensemble_runs(ensemble, progress=progress)
    reports = bounds.check_all(chosen, runs, params=params, progress=progress)
    print(bounds.table(reports))
    if args.out:
        print(f"\nwrote {write_report(reports, args.out)}")
    if args.plots:
        os.makedirs(args.plots, exist_ok=True)
        for rep in reports:
            slug = "".join(ch if ch.isalnum() else "_" for ch in rep.claim.label)[:60]
            save_figure(rep.plot(), os.path.join(args.plots, f"{slug}.png"))
    failed = [r.claim.label for r in reports if not r.as_expected]
    if failed:
        print(f"\n{len(failed)} claim(s) not as expected: {', '.join(failed)}")
    return 1 if failed else 0


_PROBLEM_KEYS = ("m", "n", "rank", "width", "condition", "rho", "xi0", "perturbation_interval", "perturbation_norm",
                 "rtol", "atol", "method")


def falsify_command(chosen, ensemble: dict, params: dict, args) -> int:
    """``pgflow check --falsify``: one falsification per claim, a table, reproducers; exit 0 when every
    claim that must hold survived and every known counterexample was found."""
    own = {k: ensemble[k] for k in _PROBLEM_KEYS if k in ensemble}
    family = ([{**falsifier.DEFAULT_FAMILY[0], **own}] if own else []) + [dict(f) for f in falsifier.DEFAULT_FAMILY]
    allowed = ensemble.get("dynamics")
    rows, failed = [], []
    if args.reproducers:
        os.makedirs(args.reproducers, exist_ok=True)
    bar = run_bar(len(chosen), "falsify", False if args.no_progress else None)
    for claim in chosen:
        values = {k: v for k, v in params.items() if k in claim.params and claim.params[k] is None}
        dynamics = claim.dynamics or tuple(allowed or ("gf",))
        if allowed and claim.dynamics:
            dynamics = tuple(d for d in claim.dynamics if d in allowed) or claim.dynamics
        result = bounds.falsify(claim, family, dynamics, budget=args.budget, params=values)
        where = "-"
        if args.reproducers:
            slug = "".join(ch if ch.isalnum() else "_" for ch in claim.label)[:60]
            where = result.write(os.path.join(args.reproducers, f"{slug}.toml"))
        expected = result.found != claim.expect
        if not expected:
            failed.append(claim.label)
        rows.append((claim.label, result.dynamics, "yes" if claim.expect else "no", "yes" if result.found else "no",
                     "yes" if expected else "NO", f"{result.worst_slack:.3g}", f"{result.worst_relative:.3g}",
                     f"{result.time:.4g}", result.kind, f"{result.evaluations} ({result.applicable})",
                     f"{result.seconds:.1f}", where))
        bar.update()
    bar.close()
    header = ("claim", "dynamics", "must_hold", "counterexample", "as_expected", "worst slack", "relative", "at t",
              "start", "trajectories (within hypotheses)", "seconds", "reproducer")
    print(text_table(header, rows, rule=True))
    if failed:
        print(f"\n{len(failed)} claim(s) not as expected: {', '.join(failed)}")
    return 1 if failed else 0
