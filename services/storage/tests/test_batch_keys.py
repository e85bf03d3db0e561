"""Batch keys: a record applied again is dropped whole, exactly, whatever the delay (a copy that
reached the cluster by two paths, a puller that appended it twice), across seals, restarts,
rebases, bootstraps, retention and compaction; a record that only looks alike is not. Real
RocksDB in tmp dirs; the dedupe windows are tiny, so that only the keys can drop a copy."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry

from flakehouse.replication.v1 import replication_pb2
from flakehouse.storage import store as store_module
from flakehouse.storage.api import StorageApi
from flakehouse.storage.bootstrap import Peer, Transfer, receive
from flakehouse.storage.compaction import merge_segments
from flakehouse.storage.metrics import StorageMetrics
from flakehouse.storage.node import StorageNode
from flakehouse.storage.replica import ApplyResult, Replica, SealPolicy
from flakehouse.storage.store import SegmentStore
from flakehouse.storage.v1 import storage_pb2

HOUR_US = 3_600_000_000
BASE_US = 1_700_000_000_000_000
POLICY = SealPolicy(rows=1_000_000, bytes=1 << 30, age_s=3600)


def record(kit: Any, ids: list[int], hour: int = 0) -> bytes:
    """A Kafka record: one EventBatch whose events have these ids."""
    events = [
        {"timestamp": BASE_US + hour * HOUR_US + i, "_id": event_id, "status": "passed"}
        for i, event_id in enumerate(ids)
    ]
    return cast(bytes, kit.batch(events).SerializeToString())


def run(first: int, n: int) -> list[int]:
    return list(range(first, first + n))


def rows(replica: Replica) -> int:
    return sum(view.row_count for view in replica.snapshot(set()))


def test_a_record_applied_again_far_beyond_the_window_counts_once(kit: Any, tmp_path: Path) -> None:
    store = SegmentStore(str(tmp_path / "db"))
    replica = Replica("ci", 0, store, dedupe_window=10)
    first = record(kit, run(1000, 5))
    assert replica.apply([(0, first)]) == ApplyResult(5, 0, 0)
    replica.apply([(1 + i, record(kit, run(2000 + 10 * i, 5))) for i in range(30)])
    assert 1000 not in replica.dedupe  # the window forgot it long ago
    assert replica.apply([(31, first)]) == ApplyResult(0, 5, 0)  # key of the open segment
    assert replica.seal_if_due(POLICY, force=True)
    assert replica.apply([(32, first)]) == ApplyResult(0, 5, 0)  # key from RocksDB
    assert rows(replica) == 5 * 31 and replica.next_offset == 33
    store.close()


def test_sealed_keys_survive_a_restart_and_a_replayed_open_segment_is_keyed_again(
    kit: Any, tmp_path: Path
) -> None:
    path = str(tmp_path / "db")
    a, b = record(kit, run(100, 4)), record(kit, run(200, 4))
    store = SegmentStore(path)
    replica = Replica("ci", 0, store, 0)
    replica.apply([(0, a)])
    replica.seal_if_due(POLICY, force=True)
    replica.apply([(1, b)])  # open: lost in the crash below, read again from Kafka
    store.close()

    store = SegmentStore(path)
    replica = Replica("ci", 0, store, 0)
    assert replica.next_offset == 1
    assert replica.apply([(1, b)]) == ApplyResult(4, 0, 0)  # the replay
    assert replica.apply([(2, a), (3, b)]) == ApplyResult(0, 8, 0)
    replica.seal_if_due(POLICY, force=True)
    store.close()

    store = SegmentStore(path)
    replica = Replica("ci", 0, store, 0)
    assert replica.apply([(4, a), (5, b)]) == ApplyResult(0, 8, 0)
    assert rows(replica) == 8
    store.close()


def test_records_read_again_after_a_rebase_are_dropped_whole(kit: Any, tmp_path: Path) -> None:
    store = SegmentStore(str(tmp_path / "db"))
    replica = Replica("ci", 0, store, 0)
    old = [(i, record(kit, run(100 * (i + 1), 4))) for i in range(3)]
    replica.apply(old[:2])
    replica.seal_if_due(POLICY, force=True)
    replica.apply(old[2:])  # open: sealed by the rebase
    replica.rebase(0, broker_end=4, policy=POLICY)
    assert replica.apply([*old, (3, record(kit, run(900, 4)))]) == ApplyResult(4, 12, 0)
    assert rows(replica) == 16
    store.close()


def test_a_late_copy_of_an_expired_record_is_dropped(kit: Any, tmp_path: Path) -> None:
    store = SegmentStore(str(tmp_path / "db"))
    replica = Replica("ci", 0, store, 0)
    old, new = record(kit, run(100, 4), hour=0), record(kit, run(200, 4), hour=5)
    replica.apply([(0, old)])
    replica.seal_if_due(POLICY, force=True)
    replica.apply([(1, new)])
    replica.seal_if_due(POLICY, force=True)
    assert len(store.drop_expired("ci", 0, BASE_US + HOUR_US)) == 1
    assert rows(replica) == 4
    assert replica.apply([(2, old)]) == ApplyResult(0, 4, 0)
    assert rows(replica) == 4
    store.close()


def test_batch_keys_survive_compaction(kit: Any, tmp_path: Path) -> None:
    store = SegmentStore(str(tmp_path / "db"))
    replica = Replica("ci", 0, store, 0)
    records = [(i, record(kit, run(100 * (i + 1), 3))) for i in range(4)]
    for offset, value in records:
        replica.apply([(offset, value)])
        replica.seal_if_due(POLICY, force=True)
    sequences = {meta.sequence for meta in store.segment_metas("ci", 0)}
    merged = merge_segments(list(store.segment_protos("ci", 0)))
    assert store.replace_segments("ci", 0, sequences, merged)
    assert len(store.segment_metas("ci", 0)) == 1
    copies = [(4 + offset, value) for offset, value in records]
    assert replica.apply(copies) == ApplyResult(0, 12, 0)
    assert rows(replica) == 12
    store.close()


def test_a_record_only_alike_is_not_dropped_whole(kit: Any, tmp_path: Path) -> None:
    store = SegmentStore(str(tmp_path / "db"))
    replica = Replica("ci", 0, store, 0)
    replica.apply([(0, record(kit, [1, 2, 3]))])
    replica.seal_if_due(POLICY, force=True)
    # Same first id, another last id or count: not the same record. Without a window to judge
    # single events, every event is kept rather than any dropped on a guess.
    assert replica.apply([(1, record(kit, [1, 2, 9]))]) == ApplyResult(3, 0, 0)
    assert replica.apply([(2, record(kit, [1, 2, 3, 4]))]) == ApplyResult(4, 0, 0)
    # The key stays the first record's.
    assert store.batch_key("ci", 0, 1) == (3, 3)
    assert replica.apply([(3, record(kit, [1, 2, 3]))]) == ApplyResult(0, 3, 0)
    store.close()

    store = SegmentStore(str(tmp_path / "windowed"))
    replica = Replica("ci", 0, store, 10)
    replica.apply([(0, record(kit, [1, 2, 3]))])
    # With a window, its single events judge: only id 4 is new.
    assert replica.apply([(1, record(kit, [1, 2, 3, 4]))]) == ApplyResult(1, 3, 0)
    store.close()


def test_a_record_of_window_duplicates_gets_a_key_sealed_without_rows(
    kit: Any, tmp_path: Path
) -> None:
    path = str(tmp_path / "db")
    store = SegmentStore(path)
    replica = Replica("ci", 0, store, 10)
    replica.apply([(0, record(kit, [1, 2, 3]))])
    replica.seal_if_due(POLICY, force=True)
    # A re-batched tail of it: every event a duplicate, its first id unknown.
    tail = record(kit, [2, 3])
    assert replica.apply([(1, tail)]) == ApplyResult(0, 2, 0)
    # Keys alone are due by age like rows: only they and the offset are written.
    assert not replica.seal_if_due(SealPolicy(rows=1_000_000, bytes=1 << 30, age_s=0))
    assert store.applied_offset("ci", 0) == 2 and store.batch_key("ci", 0, 2) == (2, 3)
    assert len(store.segment_metas("ci", 0)) == 1
    store.close()

    store = SegmentStore(path)
    replica = Replica("ci", 0, store, 0)
    assert replica.apply([(2, tail)]) == ApplyResult(0, 2, 0)
    assert not replica.seal_if_due(POLICY, force=True)  # nothing new to write
    assert rows(replica) == 3
    store.close()


def test_batch_keys_transfer_in_chunks_and_go_with_the_partition(kit: Any, tmp_path: Path) -> None:
    source = SegmentStore(str(tmp_path / "source"))
    replica = Replica("ci", 0, source, 0)
    replica.apply([(i, record(kit, run(100 * (i + 1), 2))) for i in range(5)])
    replica.seal_if_due(POLICY, force=True)
    chunks = list(source.batch_key_chunks("ci", 0, per_chunk=2))
    assert [len(chunk) for chunk in chunks] == [40, 40, 20]

    target = SegmentStore(str(tmp_path / "target"))
    target.seal(storage_pb2.Segment(dataset="ci", partition=0), 0, batch_keys={7: (1, 7)})
    target.install_segments("ci", 0, source.segment_protos("ci", 0), 5, batch_keys=chunks)
    assert target.batch_key("ci", 0, 7) is None  # replaced, like everything of the partition
    assert [target.batch_key("ci", 0, 100 * (i + 1)) for i in range(5)] == [
        (2, 100 * (i + 1) + 1) for i in range(5)
    ]
    with pytest.raises(ValueError, match="not whole entries"):
        target.install_segments("ci", 1, [], 0, batch_keys=[chunks[0][:-1]])
    target.drop_partition("ci", 0)
    assert target.batch_key("ci", 0, 100) is None
    source.close()
    target.close()


async def test_a_copy_holds_the_keys_of_its_segments_only_whatever_is_sealed_after(
    kit: Any, tmp_path: Path
) -> None:
    """A seal between taking a copy and sending its keys (the segments go first, for seconds)
    must not add keys of records the copy's segments lack: the peer would drop those records
    as copies. (rocksdict's Snapshot.iter() sees later writes: the keys are read at once.)"""
    store = SegmentStore(str(tmp_path / "db"))
    sender = node("n1", store)
    replica = Replica("ci", 0, store, 0)
    sender.replicas[("ci", 0)] = replica
    replica.apply([(0, record(kit, run(100, 3)))])
    replica.seal_if_due(POLICY, force=True)
    copy = await sender.sealed_copy("ci", 0, 1)
    replica.apply([(1, record(kit, run(200, 3)))])
    replica.seal_if_due(POLICY, force=True)  # after the copy was taken, before it is sent
    assert copy.applied_offset == 1
    assert b"".join(copy.batch_keys) == b"".join(store.batch_key_chunks("ci", 0))[:20]
    store.close()


def node(node_id: str, store: SegmentStore, fetch: Any = None) -> StorageNode:
    """A node without a consumer: only its copy path runs."""
    return StorageNode(
        node_id,
        store,
        cast(Any, None),
        "test",
        POLICY,
        0,
        StorageMetrics(CollectorRegistry()),
        fetch_segments=fetch,
    )


async def test_a_bootstrapped_replica_drops_what_its_peer_applied(
    kit: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "KEYS_PER_CHUNK", 2)  # several batch_keys messages
    source_store = SegmentStore(str(tmp_path / "source"))
    source = node("n1", source_store)
    replica = Replica("ci", 0, source_store, 0)
    source.replicas[("ci", 0)] = replica
    records = [(i, record(kit, run(100 * (i + 1), 3))) for i in range(5)]
    replica.apply(records[:4])
    replica.seal_if_due(POLICY, force=True)
    replica.apply(records[4:])  # not sealed: not sent, read from Kafka by the copy

    sent: list[storage_pb2.StreamSegmentsResponse] = []

    async def fetch(peer: Peer, dataset: str, partition: int, generation: int) -> Transfer:
        request = storage_pb2.StreamSegmentsRequest(
            dataset=dataset, partition=partition, generation=generation
        )

        async def stream() -> Any:
            async for item in StorageApi(source).StreamSegments(request, None):
                sent.append(item)
                yield item

        return await receive(peer, stream())

    target_store = SegmentStore(str(tmp_path / "target"))
    target = node("n2", target_store, fetch)
    target.follow(
        replication_pb2.Placement(
            version=1,
            datasets=[
                replication_pb2.DatasetPlacement(
                    dataset="ci",
                    topic="test.ci",
                    partitions=[
                        replication_pb2.PartitionPlacement(
                            partition=0,
                            replicas=["n1", "n2"],
                            assignments=[
                                replication_pb2.ReplicaAssignment(
                                    node_id="n1", state=replication_pb2.REPLICA_STATE_ONLINE
                                )
                            ],
                        )
                    ],
                )
            ],
            nodes=[
                replication_pb2.Node(node_id=n, address="127.0.0.1:1", alive=True)
                for n in ("n1", "n2")
            ],
        )
    )
    assert await target._copy_from_a_peer(("ci", 0), 1, time.monotonic())
    kinds = [item.WhichOneof("item") for item in sent]
    assert kinds == ["segment", "batch_keys", "batch_keys", "applied_offset"]

    copy = Replica("ci", 0, target_store, 0)
    assert copy.next_offset == 4
    assert copy.apply(records[4:]) == ApplyResult(3, 0, 0)
    # Copies of every record, the one the peer had not sealed too, arriving by another path.
    assert copy.apply([(5 + i, value) for i, value in records]) == ApplyResult(0, 15, 0)
    assert rows(copy) == rows(replica) == 15
    source_store.close()
    target_store.close()
