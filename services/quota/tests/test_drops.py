"""Drop bounds for storage: floors count once published long enough ago; retention with a
margin for clocks."""

from __future__ import annotations

from flakehouse.quota.drops import FloorHistory, drop_bound
from flakehouse.quota.v1 import quota_pb2

US = 1_000_000
NOW = 1_700_000_000 * US
STORED = quota_pb2.CUTOFF_REASON_STORED_BYTES
RETENTION = quota_pb2.CUTOFF_REASON_RETENTION


def floor(cutoff_us: int, reason: quota_pb2.CutoffReason.ValueType = STORED) -> quota_pb2.Cutoff:
    return quota_pb2.Cutoff(cutoff_us=cutoff_us, reason=reason)


def test_a_floor_counts_only_after_the_grace() -> None:
    history = FloorHistory(grace_s=10)
    history.record("ci", floor(NOW - 3600 * US), NOW)
    floors = history.of("ci")
    assert drop_bound("ci", floors, 0, NOW + 9 * US, 10, 60) is None
    bound = drop_bound("ci", floors, 0, NOW + 10 * US, 10, 60)
    assert bound == quota_pb2.DropBound(dataset="ci", before_us=NOW - 3600 * US, reason=STORED)


def test_while_a_new_floor_waits_the_previous_one_holds() -> None:
    history = FloorHistory(grace_s=10)
    history.record("ci", floor(100), NOW)
    history.record("ci", floor(200), NOW + 20 * US)
    history.record("ci", floor(150), NOW + 21 * US)  # lower: no news
    bound = drop_bound("ci", history.of("ci"), 0, NOW + 25 * US, 10, 60)
    assert bound is not None and bound.before_us == 100
    bound = drop_bound("ci", history.of("ci"), 0, NOW + 30 * US, 10, 60)
    assert bound is not None and bound.before_us == 200


def test_history_keeps_only_what_bounds_need() -> None:
    history = FloorHistory(grace_s=10)
    for i in range(5):
        history.record("ci", floor(100 + i), NOW + i * 20 * US)
    # The last settled floor and the one still in its grace.
    assert [p.floor.cutoff_us for p in history.of("ci")] == [103, 104]
    history.forget("ci")
    assert history.of("ci") == ()


def test_retention_bound_leaves_a_margin_for_clocks() -> None:
    bound = drop_bound("ci", (), 3600, NOW, 10, 60)
    assert bound == quota_pb2.DropBound(
        dataset="ci", before_us=NOW - (3600 + 60) * US, reason=RETENTION
    )


def test_the_later_of_floor_and_retention_wins() -> None:
    history = FloorHistory(grace_s=0)
    history.record("ci", floor(NOW - 100 * US), NOW)
    bound = drop_bound("ci", history.of("ci"), 3600, NOW, 0, 60)
    assert bound is not None and (bound.before_us, bound.reason) == (NOW - 100 * US, STORED)
    history = FloorHistory(grace_s=0)
    history.record("ci", floor(NOW - 86400 * US, RETENTION), NOW)
    bound = drop_bound("ci", history.of("ci"), 3600, NOW, 0, 60)
    assert bound is not None and (bound.before_us, bound.reason) == (NOW - 3660 * US, RETENTION)


def test_nothing_to_drop_without_floor_or_retention() -> None:
    assert drop_bound("ci", (), 0, NOW, 10, 60) is None
