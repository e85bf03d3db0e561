"""The QueryService servicer: plan the SQL, apply the dataset's limits, fan fragments out, merge,
finalize."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import grpc

from flakehouse.common.v1 import events_pb2, plan_pb2
from flakehouse.core.errors import Internal, InvalidArgument
from flakehouse.core.limits import LimitsWatch, current_limits
from flakehouse.core.server import CHANNEL_OPTIONS
from flakehouse.events.model import validate_dataset_name
from flakehouse.events.values import TYPE_NAMES
from flakehouse.query.answer import to_response
from flakehouse.query.cutoff import QueryCutoff, query_cutoff, with_cutoff
from flakehouse.query.explain import explain_lines
from flakehouse.query.fanout import FanOutResult, PartitionCall, candidates, fan_out
from flakehouse.query.freshness import answer_freshness, first_replica_freshness
from flakehouse.query.merge import merge_partials
from flakehouse.query.metrics import QueryMetrics
from flakehouse.query.partial import PartialResultError
from flakehouse.query.placements import Placements
from flakehouse.query.planner import Describe, PlannedQuery, QueryError, parse_statement
from flakehouse.query.settings import QuerySettings
from flakehouse.query.slots import QuerySlots
from flakehouse.query.syntax import TIMESTAMP
from flakehouse.query.v1 import query_pb2, query_pb2_grpc
from flakehouse.replication.v1 import replication_pb2
from flakehouse.storage.v1 import storage_pb2, storage_pb2_grpc


class StorageChannels:
    """One channel per storage node address, kept for the life of the service."""

    def __init__(self) -> None:
        self._stubs: dict[str, storage_pb2_grpc.StorageServiceAsyncStub] = {}
        self._channels: list[grpc.aio.Channel] = []

    def stub(self, address: str) -> storage_pb2_grpc.StorageServiceAsyncStub:
        if address not in self._stubs:
            channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
            self._channels.append(channel)
            self._stubs[address] = storage_pb2_grpc.StorageServiceStub(channel)
        return self._stubs[address]

    def call(self, method: str, request_for: Callable[[int, bool], Any]) -> PartitionCall[Any]:
        """A fan-out call of one StorageService method, for one partition, whose response lists
        the partitions the node declined in `unavailable`. `request_for(partition, first)`."""

        async def call(
            address: str, partition: int, remaining_s: float, first: bool
        ) -> tuple[Any, str | None]:
            rpc = getattr(self.stub(address), method)
            response = await rpc(request_for(partition, first), timeout=remaining_s)
            declined = [e.reason for e in response.unavailable if e.partition == partition]
            return response, declined[0] if declined else None

        return call

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close(None)


def _missing(dataset: str, result: FanOutResult[Any]) -> list[query_pb2.MissingPartition]:
    return [
        query_pb2.MissingPartition(dataset=dataset, partition=p, reason=reason)
        for p, reason in sorted(result.missing.items())
    ]


def _node_stats(result: FanOutResult[Any]) -> list[query_pb2.NodeStats]:
    scans: dict[str, plan_pb2.ScanStats] = defaultdict(plan_pb2.ScanStats)
    for answer in result.answers:
        if not isinstance(answer.response, storage_pb2.ExecuteFragmentResponse):
            continue  # DescribeFields: no scan
        scan, stats = scans[answer.node_id], answer.response.result.stats
        scan.rows_scanned += stats.rows_scanned
        scan.rows_matched += stats.rows_matched
        scan.segments_scanned += stats.segments_scanned
        scan.segments_skipped += stats.segments_skipped
    return [
        query_pb2.NodeStats(
            node_id=node_id,
            partitions=sorted(trace.partitions),
            elapsed_ms=int(trace.elapsed_s * 1000),
            scan=scans.get(node_id),
            errors=trace.errors,
        )
        for node_id, trace in sorted(result.nodes.items())
    ]


class QueryApi(query_pb2_grpc.QueryServiceServicer):
    def __init__(
        self,
        settings: QuerySettings,
        placements: Placements,
        storage: StorageChannels,
        metrics: QueryMetrics,
        limits: LimitsWatch,
        slots: QuerySlots,
    ) -> None:
        self._settings = settings
        self._placements = placements
        self._storage = storage
        self._metrics = metrics
        self._limits = limits
        self._slots = slots
        self._hedge_after_s = settings.hedge_after_ms / 1000

    def _timeout_s(self, request_ms: int) -> float:
        if request_ms > self._settings.max_timeout_ms:
            raise InvalidArgument(f"timeout_ms is at most {self._settings.max_timeout_ms}")
        return (request_ms or self._settings.default_timeout_ms) / 1000

    async def Query(self, request: query_pb2.QueryRequest, context: Any) -> query_pb2.QueryResponse:
        started = time.monotonic()
        timeout_s = self._timeout_s(request.timeout_ms)
        # One moment per query: what now() means and where the cutoff is.
        now_us = time.time_ns() // 1000
        try:
            statement = parse_statement(request.sql, now_us=now_us)
        except QueryError as exc:
            raise InvalidArgument(exc.describe(request.sql)) from None
        if isinstance(statement, Describe):
            return await self._describe_statement(statement.dataset, timeout_s, started)
        plan = statement.plan
        # The placement first: it says which incarnation of the name the query reads, and
        # limits of another one (quota not caught up yet) are not its limits.
        dataset, nodes = await self._placements.lookup(plan.dataset)
        limits = current_limits(self._limits.limits(plan.dataset), dataset.generation)
        cutoff = query_cutoff(limits, now_us)
        if cutoff is not None:
            # In the plan itself, so every partition and replica answers from the same start.
            plan.time_range.CopyFrom(with_cutoff(plan.time_range, cutoff.start_us))
        minimums = _minimum_offsets(request, dataset)
        if statement.explain:
            live = candidates(dataset, nodes)
            behind = await first_replica_freshness(self._storage.stub, dataset.dataset, live)
            return _explain(statement, dataset, nodes, live, minimums, cutoff, behind)

        def fragment(partition: int, first: bool) -> storage_pb2.ExecuteFragmentRequest:
            wanted = [minimums[partition]] if partition in minimums else []
            return storage_pb2.ExecuteFragmentRequest(
                plan=plan,
                partitions=[partition],
                min_offsets=wanted,
                # The first replica asked must be fresh; a fallback answers whatever its lag.
                max_lag=self._settings.max_replica_lag if first else 0,
                generation=dataset.generation,
            )

        execute = self._storage.call("ExecuteFragment", fragment)
        async with self._slots.held(plan.dataset, limits, timeout_s):
            # The deadline is the whole query's: a wait for a slot comes off it.
            remaining_s = max(0.0, timeout_s - (time.monotonic() - started))
            result = await fan_out(dataset, nodes, execute, remaining_s, self._hedge_after_s)
        try:
            merged = merge_partials(statement, [a.response.result for a in result.answers])
        except PartialResultError as exc:
            # A storage node answered something that does not fit the plan: a version skew.
            raise Internal(f"a storage node's answer does not fit the plan: {exc}") from None
        self._metrics.answered(plan.dataset, len(result.missing), result.hedged, merged.stats)
        response = to_response(statement, merged, columnar=request.columnar)
        response.partial = bool(result.missing)
        response.missing_partitions.extend(_missing(plan.dataset, result))
        response.freshness.CopyFrom(answer_freshness(result.answers))
        response.stats.CopyFrom(
            query_pb2.QueryStats(
                scan=merged.stats,
                partitions=len(dataset.partitions),
                nodes_asked=len(result.nodes),
                elapsed_ms=int((time.monotonic() - started) * 1000),
                nodes=_node_stats(result),
                hedged=result.hedged,
            )
        )
        response.plan.CopyFrom(plan)
        return response

    async def _describe_statement(
        self, name: str, timeout_s: float, started: float
    ) -> query_pb2.QueryResponse:
        """DESCRIBE <dataset> as a result table: field, type, events holding it, their share."""
        fields, result = await self._describe(name, timeout_s)
        # Every event has a timestamp: its count is the number of events (0: no fields at all).
        events = sum(f.count for f in fields if f.name == TIMESTAMP) or 1
        string, integer, real = (
            events_pb2.VALUE_TYPE_STRING,
            events_pb2.VALUE_TYPE_INT,
            events_pb2.VALUE_TYPE_FLOAT,
        )
        rows = [
            events_pb2.Row(
                values=[
                    events_pb2.Value(string_value=f.name),
                    events_pb2.Value(string_value=TYPE_NAMES.get(f.type, "unknown")),
                    events_pb2.Value(int_value=f.count),
                    events_pb2.Value(float_value=f.count / events),
                ]
            )
            for f in fields
        ]
        columns = [
            query_pb2.ResultColumn(name=n, type=t)
            for n, t in (("field", string), ("type", string), ("events", integer), ("share", real))
        ]
        return query_pb2.QueryResponse(
            columns=columns,
            rows=rows,
            partial=bool(result.missing),
            missing_partitions=_missing(name, result),
            stats=query_pb2.QueryStats(
                partitions=len(result.answers) + len(result.missing),
                nodes_asked=len(result.nodes),
                elapsed_ms=int((time.monotonic() - started) * 1000),
                nodes=_node_stats(result),
                hedged=result.hedged,
            ),
        )

    async def _describe(
        self, name: str, timeout_s: float
    ) -> tuple[list[events_pb2.FieldSummary], FanOutResult[Any]]:
        """Every (field, type) of the dataset with the number of events holding it, summed over
        partitions, sorted by field then type."""
        dataset, nodes = await self._placements.lookup(name)
        describe = self._storage.call(
            "DescribeFields",
            lambda p, _first: storage_pb2.DescribeFieldsRequest(
                dataset=name, partitions=[p], generation=dataset.generation
            ),
        )
        result = await fan_out(dataset, nodes, describe, timeout_s, self._hedge_after_s)
        counts: dict[tuple[str, int], int] = defaultdict(int)
        for answer in result.answers:
            for summary in answer.response.fields:
                counts[(summary.name, summary.type)] += summary.count
        fields = [
            events_pb2.FieldSummary(name=n, type=events_pb2.ValueType.ValueType(t), count=c)
            for (n, t), c in sorted(counts.items())
        ]
        return fields, result

    async def ListDatasets(
        self, request: query_pb2.ListDatasetsRequest, context: Any
    ) -> query_pb2.ListDatasetsResponse:
        return query_pb2.ListDatasetsResponse(
            datasets=[
                query_pb2.DatasetInfo(name=d.dataset, partitions=len(d.partitions))
                for d in self._placements.datasets()
            ]
        )

    async def DescribeDataset(
        self, request: query_pb2.DescribeDatasetRequest, context: Any
    ) -> query_pb2.DescribeDatasetResponse:
        try:
            name = validate_dataset_name(request.dataset)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        fields, result = await self._describe(name, self._timeout_s(0))
        return query_pb2.DescribeDatasetResponse(
            dataset=name,
            fields=fields,
            partial=bool(result.missing),
            missing_partitions=_missing(name, result),
        )


def _minimum_offsets(
    request: query_pb2.QueryRequest, dataset: replication_pb2.DatasetPlacement
) -> dict[int, int]:
    """Per partition of the query's dataset, the offset the answer must include ('after')."""
    minimums: dict[int, int] = {}
    for entry in request.after:
        if entry.dataset == dataset.dataset:
            for partition, offset in entry.offsets.items():
                minimums[partition] = max(minimums.get(partition, -1), offset)
    unknown = set(minimums) - {p.partition for p in dataset.partitions}
    if unknown:
        raise InvalidArgument(
            f"'after' names partitions {sorted(unknown)} that {dataset.dataset!r} does not have"
        )
    return minimums


