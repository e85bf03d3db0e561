"""Token buckets and the ledger, with time passed in."""

from __future__ import annotations

import pytest

from flakehouse.quota.buckets import DatasetBuckets
from flakehouse.quota.ledger import Ledger
from flakehouse.quota.v1 import quota_pb2


def test_unlimited_dataset_always_granted() -> None:
    ledger = Ledger(burst_s=1)
    assert ledger.try_acquire("ci", 10**9, 10**12, now=0) == 0


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


def test_usage_sums_nodes_and_forgets_partitions_a_node_stopped_reporting() -> None:
    ledger = Ledger(burst_s=1)
    part = quota_pb2.PartitionUsage
    ledger.report(
        "n1",
        [
            part(dataset="ci", partition=0, bytes=10, rows=1),
            part(dataset="ci", partition=1, bytes=5, rows=2),
        ],
    )
    ledger.report("n2", [part(dataset="ci", partition=0, bytes=10, rows=1)])
    assert ledger.usage()["ci"].bytes == 25
    ledger.report("n1", [part(dataset="ci", partition=1, bytes=5, rows=2)])
    assert ledger.usage()["ci"].bytes == 15
    assert ledger.usage()["ci"].rows == 3
