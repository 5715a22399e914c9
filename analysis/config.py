"""TOML configuration files: reading them with their sections checked, and refusing unknown keys."""

from __future__ import annotations

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
        A malformed file, an unknown section, or a section of the wrong kind, naming the file.
    FileNotFoundError, PermissionError
        The file cannot be read (the message names it).
    """
    try:
        with open(path, "rb") as fh:
            config = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config {path}: {exc}") from exc
    for section, values in config.items():
        if section not in sections:
            raise ValueError(f"config {path}: unknown section [{section}]; sections are {sorted(sections)}")
        if section not in arrays and not isinstance(values, dict):
            raise ValueError(f"config {path}: {section} must be a table, written [{section}]")
    return config


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
