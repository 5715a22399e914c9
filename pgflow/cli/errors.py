"""How the ``pgflow`` command ends: its exit codes and the one line it prints for an error.

Every error ends the command with one line on stderr, ``pgflow COMMAND: error: MESSAGE`` (``pgflow:
error: ...`` before a command is known), and an exit code; ``pgflow --debug COMMAND`` (or
``COMMAND --debug``) shows the traceback instead.
"""

from __future__ import annotations

import os
from concurrent.futures.process import BrokenProcessPool

import numpy as np

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

EXIT_CODES = f"""\
exit codes:
  {EXIT_OK}    success
  {EXIT_FAILED}    the work failed: a check or claim did not hold, gradient descent diverged (the
       gradient flow's results are still written), a solve failed, a sweep's run was killed
       twice, a budget was exceeded, the Dask scheduler could not be reached, or the disk
       refused a write
  {EXIT_USAGE}    a usage error: an unknown option, a bad value, an input file that is missing,
       unreadable or malformed, an output folder that cannot be created, or an option whose
       extra is not installed (the message names the option or the file)
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)

Errors print one line, "pgflow COMMAND: error: ..."; --debug shows the traceback."""
"""The exit codes, as ``pgflow --help`` prints them."""


class CommandFailed(Exception):
    """The work of a command failed after its input was accepted: exit 1 with this message."""


# the work failed (exit 1): numbers, solvers, processes, networks, disks. Checked before the usage
# errors: numpy's LinAlgError is a ValueError, and a full disk is an OSError.
_FAILURES = (CommandFailed, ArithmeticError, np.linalg.LinAlgError, RuntimeError, BrokenProcessPool, ConnectionError,
             TimeoutError, MemoryError)
# the input was wrong (exit 2): a value, or a path that names no readable file or no folder
_USAGE = (ValueError, TypeError, KeyError, ImportError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
          PermissionError, FileExistsError)


def exit_code(exc: BaseException) -> int:
    """The exit code of a command that raised ``exc``."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, _FAILURES):
        return EXIT_FAILED
    if isinstance(exc, _USAGE):
        return EXIT_USAGE
    return EXIT_FAILED


def message(exc: BaseException) -> str:
    """``exc`` as one line: its message (an OSError's as "PATH: what went wrong"), or, for an
    exception a user cannot have caused, its type and a pointer to ``--debug``.

    Examples
    --------
    >>> message(FileNotFoundError(2, "No such file or directory", "out/table.csv"))
    'out/table.csv: no such file or directory'
    >>> message(ValueError("rank must be <= 8,\\n  got 9"))
    'rank must be <= 8, got 9'
    >>> message(IndexError("index 3 is out of bounds"))
    'unexpected IndexError: index 3 is out of bounds (pgflow --debug ... shows the traceback; please report it)'
    """
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.filename}: {exc.strerror[:1].lower()}{exc.strerror[1:]}"
    elif isinstance(exc, KeyError) and len(exc.args) == 1:
        text = str(exc.args[0])
    else:
        text = str(exc) or type(exc).__name__
    text = " ".join(line.strip() for line in text.splitlines() if line.strip())
    if not isinstance(exc, _FAILURES + _USAGE + (OSError,)):
        text = f"unexpected {type(exc).__name__}: {text} (pgflow --debug ... shows the traceback; please report it)"
    return text


def check_folder(path: str, option: str) -> None:
    """Raise an error naming ``option`` unless ``path`` is a folder that can be written, or one that
    can be created; create nothing (an error found later must not leave a folder behind).

    Raises
    ------
    NotADirectoryError, PermissionError
        "--out PATH: is a file, not a folder", "--out PATH: cannot create the folder: ANCESTOR is a
        file", "--out PATH: cannot write in ANCESTOR (permission denied)".
    """
    path = os.path.abspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise NotADirectoryError(f"{option} {path}: is a file, not a folder")
    ancestor = path
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise NotADirectoryError(f"{option} {path}: cannot create the folder: {ancestor} is a file")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise PermissionError(f"{option} {path}: cannot write in {ancestor} (permission denied)")
