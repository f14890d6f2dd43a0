"""Engines run a build's tasks: in this process, in local worker processes (``--num-proc``), or
on a Ray cluster (``--engine ray``, :mod:`medground_hf.ray_engine`). A task is a picklable
function of one argument; results come back in task order.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import TypeVar

from .progress import phase_bar

T = TypeVar("T")
R = TypeVar("R")
ENGINES = ("local", "ray")
logger = logging.getLogger("medground_hf")


def use_returning_allocator() -> None:
    """jemalloc (Arrow's pool unless the user chose another, see ``medground_hf/__init__``)
    returns freed pages at once: decoded images and chunk tables are large and short-lived."""
    import pyarrow as pa

    if pa.default_memory_pool().backend_name == "jemalloc":
        pa.jemalloc_set_decay_ms(0)


def release_memory() -> None:
    """Give freed memory back to the system between tasks: Arrow's pool and the C allocator
    keep what a finished task freed, so without this a process's footprint would be the sum
    of its stages' peaks rather than the largest of them. (No ``gc.collect()``: with
    ``datasets`` loaded a full collection costs a tenth of a second or more per task.)"""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
            ctypes.CDLL("libc.so.6").malloc_trim(0)


class LocalEngine:
    """Tasks in this process (``num_proc`` <= 1) or in a pool of worker processes, started once
    per build and reused by every stage."""

    name = "local"

    def __init__(self, num_proc: int | None = None):
        self.num_proc = max(1, num_proc or 1)
        self._pool: ProcessPoolExecutor | None = None
        use_returning_allocator()

    def map(
        self,
        fn: Callable[[T], R],
        tasks: Sequence[T],
        *,
        desc: str | None,
        weights: Sequence[int] | None = None,
        unit: str = "chunk",
    ) -> list[R]:
        """``fn`` of every task, in task order. ``desc`` names the phase's bar (None: no bar),
        which advances by each task's weight (items, targets) as tasks finish."""
        if not tasks:
            return []
        weights = list(weights) if weights is not None else [1] * len(tasks)
        bar = phase_bar(desc or "", sum(weights), unit, disable=desc is None)
        try:
            if self.num_proc == 1 or len(tasks) == 1:
                results = []
                for task, weight in zip(tasks, weights, strict=True):
                    results.append(fn(task))
                    release_memory()
                    bar.update(weight)
                return results
            if self._pool is None:
                # spawn: a forked child would inherit the parent's Arrow threads and locks
                self._pool = ProcessPoolExecutor(
                    self.num_proc,
                    mp_context=get_context("spawn"),
                    initializer=use_returning_allocator,
                )
            futures = [self._pool.submit(fn, task) for task in tasks]
            results = []
            for future, weight in zip(futures, weights, strict=True):
                results.append(future.result())
                bar.update(weight)
            return results
        finally:
            bar.close()

    def close(self) -> None:
        from .stages import close_workers

        close_workers()
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


def check_engine(name: str, address: str | None) -> None:
    """Refuse an engine choice before anything is staged (an argument error, not a failed run)."""
    if name not in ENGINES:
        raise ValueError(f"--engine must be one of {ENGINES}, got {name!r}")
    if address and name != "ray":
        raise ValueError("--ray-address needs --engine ray")


def make_engine(name: str = "local", num_proc: int | None = None, address: str | None = None):
    check_engine(name, address)
    if name == "ray":
        from .ray_engine import RayEngine

        return RayEngine(address=address, num_proc=num_proc)
    return LocalEngine(num_proc)
