"""Writing figures: atomically, with metadata fixed so the same figure gives the same bytes."""

from __future__ import annotations

import os

from ..flows.files import atomic_path


def save_figure(fig, path) -> str:
    """Save a matplotlib figure atomically, with metadata fixed so the bytes are reproducible.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : str or path-like
        The file to write; its suffix (png, pdf, svg) chooses the format.

    Returns
    -------
    str
        The path written.
    """
    path = os.fspath(path)
    fmt = os.path.splitext(path)[1].lstrip(".").lower()
    metadata = {"png": {"Software": None}, "pdf": {"Creator": None, "Producer": None, "CreationDate": None},
                "svg": {"Date": None, "Creator": None}}.get(fmt)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, metadata=metadata)
    return path
