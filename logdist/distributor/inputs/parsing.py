"""Parse processes: where the distributor hands the inputs that cost Python work a message
(syslog streams, OTLP requests, JSON records) so that they use the machine's other cores.

`ParseProcesses(n)` holds n spawned processes (one a core by default, four at most, none on
one core), each started by `worker.start`; with n = 0 every call runs here, at once. A call
names the process by index (a syslog stream always goes to the same one, so its frames stay
in order) or takes the next in turn (an OTLP or records request).
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from logdist.distributor.inputs import worker

# Exceptions that mean a parse process is gone, not that its input was bad.
GONE = (BrokenProcessPool, RuntimeError)


def default_workers() -> int:
    """One parse process a core, four at most; none on one core (it would only take turns
    with the distributor)."""
    cores = os.cpu_count() or 1
    return min(4, cores) if cores > 1 else 0


class ParseProcesses:
    def __init__(self, workers: int, prefix: str, max_frame: int) -> None:
        self.prefix = prefix
        self.max_frame = max_frame
        self.pools: list[ProcessPoolExecutor | None] = [None] * workers
        self.turn = itertools.cycle(range(workers)) if workers else None

    def __len__(self) -> int:
        return len(self.pools)

    def _pool(self, index: int) -> ProcessPoolExecutor:
        pool = self.pools[index]
        if pool is None:
            # spawn: a fresh interpreter, not a fork of this one's event loop and sockets.
            pool = self.pools[index] = ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=worker.start,
                initargs=(f"{self.prefix}-w{index}", self.max_frame, os.getpid()),
            )
        return pool

    async def start(self) -> None:
        """Start the processes (a spawned interpreter takes a moment)."""
        await asyncio.gather(*(self.call(i, len, ()) for i in range(len(self.pools))))

    def call(self, index: int | None, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """`fn(*args)` in process `index` (None: the next in turn), or here when there are
        none. A process found gone is replaced for the next call, and this one fails with
        one of GONE."""
        if self.turn is None:
            future = asyncio.get_running_loop().create_future()
            try:
                future.set_result(fn(*args))
            except Exception as exc:  # noqa: BLE001 - the caller's, as from a process
                future.set_exception(exc)
            return future
        i = next(self.turn) if index is None else index % len(self.pools)
        try:
            return asyncio.wrap_future(self._pool(i).submit(fn, *args))
        except BrokenProcessPool:
            self.pools[i] = None
            raise

    def close_broken(self) -> None:
        """Replace, at their next call, the processes that are gone (a call to one failed
        with one of GONE); those that work are left alone."""
        for i, pool in enumerate(self.pools):
            if pool is not None and getattr(pool, "_broken", False):
                pool.shutdown(wait=False, cancel_futures=True)
                self.pools[i] = None

    def close(self) -> None:
        for pool in self.pools:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
