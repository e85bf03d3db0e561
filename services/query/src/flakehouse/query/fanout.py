"""Fan-out of one request over a dataset's partitions, one call per partition: to the first live
replica in the placement's order; if it is slow, the next replica is asked too (hedging) and the
first good answer wins, the other call is cancelled. A
replica that fails, or declines (not held, catching up, behind the offsets asked for), hands over
to the next; one that was unreachable gets one more try when no other replica is left (a node
that just restarted, whose channel is still backing off). What no replica answers before the
deadline is reported missing, with every replica's reason. A request a replica calls invalid,
or one past a limit (RESOURCE_EXHAUSTED), fails the whole query at once: the other replica
would answer alike. `StorageChannels` makes the calls
over one channel per storage node.

One call per partition (not one per node for all its partitions) is what makes hedging exact:
an answer covers exactly one partition, so two replicas' answers are never both merged.

When a call is slow enough to hedge (`_Pace`): after `hedge_after_s` at least, and only when it
is slow next to the rest of the query, since hedging doubles the work of what it hedges. Once
half the partitions have answered, a call is hedged when it has run for twice their median
time: a replica behind its peers (a sick or overloaded node). Before that, most replicas are
slow alike: the query is heavy, and asking twice would only share the same cores between twice
the work; a call is then hedged at half the deadline, which still leaves the other replica the
other half. A query of one partition has no peers to compare with: hedged at `hedge_after_s`."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import grpc

from flakehouse.core.errors import InvalidArgument, ResourceExhausted
from flakehouse.query.guardrails import NARROW
from flakehouse.replication.v1 import replication_pb2
from flakehouse.storage.v1 import storage_pb2_grpc

R = TypeVar("R")

# A replica that was unreachable is asked once more, after this pause, when no other is left.
RETRY_UNAVAILABLE_S = 0.5

# (address, partition, timeout_s, first) -> (response, reason when the replica declined, else
# None); `first`: the partition's first call (a fallback or a hedge is not), which may be pickier.
PartitionCall = Callable[[str, int, float, bool], Awaitable[tuple[R, str | None]]]


@dataclass
class Answer(Generic[R]):
    partition: int
    node_id: str
    response: R
    elapsed_s: float


@dataclass
class NodeTrace:
    """What happened on one node: partitions it answered, its slowest call, what went wrong."""

    partitions: list[int] = field(default_factory=list)
    elapsed_s: float = 0.0
    errors: list[str] = field(default_factory=list)


@dataclass
class FanOutResult(Generic[R]):
    answers: list[Answer[R]] = field(default_factory=list)
    missing: dict[int, str] = field(default_factory=dict)
    nodes: dict[str, NodeTrace] = field(default_factory=dict)
    hedged: int = 0


class StorageChannels:
    """One channel per storage node address, kept for the life of the service."""

    def __init__(self, dial: Callable[[str], grpc.aio.Channel]) -> None:
        """`dial`: a channel to a storage node's address (the services' credentials)."""
        self._dial = dial
        self._stubs: dict[str, storage_pb2_grpc.StorageServiceAsyncStub] = {}
        self._channels: list[grpc.aio.Channel] = []

    def stub(self, address: str) -> storage_pb2_grpc.StorageServiceAsyncStub:
        if address not in self._stubs:
            channel = self._dial(address)
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


def candidates(
    dataset: replication_pb2.DatasetPlacement, nodes: dict[str, replication_pb2.Node]
) -> dict[int, list[replication_pb2.Node]]:
    """Per partition, its replicas on live nodes, in the placement's order of preference."""
    return {
        p.partition: [nodes[n] for n in p.replicas if n in nodes and nodes[n].alive]
        for p in dataset.partitions
    }


# A call is behind its peers when it has run this many times their median answer time.
SLOWER_THAN_PEERS = 2.0


class _Pace:
    """How long the partitions of one query take: when a running call is slow enough to hedge
    (module docstring), and a wake-up for the waiting calls whenever an answer arrives."""

    def __init__(self, partitions: int, timeout_s: float, hedge_after_s: float) -> None:
        self.partitions = partitions
        self.timeout_s = timeout_s
        self.hedge_after_s = hedge_after_s
        self.answered_s: list[float] = []
        self.changed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def answered(self, elapsed_s: float) -> None:
        self.answered_s.append(elapsed_s)
        self.changed.set_result(None)
        self.changed = asyncio.get_running_loop().create_future()

    def hedge_after(self) -> float:
        """Seconds a call runs before the next replica is asked too."""
        if self.partitions == 1:
            peers = 0.0
        elif 2 * len(self.answered_s) >= self.partitions:
            peers = SLOWER_THAN_PEERS * statistics.median(self.answered_s)
        else:
            # The first answers are the quickest; their median would make everyone else look
            # slow. Until half have answered, only a call stuck for half the deadline is.
            peers = self.timeout_s / 2
        return max(self.hedge_after_s, peers)


