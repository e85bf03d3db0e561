"""Drop bounds for storage: floors and shorter retentions count once published long enough ago;
retention with a margin for clocks; the bound names the dataset's generation."""

from __future__ import annotations

from collections.abc import Sequence

from flakehouse.quota.drops import (
    FloorHistory,
    PublishedFloor,
    PublishedRetention,
    RetentionHistory,
    drop_bound,
    longest_retention,
)
from flakehouse.quota.v1 import quota_pb2

US = 1_000_000
NOW = 1_700_000_000 * US
STORED = quota_pb2.CUTOFF_REASON_STORED_BYTES
RETENTION = quota_pb2.CUTOFF_REASON_RETENTION


def floor(cutoff_us: int, reason: quota_pb2.CutoffReason.ValueType = STORED) -> quota_pb2.Cutoff:
    return quota_pb2.Cutoff(cutoff_us=cutoff_us, reason=reason)


def settled(retention_s: int) -> list[PublishedRetention]:
    """A retention published long ago."""
    return [PublishedRetention(NOW - 86400 * US, retention_s)]


def bound_at(
    now_us: int,
    floors: Sequence[PublishedFloor] = (),
    retentions: Sequence[PublishedRetention] = (),
    grace_s: float = 10,
) -> quota_pb2.DropBound | None:
    return drop_bound("ci", 1, floors, retentions, now_us, grace_s, 60)


def test_a_floor_counts_only_after_the_grace() -> None:
    history = FloorHistory(grace_s=10)
    history.record("ci", floor(NOW - 3600 * US), NOW)
    floors = history.of("ci")
    assert bound_at(NOW + 9 * US, floors) is None
    bound = drop_bound("ci", 3, floors, (), NOW + 10 * US, 10, 60)
    assert bound == quota_pb2.DropBound(
        dataset="ci", before_us=NOW - 3600 * US, reason=STORED, generation=3
    )


def test_while_a_new_floor_waits_the_previous_one_holds() -> None:
    history = FloorHistory(grace_s=10)
    history.record("ci", floor(100), NOW)
    history.record("ci", floor(200), NOW + 20 * US)
    history.record("ci", floor(150), NOW + 21 * US)  # lower: no news
    bound = bound_at(NOW + 25 * US, history.of("ci"))
    assert bound is not None and bound.before_us == 100
    bound = bound_at(NOW + 30 * US, history.of("ci"))
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
    bound = drop_bound("ci", 2, (), settled(3600), NOW, 10, 60)
    assert bound == quota_pb2.DropBound(
        dataset="ci", before_us=NOW - (3600 + 60) * US, reason=RETENTION, generation=2
    )


def test_the_later_of_floor_and_retention_wins() -> None:
    history = FloorHistory(grace_s=0)
    history.record("ci", floor(NOW - 100 * US), NOW)
    bound = bound_at(NOW, history.of("ci"), settled(3600), grace_s=0)
    assert bound is not None and (bound.before_us, bound.reason) == (NOW - 100 * US, STORED)
    history = FloorHistory(grace_s=0)
    history.record("ci", floor(NOW - 86400 * US, RETENTION), NOW)
    bound = bound_at(NOW, history.of("ci"), settled(3600), grace_s=0)
    assert bound is not None and (bound.before_us, bound.reason) == (NOW - 3660 * US, RETENTION)


def test_nothing_to_drop_without_floor_or_retention() -> None:
    assert bound_at(NOW) is None
    assert bound_at(NOW, retentions=settled(0)) is None


def test_a_shorter_retention_counts_only_after_the_grace() -> None:
    history = RetentionHistory(grace_s=10)
    history.record("ci", 7200, NOW - 86400 * US)
    history.record("ci", 3600, NOW)
    retentions = history.of("ci")
    # Query processes may still answer with 2 hours: storage keeps them meanwhile.
    for now_us in (NOW, NOW + 9 * US):
        bound = bound_at(now_us, retentions=retentions)
        assert bound is not None and bound.before_us == now_us - (7200 + 60) * US
    bound = bound_at(NOW + 10 * US, retentions=retentions)
    assert bound is not None and bound.before_us == NOW + 10 * US - (3600 + 60) * US


def test_a_longer_or_no_retention_counts_at_once() -> None:
    history = RetentionHistory(grace_s=10)
    history.record("ci", 3600, NOW - 86400 * US)
    history.record("ci", 7200, NOW)
    bound = bound_at(NOW, retentions=history.of("ci"))
    assert bound is not None and bound.before_us == NOW - (7200 + 60) * US
    history.record("ci", 0, NOW + 1 * US)
    assert bound_at(NOW + 1 * US, retentions=history.of("ci")) is None


def test_a_retention_set_from_unlimited_waits_for_the_grace() -> None:
    history = RetentionHistory(grace_s=10)
    history.record("ci", 3600, NOW)  # the first: unlimited before
    assert bound_at(NOW + 9 * US, retentions=history.of("ci")) is None
    bound = bound_at(NOW + 10 * US, retentions=history.of("ci"))
    assert bound is not None and bound.reason == RETENTION
    history = RetentionHistory(grace_s=10)
    history.record("ci", 0, NOW - 86400 * US)
    history.record("ci", 3600, NOW)
    assert bound_at(NOW + 9 * US, retentions=history.of("ci")) is None


def test_the_longest_retention_of_the_grace_counts() -> None:
    retentions = [
        PublishedRetention(NOW, 7200),
        PublishedRetention(NOW + 20 * US, 3600),
        PublishedRetention(NOW + 22 * US, 5400),
        PublishedRetention(NOW + 24 * US, 1800),
    ]
    assert longest_retention(retentions, NOW - 1) == 0  # before the first: unlimited
    assert longest_retention(retentions, NOW + 19 * US) == 7200
    assert longest_retention(retentions, NOW + 21 * US) == 5400
    assert longest_retention(retentions, NOW + 23 * US) == 5400
    assert longest_retention(retentions, NOW + 24 * US) == 1800


def test_retention_history_keeps_only_what_bounds_need() -> None:
    history = RetentionHistory(grace_s=10)
    history.record("ci", 3600, NOW)
    history.record("ci", 3600, NOW + 5 * US)  # the same: no news
    assert history.of("ci") == [PublishedRetention(NOW, 3600)]
    for i, retention_s in enumerate((7200, 5400, 1800), start=1):
        history.record("ci", retention_s, NOW + i * 20 * US)
    # The one in force a grace ago and the one still in its grace.
    assert [r.retention_s for r in history.of("ci")] == [5400, 1800]
    history.forget("ci")
    assert history.of("ci") == ()
