"""Which of a node's replicas may answer a query, and how long a query waits for them: the
replica-availability policy behind fragment execution and field descriptions."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from flakehouse.common.v1 import events_pb2, plan_pb2
from flakehouse.events.timestamps import format_timestamp
from flakehouse.storage import fragment
from flakehouse.storage.replica import Replica
from flakehouse.storage.segment import SegmentView

NOT_HELD = "not held by this node"
# Longest a query waits for a just-taken replica to learn its partition's end offset.
ENDS_WAIT_S = 2.0
# A plan without a start: minus infinity.
NO_START = -(2**63)

# The seconds left before the call's deadline (None: no deadline), asked when a wait starts.
TimeRemaining = Callable[[], float | None]


class Replicas(Protocol):
    """The node as this policy sees it: its replicas, and a condition notified whenever records
    were applied or partitions taken."""

    progress: asyncio.Condition

    def replica(self, dataset: str, partition: int) -> Replica | None: ...


@dataclass(frozen=True)
class Declined:
    """A partition asked for that this node does not answer, and why."""

    partition: int
    reason: str


@dataclass(frozen=True)
class FragmentAnswer:
    result: plan_pb2.PartialResult
    answered: list[Replica]
    declined: list[Declined]


def _moment(us: int) -> str:
    try:
        return format_timestamp(us)
    except OverflowError:  # far outside years 1 to 9999
        return f"{us} µs"


def stale_cutoff(replica: Replica, start_us: int | None) -> str | None:
    """Why the replica must not answer a plan starting at `start_us` (None: no time bound to
    check), or None. Below its drop watermark the replica lacks events that the other replica,
    whose segments were cut elsewhere, may still hold: answering would make the result depend
    on the replica. Quota's bounds stay below every fresh query's cutoff, so only a query with
    stale limits (its limits watch broken) gets here."""
    watermark = replica.drop_watermark_us
    if start_us is None or watermark <= 0 or start_us >= watermark:
        return None
    older = (
        "the query has no cutoff"
        if start_us == NO_START
        else f"the query's cutoff {_moment(start_us)} is older"
    )
    return (
        f"deleted events before {_moment(watermark)} (retention or stored-bytes limit); "
        f"{older}: its limits are stale"
    )


def split(
    node: Replicas,
    dataset: str,
    partitions: list[int],
    minimums: dict[int, int] | None = None,
    max_lag: int = 0,
    generation: int = 0,
    start_us: int | None = None,
) -> tuple[list[Replica], list[Declined]]:
    """The replicas that can answer, and why the others cannot. A replica that has not yet
    caught up declines (its answer would silently miss data), unless it has applied the
    offset the request asks for: then it holds all the caller needs to see. With `max_lag`,
    an online replica further behind than that declines too (the caller has fresher ones).
    With `generation`, a replica of another incarnation of the dataset declines. With
    `start_us` (the plan's time range start, NO_START when it has none), a replica that
    deleted events from there on declines (stale_cutoff)."""
    held, unavailable = [], []
    for partition in partitions:
        replica = node.replica(dataset, partition)
        minimum = (minimums or {}).get(partition, -1)
        if replica is None:
            unavailable.append(Declined(partition, NOT_HELD))
        elif generation and replica.generation != generation:
            reason = f"holds generation {replica.generation}, not {generation}"
            unavailable.append(Declined(partition, reason))
        elif (stale := stale_cutoff(replica, start_us)) is not None:
            unavailable.append(Declined(partition, stale))
        elif not replica.online and not (0 <= minimum < replica.next_offset):
            behind = f"{replica.lag} records behind" if replica.lag >= 0 else "end not known yet"
            reason = f"catching up ({behind})"
            if minimum >= 0:
                reason = f"has not applied offset {minimum} yet (applied {replica.next_offset})"
            unavailable.append(Declined(partition, reason))
        elif max_lag > 0 and replica.lag > max_lag and not (0 <= minimum < replica.next_offset):
            reason = f"lagging {replica.lag} records behind (more than {max_lag})"
            unavailable.append(Declined(partition, reason))
        else:
            held.append(replica)
    return held, unavailable


async def wait_applied(
    node: Replicas, dataset: str, minimums: dict[int, int], time_remaining: TimeRemaining
) -> None:
    """Read-your-writes: waits until this node holds each partition and has applied past
    its minimum offset, or until the call's deadline is close. A partition whose placement
    has only just reached this node counts as not there yet, not as someone else's."""
    remaining = time_remaining()
    deadline = time.monotonic() + (remaining * 0.8 if remaining is not None else 5.0)

    def done() -> bool:
        for partition, minimum in minimums.items():
            replica = node.replica(dataset, partition)
            if minimum >= 0 and (replica is None or replica.next_offset <= minimum):
                return False
        return True

    async with node.progress:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                node.progress.wait_for(done), max(deadline - time.monotonic(), 0)
            )


