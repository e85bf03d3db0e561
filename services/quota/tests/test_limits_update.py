"""SetQuota's pure part: the update mask, validation, and the floor a retention change raises."""

from __future__ import annotations

import pytest

from flakehouse.core.errors import InvalidArgument
from flakehouse.quota.limits import (
    has_effect,
    merged_quota,
    of_generation,
    raised_floor,
    updated_limits,
    with_floor,
)
from flakehouse.quota.v1 import quota_pb2

US = 1_000_000
NOW = 1_700_000_000 * US
RETENTION = quota_pb2.CUTOFF_REASON_RETENTION
STORED = quota_pb2.CUTOFF_REASON_STORED_BYTES


def limits(floor_us: int = 0, **quota: float) -> quota_pb2.DatasetLimits:
    return quota_pb2.DatasetLimits(
        quota=quota_pb2.Quota(dataset="ci", **quota),  # type: ignore[arg-type]
        floor=quota_pb2.Cutoff(
            cutoff_us=floor_us, reason=STORED if floor_us else quota_pb2.CUTOFF_REASON_UNSPECIFIED
        ),
    )


def test_mask_changes_only_the_named_limits() -> None:
    current = quota_pb2.Quota(dataset="ci", events_per_second=5, max_stored_bytes=100)
    update = quota_pb2.Quota(dataset="ci", retention_seconds=3600, max_stored_bytes=7)
    merged = merged_quota(current, update, ["retention_seconds"])
    assert merged == quota_pb2.Quota(
        dataset="ci", events_per_second=5, max_stored_bytes=100, retention_seconds=3600
    )


def test_empty_mask_replaces_every_limit() -> None:
    current = quota_pb2.Quota(dataset="ci", events_per_second=5, max_stored_bytes=100)
    update = quota_pb2.Quota(dataset="ci", retention_seconds=3600)
    assert merged_quota(current, update, []) == update


def test_mask_naming_something_else_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="'dataset'"):
        merged_quota(quota_pb2.Quota(), quota_pb2.Quota(dataset="ci"), ["dataset"])


def test_bad_limits_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="at least 60"):
        updated_limits(limits(), quota_pb2.Quota(dataset="ci", retention_seconds=30), [], NOW)
    with pytest.raises(InvalidArgument, match="events_per_second"):
        updated_limits(
            limits(),
            quota_pb2.Quota(dataset="ci", events_per_second=-1),
            ["events_per_second"],
            NOW,
        )


def test_retention_change_raises_the_floor_to_the_old_cutoff() -> None:
    current = limits(retention_seconds=3600)
    longer = quota_pb2.Quota(dataset="ci", retention_seconds=7200)
    after = updated_limits(current, longer, ["retention_seconds"], NOW)
    assert after.quota.retention_seconds == 7200
    assert after.floor == quota_pb2.Cutoff(cutoff_us=NOW - 3600 * US, reason=RETENTION)


def test_retention_removed_keeps_what_it_let_go_hidden() -> None:
    after = updated_limits(limits(retention_seconds=86400), quota_pb2.Quota(dataset="ci"), [], NOW)
    assert after.quota.retention_seconds == 0
    assert after.floor.cutoff_us == NOW - 86400 * US


def test_no_floor_when_retention_is_new_or_unchanged() -> None:
    update = quota_pb2.Quota(dataset="ci", retention_seconds=3600)
    assert updated_limits(limits(), update, [], NOW).floor.cutoff_us == 0
    same = updated_limits(limits(retention_seconds=3600), update, [], NOW)
    assert same.floor.cutoff_us == 0


def test_floor_never_moves_back() -> None:
    current = limits(floor_us=NOW - 60 * US, retention_seconds=3600)
    after = updated_limits(current, quota_pb2.Quota(dataset="ci", retention_seconds=60), [], NOW)
    assert after.floor == current.floor
    assert raised_floor(current.floor, NOW - 120 * US, RETENTION) == current.floor
    assert raised_floor(current.floor, NOW, RETENTION).cutoff_us == NOW


def test_has_effect() -> None:
    assert not has_effect(limits())
    assert has_effect(limits(max_concurrent_queries=1))
    assert has_effect(limits(floor_us=1))


def test_the_generation_carries_over_updates_and_floors() -> None:
    current = of_generation(limits(retention_seconds=3600), 3)
    update = quota_pb2.Quota(dataset="ci", retention_seconds=7200)
    assert updated_limits(current, update, [], NOW).generation == 3
    assert with_floor(current, quota_pb2.Cutoff(cutoff_us=NOW)).generation == 3
