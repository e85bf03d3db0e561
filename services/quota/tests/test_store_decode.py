"""Records of the limits topic: current ones, those written before floors existed, and junk."""

from __future__ import annotations

from flakehouse.quota.store import decode
from flakehouse.quota.v1 import quota_pb2


def test_current_records() -> None:
    limits = quota_pb2.DatasetLimits(
        quota=quota_pb2.Quota(dataset="ci", retention_seconds=3600),
        floor=quota_pb2.Cutoff(cutoff_us=5, reason=quota_pb2.CUTOFF_REASON_STORED_BYTES),
    )
    assert decode(b"ci", limits.SerializeToString()) == limits


def test_records_of_a_bare_quota_still_load() -> None:
    quota = quota_pb2.Quota(dataset="ci", events_per_second=1.5, max_stored_bytes=10)
    assert decode(b"ci", quota.SerializeToString()) == quota_pb2.DatasetLimits(quota=quota)


def test_a_record_naming_another_dataset_or_junk_is_skipped() -> None:
    limits = quota_pb2.DatasetLimits(quota=quota_pb2.Quota(dataset="other"))
    assert decode(b"ci", limits.SerializeToString()) is None
    assert decode(b"ci", b"\xff\xff\xff") is None