async def wait_ends_known(
    node: Replicas, dataset: str, partitions: list[int], time_remaining: TimeRemaining
) -> None:
    """A replica just taken knows its partition's end only once the broker answered (one
    round trip); a query that arrives in between waits for that, briefly, rather than
    being declined as "catching up" by every replica of a dataset just created."""

    def known() -> bool:
        replicas = (node.replica(dataset, p) for p in partitions)
        return all(r is None or r.end_offset >= 0 for r in replicas)

    if known():
        return
    remaining = time_remaining()
    wait = min(ENDS_WAIT_S, remaining / 2 if remaining is not None else ENDS_WAIT_S)
    async with node.progress:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(node.progress.wait_for(known), max(wait, 0))


async def execute_fragment(
    node: Replicas,
    plan: plan_pb2.QueryPlan,
    partitions: list[int],
    time_remaining: TimeRemaining,
    minimums: dict[int, int] | None = None,
    max_lag: int = 0,
    generation: int = 0,
) -> FragmentAnswer:
    """Runs `plan` over those of `partitions` whose replica may answer (split), once they
    applied `minimums` and know their end or the wait is over. Raises fragment.UnsupportedPlan
    for a plan this node cannot run, aggregate.TooManyGroups past the plan's max_groups."""
    if minimums:
        await wait_applied(node, plan.dataset, minimums, time_remaining)
    await wait_ends_known(node, plan.dataset, partitions, time_remaining)
    start_us = plan.time_range.start_us if plan.time_range.HasField("start_us") else NO_START
    held, unavailable = split(
        node, plan.dataset, partitions, minimums, max_lag, generation, start_us
    )
    fields = fragment.fields_needed(plan)
    result, answered, declined = await asyncio.to_thread(_execute, plan, held, fields, start_us)
    return FragmentAnswer(result, answered, [*unavailable, *declined])


def _execute(
    plan: plan_pb2.QueryPlan, held: list[Replica], fields: set[str], start_us: int
) -> tuple[plan_pb2.PartialResult, list[Replica], list[Declined]]:
    """Executes over the replicas' snapshots; a replica that dropped below the plan's start
    since split declines after all. The drop watermark rises in the same write as its
    deletion, so the one read after the snapshot covers every deletion the snapshot shows."""
    views: list[SegmentView] = []
    answered, declined = [], []
    for replica in held:
        snapshot = replica.snapshot(fields)
        stale = stale_cutoff(replica, start_us)
        if stale is not None:
            declined.append(Declined(replica.partition, stale))
            continue
        views.extend(snapshot)
        answered.append(replica)
    return fragment.execute(plan, views), answered, declined


async def describe_fields(
    node: Replicas, dataset: str, partitions: list[int], generation: int = 0
) -> tuple[list[events_pb2.FieldSummary], list[Declined]]:
    """The fields of the partitions whose replica may answer; no time bound applies."""
    held, unavailable = split(node, dataset, partitions, generation=generation)

    def describe() -> list[events_pb2.FieldSummary]:
        views: list[SegmentView] = []
        for replica in held:
            views.extend(replica.snapshot(None))
        return fragment.describe(views)

    return await asyncio.to_thread(describe), unavailable
