"""Token buckets for ingest rates. Pure: time is passed in.

A bucket holds up to `burst_s` seconds of its rate. A lease is granted whole when the bucket is
not in debt, even if it asks for more than is there, and the bucket goes negative: large uploads
always get through eventually, and the long-run rate still holds, because the next lease waits
until the debt is paid back."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    rate: float
    burst_s: float
    tokens: float = field(init=False)
    updated: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.tokens = self.capacity

    @property
    def capacity(self) -> float:
        return self.rate * self.burst_s

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def wait_s(self, now: float) -> float:
        """Seconds until the bucket is out of debt; 0 when a lease can be granted now."""
        self.refill(now)
        return 0.0 if self.tokens > 0 else (1e-9 - self.tokens) / self.rate

    def take(self, amount: float) -> None:
        self.tokens -= amount


@dataclass
class DatasetBuckets:
    """The events/s and bytes/s buckets of one dataset; a rate of 0 means unlimited."""

    events: TokenBucket | None
    bytes: TokenBucket | None

    @classmethod
    def for_rates(
        cls, events_per_s: float, bytes_per_s: float, burst_s: float, now: float
    ) -> DatasetBuckets:
        def make(rate: float) -> TokenBucket | None:
            return TokenBucket(rate, burst_s, updated=now) if rate > 0 else None

        return cls(make(events_per_s), make(bytes_per_s))

    def try_acquire(self, events: int, size: int, now: float) -> float:
        """Takes a lease of `events` and `size` bytes and returns 0, or takes nothing and
        returns the seconds to wait. All or nothing, so a caller never holds half a lease."""
        wait = max(
            self.events.wait_s(now) if self.events else 0.0,
            self.bytes.wait_s(now) if self.bytes else 0.0,
        )
        if wait > 0:
            return wait
        if self.events:
            self.events.take(events)
        if self.bytes:
            self.bytes.take(size)
        return 0.0
