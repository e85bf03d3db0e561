"""Ingest rates over the last minute, from the leases granted. Pure: the time is passed in."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

WINDOW_S = 60.0


@dataclass
class _Window:
    grants: deque[tuple[float, int, int]] = field(default_factory=deque)
    events: int = 0
    bytes: int = 0


class IngestRates:
    def __init__(self, window_s: float = WINDOW_S) -> None:
        self._window_s = window_s
        self._windows: dict[str, _Window] = {}

    def record(self, dataset: str, events: int, size: int, now: float) -> None:
        window = self._windows.setdefault(dataset, _Window())
        window.grants.append((now, events, size))
        window.events += events
        window.bytes += size
        self._expire(dataset, now)

    def forget(self, dataset: str) -> None:
        """A deleted dataset's rates do not carry over to a new one of the same name."""
        self._windows.pop(dataset, None)

    def rates(self, dataset: str, now: float) -> tuple[float, float]:
        """(events/s, bytes/s) granted over the window that ends now."""
        window = self._expire(dataset, now)
        if window is None:
            return 0.0, 0.0
        return window.events / self._window_s, window.bytes / self._window_s

    def _expire(self, dataset: str, now: float) -> _Window | None:
        window = self._windows.get(dataset)
        if window is None:
            return None
        while window.grants and window.grants[0][0] <= now - self._window_s:
            _, events, size = window.grants.popleft()
            window.events -= events
            window.bytes -= size
        if not window.grants:
            del self._windows[dataset]
            return None
        return window
