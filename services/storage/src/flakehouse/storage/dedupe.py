"""A bounded memory of the event ids a partition has applied, to drop replayed events.

Two generations of sets: ids go into the young one; when it is full it becomes the old one and
the previous old one is forgotten. Memory stays within 2 x capacity ids, and any id among the
last `capacity` applied is always remembered. A duplicate arrives when an upload is retried or a
producer retries, within minutes; the window covers far more events than that on a partition."""

from __future__ import annotations

from collections.abc import Iterable


class DedupeWindow:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._young: set[int] = set()
        self._old: set[int] = set()

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._young or event_id in self._old

    def __len__(self) -> int:
        return len(self._young) + len(self._old)

    def add_many(self, event_ids: Iterable[int]) -> None:
        if self.capacity <= 0:
            return
        for event_id in event_ids:
            self._young.add(event_id)
            if len(self._young) >= self.capacity:
                self._old, self._young = self._young, set()
