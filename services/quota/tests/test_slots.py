"""Query slots: a bounded wait for a free slot, release at once, expiry of slots never released."""

from __future__ import annotations

import asyncio

import pytest

from flakehouse.quota.slots import MAX_RETRY_S, MIN_RETRY_S, QuerySlots


def slots_with(limits: dict[str, int]) -> QuerySlots:
    return QuerySlots(lambda dataset: limits.get(dataset, 0))


async def test_past_the_limit_the_wait_ends_with_a_retry_delay() -> None:
    slots = slots_with({"ci": 1})
    first = await slots.acquire("ci", "q1", hold_s=30, wait_s=0.05)
    assert first.slot_id and slots.running("ci") == 1
    second = await slots.acquire("ci", "q2", hold_s=30, wait_s=0.05)
    assert not second.slot_id
    # The held slot expires in about 30 s: the delay is capped.
    assert second.retry_after_s == MAX_RETRY_S


async def test_retry_delay_is_the_time_to_the_first_expiry_within_bounds() -> None:
    slots = slots_with({"ci": 1})
    await slots.acquire("ci", "q1", hold_s=2, wait_s=0)
    refused = await slots.acquire("ci", "q2", hold_s=30, wait_s=0)
    assert 1 < refused.retry_after_s <= 2
    slots = slots_with({"ci": 1})
    await slots.acquire("ci", "q1", hold_s=0.2, wait_s=0)
    refused = await slots.acquire("ci", "q2", hold_s=30, wait_s=0.15)
    assert refused.retry_after_s == MIN_RETRY_S


async def test_a_release_during_the_wait_grants_the_slot() -> None:
    slots = slots_with({"ci": 1})
    first = await slots.acquire("ci", "q1", hold_s=30, wait_s=0)
    waiting = asyncio.create_task(slots.acquire("ci", "q2", hold_s=30, wait_s=5))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await slots.release("ci", first.slot_id)
    second = await asyncio.wait_for(waiting, 1)
    assert second.slot_id and second.slot_id != first.slot_id
    assert slots.running("ci") == 1


async def test_a_slot_never_released_expires() -> None:
    slots = slots_with({"ci": 1})
    await slots.acquire("ci", "q1", hold_s=0.1, wait_s=0)
    granted = await slots.acquire("ci", "q2", hold_s=30, wait_s=2)
    assert granted.slot_id


async def test_a_raised_limit_wakes_the_waiting() -> None:
    limits = {"ci": 1}
    slots = slots_with(limits)
    await slots.acquire("ci", "q1", hold_s=30, wait_s=0)
    waiting = asyncio.create_task(slots.acquire("ci", "q2", hold_s=30, wait_s=5))
    await asyncio.sleep(0.05)
    limits["ci"] = 2
    await slots.limits_changed()
    assert (await asyncio.wait_for(waiting, 1)).slot_id


@pytest.mark.parametrize("limit", [0, 3])
async def test_within_the_limit_or_unlimited_every_query_runs(limit: int) -> None:
    slots = slots_with({"ci": limit})
    answers = [await slots.acquire("ci", f"q{i}", hold_s=30, wait_s=0) for i in range(3)]
    assert all(a.slot_id for a in answers)
    assert slots.running("ci") == 3
    await slots.release("ci", answers[0].slot_id)
    await slots.release("ci", "unknown")
    assert slots.running("ci") == 2
