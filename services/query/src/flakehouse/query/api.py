"""The QueryService servicer: plan the SQL, apply the dataset's limits, fan fragments out, merge,
finalize."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from flakehouse.common.v1 import events_pb2, plan_pb2
from flakehouse.core.authn import readable, require
from flakehouse.core.errors import Internal, InvalidArgument
from flakehouse.core.grants import Role
from flakehouse.core.limits import LimitsWatch, current_limits
from flakehouse.events.model import validate_dataset_name
from flakehouse.query.answer import to_response
from flakehouse.query.cutoff import query_cutoff, with_cutoff
from flakehouse.query.describe import describe_table, field_summaries, known_fields
from flakehouse.query.explain import explain_response
from flakehouse.query.fanout import FanOutResult, StorageChannels, candidates, fan_out
from flakehouse.query.freshness import answer_freshness, first_replica_freshness
from flakehouse.query.guardrails import check_groups, check_raw_limit
from flakehouse.query.knownfields import FieldCatalog, KnownFields, unknown_field_error
from flakehouse.query.merge import merge_partials
from flakehouse.query.metrics import QueryMetrics
from flakehouse.query.partial import PartialResultError
from flakehouse.query.placements import Placements
from flakehouse.query.planfields import plan_fields
from flakehouse.query.report import missing_partitions, query_stats
from flakehouse.query.settings import QuerySettings
from flakehouse.query.slots import QuerySlots
from flakehouse.query.sql import Describe, PlannedQuery, QueryError, parse_statement
from flakehouse.query.v1 import query_pb2, query_pb2_grpc
from flakehouse.replication.v1 import replication_pb2
from flakehouse.storage.v1 import storage_pb2

T = TypeVar("T")
PLAN_IN_THREAD_CHARS = 10_000
"""SQL longer than this is planned in a worker thread (a hop costs more than planning a
typical query)."""


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
        self._fields = FieldCatalog(self._known_fields)

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
            if len(request.sql) > PLAN_IN_THREAD_CHARS:
                # Machine-written SQL (20,000 OR terms, long IN lists) takes up to seconds to
                # plan: not on the event loop, which serves every other query meanwhile.
                statement = await asyncio.to_thread(
                    parse_statement, request.sql, now_us=now_us, zone=request.time_zone
                )
            else:
                statement = parse_statement(request.sql, now_us=now_us, zone=request.time_zone)
        except QueryError as exc:
            raise InvalidArgument(exc.describe(request.sql)) from None
        if isinstance(statement, Describe):
            require(Role.READ, statement.dataset)
            return await self._describe_statement(statement.dataset, timeout_s, started)
        plan = statement.plan
        require(Role.READ, plan.dataset)
        if statement.is_aggregate:
            plan.max_groups = self._settings.max_groups
        elif statement.limit is not None:
            check_raw_limit(statement.limit, self._settings.max_answer_rows)
        # The placement first: it says which incarnation of the name the query reads, and
        # limits of another one (quota not caught up yet) are not its limits.
        dataset, nodes = await self._placements.lookup(plan.dataset)
        minimums = _minimum_offsets(request, dataset)
        limits = current_limits(self._limits.limits(plan.dataset), dataset.generation)
        cutoff = query_cutoff(limits, now_us)
        if cutoff is not None:
            # In the plan itself, so every partition and replica answers from the same start.
            plan.time_range.CopyFrom(with_cutoff(plan.time_range, cutoff.start_us))
        # Whether the query names a field no event has is looked up beside the query, so that
        # asking storage (a field the cache lacks) never takes from the query's deadline.
        wait_s = max(0.0, timeout_s - (time.monotonic() - started))
        fields = asyncio.ensure_future(
            self._unknown_field(request.sql, statement, dataset.generation, wait_s)
        )
        try:
            if statement.explain:
                live = candidates(dataset, nodes)
                behind = await first_replica_freshness(self._storage.stub, dataset.dataset, live)
                await _refuse_unknown(fields)
                return explain_response(statement, dataset, nodes, live, minimums, cutoff, behind)
            call = self._storage.call(
                "ExecuteFragment",
                _fragments(plan, minimums, dataset, self._settings.max_replica_lag),
            )

            async def execute(
                address: str, partition: int, remaining_s: float, first: bool
            ) -> tuple[storage_pb2.ExecuteFragmentResponse, str | None]:
                response, declined = await call(address, partition, remaining_s, first)
                # Storage enforces max_groups itself; a node that predates it is stopped here,
                # as soon as its answer arrives, rather than after every partition's.
                check_groups(response.result.group_columns.size, plan.max_groups)
                return response, declined

            async with self._slots.held(plan.dataset, limits, timeout_s):
                # The deadline is the whole query's: a wait for a slot comes off it.
                remaining_s = max(0.0, timeout_s - (time.monotonic() - started))
                running = fan_out(dataset, nodes, execute, remaining_s, self._hedge_after_s)
                # Read-your-writes: the events the query waits for may be the first to hold the
                # field, so its absence before they arrive stops nothing.
                result = await _unless_unknown(running, fields, final=not minimums)
            unknown = await fields
            if unknown is not None and minimums:
                # Now that the partitions hold what the query waited for, once more.
                wait_s = max(0.0, timeout_s - (time.monotonic() - started))
                unknown = await self._unknown_field(
                    request.sql, statement, dataset.generation, wait_s
                )
            if unknown is not None:
                raise unknown
        finally:
            fields.cancel()
        try:
            merged = merge_partials(statement, [a.response.result for a in result.answers])
        except PartialResultError as exc:
            # A storage node answered something that does not fit the plan: a version skew.
            raise Internal(f"a storage node's answer does not fit the plan: {exc}") from None
        self._metrics.answered(plan.dataset, len(result.missing), result.hedged, merged.stats)
        response = to_response(
            statement,
            merged,
            columnar=request.columnar,
            raw_times=request.raw_times,
            max_rows=self._settings.max_answer_rows,
        )
        response.partial = bool(result.missing)
        response.missing_partitions.extend(missing_partitions(plan.dataset, result))
        response.freshness.CopyFrom(answer_freshness(result.answers))
        elapsed_s = time.monotonic() - started
        response.stats.CopyFrom(
            query_stats(result, len(dataset.partitions), elapsed_s, scan=merged.stats)
        )
        response.plan.CopyFrom(plan)
        return response

    async def _unknown_field(
        self, sql: str, planned: PlannedQuery, generation: int, wait_s: float
    ) -> InvalidArgument | None:
        """The error for a field the query names that no event of its dataset has, if any
        (knownfields.py)."""
        dataset = planned.plan.dataset
        unknown = await self._fields.unknown(dataset, generation, plan_fields(planned.plan), wait_s)
        if unknown is None:
            return None
        return InvalidArgument(unknown_field_error(sql, unknown).describe(sql))

    async def _known_fields(self, name: str, timeout_s: float) -> KnownFields:
        """The field catalog's source: the DESCRIBE fan-out."""
        fields, result, generation = await self._describe(name, timeout_s)
        return known_fields(fields, not result.missing, generation)

    async def _describe_statement(
        self, name: str, timeout_s: float, started: float
    ) -> query_pb2.QueryResponse:
        """DESCRIBE <dataset>: its fields as a result table."""
        fields, result, generation = await self._describe(name, timeout_s)
        self._fields.remember(name, known_fields(fields, not result.missing, generation))
        columns, rows = describe_table(fields)
        partitions = len(result.answers) + len(result.missing)
        return query_pb2.QueryResponse(
            columns=columns,
            rows=rows,
            partial=bool(result.missing),
            missing_partitions=missing_partitions(name, result),
            stats=query_stats(result, partitions, time.monotonic() - started),
        )

    async def _describe(
        self, name: str, timeout_s: float
    ) -> tuple[list[events_pb2.FieldSummary], FanOutResult[Any], int]:
        """The dataset's fields, summed over the partitions that answered, the fan-out, and the
        generation of the dataset described."""
        dataset, nodes = await self._placements.lookup(name)
        describe = self._storage.call(
            "DescribeFields",
            lambda p, _first: storage_pb2.DescribeFieldsRequest(
                dataset=name, partitions=[p], generation=dataset.generation
            ),
        )
        result = await fan_out(dataset, nodes, describe, timeout_s, self._hedge_after_s)
        return field_summaries(a.response for a in result.answers), result, dataset.generation

    async def ListDatasets(
        self, request: query_pb2.ListDatasetsRequest, context: Any
    ) -> query_pb2.ListDatasetsResponse:
        placed = self._placements.datasets()
        shown = readable([d.dataset for d in placed])
        return query_pb2.ListDatasetsResponse(
            datasets=[
                query_pb2.DatasetInfo(name=d.dataset, partitions=len(d.partitions))
                for d in placed
                if d.dataset in shown
            ]
        )

    async def DescribeDataset(
        self, request: query_pb2.DescribeDatasetRequest, context: Any
    ) -> query_pb2.DescribeDatasetResponse:
        try:
            name = validate_dataset_name(request.dataset)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        fields, result, generation = await self._describe(name, self._timeout_s(0))
        self._fields.remember(name, known_fields(fields, not result.missing, generation))
        return query_pb2.DescribeDatasetResponse(
            dataset=name,
            fields=fields,
            partial=bool(result.missing),
            missing_partitions=missing_partitions(name, result),
        )


