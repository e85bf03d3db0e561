"""Test support shared by every test directory (the repository root is on pytest's path): one way
to wait for a condition, in threads and in the event loop."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


def eventually(
    check: Callable[[], T],
    what: str = "condition",
    timeout_s: float = 60,
    interval_s: float = 0.25,
    retry_on: tuple[type[BaseException], ...] = (),
) -> T:
    """Calls `check` until it returns something truthy and returns that. An AssertionError (or
    an exception in `retry_on`) raised by `check` counts as not yet; when `timeout_s` runs out,
    AssertionError names `what` and the last result or error. The timeout only bounds a wait
    for something that must happen; it is generous because a loaded machine is slow."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            last: Any = check()
            if last:
                return last  # type: ignore[no-any-return]
        except (AssertionError, *retry_on) as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout_s, last)
        time.sleep(interval_s)


async def eventually_async(
    check: Callable[[], T | Awaitable[T]],
    what: str = "condition",
    timeout_s: float = 60,
    interval_s: float = 0.05,
    retry_on: tuple[type[BaseException], ...] = (),
) -> T:
    """`eventually` for the event loop: `check` may be a plain function or a coroutine function,
    and the wait between calls lets the loop run."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = check()
            last: Any = await result if inspect.isawaitable(result) else result
            if last:
                return last  # type: ignore[no-any-return]
        except (AssertionError, *retry_on) as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout_s, last)
        await asyncio.sleep(interval_s)


def _timed_out(what: str, timeout_s: float, last: Any) -> AssertionError:
    return AssertionError(f"{what}: not within {timeout_s:g} s (last: {last!r})")
