"""The QueryService servicer: plan the SQL, fan fragments out, merge, finalize."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import grpc

from flakehouse.common.v1 import events_pb2
from flakehouse.core.errors import Internal, InvalidArgument
from flakehouse.core.server import CHANNEL_OPTIONS
from flakehouse.events.model import validate_dataset_name
from flakehouse.query.fanout import FanOutResult, NodeCall, fan_out
from flakehouse.query.merge import PartialResultError, finalize, merge_partials
from flakehouse.query.placements import Placements
from flakehouse.query.planner import QueryError, plan_query
from flakehouse.query.settings import QuerySettings
from flakehouse.query.v1 import query_pb2, query_pb2_grpc
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

    def call(self, method: str, request_for: Callable[[list[int]], Any]) -> NodeCall[Any]:
        """A fan-out call of one StorageService method whose response lists `unavailable`
        partitions; request_for builds the request for a node's share of partitions."""

        async def call(
            address: str, partitions: list[int], remaining_s: float
        ) -> tuple[Any, dict[int, str]]:
            rpc = getattr(self.stub(address), method)
            response = await rpc(request_for(partitions), timeout=remaining_s)
            return response, {e.partition: e.reason for e in response.unavailable}

        return call

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close(None)


def _missing(dataset: str, result: FanOutResult[Any]) -> list[query_pb2.MissingPartition]:
    return [
        query_pb2.MissingPartition(dataset=dataset, partition=p, reason=reason)
        for p, reason in sorted(result.missing.items())
    ]


class QueryApi(query_pb2_grpc.QueryServiceServicer):
    def __init__(
        self, settings: QuerySettings, placements: Placements, storage: StorageChannels
    ) -> None:
        self._settings = settings
        self._placements = placements
        self._storage = storage

    def _timeout_s(self, request_ms: int) -> float:
        if request_ms > self._settings.max_timeout_ms:
            raise InvalidArgument(f"timeout_ms is at most {self._settings.max_timeout_ms}")
        return (request_ms or self._settings.default_timeout_ms) / 1000

    async def Query(self, request: query_pb2.QueryRequest, context: Any) -> query_pb2.QueryResponse:
        started = time.monotonic()
        timeout_s = self._timeout_s(request.timeout_ms)
        try:
            planned = plan_query(request.sql, now_us=time.time_ns() // 1000)
        except QueryError as exc:
            raise InvalidArgument(exc.describe(request.sql)) from None
        plan = planned.plan
        dataset, nodes = await self._placements.lookup(plan.dataset)

        execute = self._storage.call(
            "ExecuteFragment",
            lambda parts: storage_pb2.ExecuteFragmentRequest(plan=plan, partitions=parts),
        )
        result = await fan_out(dataset, nodes, execute, timeout_s)
        try:
            merged = merge_partials(planned, [r.result for r in result.responses])
        except PartialResultError as exc:
            # A storage node answered something that does not fit the plan: a version skew.
            raise Internal(f"a storage node's answer does not fit the plan: {exc}") from None
        columns, rows = finalize(planned, merged)
        return query_pb2.QueryResponse(
            columns=columns,
            rows=rows,
            partial=bool(result.missing),
            missing_partitions=_missing(plan.dataset, result),
            stats=query_pb2.QueryStats(
                scan=merged.stats,
                partitions=len(dataset.partitions),
                nodes_asked=result.nodes_asked,
                elapsed_ms=int((time.monotonic() - started) * 1000),
            ),
            plan=plan,
        )

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
        dataset, nodes = await self._placements.lookup(name)

        describe = self._storage.call(
            "DescribeFields",
            lambda parts: storage_pb2.DescribeFieldsRequest(dataset=name, partitions=parts),
        )
        result = await fan_out(dataset, nodes, describe, self._timeout_s(0))
        counts: dict[tuple[str, int], int] = defaultdict(int)
        for response in result.responses:
            for summary in response.fields:
                counts[(summary.name, summary.type)] += summary.count
        return query_pb2.DescribeDatasetResponse(
            dataset=name,
            fields=[
                events_pb2.FieldSummary(name=n, type=events_pb2.ValueType.ValueType(t), count=c)
                for (n, t), c in sorted(counts.items())
            ],
            partial=bool(result.missing),
            missing_partitions=_missing(name, result),
        )
