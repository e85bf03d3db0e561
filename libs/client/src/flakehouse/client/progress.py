"""A one-line progress bar on stderr for long uploads: the bytes the server acknowledged, files
done, events parsed or produced, and their rates; silent when stderr is not a terminal."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

WIDTH = 30
MIN_INTERVAL_S = 0.1


class Progress:
    def __init__(self, total_bytes: int, total_files: int, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.total_bytes = max(total_bytes, 1)
        self.total_files = total_files
        self.sent = 0
        self.files_done = 0
        self._events: dict[object, int] = {}
        self._lock = threading.Lock()
        self._last = 0.0
        self._started = time.monotonic()

    def advance(self, sent_bytes: int) -> None:
        with self._lock:
            self.sent += sent_bytes
            self._draw()

    def events(self, upload: object, events: int) -> None:
        """The events one upload reached so far (parsed, then acknowledged by Kafka)."""
        with self._lock:
            self._events[upload] = events
            self._draw()

    def file_done(self) -> None:
        with self._lock:
            self.files_done += 1
            self._draw(force=True)

    def print(self, line: str, stream: TextIO | None = None) -> None:
        """Prints a line above the bar."""
        with self._lock:
            self._clear()
            print(line, file=stream or sys.stdout, flush=True)
            self._draw(force=True)

    def close(self) -> None:
        with self._lock:
            self._clear()

    def _clear(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self._last < MIN_INTERVAL_S):
            return
        self._last = now
        share = min(1.0, self.sent / self.total_bytes)
        filled = int(share * WIDTH)
        elapsed = max(now - self._started, 1e-6)
        events = sum(self._events.values())
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (WIDTH - filled)}] {share:4.0%} "
            f"{self.sent / 1e6:.1f}/{self.total_bytes / 1e6:.1f} MB "
            f"{self.files_done}/{self.total_files} files {events:,} events "
            f"{self.sent / elapsed / 1e6:.1f} MB/s {events / elapsed:,.0f} events/s\033[K"
        )
        self.stream.flush()
