"""A version that goes up on every change of the limits, for WatchLimits streams to wait on."""

from __future__ import annotations

import asyncio


class Changes:
    def __init__(self) -> None:
        self.version = 0
        self._closed = False
        self._changed = asyncio.Condition()

    async def publish(self) -> None:
        async with self._changed:
            self.version += 1
            self._changed.notify_all()

    async def wait_after(self, version: int) -> int | None:
        """The version once it is past `version`; None once closed (the server stops), so that
        streams end cleanly rather than being cut off."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._closed or self.version > version)
            return None if self._closed else self.version

    async def close(self) -> None:
        async with self._changed:
            self._closed = True
            self._changed.notify_all()
