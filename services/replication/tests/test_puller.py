"""A link's puller against fakes of its source and of this cluster (pure logic; the real broker
and real clusters are tests/test_links.py): what it appends, when it checkpoints, how it
resumes, waits for quota and reports its state and lag."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field

import pytest

from flakehouse.common.v1 import events_pb2
from flakehouse.core.errors import NotFound, ResourceExhausted, Unavailable
from flakehouse.replication import puller as puller_module
from flakehouse.replication.link_source import CAUGHT_UP, SourceDataset, SourceRecord
from flakehouse.replication.puller import LinkPorts, LinkPuller
from flakehouse.replication.v1 import replication_pb2
from tests.support import eventually_async

HERE, THERE, ELSEWHERE = "fhc-here", "fhc-there", "fhc-elsewhere"
LINK = replication_pb2.LinkRecord(
    name="from-there", id="id1", source_address="there:1", dataset="ci"
)
State = replication_pb2.LinkState
NEW = replication_pb2.LinkCheckpoint()


def checkpoint(offsets: dict[int, int], generation: int = 1) -> replication_pb2.LinkCheckpoint:
    return replication_pb2.LinkCheckpoint(next_offsets=offsets, source_generation=generation)


def batch(first_id: int, events: int) -> bytes:
    ids = list(range(first_id, first_id + events))
    return events_pb2.EventBatch(
        upload_id=f"u{first_id}", row_count=events, event_ids=ids
    ).SerializeToString()


def record(
    partition: int,
    offset: int,
    end: int,
    origin: str = THERE,
    events: int = 3,
    via: tuple[str, ...] = (),
) -> SourceRecord:
    """A record as the source serves it: without its batch when it was here already."""
    held_here = HERE in (origin, *via)
    payload = b"" if held_here else batch(1000 * partition + offset * 10, events)
    return SourceRecord(partition, offset, end, origin, via, f"u{partition}-{offset}", payload)


@dataclass
class FakeSource:
    """Serves `records` from the offsets asked, then CAUGHT_UP, then stays open."""

    records: list[SourceRecord]
    cluster: str = THERE
    partition_count: int = 2
    generation: int = 1
    asked: list[dict[int, int]] = field(default_factory=list)
    fail_after: int | None = None  # records served before the stream breaks

    async def cluster_id(self) -> str:
        return self.cluster

    async def dataset(self, name: str) -> SourceDataset:
        return SourceDataset(self.partition_count, self.generation)

    async def changes(
        self,
        dataset: SourceDataset,
        name: str,
        from_offsets: Mapping[int, int],
        reader_cluster: str,
    ) -> AsyncIterator[SourceRecord | None]:
        assert reader_cluster == HERE and dataset.generation == self.generation
        self.asked.append(dict(from_offsets))
        served = 0
        for r in self.records:
            if r.offset < from_offsets.get(r.partition, 0):
                continue
            if self.fail_after is not None and served == self.fail_after:
                self.fail_after = None  # once
                raise Unavailable("source went away")
            served += 1
            yield r
        yield CAUGHT_UP
        await asyncio.Event().wait()

    async def close(self) -> None:
        pass


@dataclass
class Local:
    """This cluster, as the puller sees it: what reached Kafka and every checkpoint, in order."""

    appended: list[SourceRecord] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    checkpoints: list[dict[int, int]] = field(default_factory=list)
    generations: list[int] = field(default_factory=list)
    leases: list[tuple[str, str, int, int]] = field(default_factory=list)
    refuse_leases: int = 0
    fail_appends: int = 0
    puller: LinkPuller | None = None  # when set, its state is noted at every lease asked
    states_at_lease: list[int] = field(default_factory=list)

    async def local_topic(self, dataset: str) -> str:
        if dataset != "ci":
            raise NotFound(f"dataset {dataset!r} does not exist in this cluster")
        return "fh.ci"

    async def append(self, topic: str, records: Sequence[SourceRecord]) -> None:
        if self.fail_appends:
            self.fail_appends -= 1
            raise Unavailable("Kafka did not acknowledge")
        self.appended.extend(records)
        self.log.append("append")

    async def checkpoint(self, link_id: str, saved: replication_pb2.LinkCheckpoint) -> None:
        assert link_id == LINK.id
        self.checkpoints.append(dict(saved.next_offsets))
        self.generations.append(saved.source_generation)
        self.log.append("checkpoint")

    async def lease(self, dataset: str, holder: str, events: int, size: int) -> None:
        self.leases.append((dataset, holder, events, size))
        if self.puller is not None:
            self.states_at_lease.append(self.puller.state)
        if self.refuse_leases:
            self.refuse_leases -= 1
            raise ResourceExhausted("over the ingest rate", retry_after_ms=10)


def ports(local: Local, source: FakeSource) -> LinkPorts:
    return LinkPorts(
        connect=lambda link: source,
        local_topic=local.local_topic,
        append=local.append,
        checkpoint=local.checkpoint,
        lease=local.lease,
        local_cluster=HERE,
    )


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(puller_module, "RETRY_MIN_S", 0.01)


async def run_until(puller: LinkPuller, done: object, what: str) -> None:
    task = asyncio.create_task(puller.run())
    try:
        await eventually_async(done, what, timeout_s=10)  # type: ignore[arg-type]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_appends_others_records_and_checkpoints_after_them() -> None:
    records = [
        record(0, 0, 3),
        record(0, 1, 3, origin=HERE),  # this cluster's own: not appended, offset still moves
        record(0, 2, 3, origin=ELSEWHERE, via=(THERE,)),  # from a third cluster: kept
        record(1, 0, 1, events=5),
        record(1, 1, 2, origin=ELSEWHERE, via=(HERE, THERE)),  # passed through here: left out
    ]
    local, source = Local(), FakeSource(records)
    puller = LinkPuller(LINK, NEW, ports(local, source))
    await run_until(puller, lambda: puller.state == State.LINK_STATE_CAUGHT_UP, "caught up")
    assert [(r.partition, r.offset, r.origin) for r in local.appended] == [
        (0, 0, THERE),
        (0, 2, ELSEWHERE),
        (1, 0, THERE),
    ]
    assert local.appended[0].batch == records[0].batch  # as the source stored it: ids kept
    assert local.log[0] == "append" and local.log[-1] == "checkpoint"
    assert local.appended[1].via == (THERE,)
    assert local.checkpoints[-1] == {0: 3, 1: 2}
    assert local.leases == [
        ("ci", "link/from-there", 11, sum(len(r.batch) for r in local.appended))
    ]
    status = puller.status()
    assert (status.records_pulled, status.events_pulled, status.source_cluster) == (3, 11, THERE)
    assert (status.lag_records, status.lag_seconds) == (0, 0.0)
    assert dict(status.next_offsets) == {0: 3, 1: 2}


async def test_a_failed_append_is_not_checkpointed_and_is_pulled_again() -> None:
    local, source = Local(fail_appends=1), FakeSource([record(0, 0, 2), record(0, 1, 2)])
    puller = LinkPuller(LINK, checkpoint({0: 0}), ports(local, source))
    await run_until(puller, lambda: puller.state == State.LINK_STATE_CAUGHT_UP, "caught up")
    assert source.asked == [{0: 0, 1: 0}, {0: 0, 1: 0}]  # from the same checkpoint again
    assert [r.offset for r in local.appended] == [0, 1]
    assert local.checkpoints == [{0: 2}]
    assert puller.errors == 1 and "Kafka did not acknowledge" in puller.last_error


async def test_a_broken_stream_resumes_from_the_checkpoint() -> None:
    records = [record(0, offset, 6) for offset in range(6)]
    local, source = Local(), FakeSource(records, fail_after=4)
    puller = LinkPuller(LINK, NEW, ports(local, source))
    await run_until(puller, lambda: puller.state == State.LINK_STATE_CAUGHT_UP, "caught up")
    assert len(source.asked) == 2 and source.asked[1][0] > 0
    assert [r.offset for r in local.appended] == list(range(6))  # none twice, none missing
    assert "source went away" in puller.last_error


async def test_a_restarted_puller_starts_at_its_checkpoint() -> None:
    local, source = Local(), FakeSource([record(0, offset, 4) for offset in range(4)])
    puller = LinkPuller(LINK, checkpoint({0: 3}), ports(local, source))
    await run_until(puller, lambda: puller.state == State.LINK_STATE_CAUGHT_UP, "caught up")
    assert source.asked[0] == {0: 3, 1: 0}
    assert [r.offset for r in local.appended] == [3]


async def test_quota_holds_the_link_back_until_it_allows() -> None:
    local, source = Local(refuse_leases=3), FakeSource([record(0, 0, 1)])
    local.puller = puller = LinkPuller(LINK, NEW, ports(local, source))
    await run_until(puller, lambda: puller.state == State.LINK_STATE_CAUGHT_UP, "caught up")
    assert local.states_at_lease[1:] == [State.LINK_STATE_THROTTLED] * 3
    assert len(local.leases) == 4 and len(local.appended) == 1
    assert puller.errors == 0  # throttling is not a failure


async def test_a_source_that_is_this_cluster_is_refused() -> None:
    local, source = Local(), FakeSource([record(0, 0, 1)], cluster=HERE)
    puller = LinkPuller(LINK, NEW, ports(local, source))
    await run_until(puller, lambda: puller.errors >= 1, "a failure")
    assert puller.state == State.LINK_STATE_FAILING
    assert "is this cluster" in puller.last_error and not local.appended


async def test_a_dataset_missing_here_is_said() -> None:
    link = replication_pb2.LinkRecord()
    link.CopyFrom(LINK)
    link.dataset = "nightly"
    local, source = Local(), FakeSource([record(0, 0, 1)])
    puller = LinkPuller(link, NEW, ports(local, source))
    await run_until(puller, lambda: puller.errors >= 1, "a failure")
    assert "does not exist in this cluster" in puller.last_error


async def test_lag_is_known_while_pulling_and_grows_in_seconds_while_failing() -> None:
    now = [1000.0]
    local = Local()
    puller = LinkPuller(LINK, NEW, ports(local, FakeSource([])), clock=lambda: now[0])
    await puller._apply("fh.ci", [record(0, 0, 10), record(1, 0, 4, events=5)])
    # 9 + 3 records behind; 4 events per record pulled so far (3 and 5).
    assert (puller.lag_records, puller.lag_events) == (12, 48)
    assert puller.state == State.LINK_STATE_PULLING
    now[0] += 30
    assert puller.lag_seconds() == 30.0
    await puller._apply("fh.ci", [CAUGHT_UP])
    assert (puller.lag_records, puller.lag_seconds()) == (0, 0.0)
    puller._failed(Unavailable("away"), 1.0)
    now[0] += 60
    assert puller.lag_seconds() == 60.0


async def test_chunks_are_bounded_and_checkpoints_spaced(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every record is about 33 bytes: chunks of 3 records by bytes.
    monkeypatch.setattr(puller_module, "CHUNK_BYTES", 90)
    monkeypatch.setattr(puller_module, "READ_AHEAD_RECORDS", 4)
    now = [0.0]
    local, source = Local(), FakeSource([record(0, offset, 30) for offset in range(30)])
    puller = LinkPuller(LINK, NEW, ports(local, source), clock=lambda: now[0])
    local.puller = puller

    async def tick() -> bool:
        now[0] += 0.3  # three chunks a second, or so
        return puller.state == State.LINK_STATE_CAUGHT_UP

    await run_until(puller, tick, "caught up")
    assert all(lease[2] <= 9 for lease in local.leases)  # 3 records of 3 events at most
    assert len(local.leases) >= 10 and [r.offset for r in local.appended] == list(range(30))
    # Not one checkpoint per chunk: at most one a second of the clock, and one when caught up.
    assert len(local.checkpoints) < len(local.leases)
    assert local.checkpoints[-1] == {0: 30} and set(local.generations) == {1}


async def test_a_source_dataset_created_again_is_pulled_from_its_beginning() -> None:
    local, source = Local(), FakeSource([record(0, offset, 3) for offset in range(3)], generation=2)
    puller = LinkPuller(LINK, checkpoint({0: 2}, generation=1), ports(local, source))
    await run_until(puller, lambda: puller.state == State.LINK_STATE_CAUGHT_UP, "caught up")
    assert source.asked[0] == {0: 0, 1: 0}
    assert [r.offset for r in local.appended] == [0, 1, 2]
    assert local.generations[-1] == 2 and puller.status().source_generation == 2
    assert "deleted and created again" in puller.last_error and puller.errors == 0
