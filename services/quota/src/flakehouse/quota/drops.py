"""What storage may delete: per dataset, the newest floor published long enough ago that every
query process applies it, or the retention cutoff less a margin for clocks, whichever is later.
Pure: the time is passed in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from flakehouse.quota.v1 import quota_pb2

US = 1_000_000


@dataclass(frozen=True)
class PublishedFloor:
    published_us: int
    floor: quota_pb2.Cutoff


class FloorHistory:
    """The floors published for each dataset and when: the last one old enough to be settled and
    every newer one, which is all that drop bounds need."""

    def __init__(self, grace_s: float) -> None:
        self._grace_us = int(grace_s * US)
        self._floors: dict[str, list[PublishedFloor]] = {}

    def record(self, dataset: str, floor: quota_pb2.Cutoff, now_us: int) -> None:
        """Notes a floor published now; one no higher than the last is no news."""
        history = self._floors.setdefault(dataset, [])
        if floor.cutoff_us <= 0 or (history and floor.cutoff_us <= history[-1].floor.cutoff_us):
            return
        history.append(PublishedFloor(now_us, floor))
        settled = [i for i, p in enumerate(history) if p.published_us <= now_us - self._grace_us]
        if settled:
            del history[: settled[-1]]

    def of(self, dataset: str) -> Sequence[PublishedFloor]:
        return self._floors.get(dataset, ())

    def forget(self, dataset: str) -> None:
        self._floors.pop(dataset, None)


def drop_bound(
    dataset: str,
    floors: Sequence[PublishedFloor],
    retention_s: int,
    now_us: int,
    grace_s: float,
    clock_skew_s: float,
) -> quota_pb2.DropBound | None:
    """Storage may delete the sealed segments whose newest event is older than the bound. A floor
    counts once published `grace_s` ago: query processes learn it first, so no query still runs
    without it when rows go. Retention's cutoff moves with the clock: a node whose clock is ahead
    would drop what queries still show, hence the skew margin."""
    before_us, reason = 0, quota_pb2.CUTOFF_REASON_UNSPECIFIED
    settled = [p.floor for p in floors if p.published_us <= now_us - int(grace_s * US)]
    if settled:
        floor = max(settled, key=lambda f: f.cutoff_us)
        before_us, reason = floor.cutoff_us, floor.reason
    if retention_s:
        by_age = now_us - int((retention_s + clock_skew_s) * US)
        if by_age > before_us:
            before_us, reason = by_age, quota_pb2.CUTOFF_REASON_RETENTION
    if before_us <= 0:
        return None
    return quota_pb2.DropBound(dataset=dataset, before_us=before_us, reason=reason)
