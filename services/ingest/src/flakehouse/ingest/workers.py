"""Where parsing runs: a pool of worker processes, so that parsing (CPU-bound, under the GIL)
uses the other cores while the service's event loop receives uploads and produces to Kafka.
With 0 workers, parsing runs in a thread of the service process instead."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def _warm() -> None:
    """Imports the parser in a new worker, so the first upload does not pay for it."""
    import flakehouse.ingest.uploads  # noqa: F401


class ParseWorkers:
    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._executor: Executor
        if processes > 0:
            # forkserver, not fork: forking a process that runs gRPC threads is unsafe.
            context = multiprocessing.get_context("forkserver")
            self._executor = ProcessPoolExecutor(processes, mp_context=context, initializer=_warm)
        else:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="parse")

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, _call, fn, args, kwargs)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def _call(fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
    return fn(*args, **kwargs)
