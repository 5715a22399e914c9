"""BLAS thread control around solves.

Measured on this project's 2-core machine (`python -m benchmarks blas_threads`, `python -m benchmarks large`): the
products in a factorization right-hand side are tall and skinny (m×k times k×k) and the implicit
solvers' Jacobians are small. On an idle machine one and two OpenBLAS threads are within ±8% of
each other; when the other core is busy (a parallel sweep, CI, another job), the second thread
stalls every small product and one thread was 4–10× faster on the stiff and the large cases. One
thread is therefore the default, and parallelism comes from running batch members or sweep runs
side by side; ``blas_threads=None`` leaves BLAS as it is.
"""

from __future__ import annotations

from contextlib import nullcontext

from .checks import positive_int

_controller = None


def limit(threads):
    """Context manager limiting BLAS to ``threads`` threads (``None``: no change)."""
    global _controller
    if threads is None:
        return nullcontext()
    threads = positive_int(threads, "blas_threads")
    if _controller is None:
        from threadpoolctl import ThreadpoolController  # inspecting loaded libraries costs ~1 ms: once
        _controller = ThreadpoolController()
    return _controller.limit(limits=threads, user_api="blas")
