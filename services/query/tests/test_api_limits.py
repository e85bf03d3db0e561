"""The query service with a dataset's limits, through real gRPC servers: a fake quota service
(limits, query slots) and a fake replication service whose only storage node is down, so that
queries answer at once (partial) without storage."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from flakehouse.client.broker import EmbeddedBroker
from flakehouse.core.errors import RETRY_AFTER_KEY, ResourceExhausted
from flakehouse.core.rpc_errors import error_from_rpc
from flakehouse.query.app import QueryApp
from flakehouse.query.settings import QuerySettings
from flakehouse.query.v1 import query_pb2, query_pb2_grpc
from flakehouse.quota.v1 import quota_pb2, quota_pb2_grpc
from flakehouse.replication.v1 import replication_pb2, replication_pb2_grpc
from tests import credentials
from tests.fakes import PlacementService

pytestmark = [pytest.mark.processes, pytest.mark.broker]

RETENTION_S = 3600


class FakeQuota(quota_pb2_grpc.QuotaServiceServicer):
    """Limits of `ci`: one query at a time, an hour of retention; the same for `reborn`, but of
    its first generation (deleted since). `full`: every slot taken."""

    def __init__(self) -> None:
        self.full = False
        self.acquired: list[quota_pb2.AcquireQuerySlotRequest] = []
        self.released: list[quota_pb2.ReleaseQuerySlotRequest] = []

    async def AcquireQuerySlot(
        self, request: quota_pb2.AcquireQuerySlotRequest, context: Any
    ) -> quota_pb2.AcquireQuerySlotResponse:
        self.acquired.append(request)
        if self.full:
            return quota_pb2.AcquireQuerySlotResponse(retry_after_ms=250)
        return quota_pb2.AcquireQuerySlotResponse(slot_id=f"slot-{len(self.acquired)}")

    async def ReleaseQuerySlot(
        self, request: quota_pb2.ReleaseQuerySlotRequest, context: Any
    ) -> quota_pb2.ReleaseQuerySlotResponse:
        self.released.append(request)
        return quota_pb2.ReleaseQuerySlotResponse()

    async def WatchLimits(
        self, request: quota_pb2.WatchLimitsRequest, context: Any
    ) -> AsyncIterator[quota_pb2.WatchLimitsResponse]:
        yield quota_pb2.WatchLimitsResponse(
            datasets=[
                quota_pb2.DatasetLimits(
                    quota=quota_pb2.Quota(
                        dataset=name, retention_seconds=RETENTION_S, max_concurrent_queries=1
                    ),
                    generation=1,
                )
                for name in ("ci", "reborn")
            ]
        )
        await asyncio.Event().wait()


def placement() -> replication_pb2.Placement:
    """Datasets `ci` (limited), `free` (not) and `reborn` (its second generation), one partition
    each on a node that is down."""
    return replication_pb2.Placement(
        version=1,
        nodes=[replication_pb2.Node(node_id="s0", address="127.0.0.1:1", alive=False)],
        datasets=[
            replication_pb2.DatasetPlacement(
                dataset=name,
                topic=f"flakehouse.{name}",
                partitions=[replication_pb2.PartitionPlacement(partition=0, replicas=["s0"])],
                generation=generation,
            )
            for name, generation in (("ci", 1), ("free", 1), ("reborn", 2))
        ],
    )


@dataclass
class Cluster:
    quota: FakeQuota
    app: QueryApp
    stub: query_pb2_grpc.QueryServiceAsyncStub


@pytest.fixture
async def cluster(broker: EmbeddedBroker, topic_prefix: str) -> AsyncIterator[Cluster]:
    quota, fakes = FakeQuota(), grpc.aio.server()
    quota_pb2_grpc.add_QuotaServiceServicer_to_server(quota, fakes)
    replication_pb2_grpc.add_ReplicationServiceServicer_to_server(
        PlacementService(placement()), fakes
    )
    port = fakes.add_secure_port("127.0.0.1:0", credentials.server_credentials())
    await fakes.start()
    app = QueryApp(
        QuerySettings(
            replication_address=f"127.0.0.1:{port}",
            quota_address=f"127.0.0.1:{port}",
            kafka_bootstrap=broker.bootstrap,  # the token topic
            topic_prefix=topic_prefix,
        )
    )
    await app.start()
    await asyncio.wait_for(asyncio.gather(app.placements.ready.wait(), app.limits.ready.wait()), 10)
    channel = credentials.aio_channel(app.server.address)
    try:
        yield Cluster(quota, app, query_pb2_grpc.QueryServiceStub(channel))
    finally:
        await channel.close(None)
        await app.stop()
        await fakes.stop(None)


async def test_a_query_holds_a_slot_and_reads_from_the_retention_cutoff(cluster: Cluster) -> None:
    before_us = time.time_ns() // 1000
    response = await cluster.stub.Query(
        query_pb2.QueryRequest(sql="SELECT count(*) FROM ci", timeout_ms=1500)
    )
    after_us = time.time_ns() // 1000
    assert response.partial  # its only node is down
    start_us = response.plan.time_range.start_us
    assert before_us - RETENTION_S * 1_000_000 <= start_us <= after_us - RETENTION_S * 1_000_000
    [acquired] = cluster.quota.acquired
    assert acquired.dataset == "ci" and acquired.hold_ms == 1500 + 5000
    assert acquired.holder.startswith("query-")
    assert [(r.dataset, r.slot_id) for r in cluster.quota.released] == [("ci", "slot-1")]


async def test_a_query_on_a_full_dataset_is_refused_with_a_retry_delay(cluster: Cluster) -> None:
    cluster.quota.full = True
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await cluster.stub.Query(query_pb2.QueryRequest(sql="SELECT count(*) FROM ci"))
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert dict(refused.value.trailing_metadata() or ())[RETRY_AFTER_KEY] == "250"
    error = error_from_rpc(refused.value)
    assert isinstance(error, ResourceExhausted) and error.retry_after_ms == 250
    assert "'ci'" in error.message and "max_concurrent_queries" in error.message
    assert cluster.quota.released == []
    labels = {"dataset": "ci", "reason": "concurrency"}
    assert cluster.app.registry.get_sample_value("flakehouse_query_refusals_total", labels) == 1


async def test_explain_and_unlimited_datasets_take_no_slot(cluster: Cluster) -> None:
    cluster.quota.full = True
    explained = await cluster.stub.Query(
        query_pb2.QueryRequest(sql="EXPLAIN SELECT count(*) FROM ci")
    )
    lines = [row.values[0].string_value for row in explained.rows]
    [cutoff] = [line for line in lines if line.startswith("cutoff: ")]
    assert cutoff.endswith(" (retention 1h)")
    free = await cluster.stub.Query(query_pb2.QueryRequest(sql="SELECT count(*) FROM free"))
    assert not free.plan.HasField("time_range")
    assert cluster.quota.acquired == []


async def test_limits_of_an_older_generation_of_the_name_do_not_apply(cluster: Cluster) -> None:
    cluster.quota.full = True
    reborn = await cluster.stub.Query(query_pb2.QueryRequest(sql="SELECT count(*) FROM reborn"))
    assert not reborn.plan.HasField("time_range")
    assert cluster.quota.acquired == []
