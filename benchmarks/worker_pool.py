"""Worker processes that end with the benchmark that started them.

A benchmark killed with SIGTERM (a job scheduler, ``kill``, a closed session)
dies at once, without the cleanup that would stop its process pool, and the
workers went on training for the rest of their job, holding cores. Each
worker started here asks Linux to send it SIGTERM when its parent dies
(``prctl(PR_SET_PDEATHSIG)``); elsewhere it is a plain pool::

    >>> with worker_pool(1, "spawn") as pool:
    ...     pool.submit(abs, -2).result()
    2

Results already written stay whole: every benchmark writes its rows atomically.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>


def worker_pool(workers: int, start_method: str, initializer: Callable | None = None,
                initargs: tuple = ()) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes (``"spawn"`` or ``"fork"``) that die with this one; each runs
    ``initializer(*initargs)`` after arranging that."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(start_method),
                               initializer=_start, initargs=(os.getpid(), initializer, initargs))


def _start(parent: int, initializer: Callable | None, initargs: tuple) -> None:
    die_with(parent)
    if initializer is not None:
        initializer(*initargs)


def die_with(parent: int) -> None:
    """Have this process receive SIGTERM when ``parent`` (its parent) dies; on Linux only."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
        return  # not allowed here (a sandbox): the pool still works, as before
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)