async def fan_out(
    dataset: replication_pb2.DatasetPlacement,
    nodes: dict[str, replication_pb2.Node],
    call: PartitionCall[R],
    timeout_s: float,
    hedge_after_s: float,
) -> FanOutResult[R]:
    deadline = time.monotonic() + timeout_s
    result: FanOutResult[R] = FanOutResult()
    choices = candidates(dataset, nodes)
    pace = _Pace(len(choices), timeout_s, hedge_after_s)
    partitions = [
        asyncio.ensure_future(_partition(p, replicas, call, deadline, pace, result))
        for p, replicas in sorted(choices.items())
    ]
    try:
        await asyncio.gather(*partitions)
    except BaseException:
        # A failure of the whole query (an invalid plan, a limit): the other partitions' calls
        # are work nobody will read.
        for task in partitions:
            task.cancel()
        await asyncio.gather(*partitions, return_exceptions=True)
        raise
    result.answers.sort(key=lambda a: a.partition)
    return result


async def _partition(
    partition: int,
    replicas: list[replication_pb2.Node],
    call: PartitionCall[R],
    deadline: float,
    pace: _Pace,
    result: FanOutResult[R],
) -> None:
    waiting = list(replicas)
    running: dict[asyncio.Task[tuple[R, str | None]], tuple[replication_pb2.Node, float]] = {}
    reasons: list[str] = [] if replicas else ["no live replica"]
    answered = False
    retried: set[str] = set()
    unreachable: list[replication_pb2.Node] = []

    launched = 0

    def launch() -> None:
        nonlocal launched
        node = waiting.pop(0)
        remaining = max(deadline - time.monotonic(), 0.001)
        task = asyncio.ensure_future(call(node.address, partition, remaining, launched == 0))
        launched += 1
        running[task] = (node, time.monotonic())

    def trace(node: replication_pb2.Node) -> NodeTrace:
        return result.nodes.setdefault(node.node_id, NodeTrace())

    if waiting:
        launch()
    try:
        while running:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                reasons.extend(
                    f"{n.node_id}: no answer before the deadline" for n, _ in running.values()
                )
                break
            # Wait for an answer, but only until it is time to hedge, if a replica is left; an
            # answer to another partition may make that time sooner.
            wait, wake = remaining, set[asyncio.Future[Any]]()
            if waiting:
                newest = max(started for _, started in running.values())
                hedge_in = newest + pace.hedge_after() - time.monotonic()
                if hedge_in <= 0:
                    result.hedged += 1
                    launch()
                    continue
                wait, wake = min(remaining, hedge_in), {pace.changed}
            woken, _ = await asyncio.wait(
                wake.union(running), timeout=wait, return_when=asyncio.FIRST_COMPLETED
            )
            done = [task for task in running if task in woken]
            for task in done:
                node, started = running.pop(task)
                elapsed = time.monotonic() - started
                node_trace = trace(node)
                node_trace.elapsed_s = max(node_trace.elapsed_s, elapsed)
                failure = _failure(task)
                if failure is None:
                    response, declined = task.result()
                    if declined is None:
                        node_trace.partitions.append(partition)
                        result.answers.append(Answer(partition, node.node_id, response, elapsed))
                        pace.answered(elapsed)
                        answered = True
                        return
                    failure = declined
                reasons.append(f"{node.node_id}: {failure}")
                node_trace.errors.append(f"partition {partition}: {failure}")
                if failure.startswith("unavailable") and node.node_id not in retried:
                    # A node restarting, or a channel still backing off from its last failure:
                    # worth one more try once the other replicas are out of options.
                    retried.add(node.node_id)
                    unreachable.append(node)
                if not waiting and not running and unreachable:
                    pause = min(RETRY_UNAVAILABLE_S, (deadline - time.monotonic()) / 4)
                    if pause > 0:
                        await asyncio.sleep(pause)
                        waiting.extend(unreachable)
                        unreachable.clear()
                if waiting and not running:
                    launch()
        result.missing[partition] = "; ".join(reasons) or "query deadline exceeded"
    finally:
        why = "lost the hedge" if answered else "cancelled at the deadline"
        for task, (node, _) in running.items():
            task.cancel()
            trace(node).errors.append(f"partition {partition}: {why}")
        if running:
            await asyncio.gather(*running, return_exceptions=True)


def _failure(task: asyncio.Task[tuple[R, str | None]]) -> str | None:
    """Why a call failed, or None if it returned. A request the storage node calls invalid, or
    a query past a limit (RESOURCE_EXHAUSTED: max_groups, or an answer too large to send), is
    the query's fault, not the replica's: the other replica would fail alike, so it fails the
    whole query at once."""
    exc = task.exception()
    if exc is None:
        return None
    if isinstance(exc, ResourceExhausted):
        raise exc  # the call's own check of the answer (api.py: groups past max_groups)
    if isinstance(exc, grpc.aio.AioRpcError):
        if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
            raise InvalidArgument(exc.details() or "invalid request") from None
        if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
            raise ResourceExhausted(_exhausted(exc.details() or "")) from None
        return f"{exc.code().name.lower()}: {exc.details()}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return type(exc).__name__


def _exhausted(details: str) -> str:
    """The message of a storage node's RESOURCE_EXHAUSTED: its own when it names the limit,
    else (gRPC's "Received message larger than max") what it means and what to do."""
    if "max_groups" in details:
        return details
    return f"a storage node's answer to the query is too large ({details}); {NARROW}"
