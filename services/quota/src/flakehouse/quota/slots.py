"""Query slots: how many queries run at once on each dataset, across every query process. A slot
is held until released or until its hold time runs out (a query process that died)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

MIN_RETRY_S = 0.1
MAX_RETRY_S = 5.0


@dataclass(frozen=True)
class SlotAnswer:
    """`slot_id` when granted, else `retry_after_s`."""

    slot_id: str = ""
    retry_after_s: float = 0.0


@dataclass(frozen=True)
class _Slot:
    holder: str
    expires: float


class QuerySlots:
    def __init__(
        self, limit_of: Callable[[str], int], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limit_of = limit_of
        self._clock = clock
        self._held: dict[str, dict[str, _Slot]] = {}
        self._changed = asyncio.Condition()

    def running(self, dataset: str) -> int:
        return len(self._live(dataset, self._clock()))

    def _live(self, dataset: str, now: float) -> dict[str, _Slot]:
        """The dataset's slots still held (expired ones freed); not kept when there are none."""
        held = self._held.pop(dataset, {})
        for slot_id in [s for s, slot in held.items() if slot.expires <= now]:
            # Never released: its query process died, or the release was lost. The holder
            # says which process.
            log.info(
                "query slot expired without release",
                extra={"dataset": dataset, "holder": held[slot_id].holder, "slot_id": slot_id},
            )
            del held[slot_id]
        if held:
            self._held[dataset] = held
        return held

    async def acquire(self, dataset: str, holder: str, hold_s: float, wait_s: float) -> SlotAnswer:
        """A slot when one is free within `wait_s`, else when to ask again: the time until the
        first slot held expires, within bounds (a released slot comes sooner)."""
        deadline = self._clock() + wait_s
        async with self._changed:
            while True:
                now = self._clock()
                held = self._live(dataset, now)
                limit = self._limit_of(dataset)
                if not limit or len(held) < limit:
                    slot_id = uuid.uuid4().hex
                    self._held.setdefault(dataset, held)[slot_id] = _Slot(holder, now + hold_s)
                    return SlotAnswer(slot_id=slot_id)
                first_expiry = min(slot.expires for slot in held.values())
                if now >= deadline:
                    retry = min(max(first_expiry - now, MIN_RETRY_S), MAX_RETRY_S)
                    return SlotAnswer(retry_after_s=retry)
                # Woken by a release or a limit change; the timeout catches an expiry.
                try:
                    async with asyncio.timeout(min(deadline, first_expiry) - now):
                        await self._changed.wait()
                except TimeoutError:
                    pass

    async def release(self, dataset: str, slot_id: str) -> None:
        """Frees a slot at once; a slot unknown or expired is nothing to free."""
        async with self._changed:
            self._held.get(dataset, {}).pop(slot_id, None)
            self._changed.notify_all()

    async def limits_changed(self) -> None:
        async with self._changed:
            self._changed.notify_all()
