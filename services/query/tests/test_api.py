"""The QueryService servicer on a real grpc.aio server with the production interceptors, called
through the client library: storage nodes and the replication service are fakes served by
grpc.aio too, so every fragment crosses the wire as it does in production."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry

from flakehouse.client.client import Client
from flakehouse.common.v1 import events_pb2, plan_pb2
from flakehouse.core.errors import Internal, InvalidArgument, NotFound, ResourceExhausted
from flakehouse.core.limits import LimitsWatch
from flakehouse.core.server import GrpcServer, service_name
from flakehouse.query.api import PLAN_IN_THREAD_CHARS, QueryApi
from flakehouse.query.fanout import StorageChannels
from flakehouse.query.metrics import QueryMetrics
from flakehouse.query.placements import Placements
from flakehouse.query.settings import QuerySettings
from flakehouse.query.slots import QuerySlots
from flakehouse.query.v1 import query_pb2, query_pb2_grpc
from flakehouse.replication.v1 import replication_pb2, replication_pb2_grpc
from flakehouse.storage.v1 import storage_pb2, storage_pb2_grpc
from tests import credentials
from tests.fakes import PlacementService
from tests.support import eventually_async

Key = tuple[str, int]  # (dataset, partition)

# The statuses of each partition's events; every node holding a partition holds all of it.
DATA: dict[Key, list[str]] = {
    ("ci", 0): ["passed", "passed", "passed", "failed"],
    ("ci", 1): ["passed", "passed", "skipped"],
    ("lost", 0): ["passed", "failed"],
    ("lost", 1): ["passed"],
}
BY_STATUS = "SELECT status, count(*) FROM {} GROUP BY status ORDER BY status"


class FakeStorage(storage_pb2_grpc.StorageServiceServicer):
    """A storage node that answers `status, count(*)` fragments, DescribeFields and
    GetPartitionStatus for the partitions it holds; it declines the others, and those in
    `declined` with the reason given."""

    def __init__(self, held: list[Key]) -> None:
        self.held = held
        self.declined: dict[Key, str] = {}
        self.skewed = False  # answers rows to aggregate plans: a node of another version
        self.exhausted = ""  # refuses fragments with RESOURCE_EXHAUSTED and this message
        self.fragment_delay = self.describe_delay = 0.0  # seconds before answering
        self.cancelled = 0  # fragments the query service cancelled
        self.plans: list[plan_pb2.QueryPlan] = []
        self.asked: list[Key] = []  # fragments
        self.described: list[Key] = []  # DescribeFields

    def _split(
        self, dataset: str, partitions: list[int], log: list[Key]
    ) -> tuple[list[Key], list[Any]]:
        answered, unavailable = [], []
        for partition in partitions:
            key = (dataset, partition)
            log.append(key)
            reason = self.declined.get(key) or ("" if key in self.held else "not held here")
            if reason:
                unavailable.append(storage_pb2.PartitionError(partition=partition, reason=reason))
            else:
                answered.append(key)
        return answered, unavailable

    async def ExecuteFragment(
        self, request: storage_pb2.ExecuteFragmentRequest, context: Any
    ) -> storage_pb2.ExecuteFragmentResponse:
        plan = request.plan
        self.plans.append(plan)
        try:
            await asyncio.sleep(self.fragment_delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.exhausted:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, self.exhausted)
        if [g.field for g in plan.group_by] != ["status"] or [
            a.function for a in plan.aggregates
        ] != [plan_pb2.AGGREGATE_FUNCTION_COUNT]:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the fake counts by status only")
        answered, unavailable = self._split(plan.dataset, list(request.partitions), self.asked)
        counts = Counter(status for key in answered for status in DATA[key])
        scanned = sum(len(DATA[key]) for key in answered)
        stats = plan_pb2.ScanStats(rows_scanned=scanned, rows_matched=scanned)
        if self.skewed:
            row = events_pb2.Row(values=[events_pb2.Value(string_value="passed")])
            result = plan_pb2.PartialResult(rows=[row], stats=stats)
        elif counts:
            statuses = sorted(counts)
            columns = plan_pb2.GroupColumns(
                size=len(statuses),
                keys=[
                    plan_pb2.ValueColumn(
                        types=[events_pb2.VALUE_TYPE_STRING] * len(statuses),
                        string_values=statuses,
                    )
                ],
                states=[plan_pb2.StateColumn(counts=[counts[s] for s in statuses])],
            )
            result = plan_pb2.PartialResult(group_columns=columns, stats=stats)
        else:
            result = plan_pb2.PartialResult(stats=stats)
        return storage_pb2.ExecuteFragmentResponse(result=result, unavailable=unavailable)

    async def DescribeFields(
        self, request: storage_pb2.DescribeFieldsRequest, context: Any
    ) -> storage_pb2.DescribeFieldsResponse:
        await asyncio.sleep(self.describe_delay)
        answered, unavailable = self._split(
            request.dataset, list(request.partitions), self.described
        )
        events = sum(len(DATA[key]) for key in answered)
        fields = [
            events_pb2.FieldSummary(name=name, type=kind, count=events)
            for name, kind in (
                ("status", events_pb2.VALUE_TYPE_STRING),
                ("timestamp", events_pb2.VALUE_TYPE_INT),
            )
            if events
        ]
        return storage_pb2.DescribeFieldsResponse(fields=fields, unavailable=unavailable)

    async def GetPartitionStatus(
        self, request: storage_pb2.GetPartitionStatusRequest, context: Any
    ) -> storage_pb2.GetPartitionStatusResponse:
        """Every partition held is up to date at offset 10."""
        return storage_pb2.GetPartitionStatusResponse(
            partitions=[
                storage_pb2.PartitionStatus(
                    progress=storage_pb2.PartitionProgress(
                        dataset=dataset, partition=partition, applied_offset=10, end_offset=10
                    )
                )
                for dataset, partition in self.held
                if dataset == request.dataset
            ]
        )


def placement(addresses: dict[str, str]) -> replication_pb2.Placement:
    """`ci` on s0 and s1 (both alive), `lost` with partition 1 only on s2, which is dead."""
    return replication_pb2.Placement(
        version=1,
        nodes=[
            replication_pb2.Node(node_id="s0", address=addresses["s0"], alive=True),
            replication_pb2.Node(node_id="s1", address=addresses["s1"], alive=True),
            replication_pb2.Node(node_id="s2", address="127.0.0.1:1", alive=False),
        ],
        datasets=[
            replication_pb2.DatasetPlacement(
                dataset="ci",
                topic="flakehouse.ci",
                partitions=[
                    replication_pb2.PartitionPlacement(partition=0, replicas=["s0", "s1"]),
                    replication_pb2.PartitionPlacement(partition=1, replicas=["s1", "s0"]),
                ],
            ),
            replication_pb2.DatasetPlacement(
                dataset="lost",
                topic="flakehouse.lost",
                partitions=[
                    replication_pb2.PartitionPlacement(partition=0, replicas=["s0"]),
                    replication_pb2.PartitionPlacement(partition=1, replicas=["s2"]),
                ],
            ),
        ],
    )


async def serve(add: Callable[[grpc.aio.Server], None]) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    add(server)
    port = server.add_secure_port("127.0.0.1:0", credentials.server_credentials())
    await server.start()
    return server, f"127.0.0.1:{port}"


@dataclass
class Running:
    client: Client
    stub: query_pb2_grpc.QueryServiceAsyncStub
    nodes: dict[str, FakeStorage]
    registry: CollectorRegistry
    settings: QuerySettings

    async def query(self, sql: str, **kwargs: Any) -> Any:
        return await asyncio.to_thread(self.client.query, sql, **kwargs)


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    nodes = {"s0": FakeStorage([*DATA]), "s1": FakeStorage([("ci", 0), ("ci", 1)])}
    fakes, addresses = [], {}
    for node_id, node in nodes.items():
        server, addresses[node_id] = await serve(
            lambda s, node=node: storage_pb2_grpc.add_StorageServiceServicer_to_server(node, s)
        )
        fakes.append(server)
    replication = PlacementService(placement(addresses))
    server, replication_address = await serve(
        lambda s: replication_pb2_grpc.add_ReplicationServiceServicer_to_server(replication, s)
    )
    fakes.append(server)

    settings = QuerySettings(replication_address=replication_address, shutdown_grace_s=0)
    registry = CollectorRegistry()
    metrics = QueryMetrics(registry)
    replication_channel = credentials.aio_channel(replication_address)
    placements = Placements(replication_pb2_grpc.ReplicationServiceStub(replication_channel))
    watch = asyncio.ensure_future(placements.watch_forever())
    storage = StorageChannels(credentials.aio_channel)
    api = QueryApi(
        settings, placements, storage, metrics, LimitsWatch(None), QuerySlots(None, "t", metrics)
    )
    query = GrpcServer("query", settings, registry, credentials.token_table())
    query.add(
        query_pb2_grpc.add_QueryServiceServicer_to_server,
        api,
        service_name(query_pb2.DESCRIPTOR, "QueryService"),
    )
    await query.start()
    client = Client(query=query.address, retries=0, timeout_s=30)
    channel = credentials.aio_channel(query.address)
    try:
        await asyncio.wait_for(placements.ready.wait(), 10)
        yield Running(client, query_pb2_grpc.QueryServiceStub(channel), nodes, registry, settings)
    finally:
        client.close()
        await channel.close(None)
        await query.stop()
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
        await storage.close()
        await replication_channel.close(None)
        for server in fakes:
            await server.stop(None)


async def test_a_query_merges_every_partition_from_its_first_replica(running: Running) -> None:
    answer = await running.query(BY_STATUS.format("ci"))
    assert answer.columns == ["status", "count(*)"]
    assert answer.rows == [["failed", 1], ["passed", 5], ["skipped", 1]]
    assert not answer.partial and answer.missing_partitions == []
    assert answer.stats["partitions"] == 2 and answer.stats["rows_scanned"] == 7
    assert running.nodes["s0"].asked == [("ci", 0)]
    assert running.nodes["s1"].asked == [("ci", 1)]
    assert sorted((n["node_id"], n["partitions"]) for n in answer.nodes) == [
        ("s0", [0]),
        ("s1", [1]),
    ]


async def test_a_replica_that_declines_hands_the_partition_to_the_next(running: Running) -> None:
    running.nodes["s0"].declined[("ci", 0)] = "catching up"
    answer = await running.query(BY_STATUS.format("ci"))
    assert answer.rows == [["failed", 1], ["passed", 5], ["skipped", 1]]
    assert not answer.partial
    assert ("ci", 0) in running.nodes["s1"].asked


async def test_long_machine_written_sql_is_planned_off_the_event_loop_and_answered(
    running: Running,
) -> None:
    # Past PLAN_IN_THREAD_CHARS the planner runs in a worker thread: same answer, same errors.
    statuses = ", ".join(["'failed'", "'passed'", *(f"'s{i}'" for i in range(2000))])
    sql = f"SELECT status, count(*) FROM ci WHERE status IN ({statuses}) GROUP BY status"
    assert len(sql) > PLAN_IN_THREAD_CHARS
    answer = await running.query(sql)  # the fake nodes answer by status, whatever the filter
    assert answer.rows == [["failed", 1], ["passed", 5], ["skipped", 1]]
    assert running.nodes["s0"].asked == [("ci", 0)]
    with pytest.raises(InvalidArgument, match="syntax error"):
        await running.query(sql.replace("GROUP BY", "GROUP"))


async def test_a_partition_without_a_live_replica_leaves_a_partial_answer(
    running: Running,
) -> None:
    answer = await running.query(BY_STATUS.format("lost"))
    assert answer.rows == [["failed", 1], ["passed", 1]]  # partition 0 only
    assert answer.partial
    assert answer.missing_partitions == [
        {"dataset": "lost", "partition": 1, "reason": "no live replica"}
    ]
    assert ("lost", 1) not in running.nodes["s0"].asked + running.nodes["s1"].asked


@pytest.mark.parametrize(
    ("sql", "kwargs", "message"),
    [
        ("SELEC status FROM ci", {}, "syntax error"),
        ("SELECT status, count(*) FROM ci GROUP BY nope", {}, "must appear in GROUP BY"),
        (BY_STATUS.format("ci"), {"timeout_ms": 60001}, "timeout_ms is at most 60000"),
        (BY_STATUS.format("ci"), {"after": {"ci": {7: 3}}}, "names partitions [7]"),
    ],
)
async def test_a_query_the_service_cannot_run_is_invalid_argument(
    running: Running, sql: str, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        await running.query(sql, **kwargs)
    assert message in refused.value.message
    assert running.nodes["s0"].asked == running.nodes["s1"].asked == []


async def test_the_request_time_zone_is_the_query_zone(running: Running) -> None:
    sql = (
        "SELECT status, count(*) FROM ci WHERE date_trunc('day', timestamp) >= '2026-01-01'"
        " GROUP BY status"
    )
    zoned = await running.stub.Query(query_pb2.QueryRequest(sql=sql, time_zone="Europe/Paris"))
    assert [row.values[1].int_value for row in zoned.rows] == [1, 5, 1]
    [trunc] = zoned.plan.computed
    assert trunc.call.args[2].literal.string_value == "Europe/Paris"
    utc = await running.stub.Query(query_pb2.QueryRequest(sql=sql))
    assert utc.plan.computed[0].call.args[2].literal.string_value == "UTC"
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await running.stub.Query(query_pb2.QueryRequest(sql=sql, time_zone="Europe/Pariss"))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "bad time_zone" in str(refused.value.details())
    assert "Europe/Paris'" in str(refused.value.details())  # the suggestion


async def test_a_field_no_event_has_is_an_error_that_names_the_closest_one(
    running: Running,
) -> None:
    with pytest.raises(InvalidArgument) as typo:
        await running.query("SELECT statuz, count(*) FROM ci GROUP BY statuz")
    assert typo.value.message == (
        "unknown field statuz: no event in ci has it; did you mean status? (line 1, column 8)"
    )
    with pytest.raises(InvalidArgument, match="did you mean status"):
        await running.query("EXPLAIN SELECT count(*) FROM ci WHERE statuz = 'failed'")
    # The fields are looked up beside the fragments, which the error cancels or discards.
    described = len(running.nodes["s0"].described + running.nodes["s1"].described)
    assert described == 2 * 2  # both partitions, once per query: a field not known refreshes

    # A known field: the cache answers, storage is not asked what fields there are.
    await running.query(BY_STATUS.format("ci"))
    await running.query(BY_STATUS.format("ci"))
    assert len(running.nodes["s0"].described + running.nodes["s1"].described) == described


async def test_looking_fields_up_takes_nothing_from_the_query_deadline(running: Running) -> None:
    # Listing fields takes storage 3 s (the lookup gives up after 1 s) and the fragments 1.5 s:
    # one after the other, they would not fit in the query's 2.5 s; side by side, they do.
    for node in running.nodes.values():
        node.describe_delay, node.fragment_delay = 3.0, 1.5
    answer = await running.query(BY_STATUS.format("ci"), timeout_ms=2500)
    assert not answer.partial and len(answer.rows) == 3


async def test_a_misspelt_field_stops_the_query_it_is_in(running: Running) -> None:
    for node in running.nodes.values():
        node.fragment_delay = 30.0
    with pytest.raises(InvalidArgument, match="unknown field statuz"):
        await running.query(
            "SELECT status, count(*) FROM ci WHERE statuz = 'x' GROUP BY status", timeout_ms=60000
        )
    # Refused long before the fragments answer, and their calls cancelled.
    await eventually_async(
        lambda: sum(node.cancelled for node in running.nodes.values()) == 2, "cancelled"
    )


async def test_a_field_is_not_refused_when_partitions_could_not_say(running: Running) -> None:
    answer = await running.query(
        "SELECT status, count(*) FROM lost WHERE statuz = 'x' GROUP BY status"
    )
    assert answer.partial  # the fake ignores the filter; what matters is that it ran


async def test_a_read_your_writes_query_looks_for_its_fields_after_the_partitions_answered(
    running: Running,
) -> None:
    # The field may be in the events the query waits for: it runs, then the field is looked
    # for again, and only then refused.
    with pytest.raises(InvalidArgument, match="unknown field statuz"):
        await running.query(
            "SELECT status, count(*) FROM ci WHERE statuz = 'x' GROUP BY status",
            after={"ci": {0: 3}},
        )
    assert running.nodes["s0"].asked == [("ci", 0)]


async def test_a_storage_node_past_max_groups_fails_the_whole_query_at_once(
    running: Running,
) -> None:
    message = "the query holds more than 100000 groups (max_groups); narrow the query"
    running.nodes["s0"].exhausted = running.nodes["s1"].exhausted = message
    with pytest.raises(ResourceExhausted) as refused:
        await running.query(BY_STATUS.format("ci"))
    assert refused.value.message == message
    # Not handed to the other replica, not a missing partition: one call per partition.
    plans = running.nodes["s0"].plans + running.nodes["s1"].plans
    assert len(plans) <= 2 and {p.max_groups for p in plans} == {100_000}


async def test_the_query_service_holds_no_more_than_max_groups_either(running: Running) -> None:
    # Each partition has 2 statuses, 3 in all: the fakes ignore max_groups, as storage nodes
    # that predate it do. Past 2, the merge stops; past 1, the first answer does.
    for limit in (2, 1):
        running.settings.max_groups = limit
        with pytest.raises(ResourceExhausted) as refused:
            await running.query(BY_STATUS.format("ci"))
        assert refused.value.message.startswith(
            f"the query holds more than {limit} groups (max_groups); narrow the query: a WHERE"
        )
    running.settings.max_groups = 3
    assert len((await running.query(BY_STATUS.format("ci"))).rows) == 3


async def test_an_unknown_dataset_is_not_found(running: Running) -> None:
    with pytest.raises(NotFound, match="unknown dataset 'nope'"):
        await running.query(BY_STATUS.format("nope"))
    with pytest.raises(NotFound, match="unknown dataset 'nope'"):
        await asyncio.to_thread(running.client.describe, "nope")


async def test_an_answer_that_does_not_fit_the_plan_is_internal(running: Running) -> None:
    running.nodes["s0"].skewed = running.nodes["s1"].skewed = True
    with pytest.raises(Internal, match="does not fit the plan: rows in the answer"):
        await running.query(BY_STATUS.format("ci"))


async def test_datasets_are_listed_and_described_from_the_placement_and_storage(
    running: Running,
) -> None:
    listed = await running.stub.ListDatasets(query_pb2.ListDatasetsRequest())
    assert [(d.name, d.partitions) for d in listed.datasets] == [("ci", 2), ("lost", 2)]

    described = await asyncio.to_thread(running.client.describe, "ci")
    assert [(f.name, f.type, f.count) for f in described.fields] == [
        ("status", events_pb2.VALUE_TYPE_STRING, 7),
        ("timestamp", events_pb2.VALUE_TYPE_INT, 7),
    ]
    assert not described.partial

    lost = await asyncio.to_thread(running.client.describe, "lost")
    assert lost.partial and [m.partition for m in lost.missing_partitions] == [1]

    table = await running.query("DESCRIBE ci")
    assert table.columns == ["field", "type", "events", "share"]
    assert [row[:3] for row in table.rows] == [["status", "string", 7], ["timestamp", "int", 7]]

    with pytest.raises(InvalidArgument):
        await asyncio.to_thread(running.client.describe, "not a name!")


async def test_explain_names_the_replicas_without_running_the_query(running: Running) -> None:
    answer = await running.query(f"EXPLAIN {BY_STATUS.format('lost')}")
    lines = [row[0] for row in answer.rows]
    assert "partition 0: ask s0 (up to date)" in lines
    assert any(line.startswith("partition 1: no live replica") for line in lines)
    assert ("lost", 0) not in running.nodes["s0"].asked  # EXPLAIN executes no fragment
