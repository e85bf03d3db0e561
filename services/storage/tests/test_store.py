"""The RocksDB layer, on a real RocksDB under tmp_path."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from flakehouse.events import values as v
from flakehouse.storage import fragment
from flakehouse.storage.builder import SegmentBuilder
from flakehouse.storage.store import SegmentStore
from flakehouse.storage.v1 import storage_pb2


def _events(start: int, n: int) -> list[dict[str, Any]]:
    return [
        {
            "timestamp": 1_000 * (start + i),
            "_id": start + i,
            "status": ["passed", "failed", "error"][(start + i) % 3],
            "duration": (start + i) / 4,
            "retries": (start + i) % 5,
        }
        for i in range(n)
    ]


def _segment(kit: Any, partition: int, sequence: int, start: int, n: int) -> storage_pb2.Segment:
    builder = SegmentBuilder("ci", partition, sequence)
    builder.add(kit.batch(_events(start, n)), offset=start)
    return builder.seal()


def _answer(kit: Any, store: SegmentStore, partition: int = 0) -> dict[Any, Any]:
    plan = kit.plan(
        group_by=["status"],
        aggregates=[kit.agg("count"), kit.agg("sum", "duration"), kit.agg("max", "retries")],
    )
    views = store.segments("ci", partition, fragment.fields_needed(plan))
    return kit.groups(fragment.execute(plan, views))  # type: ignore[no-any-return]


def test_seal_then_reopen_gives_identical_answers(kit: Any, tmp_path: Path) -> None:
    store = SegmentStore(str(tmp_path / "db"))
    assert store.applied_offset("ci", 0) is None
    assert store.next_sequence("ci", 0) == 0
    store.seal(_segment(kit, 0, 0, 0, 100), next_offset=1)
    store.seal(_segment(kit, 0, 1, 100, 50), next_offset=2)
    store.seal(_segment(kit, 1, 0, 500, 10), next_offset=7)
    before = _answer(kit, store)
    assert before[(("string", "passed"),)][0]["count"] == 50
    assert store.applied_offset("ci", 0) == 2
    store.close()

    store = SegmentStore(str(tmp_path / "db"))
    assert _answer(kit, store) == before
    assert store.applied_offset("ci", 0) == 2
    assert store.applied_offset("ci", 1) == 7
    assert store.partitions() == [("ci", 0), ("ci", 1)]
    assert store.next_sequence("ci", 0) == 2
    rows, nbytes, sealed = store.usage("ci", 0)
    assert (rows, sealed) == (150, 2)
    assert nbytes > 150 * 16
    assert store.usage("ci", 9) == (0, 0, 0)
    store.close()


@pytest.mark.processes  # the writer runs, and dies, in a process of its own
def test_offset_is_written_with_the_data_in_one_batch(kit: Any, tmp_path: Path) -> None:
    """A process that seals and dies without closing leaves data and offset together."""
    path = tmp_path / "db"
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from conftest import Kit
        from flakehouse.storage.builder import SegmentBuilder
        from flakehouse.storage.store import SegmentStore
        store = SegmentStore({str(path)!r})
        builder = SegmentBuilder("ci", 0, 0)
        builder.add(Kit.batch([{{"timestamp": i, "n": i}} for i in range(1000)]), offset=41)
        store.seal(builder.seal(), next_offset=42)
        os._exit(0)  # no close, no flush: like a crash right after the write
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    store = SegmentStore(str(path))
    assert store.applied_offset("ci", 0) == 42
    assert store.usage("ci", 0)[0] == 1000
    (view,) = store.segments("ci", 0)
    assert view.columns["n"][v.INT].count == 1000
    store.close()


def test_failed_seal_changes_nothing(kit: Any, tmp_path: Path) -> None:
    store = SegmentStore(str(tmp_path / "db"))
    store.seal(_segment(kit, 0, 0, 0, 10), next_offset=5)
    corrupt = _segment(kit, 0, 1, 10, 10)
    corrupt.columns[0].rows = corrupt.columns[0].rows[:-4]
    with pytest.raises(ValueError):
        store.seal(corrupt, next_offset=6)
    with pytest.raises(ValueError, match="exists"):
        store.seal(_segment(kit, 0, 0, 10, 10), next_offset=6)
    with pytest.raises(ValueError, match="back"):
        store.seal(_segment(kit, 0, 1, 10, 10), next_offset=4)
    store.close()
    store = SegmentStore(str(tmp_path / "db"))
    assert store.applied_offset("ci", 0) == 5
    assert store.usage("ci", 0)[::2] == (10, 1)
    store.close()


def test_empty_segment_only_moves_the_offset(kit: Any, tmp_path: Path) -> None:
    store = SegmentStore(str(tmp_path / "db"))
    builder = SegmentBuilder("ci", 2, 0)
    builder.add(kit.batch([]), offset=3)
    store.seal(builder.seal(), next_offset=4)
    assert store.applied_offset("ci", 2) == 4
    assert store.usage("ci", 2) == (0, 0, 0)
    assert store.partitions() == [("ci", 2)]
    store.close()


def test_segments_load_only_requested_columns_lazily(kit: Any, tmp_path: Path) -> None:
    store = SegmentStore(str(tmp_path / "db"))
    store.seal(_segment(kit, 0, 0, 0, 30), next_offset=1)
    (view,) = store.segments("ci", 0, {"retries"})
    assert (view.row_count, view.min_ts, view.max_ts, view.sequence) == (30, 0, 29_000, 0)
    assert set(view.columns) == {"retries"}
    assert view.timestamps.tolist() == [1_000 * i for i in range(30)]
    assert view.event_ids.tolist() == list(range(30))
    # Counts for describe come from metadata, not from decoded columns.
    assert view.column_counts()[("status", v.STRING)] == 30
    (full,) = store.segments("ci", 0)
    assert set(full.columns) == {"status", "duration", "retries"}
    store.close()


def test_views_read_a_snapshot_despite_concurrent_drop(kit: Any, tmp_path: Path) -> None:
    store = SegmentStore(str(tmp_path / "db"), cache_bytes=0)
    store.seal(_segment(kit, 0, 0, 0, 30), next_offset=1)
    views = list(store.segments("ci", 0, {"retries"}))
    store.drop_partition("ci", 0)
    assert views[0].columns["retries"][v.INT].count == 30
    assert list(store.segments("ci", 0)) == []
    del views
    store.close()


def test_transfer_round_trip_through_install_segments(kit: Any, tmp_path: Path) -> None:
    source = SegmentStore(str(tmp_path / "a"))
    source.seal(_segment(kit, 3, 0, 0, 40), next_offset=10)
    source.seal(_segment(kit, 3, 1, 40, 40), next_offset=20)
    protos = list(source.segment_protos("ci", 3))
    assert [p.sequence for p in protos] == [0, 1]
    assert protos[0].timestamps and protos[0].columns[0].rows

    target = SegmentStore(str(tmp_path / "b"))
    # Leftovers of an earlier, interrupted bootstrap are replaced.
    target.seal(_segment(kit, 3, 5, 900, 5), next_offset=3)
    target.install_segments("ci", 3, protos, applied_offset=20)
    assert target.applied_offset("ci", 3) == 20
    assert target.next_sequence("ci", 3) == 2
    assert _answer(kit, target, 3) == _answer(kit, source, 3)
    assert list(target.segment_protos("ci", 3)) == protos
    target.close()
    target = SegmentStore(str(tmp_path / "b"))
    assert _answer(kit, target, 3) == _answer(kit, source, 3)
    assert target.usage("ci", 3) == source.usage("ci", 3)
    with pytest.raises(ValueError, match="given for"):
        target.install_segments("ci", 4, protos, applied_offset=20)
    source.close()
    target.close()


def test_recent_event_ids_come_from_the_newest_segments(kit: Any, tmp_path: Path) -> None:
    store = SegmentStore(str(tmp_path / "db"))
    store.seal(_segment(kit, 0, 0, 0, 10), next_offset=1)
    store.seal(_segment(kit, 0, 1, 10, 10), next_offset=2)
    assert store.recent_event_ids("ci", 0, 5) == {15, 16, 17, 18, 19}
    assert store.recent_event_ids("ci", 0, 13) == set(range(7, 20))
    assert store.recent_event_ids("ci", 0, 100) == set(range(20))
    assert store.recent_event_ids("ci", 9, 100) == set()
    store.close()


def test_drop_segments_and_partition(kit: Any, tmp_path: Path) -> None:
    store = SegmentStore(str(tmp_path / "db"))
    for seq in range(3):
        store.seal(_segment(kit, 0, seq, 10 * seq, 10), next_offset=seq + 1)
    store.seal(_segment(kit, 1, 0, 0, 10), next_offset=1)
    assert [m.sequence for m in store.segment_metas("ci", 0)] == [0, 1, 2]
    assert store.drop_segments("ci", 0, [0, 7]) == 1
    assert [view.sequence for view in store.segments("ci", 0)] == [1, 2]
    assert store.applied_offset("ci", 0) == 3
    store.drop_partition("ci", 0)
    store.close()
    store = SegmentStore(str(tmp_path / "db"))
    assert store.partitions() == [("ci", 1)]
    assert store.applied_offset("ci", 0) is None
    assert store.usage("ci", 1)[0] == 10
    store.close()


def test_cache_is_bounded_and_answers_do_not_change(kit: Any, tmp_path: Path) -> None:
    store = SegmentStore(str(tmp_path / "db"), cache_bytes=4_000)
    for seq in range(5):
        store.seal(_segment(kit, 0, seq, 100 * seq, 100), next_offset=seq + 1)
    first = _answer(kit, store)
    assert _answer(kit, store) == first
    assert store._cache.nbytes <= 4_000
    store.close()


def test_closed_store_and_bad_names_raise(tmp_path: Path) -> None:
    store = SegmentStore(str(tmp_path / "db"))
    with pytest.raises(ValueError, match="dataset"):
        list(store.segments("Bad/Name", 0))
    store.close()
    store.close()
    with pytest.raises(RuntimeError, match="closed"):
        store.applied_offset("ci", 0)


class _RecordingDb:
    """Delegates to the real Rdict and records the calls that write."""

    def __init__(self, db: Any) -> None:
        self._db = db
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        if name in ("put", "write", "delete", "delete_range", "__setitem__"):
            self.calls.append(name)
        return getattr(self._db, name)


def test_seal_and_install_each_make_exactly_one_write(kit: Any, tmp_path: Path) -> None:
    store = SegmentStore(str(tmp_path / "db"))
    recorder = _RecordingDb(store._db)
    store._db = recorder  # type: ignore[assignment]
    store.seal(_segment(kit, 0, 0, 0, 10), next_offset=1, batch_keys={1: (10, 10)})
    assert recorder.calls == ["write"]
    protos = list(store.segment_protos("ci", 0))
    keys = list(store.batch_key_chunks("ci", 0))
    store.install_segments("ci", 1, [_segment(kit, 1, 0, 0, 5)], applied_offset=9, batch_keys=keys)
    assert recorder.calls == ["write", "write"]
    assert protos and store.applied_offset("ci", 1) == 9
    assert store.batch_key("ci", 0, 1) == store.batch_key("ci", 1, 1) == (10, 10)
    store._db = recorder._db
    store.close()


def test_reused_sequence_never_hits_stale_cache(kit: Any, tmp_path: Path) -> None:
    store = SegmentStore(str(tmp_path / "db"))
    store.seal(_segment(kit, 0, 0, 0, 10), next_offset=1)
    before = _answer(kit, store)
    stale_views = list(store.segments("ci", 0, {"status", "duration", "retries"}))
    store.drop_segments("ci", 0, [0])
    assert store.next_sequence("ci", 0) == 0
    store.seal(_segment(kit, 0, 0, 100, 7), next_offset=2)
    # A query that began before the drop still reads its snapshot, and caches what it read...
    assert stale_views[0].row_count == 10
    assert stale_views[0].columns["retries"][v.INT].count == 10
    # ...without a later query seeing those arrays for the new segment 0.
    after = _answer(kit, store)
    assert after != before
    assert sum(states[0]["count"] for states in after.values()) == 7
    store.close()


def test_concurrent_seals_queries_and_drops(kit: Any, tmp_path: Path) -> None:
    store = SegmentStore(str(tmp_path / "db"), cache_bytes=50_000)
    segments = {p: [_segment(kit, p, s, 100 * s, 50) for s in range(15)] for p in range(4)}
    stop = threading.Event()
    errors: list[BaseException] = []

    def write(partition: int) -> None:
        for seq, segment in enumerate(segments[partition]):
            store.seal(segment, next_offset=seq + 1)
        store.drop_segments("ci", partition, [0])

    def read() -> None:
        try:
            while not stop.is_set():
                for partition in range(4):
                    groups = _answer(kit, store, partition)
                    total = sum(states[0]["count"] for states in groups.values())
                    assert total % 50 == 0
                    store.recent_event_ids("ci", partition, 120)
                    store.usage("ci", partition)
        except BaseException as exc:  # reported below: a reader thread cannot fail the test
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, range(4)))
    stop.set()
    for t in readers:
        t.join()
    assert errors == []
    assert [store.usage("ci", p)[::2] for p in range(4)] == [(700, 14)] * 4
    store.close()


def test_generation_is_written_with_the_data_and_survives_a_reopen(
    kit: Any, tmp_path: Path
) -> None:
    store = SegmentStore(str(tmp_path / "db"))
    assert store.generation("ci", 0) is None
    store.seal(_segment(kit, 0, 0, 0, 10), next_offset=1, generation=3)
    store.install_segments("ci", 1, [_segment(kit, 1, 0, 0, 5)], applied_offset=9, generation=4)
    builder = SegmentBuilder("ci", 2, 0)
    builder.add(kit.batch([]), offset=0)
    store.seal(builder.seal(), next_offset=1, generation=5)  # only the offset moves
    assert store.generations() == {("ci", 0): 3, ("ci", 1): 4, ("ci", 2): 5}
    # Data of another generation is never added to a partition: it is deleted first.
    with pytest.raises(ValueError, match="holds generation 3, not 4"):
        store.seal(_segment(kit, 0, 1, 10, 10), next_offset=2, generation=4)
    store.close()

    store = SegmentStore(str(tmp_path / "db"))
    assert store.generations() == {("ci", 0): 3, ("ci", 1): 4, ("ci", 2): 5}
    store.drop_partition("ci", 0)
    assert store.generation("ci", 0) is None
    store.seal(_segment(kit, 0, 0, 0, 10), next_offset=1, generation=4)
    assert store.generation("ci", 0) == 4
    store.close()


def test_rebase_writes_offset_and_generation_in_one_batch(kit: Any, tmp_path: Path) -> None:
    store = SegmentStore(str(tmp_path / "db"))
    store.seal(_segment(kit, 0, 0, 0, 10), next_offset=7, generation=3)
    recorder = _RecordingDb(store._db)
    store._db = recorder  # type: ignore[assignment]
    store.rebase_offset("ci", 0, 0)
    store.rebase_offset("ci", 0, 0, generation=1)
    assert recorder.calls == ["write", "write"]
    store._db = recorder._db
    store.close()
    store = SegmentStore(str(tmp_path / "db"))
    assert (store.applied_offset("ci", 0), store.generation("ci", 0)) == (0, 1)
    assert store.usage("ci", 0)[0] == 10
    store.close()


def test_data_without_a_generation_key_is_generation_one(kit: Any, tmp_path: Path) -> None:
    """A store written before generations existed: no `g` key."""
    store = SegmentStore(str(tmp_path / "db"))
    store.seal(_segment(kit, 0, 0, 0, 10), next_offset=1)
    prefix = b"p/ci/" + (0).to_bytes(4, "big")
    assert store._db.get(prefix + b"g") == (1).to_bytes(4, "big")
    store._db.delete(prefix + b"g")
    store.close()
    store = SegmentStore(str(tmp_path / "db"))
    assert store.generation("ci", 0) == 1
    store.seal(_segment(kit, 0, 1, 10, 10), next_offset=2, generation=1)
    assert store.usage("ci", 0)[0] == 20
    store.close()
