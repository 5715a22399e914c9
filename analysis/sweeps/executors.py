"""Executors: the pending runs of a sweep, in this process, in local processes or on a Dask cluster.

Each executor is a generator of ``(planned, row)`` in the order the runs finish. A run whose worker
process dies (killed, out of memory, a crash in native code: ``BrokenProcessPool``) is run once
more; if its worker dies again it comes back with ``status = "killed"`` (:data:`KILLED`), and the
other runs go on.
"""

from __future__ import annotations

import ast
import multiprocessing
import os
import socket
import sys
from collections import Counter, deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from .reductions import failed_row, run_one

EXECUTORS = ("serial", "processes", "dask")
KILLED = "killed"
"""The status of a run whose worker process died on both of its attempts (it is not stored)."""
ATTEMPTS = 2
"""Attempts of a run whose worker process dies while running it."""
_QUEUED = 2  # runs handed to one worker process at a time: the one it runs and the next


class MainGuardError(RuntimeError):
    """A sweep on local processes started by a script's top-level code without a ``__main__`` guard."""


def _serial(pending):
    for planned in pending:
        yield planned, run_one(planned.config)


def _mp_context():
    # fork would copy the parent's threads and locks; forkserver forks workers from a clean server
    # that has imported this module (numpy, scipy) once, so each worker starts in milliseconds
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        return ctx
    return multiprocessing.get_context("spawn")


