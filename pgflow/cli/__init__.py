"""The ``pgflow`` command: ``pgflow COMMAND [options]``, or ``python -m pgflow``.

Each subcommand is a module of this package with ``register(subparsers)``, listed in
:data:`COMMANDS`. Exit codes (:mod:`.errors`): 0 success; 1 the work failed (a check did not hold,
gradient descent diverged, a solve failed, a sweep's run was killed, the Dask scheduler could not be
reached, an output could not be written); 2 a usage error (an unknown option, a bad value, an input
file that is missing, unreadable or malformed); 130 interrupted. Every error prints one line,
``pgflow COMMAND: error: ...``, naming the option or the file; ``--debug`` (before or after
COMMAND) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys

from ..flows.version import package_version
from . import check, discretize, figures, run, sweep
from .errors import EXIT_CODES, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, exit_code, message

COMMANDS = {"run": run, "discretization": discretize, "check": check, "sweep": sweep, "figures": figures}
"""Subcommand name -> the module that registers it."""

__all__ = ["COMMANDS", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pgflow", description="Gradient flow and gradient descent on "
                                     "low-rank matrix problems.", epilog=EXIT_CODES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"pgflow {package_version()}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS.values():
        module.register(sub)
    for command in sub.choices.values():
        # also after COMMAND; SUPPRESS keeps a subcommand's default from undoing `pgflow --debug COMMAND`
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show the traceback of an error")
    return parser


def main(argv=None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) and return its exit code.

    An error returns 1 or 2 (see :mod:`pgflow.cli.errors`) after printing one line to stderr; with
    ``--debug`` it is raised instead. Usage errors found by argparse exit (``SystemExit(2)``).
    """
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.handler(args) or EXIT_OK)
    except (Exception, KeyboardInterrupt) as exc:  # a user meets one line, never a traceback
        if args.debug:
            raise
        print(f"pgflow {args.command}: error: {message(exc)}", file=sys.stderr)
        return exit_code(exc)