def _fragments(
    plan: plan_pb2.QueryPlan,
    minimums: dict[int, int],
    dataset: replication_pb2.DatasetPlacement,
    max_replica_lag: int,
) -> Callable[[int, bool], storage_pb2.ExecuteFragmentRequest]:
    """The ExecuteFragment request for a partition; `first`: its first replica asked."""

    def fragment(partition: int, first: bool) -> storage_pb2.ExecuteFragmentRequest:
        wanted = [minimums[partition]] if partition in minimums else []
        return storage_pb2.ExecuteFragmentRequest(
            plan=plan,
            partitions=[partition],
            min_offsets=wanted,
            # The first replica asked must be fresh; a fallback answers whatever its lag.
            max_lag=max_replica_lag if first else 0,
            generation=dataset.generation,
        )

    return fragment


Unknown = asyncio.Future[InvalidArgument | None]
"""The field check of a query (QueryApi._unknown_field), running beside it."""


async def _refuse_unknown(fields: Unknown) -> None:
    unknown = await fields
    if unknown is not None:
        raise unknown


async def _unless_unknown(work: Awaitable[T], fields: Unknown, *, final: bool) -> T:
    """What `work` gives, unless the field check (`final`: whose answer stands) finds an
    unknown field first: then the work is cancelled, and the error raised."""
    task = asyncio.ensure_future(work)
    try:
        if final:
            either: set[asyncio.Future[Any]] = {task, fields}
            done, _ = await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if task not in done:
                await _refuse_unknown(fields)
        return await task
    finally:
        if not task.done():
            task.cancel()  # fan_out then cancels its calls: wait for that, leave nothing behind
            await asyncio.gather(task, return_exceptions=True)


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
