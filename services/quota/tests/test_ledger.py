"""Token buckets and the ledger, with time passed in."""

from __future__ import annotations

import pytest

from flakehouse.quota.buckets import DatasetBuckets
from flakehouse.quota.ledger import Ledger
from flakehouse.quota.v1 import quota_pb2


def limits(floor_us: int = 0, **quota: float) -> quota_pb2.DatasetLimits:
    return quota_pb2.DatasetLimits(
        quota=quota_pb2.Quota(dataset="ci", **quota),  # type: ignore[arg-type]
        floor=quota_pb2.Cutoff(cutoff_us=floor_us),
    )


def test_unlimited_dataset_always_granted() -> None:
    ledger = Ledger(burst_s=1)
    assert ledger.try_acquire("ci", 10**9, 10**12, now=0) == 0
    assert ledger.quota("ci") == quota_pb2.Quota(dataset="ci")


def test_rate_holds_over_time_and_big_leases_go_into_debt() -> None:
    buckets = DatasetBuckets.for_rates(100, 0, burst_s=1, now=0)
    assert buckets.try_acquire(1000, 0, now=0) == 0  # bigger than the bucket: granted, in debt
    wait = buckets.try_acquire(1, 0, now=0)
    assert wait == pytest.approx(9.0, rel=0.01)  # 900 tokens of debt at 100/s
    assert buckets.try_acquire(1, 0, now=5) > 0
    assert buckets.try_acquire(1, 0, now=9.01) == 0


def test_denied_lease_takes_nothing() -> None:
    buckets = DatasetBuckets.for_rates(10, 1000, burst_s=1, now=0)
    assert buckets.try_acquire(10, 2000, now=0) == 0  # bytes bucket now in debt
    assert buckets.events is not None
    buckets.events.refill(0.1)
    events_before = buckets.events.tokens
    assert buckets.try_acquire(1, 1, now=0.1) > 0
    assert buckets.events is not None and buckets.events.tokens == events_before


def test_a_moved_floor_keeps_the_buckets_a_new_rate_resets_them() -> None:
    ledger = Ledger(burst_s=1)
    ledger.put(limits(events_per_second=10), generation=1, now=0)
    assert ledger.try_acquire("ci", 100, 0, now=0) == 0  # in debt now
    ledger.put(limits(floor_us=5, events_per_second=10), generation=1, now=0)
    assert ledger.try_acquire("ci", 1, 0, now=0) > 0  # no fresh burst from the floor change
    ledger.put(limits(events_per_second=20), generation=1, now=0)
    assert ledger.try_acquire("ci", 1, 0, now=0) == 0


def test_published_lists_datasets_with_a_limit_or_a_floor() -> None:
    ledger = Ledger(burst_s=1)
    ledger.put(limits(retention_seconds=3600), generation=2, now=0)
    none = quota_pb2.DatasetLimits(quota=quota_pb2.Quota(dataset="free"))
    ledger.put(none, generation=1, now=0)
    assert [d.quota.dataset for d in ledger.published()] == ["ci"]
    entry = ledger.get("ci")
    assert entry is not None and entry.generation == 2
    assert ledger.datasets() == ["ci", "free"]
    ledger.remove("ci")
    assert ledger.get("ci") is None and ledger.published() == []
