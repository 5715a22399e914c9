"""Executors: the pending runs of a sweep, in this process, in local processes or on a Dask cluster,
with progress on a terminal."""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

from .reductions import run_one

EXECUTORS = ("serial", "processes", "dask")


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


def _processes(pending, workers):
    pool = ProcessPoolExecutor(max_workers=min(workers, len(pending)), mp_context=_mp_context())
    try:
        futures = {pool.submit(run_one, planned.config): planned for planned in pending}
        for future in as_completed(futures):
            yield futures[future], future.result()
    finally:  # on an error or an interrupt, drop the runs not yet started
        pool.shutdown(wait=True, cancel_futures=True)


def _dask(pending, scheduler):
    try:
        from dask.distributed import Client, as_completed as dask_completed
    except ImportError as exc:
        raise ImportError("the Dask executor needs dask.distributed: pip install 'pgflow[cluster]'") from exc
    own = not isinstance(scheduler, Client)
    client = Client(scheduler) if own else scheduler
    try:
        # the run id as the task key: unique per configuration, and readable in Dask's dashboard
        futures = {client.submit(run_one, planned.config, key=f"pgflow-run-{planned.run_id}", pure=False): planned
                   for planned in pending}
        for future in dask_completed(futures):
            yield futures[future], future.result()
    finally:
        if own:
            client.close()


def _available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# progress: count, rate and ETA on a terminal, nothing otherwise

class _Line:
    """A one-line progress report rewritten in place, for terminals without tqdm."""

    def __init__(self, total: int, stream):
        self.total, self.done, self.stream, self.start = total, 0, stream, time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.done += n
        elapsed = time.perf_counter() - self.start
        rate = self.done / elapsed if elapsed > 0 else math.inf
        eta = (self.total - self.done) / rate if rate > 0 else math.inf
        self.stream.write(f"\rsweep: {self.done}/{self.total} runs, {rate:.2f} runs/s, ETA {eta:.0f} s ")
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool | None):
    stream = sys.stderr
    if enabled is None:
        enabled = stream.isatty()
    if not enabled or total == 0:
        return _Silent()
    try:
        from tqdm import tqdm
    except ImportError:
        return _Line(total, stream)
    return tqdm(total=total, unit="run", desc="sweep", file=stream)
