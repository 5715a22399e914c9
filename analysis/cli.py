"""The ``pgflow`` command. Each subcommand lives in its own module with ``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> module providing register(subparsers); imported only when needed
COMMANDS = {
    "run": "analysis.run",
    "discretization": "analysis.discretization_cli",
    "check": "analysis.check_cli",
    "figures": "analysis.figures_cli",
    "sweep": "analysis.sweep_cli",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pgflow", description="Gradient flow and gradient descent on "
                                     "low-rank matrix problems.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS.values():
        importlib.import_module(module).register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.handler(args) or 0)
    except (ValueError, TypeError) as exc:  # bad user input: say what, without a traceback
        print(f"pgflow {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
