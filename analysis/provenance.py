"""Which code computed a stored result: the version plus a hash of the library's sources."""

from __future__ import annotations

import functools
import hashlib
import pathlib

from .. import analysis, flows
from ..flows.version import package_version


@functools.cache
def code_version() -> str:
    """The package version plus a hash of the ``pgflow.flows`` and ``pgflow.analysis`` sources.

    Caches of computed results (figure data, sweep runs) are keyed by it, so that editing the library
    without bumping the version never reuses a result the old code computed.
    """
    digest = hashlib.sha256()
    for package in (flows, analysis):
        root = pathlib.Path(package.__file__).parent
        for path in sorted(root.rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return f"{package_version()}+{digest.hexdigest()[:12]}"
