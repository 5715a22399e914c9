"""The installed version of pgflow, recorded in every result's provenance."""

from __future__ import annotations

import functools
from importlib.metadata import PackageNotFoundError, version


@functools.cache  # read once: reading the metadata costs about 0.6 ms, and every result records it
def package_version() -> str:
    """pgflow's version from the installed metadata ("0+unknown" in a source tree never installed)."""
    try:
        return version("pgflow")
    except PackageNotFoundError:
        return "0+unknown"
