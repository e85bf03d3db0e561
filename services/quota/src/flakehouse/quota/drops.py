"""What storage may delete: per dataset, the newest floor published long enough ago that every
query process applies it, or the retention cutoff less a margin for clocks, whichever is later.
Pure: the time is passed in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from flakehouse.quota.v1 import quota_pb2

US = 1_000_000


@dataclass(frozen=True)
class PublishedFloor:
    published_us: int
    floor: quota_pb2.Cutoff


@dataclass(frozen=True)
class PublishedRetention:
    published_us: int
    # 0: unlimited.
    retention_s: int


Published = TypeVar("Published", PublishedFloor, PublishedRetention)


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
        _keep_settled_and_newer(history, now_us - self._grace_us)

    def of(self, dataset: str) -> Sequence[PublishedFloor]:
        return self._floors.get(dataset, ())

    def forget(self, dataset: str) -> None:
        self._floors.pop(dataset, None)


class RetentionHistory:
    """The retentions published for each dataset and when: the one in force `grace_s` ago and
    every newer one, which is all that drop bounds need. Before its first record a dataset
    counts as unlimited: a retention learnt at start may have been set just before, and never
    have reached the query processes."""

    def __init__(self, grace_s: float) -> None:
        self._grace_us = int(grace_s * US)
        self._retentions: dict[str, list[PublishedRetention]] = {}

    def record(self, dataset: str, retention_s: int, now_us: int) -> None:
        """Notes the retention published now; the same as the last is no news."""
        history = self._retentions.setdefault(dataset, [])
        if history and history[-1].retention_s == retention_s:
            return
        history.append(PublishedRetention(now_us, retention_s))
        _keep_settled_and_newer(history, now_us - self._grace_us)

    def of(self, dataset: str) -> Sequence[PublishedRetention]:
        return self._retentions.get(dataset, ())

    def forget(self, dataset: str) -> None:
        self._retentions.pop(dataset, None)


def _keep_settled_and_newer(history: list[Published], settled_us: int) -> None:
    """Drops what precedes the last entry published by `settled_us`: it no longer matters."""
    settled = [i for i, p in enumerate(history) if p.published_us <= settled_us]
    if settled:
        del history[: settled[-1]]


def longest_retention(retentions: Sequence[PublishedRetention], since_us: int) -> int:
    """The longest retention in force at any time since `since_us` (0: unlimited, the longest of
    all): the one published last by then (unlimited when none was) and every one published
    after."""
    in_force = [r.retention_s for r in retentions if r.published_us > since_us]
    before = [r for r in retentions if r.published_us <= since_us]
    in_force.append(before[-1].retention_s if before else 0)
    return 0 if 0 in in_force else max(in_force)


def drop_bound(
    dataset: str,
    generation: int,
    floors: Sequence[PublishedFloor],
    retentions: Sequence[PublishedRetention],
    now_us: int,
    grace_s: float,
    clock_skew_s: float,
) -> quota_pb2.DropBound | None:
    """Storage may delete the sealed segments, of the dataset's `generation`, whose newest event
    is older than the bound. A floor counts once published `grace_s` ago, and a shorter
    retention likewise (the longest of the last `grace_s` counts): query processes learn them
    first, so no query still answers rows as they go. Retention's cutoff moves with the clock: a
    node whose clock is ahead would drop what queries still show, hence the skew margin."""
    grace_us = int(grace_s * US)
    before_us, reason = 0, quota_pb2.CUTOFF_REASON_UNSPECIFIED
    settled = [p.floor for p in floors if p.published_us <= now_us - grace_us]
    if settled:
        floor = max(settled, key=lambda f: f.cutoff_us)
        before_us, reason = floor.cutoff_us, floor.reason
    retention_s = longest_retention(retentions, now_us - grace_us)
    if retention_s:
        by_age = now_us - int((retention_s + clock_skew_s) * US)
        if by_age > before_us:
            before_us, reason = by_age, quota_pb2.CUTOFF_REASON_RETENTION
    if before_us <= 0:
        return None
    return quota_pb2.DropBound(
        dataset=dataset, before_us=before_us, reason=reason, generation=generation
    )