def _explain(
    planned: PlannedQuery,
    dataset: replication_pb2.DatasetPlacement,
    nodes: dict[str, replication_pb2.Node],
    live: dict[int, list[replication_pb2.Node]],
    minimums: dict[int, int],
    cutoff: QueryCutoff | None = None,
    behind: dict[int, str] | None = None,
) -> query_pb2.QueryResponse:
    """EXPLAIN: the plan's lines, then per partition the replicas the query would ask, in
    order (`live`, fanout.candidates: the first; the next after hedge_after_ms or a failure), and
    how far behind the first one is (`behind`, freshness.first_replica_freshness), one column
    'plan'."""
    lines = explain_lines(planned, cutoff)
    lines.append(f"partitions: {len(dataset.partitions)} (topic {dataset.topic})")
    for partition in sorted(dataset.partitions, key=lambda p: p.partition):
        asked = [node.node_id for node in live[partition.partition]]
        if asked and partition.partition in (behind or {}):
            asked[0] += f" ({(behind or {})[partition.partition]})"
        down = [
            f"{n} (down)" if n in nodes else f"{n} (unknown node)"
            for n in partition.replicas
            if n not in {node.node_id for node in live[partition.partition]}
        ]
        if asked:
            text = "ask " + ", then ".join(asked)
            if down:
                text += "; skip " + ", ".join(down)
        else:
            skipped = ", ".join(down) or "no replicas placed"
            text = f"no live replica ({skipped}): the answer would be partial"
        if partition.partition in minimums:
            text += f"; wait for offset {minimums[partition.partition]}"
        lines.append(f"partition {partition.partition}: {text}")
    return query_pb2.QueryResponse(
        columns=[query_pb2.ResultColumn(name="plan", type=events_pb2.VALUE_TYPE_STRING)],
        rows=[events_pb2.Row(values=[events_pb2.Value(string_value=line)]) for line in lines],
        plan=planned.plan,
    )
