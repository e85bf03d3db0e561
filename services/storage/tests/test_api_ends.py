"""A query that reaches a replica before it knows its partition's end offset (the moment after
the partition was taken, while the broker is asked) waits for it instead of being declined; a
replica of another generation of the dataset declines, and so does one that deleted events the
query's time range still covers (stale limits)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from flakehouse.common.v1 import plan_pb2
from flakehouse.storage import availability
from flakehouse.storage.api import StorageApi
from flakehouse.storage.v1 import storage_pb2
from services.storage.tests.fake_replicas import Context, FakeNode, FakeReplica


def request(start_us: int | None = None) -> storage_pb2.ExecuteFragmentRequest:
    plan = plan_pb2.QueryPlan(dataset="ci", ir_version=1)
    if start_us is not None:
        plan.time_range.start_us = start_us
    plan.aggregates.add(function=plan_pb2.AGGREGATE_FUNCTION_COUNT)
    return storage_pb2.ExecuteFragmentRequest(plan=plan, partitions=[0])


async def test_a_replica_that_learns_its_end_answers() -> None:
    node = FakeNode({0: FakeReplica()})
    learning = asyncio.ensure_future(node.learn_end(0, 0, 0.1))
    response = await StorageApi(node).ExecuteFragment(request(), Context(5.0))  # type: ignore[arg-type]
    await learning
    assert list(response.unavailable) == []
    assert response.result.group_columns.size == 1  # count(*) over nothing: one row


async def test_a_replica_that_never_learns_it_declines_in_time(monkeypatch: Any) -> None:
    monkeypatch.setattr(availability, "ENDS_WAIT_S", 0.2)
    node = FakeNode({0: FakeReplica()})
    loop = asyncio.get_running_loop()
    started = loop.time()
    response = await StorageApi(node).ExecuteFragment(request(), Context(5.0))  # type: ignore[arg-type]
    assert loop.time() - started < 1.0
    (error,) = response.unavailable
    assert error.reason == "catching up (end not known yet)"


async def test_a_replica_of_another_generation_declines() -> None:
    """A name deleted and created again: a node still holding the old incarnation must not
    answer for the new one, whatever its state."""
    node = FakeNode({0: FakeReplica(end_offset=0, online=True)})
    asked = request()
    asked.generation = 2
    response = await StorageApi(node).ExecuteFragment(asked, Context(5.0))  # type: ignore[arg-type]
    (error,) = response.unavailable
    assert error.reason == "holds generation 1, not 2"
    asked.generation = 1
    response = await StorageApi(node).ExecuteFragment(asked, Context(5.0))  # type: ignore[arg-type]
    assert list(response.unavailable) == []


WATERMARK_US = 1_700_000_000_000_000  # 2023-11-14T22:13:20Z


async def test_a_replica_that_deleted_events_the_query_covers_declines() -> None:
    """Quota's bound stays below fresh cutoffs; a query with stale limits starting below what
    this replica deleted gets an honest refusal, not an answer missing rows the other replica
    may still hold."""
    node = FakeNode({0: FakeReplica(end_offset=0, online=True, drop_watermark_us=WATERMARK_US)})
    for start in (WATERMARK_US - 1, -(2**62)):
        response = await StorageApi(node).ExecuteFragment(request(start), Context(5.0))  # type: ignore[arg-type]
        (error,) = response.unavailable
        assert error.partition == 0
        assert error.reason.startswith(
            "deleted events before 2023-11-14T22:13:20.000000Z (retention or stored-bytes "
            "limit); the query's cutoff "
        )
        assert error.reason.endswith(" is older: its limits are stale")
        assert list(response.progress) == []
    response = await StorageApi(node).ExecuteFragment(request(), Context(5.0))  # type: ignore[arg-type]
    (error,) = response.unavailable
    assert error.reason.endswith("the query has no cutoff: its limits are stale")
    assert node.replicas[0].snapshots == 0
    for start in (WATERMARK_US, WATERMARK_US + 1):
        response = await StorageApi(node).ExecuteFragment(request(start), Context(5.0))  # type: ignore[arg-type]
        assert list(response.unavailable) == []
        assert [p.partition for p in response.progress] == [0]
    # DescribeFields does not filter by time: it answers.
    described = await StorageApi(node).DescribeFields(
        storage_pb2.DescribeFieldsRequest(dataset="ci", partitions=[0]),
        Context(5.0),  # type: ignore[arg-type]
    )
    assert list(described.unavailable) == []


async def test_a_drop_between_the_check_and_the_snapshot_declines() -> None:
    """The watermark read after the snapshot covers every deletion the snapshot shows."""

    @dataclass
    class DroppingReplica(FakeReplica):
        def snapshot(self, fields: Any) -> list[Any]:
            self.drop_watermark_us = WATERMARK_US  # a drop round got there first
            return []

    node = FakeNode({0: DroppingReplica(end_offset=0, online=True)})
    response = await StorageApi(node).ExecuteFragment(request(WATERMARK_US - 1), Context(5.0))  # type: ignore[arg-type]
    (error,) = response.unavailable
    assert "its limits are stale" in error.reason
    assert list(response.progress) == []
