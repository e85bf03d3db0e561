"""Query slots against a scripted quota stub: taken only for datasets with a concurrency limit,
given back whatever happens to the query (even cancelled while the slot was being asked for),
refused with quota's retry delay, and skipped (and counted) when quota cannot be reached."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry

from flakehouse.core.errors import ResourceExhausted
from flakehouse.query.metrics import QueryMetrics
from flakehouse.query.slots import QuerySlots
from flakehouse.quota.v1 import quota_pb2


def _rpc_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), "scripted")


class FakeQuota:
    """Answers AcquireQuerySlot with `answer` (or raises it), and records every call."""

    def __init__(
        self, answer: quota_pb2.AcquireQuerySlotResponse | Exception, release_fails: bool = False
    ) -> None:
        self.answer = answer
        self.release_fails = release_fails
        # When set, AcquireQuerySlot answers only once it is set: a call in flight.
        self.gate: asyncio.Event | None = None
        self.asked = asyncio.Event()
        self.acquired: list[quota_pb2.AcquireQuerySlotRequest] = []
        self.released: list[quota_pb2.ReleaseQuerySlotRequest] = []

    async def AcquireQuerySlot(
        self, request: quota_pb2.AcquireQuerySlotRequest, **options: Any
    ) -> quota_pb2.AcquireQuerySlotResponse:
        self.acquired.append(request)
        self.asked.set()
        if self.gate is not None:
            await self.gate.wait()
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    async def ReleaseQuerySlot(
        self, request: quota_pb2.ReleaseQuerySlotRequest, **options: Any
    ) -> quota_pb2.ReleaseQuerySlotResponse:
        self.released.append(request)
        if self.release_fails:
            raise _rpc_error(grpc.StatusCode.UNAVAILABLE)
        return quota_pb2.ReleaseQuerySlotResponse()


GRANTED = quota_pb2.AcquireQuerySlotResponse(slot_id="slot-7")


def limited(max_concurrent_queries: int = 3) -> quota_pb2.DatasetLimits:
    return quota_pb2.DatasetLimits(
        quota=quota_pb2.Quota(dataset="ci", max_concurrent_queries=max_concurrent_queries)
    )


def slots(quota: Any) -> tuple[QuerySlots, QueryMetrics, CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = QueryMetrics(registry)
    return QuerySlots(quota, "query-test-1", metrics), metrics, registry


async def test_a_slot_is_held_while_the_query_runs_then_released() -> None:
    quota = FakeQuota(GRANTED)
    query_slots, _, _ = slots(quota)
    async with query_slots.held("ci", limited(), deadline_s=4.0):
        assert [(r.dataset, r.holder, r.hold_ms) for r in quota.acquired] == [
            ("ci", "query-test-1", 9000)
        ]
        assert quota.released == []
    assert [(r.dataset, r.slot_id) for r in quota.released] == [("ci", "slot-7")]


async def test_a_failed_or_cancelled_query_still_releases_its_slot() -> None:
    quota = FakeQuota(GRANTED)
    query_slots, _, _ = slots(quota)
    with pytest.raises(ValueError):
        async with query_slots.held("ci", limited(), deadline_s=1.0):
            raise ValueError("the query failed")
    assert len(quota.released) == 1

    async def cancelled() -> None:
        async with query_slots.held("ci", limited(), deadline_s=1.0):
            await asyncio.sleep(60)

    task = asyncio.create_task(cancelled())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(quota.released) == 2


@pytest.mark.parametrize(
    ("answer", "released"),
    [(GRANTED, [("ci", "slot-7")]), (quota_pb2.AcquireQuerySlotResponse(retry_after_ms=350), [])],
)
async def test_a_query_cancelled_while_asking_for_a_slot_gives_back_a_slot_granted_after(
    answer: quota_pb2.AcquireQuerySlotResponse, released: list[tuple[str, str]]
) -> None:
    quota = FakeQuota(answer)
    quota.gate = asyncio.Event()
    query_slots, _, _ = slots(quota)
    ran = False

    async def query() -> None:
        nonlocal ran
        async with query_slots.held("ci", limited(), deadline_s=1.0):
            ran = True

    task = asyncio.create_task(query())
    await quota.asked.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert quota.released == []
    # Quota answers after the caller has gone: a slot granted then is released, a refusal
    # holds nothing.
    quota.gate.set()
    for _ in range(100):
        await asyncio.sleep(0)
    assert [(r.dataset, r.slot_id) for r in quota.released] == released
    assert not ran


async def test_datasets_without_a_concurrency_limit_ask_nothing() -> None:
    quota = FakeQuota(GRANTED)
    query_slots, _, _ = slots(quota)
    async with query_slots.held("ci", None, deadline_s=1.0):
        pass
    async with query_slots.held("ci", limited(0), deadline_s=1.0):
        pass
    assert quota.acquired == [] and quota.released == []
    # Without a quota service at all, neither.
    async with slots(None)[0].held("ci", limited(), deadline_s=1.0):
        pass


async def test_a_full_dataset_is_refused_with_quotas_retry_delay() -> None:
    quota = FakeQuota(quota_pb2.AcquireQuerySlotResponse(retry_after_ms=350))
    query_slots, _, registry = slots(quota)
    ran = False
    with pytest.raises(ResourceExhausted) as refused:
        async with query_slots.held("ci", limited(2), deadline_s=1.0):
            ran = True
    assert not ran and quota.released == []
    assert refused.value.retry_after_ms == 350
    assert refused.value.message == (
        "dataset 'ci' has 2 queries running, its max_concurrent_queries; retry in 350 ms"
    )
    labels = {"dataset": "ci", "reason": "concurrency"}
    assert registry.get_sample_value("flakehouse_query_refusals_total", labels) == 1


async def test_an_unreachable_quota_lets_the_query_run_and_counts_it() -> None:
    quota = FakeQuota(_rpc_error(grpc.StatusCode.UNAVAILABLE))
    query_slots, _, registry = slots(quota)
    ran = False
    async with query_slots.held("ci", limited(), deadline_s=1.0):
        ran = True
    assert ran and quota.released == []
    unchecked = registry.get_sample_value(
        "flakehouse_query_limits_unchecked_total", {"dataset": "ci"}
    )
    assert unchecked == 1


async def test_a_release_that_fails_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    quota = FakeQuota(GRANTED, release_fails=True)
    query_slots, _, _ = slots(quota)
    async with query_slots.held("ci", limited(), deadline_s=1.0):
        pass
    assert len(quota.released) == 1
    assert "query slot not released" in caplog.text
