"""Fan-out of one request over a dataset's partitions: one live replica per partition, grouped
by node, all nodes at once; partitions whose replica failed or did not hold them go to their
next replica; what no replica could answer is reported missing, with the reason."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import grpc

from flakehouse.core.errors import InvalidArgument
from flakehouse.replication.v1 import replication_pb2

R = TypeVar("R")

# (address, partitions, timeout_s) -> (response, {partition: reason} it could not answer)
NodeCall = Callable[[str, list[int], float], Awaitable[tuple[R, dict[int, str]]]]


@dataclass
class FanOutResult(Generic[R]):
    responses: list[R] = field(default_factory=list)
    missing: dict[int, str] = field(default_factory=dict)
    nodes_asked: int = 0


def candidates(
    dataset: replication_pb2.DatasetPlacement, nodes: dict[str, replication_pb2.Node]
) -> dict[int, list[replication_pb2.Node]]:
    """Per partition, its replicas on live nodes, in the placement's order of preference."""
    return {
        p.partition: [nodes[n] for n in p.replicas if n in nodes and nodes[n].alive]
        for p in dataset.partitions
    }


async def fan_out(
    dataset: replication_pb2.DatasetPlacement,
    nodes: dict[str, replication_pb2.Node],
    call: NodeCall[R],
    timeout_s: float,
) -> FanOutResult[R]:
    deadline = time.monotonic() + timeout_s
    choices = candidates(dataset, nodes)
    result: FanOutResult[R] = FanOutResult()
    reasons: dict[int, list[str]] = defaultdict(list)
    pending = {p: list(replicas) for p, replicas in choices.items()}
    answered: set[int] = set()
    for partition, replicas in pending.items():
        if not replicas:
            reasons[partition].append("no live replica")
    while True:
        by_node: dict[str, list[int]] = defaultdict(list)
        addresses: dict[str, str] = {}
        for partition, replicas in pending.items():
            if replicas:
                node = replicas.pop(0)
                by_node[node.node_id].append(partition)
                addresses[node.node_id] = node.address
        if not by_node:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            for partitions in by_node.values():
                for partition in partitions:
                    reasons[partition].append("query deadline exceeded")
            break
        result.nodes_asked += len(by_node)
        answers = await asyncio.gather(
            *(call(addresses[n], parts, remaining) for n, parts in by_node.items()),
            return_exceptions=True,
        )
        retry: set[int] = set()
        for (node_id, partitions), answer in zip(by_node.items(), answers, strict=True):
            if isinstance(answer, grpc.aio.AioRpcError) and (
                answer.code() == grpc.StatusCode.INVALID_ARGUMENT
            ):
                # The request itself is wrong: every replica would say so.
                raise InvalidArgument(answer.details() or "invalid request") from None
            if isinstance(answer, BaseException):
                reason = _describe(answer)
                for partition in partitions:
                    reasons[partition].append(f"{node_id}: {reason}")
                retry.update(partitions)
                continue
            response, unanswered = answer
            result.responses.append(response)
            for partition in partitions:
                if partition in unanswered:
                    reasons[partition].append(f"{node_id}: {unanswered[partition]}")
                    retry.add(partition)
                else:
                    answered.add(partition)
        pending = {p: pending[p] for p in retry if pending[p]}
    for partition in sorted(set(choices) - answered):
        result.missing[partition] = "; ".join(reasons[partition]) or "not answered"
    return result


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name.lower()}: {exc.details()}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return type(exc).__name__
