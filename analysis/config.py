"""TOML configuration files: reading them with their sections checked, and refusing unknown keys."""

from __future__ import annotations

import os
import tomllib


def read_toml(path, sections, arrays=()) -> dict:
    """The contents of a TOML config file, its sections checked by name and kind.

    Parameters
    ----------
    path : str or path-like
    sections : collection of str
        The sections allowed; any other raises (a typo would otherwise be silently ignored).
    arrays : collection of str
        Sections written as arrays of tables (``[[name]]``); every other one must be a table.

    Raises
    ------
    ValueError
        A malformed file (bad TOML or not UTF-8), not a regular file, an unknown section, or a
        section of the wrong kind, naming the file.
    FileNotFoundError, IsADirectoryError, PermissionError, OSError
        The file is missing, is a folder, or cannot be read (the message names it).
    """
    data = read_bytes(path)
    try:
        config = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"config {path}: not a UTF-8 text file (byte {exc.start} is {data[exc.start]:#04x}); "
                         "TOML files are UTF-8") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config {path}: {exc}") from exc
    for section, values in config.items():
        if section not in sections:
            raise ValueError(f"config {path}: unknown section [{section}]; sections are {sorted(sections)}")
        if section not in arrays and not isinstance(values, dict):
            raise ValueError(f"config {path}: {section} must be a table, written [{section}]")
    return config


def read_bytes(path, what: str = "config") -> bytes:
    """The bytes of the regular file at ``path``, or an error that names it and says what is wrong.

    Parameters
    ----------
    path : str or path-like
    what : str
        What the file is, for the messages ("config", "claim file", ...).

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError, OSError
        "config PATH: no such file", "... is a folder, not a file", "... cannot be read: permission
        denied".
    ValueError
        "config PATH: is not a regular file": a pipe or a device, whose reading could block for ever.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} {path}: no such file")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{what} {path}: is a folder, not a file")
    if not os.path.isfile(path):
        raise ValueError(f"{what} {path}: is not a regular file")
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise type(exc)(f"{what} {path}: cannot be read: {(exc.strerror or str(exc)).lower()}") from exc


def check_keys(values: dict, allowed, where: str, renamed: dict | None = None) -> None:
    """Raise naming ``where`` and the key if ``values`` has a key outside ``allowed``.

    A typo would otherwise be silently ignored. ``renamed`` maps old key names to new ones, so a
    config written for an older pgflow is told what to write instead.
    """
    for key in values:
        if renamed and key in renamed:
            raise ValueError(f"{where}: {key!r} is now called {renamed[key]!r}")
        if key not in allowed:
            raise ValueError(f"{where}: unknown key {key!r}; keys are {sorted(allowed)}")
