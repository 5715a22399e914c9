"""Progress of work counted in runs (a sweep's runs, a discretization study's solves, a check's
trajectories): one tqdm bar on stderr with the count, the rate and an ETA.

``enabled=None`` shows it only when stderr is a terminal, so that logs and captured output stay
clean; the command line passes None, library calls default to False.
"""

from __future__ import annotations

import sys

from tqdm import tqdm


def run_bar(total: int, desc: str, enabled: bool | None = False):
    """A tqdm bar over ``total`` runs, labelled ``desc`` (a context manager; ``.update()`` per run).

    Parameters
    ----------
    total : int
        The number of runs.
    desc : str
        What is running ("sweep", "discretization", ...).
    enabled : bool or None
        True: show it; False: a silent bar; None: show it only when stderr is a terminal.
    """
    if enabled is not None and not isinstance(enabled, bool):
        raise TypeError(f"progress must be True, False or None, got {enabled!r}")
    stream = sys.stderr
    if enabled is None:
        enabled = stream.isatty()
    return tqdm(total=total, unit="run", desc=desc, file=stream, disable=not enabled or total == 0,
                dynamic_ncols=True)
