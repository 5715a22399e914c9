"""The ``pgflow`` command: ``pgflow COMMAND [options]``, or ``python -m pgflow``.

Each subcommand is a module of this package with ``register(subparsers)``, listed in
:data:`COMMANDS`. Exit codes: 0 success, 1 a check failed or a run failed (the output says which),
2 a usage error (a bad option, value, or file). Errors print one line ``pgflow: error: ...``;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys

from ..flows.version import package_version
from . import check, discretize, figures, run, sweep

COMMANDS = {"run": run, "discretization": discretize, "check": check, "sweep": sweep, "figures": figures}
"""Subcommand name -> the module that registers it."""

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pgflow", description="Gradient flow and gradient descent on "
                                     "low-rank matrix problems.")
    parser.add_argument("--version", action="version", version=f"pgflow {package_version()}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS.values():
        module.register(sub)
    return parser


def main(argv=None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.handler(args) or EXIT_OK)
    except (ValueError, TypeError, KeyError, OSError, ImportError) as exc:  # bad user input: what, not where
        if args.debug:
            raise
        message = str(exc).strip("'\"") if isinstance(exc, KeyError) else str(exc)
        print(f"pgflow {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
