"""Pure decisions of a storage node: which local data belongs to a deleted dataset (identity.py)
and what a usage report says about a partition (usage.py)."""

from __future__ import annotations

from flakehouse.replication.v1 import replication_pb2
from flakehouse.storage.identity import Identities, Incarnation, identities, to_delete
from flakehouse.storage.usage import partition_usage
from flakehouse.storage.v1 import storage_pb2


def placement(
    live: dict[str, int], retired: dict[str, int] | None = None
) -> replication_pb2.Placement:
    return replication_pb2.Placement(
        datasets=[
            replication_pb2.DatasetPlacement(
                dataset=name,
                generation=generation,
                topic="",
            )
            for name, generation in live.items()
        ],
        retired=[
            replication_pb2.RetiredDataset(dataset=name, generation=generation)
            for name, generation in (retired or {}).items()
        ],
    )


def test_identities_default_to_the_first_generation_and_its_topic() -> None:
    known = identities(placement({"ci": 0, "web": 3}, {"old": 2}), "p")
    assert known.live == {"ci": Incarnation(1, "p.ci"), "web": Incarnation(3, "p.web.3")}
    assert known.retired == {"old": 2}


def test_stale_means_a_newer_live_generation_or_a_retirement_at_or_after() -> None:
    known = Identities({"ci": Incarnation(3, "p.ci.3")}, {"old": 2})
    assert known.stale("ci", 1) and known.stale("ci", 2)
    assert not known.stale("ci", 3)
    assert not known.stale("ci", 4)  # newer than the catalog: kept (the catalog went back)
    assert known.stale("old", 1) and known.stale("old", 2)
    assert not known.stale("old", 3)
    assert not known.stale("absent", 1)  # Kafka wiped: only a retirement deletes


def test_to_delete() -> None:
    known = identities(placement({"ci": 2, "web": 1}, {"old": 1}), "p")
    local = {
        ("ci", 0): 1,  # superseded by generation 2
        ("ci", 1): 2,  # live, given to this node
        ("ci", 2): 2,  # live, not given, served elsewhere
        ("ci", 3): 2,  # live, not given, served by nobody else: kept
        ("web", 0): 2,  # newer than the placement's: kept
        ("web", 1): 1,  # live, not given, served elsewhere
        ("old", 0): 1,  # retired
        ("gone", 0): 5,  # unknown to the placement (Kafka wiped): kept
    }
    wanted = {("ci", 0), ("ci", 1), ("web", 0)}
    served = {("ci", 0), ("ci", 2), ("web", 0), ("web", 1), ("gone", 0)}
    assert to_delete(local, wanted, known, served) == {("ci", 0), ("ci", 2), ("web", 1), ("old", 0)}
    assert to_delete({}, wanted, known, served) == set()


def test_partition_usage_covers_sealed_and_open_rows() -> None:
    sealed = [
        (storage_pb2.Segment(row_count=10, min_timestamp_us=50, max_timestamp_us=90), 1000),
        (storage_pb2.Segment(row_count=5, min_timestamp_us=20, max_timestamp_us=60), 400),
        (storage_pb2.Segment(row_count=0), 0),  # every record a duplicate: nothing to report
    ]
    usage = partition_usage("ci", 3, sealed, open_rows=7, open_range=(10, 200), generation=4)
    assert (usage.dataset, usage.partition, usage.generation) == ("ci", 3, 4)
    assert (usage.bytes, usage.rows) == (1400, 22)
    assert (usage.min_timestamp_us, usage.max_timestamp_us) == (10, 200)
    assert [(s.max_timestamp_us, s.bytes) for s in usage.segments] == [(90, 1000), (60, 400)]
    sealed_only = partition_usage("ci", 3, sealed, open_rows=0, open_range=None)
    assert (sealed_only.min_timestamp_us, sealed_only.max_timestamp_us) == (20, 90)
    assert (sealed_only.rows, sealed_only.generation) == (15, 1)
    open_only = partition_usage("ci", 3, [], open_rows=2, open_range=(5, 6))
    assert (open_only.min_timestamp_us, open_only.max_timestamp_us, open_only.bytes) == (5, 6, 0)
    empty = partition_usage("ci", 3, [], open_rows=0, open_range=None)
    assert (empty.rows, empty.min_timestamp_us, empty.max_timestamp_us) == (0, 0, 0)