def _is_main_test(test) -> bool:
    """Whether ``test`` is ``__name__ == "__main__"`` (either way round)."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = (test.left, test.comparators[0])
    return ({type(s) for s in sides} == {ast.Name, ast.Constant}
            and {s.id if isinstance(s, ast.Name) else s.value for s in sides} == {"__name__", "__main__"})


def _unguarded_main():
    """``(path, line)`` of the main script's top-level statement that is starting a sweep outside an
    ``if __name__ == "__main__":`` block, when worker processes will re-import that script; else None.

    Workers started with spawn or forkserver re-run the main module (multiprocessing's rules: a
    script by path, or a module run with ``-m``, but not a package's ``__main__``), and a sweep
    started by its top-level code would start again in every worker.
    """
    main = sys.modules.get("__main__")
    name = getattr(getattr(main, "__spec__", None), "name", None)
    path = getattr(main, "__file__", None)
    if path is None or (name is not None and (name == "__main__" or name.endswith(".__main__"))):
        return None
    if name is None and os.path.splitext(os.path.basename(path))[0] == "ipython":
        return None
    frame = sys._getframe(1)
    while frame is not None and not (frame.f_globals is vars(main) and frame.f_code.co_name == "<module>"):
        frame = frame.f_back
    if frame is None:  # called later than the script's import (a callback, an interactive session)
        return None
    line = frame.f_lineno
    try:
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read())
    except (OSError, SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_main_test(node.test) \
                and node.body[0].lineno <= line <= node.body[-1].end_lineno:
            return None
    return path, line


def _guard_message(where: str) -> str:
    return (f"{where}: a sweep on local processes must be started under `if __name__ == \"__main__\":`. "
            "Each worker process re-imports the script that started the sweep, and its top-level code "
            "would start the sweep again. Write\n\n    if __name__ == \"__main__\":\n        "
            "run_sweep(...)\n\n(or run the sweep with executor=\"serial\").")


def _started(event) -> None:
    """A worker's initializer: it has imported everything, the main script too."""
    event.set()


class _Worker:
    """One worker process, as a one-process pool: its death costs only the run it was running (the
    oldest of its runs not finished) and is told apart from a death while starting."""

    def __init__(self, ctx):
        self.started = ctx.Event()
        self.pool = ProcessPoolExecutor(1, mp_context=ctx, initializer=_started, initargs=(self.started,))
        self.queue = deque()  # (future, planned), oldest first

    def close(self, cancel: bool = False) -> None:
        self.pool.shutdown(wait=True, cancel_futures=cancel)


def _killed(planned, how: str) -> dict:
    return failed_row(planned.config, KILLED, f"{how}: its worker process died on each of its attempts (killed, "
                      "out of memory, or a crash in native code); not stored, so the next run of the sweep tries "
                      "it again")


def _processes(pending, workers):
    unguarded = _unguarded_main()
    if unguarded is not None:
        raise MainGuardError(_guard_message(f"{unguarded[0]}, line {unguarded[1]}"))
    ctx = _mp_context()
    todo = deque(pending)
    deaths = Counter()  # run id -> deaths of the worker process running it
    failed_starts = 0  # deaths of worker processes before they ran anything, since the last finished run

    def replace(i: int) -> bool:
        """Start a new process in slot ``i``; whether the old one had started."""
        nonlocal failed_starts
        old = slots[i]
        started = old.started.is_set()
        old.queue.clear()
        old.close()
        slots[i] = _Worker(ctx)
        if not started:
            failed_starts += 1
            if failed_starts >= ATTEMPTS:
                raise RuntimeError(_guard_message("the sweep's worker processes die while they start")
                                   if _unguarded_main() else "the sweep's worker processes die while they start, "
                                   "before running anything: see their messages above")
        return started

    slots = [_Worker(ctx) for _ in range(min(workers, len(pending)))]
    try:
        while todo or any(w.queue for w in slots):
            for i, w in enumerate(slots):
                while todo and len(w.queue) < _QUEUED:
                    try:
                        future = w.pool.submit(run_one, todo[0].config)
                    except BrokenProcessPool:  # it died between runs; with runs queued, they tell below
                        if not w.queue:
                            replace(i)
                        break
                    w.queue.append((future, todo.popleft()))
            by_future = {future: w for w in slots for future, _ in w.queue}
            done, _ = wait(by_future, return_when=FIRST_COMPLETED)
            for w in {by_future[f] for f in done}:
                # one process runs its queue in order: results come oldest first, and when it dies the
                # oldest unfinished run is the one it was running; the others only wait again
                while w.queue and w.queue[0][0].done():
                    future, planned = w.queue.popleft()
                    if not isinstance(future.exception(), BrokenProcessPool):
                        failed_starts = 0
                        yield planned, future.result()  # a run's own exception (a bug) stops the sweep here
                        continue
                    todo.extendleft(reversed([p for _, p in w.queue]))
                    if replace(slots.index(w)):
                        deaths[planned.run_id] += 1
                    if deaths[planned.run_id] < ATTEMPTS:
                        todo.appendleft(planned)
                    else:
                        yield planned, _killed(planned, "BrokenProcessPool")
                    break
    finally:  # on an error or an interrupt, drop the runs not yet started
        for w in slots:
            w.close(cancel=True)


def _dask_client(scheduler):
    """A client of the scheduler at ``scheduler``, or a ConnectionError/ValueError naming it."""
    from dask.distributed import Client
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        scheme, location = parse_address(scheduler)
        if scheme == "tcp":  # refuse an unreachable address at once, not after Dask's connect timeout
            socket.create_connection(parse_host_port(location), timeout=10).close()
    except (ValueError, TypeError) as exc:
        raise ValueError(f"scheduler {scheduler!r} is not a Dask scheduler address (tcp://host:port): {exc}") from exc
    except OSError as exc:
        raise ConnectionError(f"cannot reach the Dask scheduler at {scheduler}: {exc.strerror or exc}") from exc
    try:
        return Client(scheduler)
    except (OSError, TimeoutError) as exc:
        raise ConnectionError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc


def _dask(pending, scheduler):
    try:
        from dask.distributed import Client, as_completed as dask_completed
        from distributed import KilledWorker
    except ImportError as exc:
        raise ImportError("the Dask executor needs dask.distributed: pip install 'pgflow[cluster]'") from exc
    own = not isinstance(scheduler, Client)
    client = _dask_client(scheduler) if own else scheduler
    try:
        # the run id as the task key: unique per configuration, and readable in Dask's dashboard
        futures = {client.submit(run_one, planned.config, key=f"pgflow-run-{planned.run_id}", pure=False): planned
                   for planned in pending}
        for future in dask_completed(futures):
            try:
                row = future.result()
            except KilledWorker:  # Dask has already retried it on other workers
                row = _killed(futures[future], "KilledWorker")
            yield futures[future], row
    finally:
        if own:
            client.close()


def _available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
