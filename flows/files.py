"""Atomic file output: nothing pgflow writes is ever left partial or corrupt.

A file is written to a hidden temporary file beside it, ``.tmp-<host>-<pid>-<random><suffix>``, and
renamed onto its name only when complete. A process killed in the middle of a write leaves its
temporary file behind; the next write into the same folder removes such orphans
(:func:`remove_orphans`): those whose writer process is gone (same host), and any older than
:data:`ORPHAN_AGE` seconds (another host's, or one named before writers were recorded). A
concurrent writer's temporary file is never touched.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import tempfile
import time
from contextlib import contextmanager

ORPHAN_AGE = 600.0
"""Seconds after its last modification when a temporary file whose writer cannot be checked (another
host's, or an unnamed writer's) counts as orphaned."""

_PREFIX = ".tmp-"
_NAME = re.compile(r"\.tmp-([0-9a-f]{8})-(\d+)-")
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
# folder -> (time of the last scan, its duration, entries seen): a folder of 10⁴ run files takes ~10 ms
# to list, so a large folder is rescanned only after 100× that time (≤ 1% of the writes' time)
_SCANNED: dict[str, tuple[float, float, int]] = {}
_SMALL_FOLDER = 1000


def _alive(pid: int) -> bool:
    """Whether process ``pid`` of this host is running (a zombie has finished writing: not alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    except OSError:
        return True  # cannot tell: keep its file
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def _orphaned(path: str, name: str, now: float) -> bool:
    match = _NAME.match(name)
    if match and match.group(1) == _HOST:
        return not _alive(int(match.group(2)))
    try:
        return now - os.lstat(path).st_mtime > ORPHAN_AGE
    except OSError:
        return False  # already gone


def remove_orphans(folder) -> list[str]:
    """Remove the temporary files that killed writers left in ``folder``; return their paths.

    A ``.tmp-*`` file is an orphan when the process of this host that wrote it is gone, or, when its
    writer cannot be checked (another host's, or a name without a writer), when it was last modified
    more than :data:`ORPHAN_AGE` seconds ago. Files of running writers are kept.

    Parameters
    ----------
    folder : str or path-like
        A missing folder has no orphans.

    Returns
    -------
    list of str
        The paths removed.
    """
    folder = os.fspath(folder)
    start = time.monotonic()
    now, removed, entries = time.time(), [], 0
    try:
        with os.scandir(folder) as it:
            for entry in it:
                entries += 1
                if entry.name.startswith(_PREFIX) and _orphaned(entry.path, entry.name, now):
                    try:
                        os.unlink(entry.path)
                        removed.append(entry.path)
                    except FileNotFoundError:  # its writer finished, or another cleaner was first
                        pass
    except (FileNotFoundError, NotADirectoryError):
        return []
    _SCANNED[os.path.abspath(folder)] = (time.monotonic(), time.monotonic() - start, entries)
    return removed


def _clean(folder: str) -> None:
    """:func:`remove_orphans` on every write into a small folder, now and then in a large one."""
    last = _SCANNED.get(folder)
    if last is None or last[2] < _SMALL_FOLDER or time.monotonic() - last[0] > 100 * last[1]:
        try:
            remove_orphans(folder)
        except OSError:  # cleaning is a courtesy: never the reason a write fails
            pass


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    Removes the orphaned temporary files of earlier killed writers in that folder first
    (:func:`remove_orphans`).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    _clean(folder)
    suffix = os.path.splitext(path)[1]
    # the writer's host and pid in the name: a later cleaner can tell a dead writer's file from a live one's
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f"{_PREFIX}{_HOST}-{os.getpid()}-", suffix=suffix)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; a result file gets the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
