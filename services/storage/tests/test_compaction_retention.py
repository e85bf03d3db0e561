"""Compaction (merging small sealed segments) and retention (deleting segments below a drop
bound) against a real RocksDB store: answers stay identical, writes are atomic, offsets
untouched, and neither undoes the other."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from flakehouse.common.v1 import events_pb2, plan_pb2
from flakehouse.quota.v1 import quota_pb2
from flakehouse.storage import fragment
from flakehouse.storage.builder import SegmentBuilder
from flakehouse.storage.compaction import merge_segments, pick_run
from flakehouse.storage.retention import behind_us, bound_for, expired
from flakehouse.storage.store import SegmentStore
from flakehouse.storage.v1 import storage_pb2

HOUR_US = 3_600_000_000


def batch(rng: random.Random, first_id: int, rows: int, hour: int) -> events_pb2.EventBatch:
    out = events_pb2.EventBatch(row_count=rows)
    out.timestamps.extend(hour * HOUR_US + rng.randrange(HOUR_US) for _ in range(rows))
    out.event_ids.extend(range(first_id, first_id + rows))
    status = out.columns.add(name="status", type=events_pb2.VALUE_TYPE_STRING)
    duration = out.columns.add(name="duration", type=events_pb2.VALUE_TYPE_FLOAT)
    flaky = out.columns.add(name="flaky", type=events_pb2.VALUE_TYPE_BOOL)
    retries = out.columns.add(name="retries", type=events_pb2.VALUE_TYPE_INT)
    for row in range(rows):
        status.rows.append(row)
        status.string_values.append(rng.choice(["passed", "passed", "failed", "skipped"]))
        if rng.random() < 0.7:  # sparse
            duration.rows.append(row)
            duration.float_values.append(rng.random() * 10)
        if rng.random() < 0.2:
            flaky.rows.append(row)
            flaky.bool_values.append(rng.random() < 0.5)
        if rng.random() < 0.1:
            retries.rows.append(row)
            retries.int_values.append(rng.randrange(4))
    return out


def fill(store: SegmentStore, segments: int, rows: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    for seq in range(segments):
        builder = SegmentBuilder("ci", 0, seq)
        builder.add(batch(rng, seq * rows, rows, hour=seq), offset=seq)
        store.seal(builder.seal(), next_offset=seq + 1)


PLANS = [
    plan_pb2.QueryPlan(
        ir_version=1,
        dataset="ci",
        group_by=[plan_pb2.GroupKey(field="status")],
        aggregates=[
            plan_pb2.Aggregate(function=plan_pb2.AGGREGATE_FUNCTION_COUNT),
            plan_pb2.Aggregate(function=plan_pb2.AGGREGATE_FUNCTION_SUM, field="duration"),
            plan_pb2.Aggregate(function=plan_pb2.AGGREGATE_FUNCTION_MAX, field="retries"),
            plan_pb2.Aggregate(function=plan_pb2.AGGREGATE_FUNCTION_COUNT_FIELD, field="flaky"),
        ],
    ),
    plan_pb2.QueryPlan(
        ir_version=1,
        dataset="ci",
        select_fields=["timestamp", "status", "duration"],
        order_by=[plan_pb2.OrderBy(field="timestamp")],
    ),
]


def answers(kit: Any, store: SegmentStore) -> list[object]:
    out: list[object] = []
    for plan in PLANS:
        result = fragment.execute(plan, store.segments("ci", 0, fragment.fields_needed(plan)))
        groups = sorted(
            (tuple(k.SerializeToString() for k in g.key), [_state(s) for s in g.states])
            for g in kit.group_list(result)
        )
        out.append((groups, [r.SerializeToString() for r in result.rows]))
    return out


def _state(state: Any) -> tuple[object, ...]:
    # Float sums may differ in the last bits with the order of summation (per segment, then
    # merged): compare them to 9 significant digits, everything else exactly.
    return (
        state.count,
        float(f"{state.sum:.9g}"),
        state.int_sum,
        state.float_seen,
        None if state.extreme is None else state.extreme.SerializeToString(),
        state.sketch,
    )


def test_pick_run_takes_the_oldest_run_of_small_segments() -> None:
    metas = [
        storage_pb2.Segment(sequence=i, row_count=n)
        for i, n in enumerate([100, 10, 10, 10, 100, 10, 10, 10, 10, 10])
    ]
    run = pick_run(metas, small_rows=25, max_rows=100, min_count=4)
    assert [m.sequence for m in run] == [5, 6, 7, 8, 9]
    assert pick_run(metas, small_rows=25, max_rows=100, min_count=6) == []
    capped = pick_run(metas, small_rows=25, max_rows=30, min_count=3)
    assert [m.sequence for m in capped] == [1, 2, 3]


def test_merging_small_segments_keeps_every_answer_and_the_offset(kit: Any, tmp_path: Path) -> None:
    store = SegmentStore(str(tmp_path / "db"))
    fill(store, segments=6, rows=300)
    before = answers(kit, store)
    run = pick_run(store.segment_metas("ci", 0), small_rows=400, max_rows=10_000, min_count=4)
    assert len(run) == 6
    segments = list(store.segment_protos("ci", 0, {m.sequence for m in run}))
    merged = merge_segments(segments)
    assert merged.row_count == 1800 and merged.sequence == 0
    assert (merged.first_offset, merged.last_offset) == (0, 5)
    assert store.replace_segments("ci", 0, {m.sequence for m in run}, merged)
    assert [m.sequence for m in store.segment_metas("ci", 0)] == [0]
    assert answers(kit, store) == before
    assert store.applied_offset("ci", 0) == 6
    assert store.recent_event_ids("ci", 0, 10_000) == set(range(1800))
    store.close()

    reopened = SegmentStore(str(tmp_path / "db"))  # durable, and still identical
    assert answers(kit, reopened) == before
    reopened.close()


def test_replace_refuses_when_a_segment_vanished(tmp_path: Path) -> None:
    store = SegmentStore(str(tmp_path / "db"))
    fill(store, segments=4, rows=50)
    segments = list(store.segment_protos("ci", 0))
    merged = merge_segments(segments)
    store.drop_segments("ci", 0, {2})  # retention got there first
    assert not store.replace_segments("ci", 0, {0, 1, 2, 3}, merged)
    assert [m.sequence for m in store.segment_metas("ci", 0)] == [0, 1, 3]
    store.close()


def test_rebase_moves_the_offset_back_and_keeps_the_rows(tmp_path: Path) -> None:
    store = SegmentStore(str(tmp_path / "db"))
    fill(store, segments=3, rows=10)
    store.rebase_offset("ci", 0, 0)
    assert store.applied_offset("ci", 0) == 0
    assert store.usage("ci", 0)[0] == 30
    store.close()
    assert SegmentStore(str(tmp_path / "db")).applied_offset("ci", 0) == 0


def seg(seq: int, newest_hour: int, rows: int = 10) -> storage_pb2.Segment:
    return storage_pb2.Segment(sequence=seq, row_count=rows, max_timestamp_us=newest_hour * HOUR_US)


def test_expired_takes_segments_whose_every_event_is_below_the_bound() -> None:
    metas = [seg(0, 1), seg(1, 5), seg(2, 2), seg(3, 6), seg(4, 3, rows=0)]
    assert expired(metas, 3 * HOUR_US) == {0, 2}
    # The bound is exclusive: a segment whose newest event is at the bound stays.
    assert expired(metas, 2 * HOUR_US) == {0}
    assert expired(metas, 2 * HOUR_US + 1) == {0, 2}
    assert expired(metas, 0) == set()
    assert expired(metas, -5) == set()
    assert expired([], 10 * HOUR_US) == set()


def test_a_bound_applies_to_its_generation_or_to_any() -> None:
    def bound(dataset: str, before: int, generation: int = 0) -> quota_pb2.DropBound:
        return quota_pb2.DropBound(dataset=dataset, before_us=before, generation=generation)

    bounds = [bound("ci", 5, generation=2), bound("web", 7), bound("old", 9, generation=1)]
    assert bound_for(bounds, "ci", 2) == bounds[0]
    assert bound_for(bounds, "ci", 1) is None  # computed for another incarnation
    assert bound_for(bounds, "web", 3) == bounds[1]  # 0: any generation
    assert bound_for(bounds, "other", 1) is None
    assert bound_for([bound("ci", 0, generation=2)], "ci", 2) is None
    both = [bound("ci", 5), bound("ci", 8, generation=2), bound("ci", 99, generation=3)]
    assert bound_for(both, "ci", 2) == both[1]


def test_behind_is_how_far_the_oldest_segment_is_below_the_bound() -> None:
    metas = [seg(0, 2), seg(1, 5)]
    assert behind_us(metas, 3 * HOUR_US) == HOUR_US
    assert behind_us(metas, 2 * HOUR_US) == 0
    assert behind_us([seg(1, 5)], 3 * HOUR_US) == 0
    assert behind_us([], 3 * HOUR_US) == 0
    assert behind_us(metas, 0) == 0


def test_drop_expired_deletes_in_one_write_and_keeps_the_offset(tmp_path: Path) -> None:
    store = SegmentStore(str(tmp_path / "db"))
    fill(store, segments=5, rows=20)  # segment s holds hour s
    epoch = store.epoch("ci", 0)
    writes: list[str] = []
    real = store._db

    class Recording:
        def __getattr__(self, name: str) -> Any:
            if name in ("put", "write", "delete", "delete_range"):
                writes.append(name)
            return getattr(real, name)

    store._db = Recording()  # type: ignore[assignment]
    dropped = store.drop_expired("ci", 0, 3 * HOUR_US)
    store._db = real
    assert writes == ["write"]  # the segments and the drop watermark together
    assert [m.sequence for m in dropped] == [0, 1, 2]
    assert sum(m.row_count for m in dropped) == 60
    assert store.epoch("ci", 0) != epoch
    assert [m.sequence for m in store.segment_metas("ci", 0)] == [3, 4]
    assert store.applied_offset("ci", 0) == 5
    assert store.drop_expired("ci", 0, 3 * HOUR_US) == []
    # A bound meant for another generation of the dataset deletes nothing.
    assert store.drop_expired("ci", 0, 10 * HOUR_US, generation=2) == []
    assert store.drop_expired("ci", 7, 10 * HOUR_US) == []
    store.close()
    reopened = SegmentStore(str(tmp_path / "db"))
    assert [m.sequence for m in reopened.segment_metas("ci", 0)] == [3, 4]
    assert reopened.usage("ci", 0)[0] == 40
    reopened.close()


def test_the_drop_watermark_rises_with_drops_and_survives_a_restart(tmp_path: Path) -> None:
    store = SegmentStore(str(tmp_path / "db"))
    fill(store, segments=5, rows=20)  # segment s holds hour s
    assert store.drop_watermark("ci", 0) == 0
    assert store.drop_expired("ci", 0, 0 * HOUR_US + 1) == []  # deletes nothing: no watermark
    assert store.drop_watermark("ci", 0) == 0
    assert len(store.drop_expired("ci", 0, 2 * HOUR_US)) == 2
    assert store.drop_watermark("ci", 0) == 2 * HOUR_US
    # A later bound that deletes nothing more leaves it (nothing below it was deleted).
    assert store.drop_expired("ci", 0, 2 * HOUR_US + 5) == []
    assert store.drop_watermark("ci", 0) == 2 * HOUR_US
    store.close()

    reopened = SegmentStore(str(tmp_path / "db"))
    assert reopened.drop_watermark("ci", 0) == 2 * HOUR_US
    assert len(reopened.drop_expired("ci", 0, 4 * HOUR_US)) == 2
    assert reopened.drop_watermark("ci", 0) == 4 * HOUR_US
    # Only up: segments deleted otherwise (drop_segments) do not lower it.
    assert reopened.drop_segments("ci", 0, {4}) == 1
    assert reopened.drop_watermark("ci", 0) == 4 * HOUR_US
    assert reopened.drop_watermark("ci", 9) == 0
    reopened.close()


def test_drop_partition_and_install_set_the_drop_watermark(tmp_path: Path) -> None:
    store = SegmentStore(str(tmp_path / "db"))
    fill(store, segments=3, rows=10)
    store.drop_expired("ci", 0, 1 * HOUR_US)
    assert store.drop_watermark("ci", 0) == HOUR_US
    store.drop_partition("ci", 0)
    assert store.drop_watermark("ci", 0) == 0
    fill(store, segments=3, rows=10)  # the partition taken again: it lacks nothing
    assert store.drop_watermark("ci", 0) == 0
    store.close()
    reopened = SegmentStore(str(tmp_path / "db"))
    assert reopened.drop_watermark("ci", 0) == 0

    reopened.drop_expired("ci", 0, 1 * HOUR_US)
    segments = list(reopened.segment_protos("ci", 0))
    reopened.install_segments("ci", 0, segments, applied_offset=3)
    assert reopened.drop_watermark("ci", 0) == 0
    # A copy from a peer takes the peer's watermark: it lacks what the peer deleted.
    reopened.install_segments("ci", 0, segments, applied_offset=3, drop_watermark=HOUR_US)
    assert reopened.drop_watermark("ci", 0) == HOUR_US
    reopened.close()
    assert SegmentStore(str(tmp_path / "db")).drop_watermark("ci", 0) == HOUR_US


def test_replace_refuses_after_a_drop_even_of_other_segments(tmp_path: Path) -> None:
    store = SegmentStore(str(tmp_path / "db"))
    fill(store, segments=6, rows=30)
    epoch = store.epoch("ci", 0)
    run = {2, 3, 4, 5}
    merged = merge_segments(list(store.segment_protos("ci", 0, run)))
    assert [m.sequence for m in store.drop_expired("ci", 0, 2 * HOUR_US)] == [0, 1]
    assert not store.replace_segments("ci", 0, run, merged, epoch)
    assert [m.sequence for m in store.segment_metas("ci", 0)] == [2, 3, 4, 5]
    # Read again after the drop, the merge goes through.
    epoch = store.epoch("ci", 0)
    merged = merge_segments(list(store.segment_protos("ci", 0, run)))
    assert store.replace_segments("ci", 0, run, merged, epoch)
    assert [m.sequence for m in store.segment_metas("ci", 0)] == [2]
    store.close()


def test_replace_refuses_when_the_partition_was_deleted_and_refilled(tmp_path: Path) -> None:
    store = SegmentStore(str(tmp_path / "db"))
    fill(store, segments=4, rows=10)
    epoch = store.epoch("ci", 0)
    merged = merge_segments(list(store.segment_protos("ci", 0)))
    store.drop_partition("ci", 0)
    fill(store, segments=4, rows=10, seed=2)  # the same sequence numbers, other rows
    assert not store.replace_segments("ci", 0, {0, 1, 2, 3}, merged, epoch)
    assert len(store.segment_metas("ci", 0)) == 4
    store.close()
