"""Per-partition fan-out with hedging, handover and deadlines, against scripted replicas."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc
import pytest

from flakehouse.core.errors import InvalidArgument, ResourceExhausted
from flakehouse.query.fanout import fan_out
from flakehouse.replication.v1 import replication_pb2

GROUPS = "the query holds more than 10 groups (max_groups); narrow the query"

Behaviour = Callable[[int], object]  # partition -> "ok", "declined", an exception, or a delay


def placement(partitions: int, replicas: list[str]) -> replication_pb2.DatasetPlacement:
    return replication_pb2.DatasetPlacement(
        dataset="ci",
        partitions=[
            replication_pb2.PartitionPlacement(partition=p, replicas=replicas)
            for p in range(partitions)
        ],
    )


def nodes(*names: str, dead: tuple[str, ...] = ()) -> dict[str, replication_pb2.Node]:
    return {n: replication_pb2.Node(node_id=n, address=n, alive=n not in dead) for n in names}


class Cluster:
    """Each node answers after `delay[node]` seconds, or fails / declines as scripted."""

    def __init__(self, **script: tuple[float, str]) -> None:
        self.script = script
        self.calls: list[tuple[str, int]] = []
        self.cancelled: list[tuple[str, int]] = []

    async def __call__(
        self, address: str, partition: int, timeout_s: float, first: bool
    ) -> tuple[str, str | None]:
        self.calls.append((address, partition))
        delay, outcome = self.script[address]
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            self.cancelled.append((address, partition))
            raise
        if outcome == "fail":
            raise TimeoutError()
        if outcome == "invalid":
            raise _rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "unknown ir_version")
        if outcome == "exhausted":
            raise _rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, GROUPS)
        return f"{address}:{partition}", ("catching up" if outcome == "declined" else None)


def _rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


async def test_every_partition_answered_once_by_its_first_replica() -> None:
    cluster = Cluster(a=(0.0, "ok"), b=(0.0, "ok"))
    result = await fan_out(placement(4, ["a", "b"]), nodes("a", "b"), cluster, 2.0, 0.5)
    assert [a.response for a in result.answers] == ["a:0", "a:1", "a:2", "a:3"]
    assert not result.missing and result.hedged == 0
    assert result.nodes["a"].partitions == [0, 1, 2, 3]


def alternating(partitions: int) -> replication_pb2.DatasetPlacement:
    """Even partitions ask a first, odd ones b."""
    out = placement(partitions, ["a", "b"])
    for p in out.partitions[1::2]:
        p.replicas[:] = ["b", "a"]
    return out


async def test_a_replica_behind_its_peers_is_hedged_and_the_loser_cancelled() -> None:
    # b answers its partitions in 0.05 s; a's are hedged once they took twice that.
    # How soon: benchmarks/fanout.py.
    cluster = Cluster(a=(2.0, "ok"), b=(0.05, "ok"))
    result = await fan_out(alternating(4), nodes("a", "b"), cluster, 3.0, 0.01)
    assert [a.response for a in result.answers] == ["b:0", "b:1", "b:2", "b:3"]
    assert result.hedged == 2
    assert sorted(cluster.cancelled) == [("a", 0), ("a", 2)]
    assert any("lost the hedge" in e for e in result.nodes["a"].errors)


async def test_a_heavy_query_is_not_asked_twice() -> None:
    # Every replica takes 0.3 s, far beyond hedge_after: the query is heavy, not a replica
    # sick, and hedging would double its work.
    cluster = Cluster(a=(0.3, "ok"), b=(0.3, "ok"))
    result = await fan_out(alternating(8), nodes("a", "b"), cluster, 3.0, 0.05)
    assert len(result.answers) == 8 and result.hedged == 0
    assert len(cluster.calls) == 8


async def test_one_quick_partition_does_not_make_the_others_look_slow() -> None:
    # The first answers are the quickest: until half the partitions answered, their median is
    # no yardstick, and the rest of a heavy query is not asked twice.
    calls: list[tuple[str, int]] = []

    async def call(
        address: str, partition: int, timeout_s: float, first: bool
    ) -> tuple[str, str | None]:
        calls.append((address, partition))
        await asyncio.sleep(0.02 if partition == 0 else 0.3)
        return f"{address}:{partition}", None

    result = await fan_out(alternating(8), nodes("a", "b"), call, 3.0, 0.05)
    assert len(result.answers) == 8 and result.hedged == 0 and len(calls) == 8


async def test_a_hung_first_replica_of_every_partition_is_hedged_at_half_the_deadline() -> None:
    cluster = Cluster(a=(5.0, "ok"), b=(0.01, "ok"))
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await fan_out(placement(2, ["a", "b"]), nodes("a", "b"), cluster, 1.0, 0.05)
    assert [a.response for a in result.answers] == ["b:0", "b:1"] and result.hedged == 2
    # Not before half the deadline (a lower bound: a slow machine cannot break it); how soon
    # after is measured in benchmarks/fanout.py.
    assert loop.time() - started >= 0.5
    assert sorted(cluster.cancelled) == [("a", 0), ("a", 1)]


async def test_a_query_of_one_partition_is_hedged_after_hedge_after() -> None:
    cluster = Cluster(a=(5.0, "ok"), b=(0.01, "ok"))
    result = await fan_out(placement(1, ["a", "b"]), nodes("a", "b"), cluster, 3.0, 0.05)
    assert [a.response for a in result.answers] == ["b:0"] and result.hedged == 1
    assert cluster.cancelled == [("a", 0)]  # b answered long before a would have


async def test_a_declining_or_failing_replica_hands_over_at_once() -> None:
    for outcome in ("declined", "fail"):
        cluster = Cluster(a=(0.0, outcome), b=(0.0, "ok"))
        result = await fan_out(placement(1, ["a", "b"]), nodes("a", "b"), cluster, 2.0, 1.0)
        assert [a.response for a in result.answers] == ["b:0"]
        assert result.hedged == 0


async def test_both_replicas_failing_makes_the_partition_missing_with_reasons() -> None:
    cluster = Cluster(a=(0.0, "fail"), b=(0.0, "declined"))
    result = await fan_out(placement(1, ["a", "b"]), nodes("a", "b"), cluster, 2.0, 1.0)
    assert result.answers == []
    assert result.missing == {0: "a: timed out; b: catching up"}


async def test_dead_nodes_are_skipped_and_a_partition_without_live_replica_is_missing() -> None:
    cluster = Cluster(a=(0.0, "ok"), b=(0.0, "ok"))
    result = await fan_out(
        placement(1, ["a", "b"]), nodes("a", "b", dead=("a",)), cluster, 2.0, 1.0
    )
    assert [a.response for a in result.answers] == ["b:0"] and cluster.calls == [("b", 0)]
    none_alive = await fan_out(
        placement(1, ["a", "b"]), nodes("a", "b", dead=("a", "b")), cluster, 2.0, 1.0
    )
    assert none_alive.missing == {0: "no live replica"}


async def test_the_deadline_bounds_the_whole_fan_out() -> None:
    # Replicas that would answer after 5 s leave the partitions missing at the 0.3 s deadline
    # (how close to it: benchmarks/fanout.py).
    cluster = Cluster(a=(5.0, "ok"), b=(5.0, "ok"))
    result = await fan_out(placement(2, ["a", "b"]), nodes("a", "b"), cluster, 0.3, 0.1)
    assert set(result.missing) == {0, 1}
    # Both replicas were asked (the second after the hedge delay); the reason names each.
    assert result.missing == {
        p: "a: no answer before the deadline; b: no answer before the deadline" for p in (0, 1)
    }


async def test_an_invalid_request_fails_the_query_instead_of_a_partial_answer() -> None:
    cluster = Cluster(a=(0.0, "invalid"), b=(0.0, "ok"))
    with pytest.raises(InvalidArgument, match="unknown ir_version"):
        await fan_out(placement(1, ["a", "b"]), nodes("a", "b"), cluster, 2.0, 1.0)


async def test_a_query_past_a_limit_fails_at_once_without_asking_the_other_replica() -> None:
    # b would answer, but it would hold as many groups: it is not asked, and the partitions
    # still running on a slow c are cancelled.
    cluster = Cluster(a=(0.0, "exhausted"), b=(0.0, "ok"), c=(5.0, "ok"))
    layout = placement(3, ["c", "b"])
    layout.partitions[0].replicas[:] = ["a", "b"]
    with pytest.raises(ResourceExhausted) as refused:
        await fan_out(layout, nodes("a", "b", "c"), cluster, 10.0, 3.0)
    assert refused.value.message == GROUPS
    assert ("b", 0) not in cluster.calls
    assert sorted(cluster.cancelled) == [("c", 1), ("c", 2)]


async def test_an_answer_too_large_for_a_message_says_what_to_do() -> None:
    async def call(
        address: str, partition: int, timeout_s: float, first: bool
    ) -> tuple[str, str | None]:
        raise _rpc_error(
            grpc.StatusCode.RESOURCE_EXHAUSTED, "Received message larger than max (9 vs. 8)"
        )

    with pytest.raises(ResourceExhausted) as refused:
        await fan_out(placement(1, ["a", "b"]), nodes("a", "b"), call, 2.0, 1.0)
    assert refused.value.message.startswith("a storage node's answer to the query is too large")
    assert "narrow the query" in refused.value.message


async def test_an_unreachable_replica_gets_one_more_try_when_no_other_is_left() -> None:
    """A node that just restarted: its channel fails at once for a moment, then connects."""
    attempts: dict[str, int] = {}

    async def call(
        address: str, partition: int, timeout_s: float, first: bool
    ) -> tuple[str, str | None]:
        attempts[address] = attempts.get(address, 0) + 1
        if address == "b" or attempts[address] == 1:
            raise _rpc_error(grpc.StatusCode.UNAVAILABLE, "failed to connect")
        return f"{address}:{partition}", None

    result = await fan_out(placement(1, ["a", "b"]), nodes("a", "b"), call, 5.0, 1.0)
    assert [a.response for a in result.answers] == ["a:0"]
    assert attempts == {"a": 2, "b": 1}  # a, b, then a again, which answers
    assert not result.missing

    attempts.clear()

    async def never(
        address: str, partition: int, timeout_s: float, first: bool
    ) -> tuple[str, str | None]:
        attempts[address] = attempts.get(address, 0) + 1
        raise _rpc_error(grpc.StatusCode.UNAVAILABLE, "failed to connect")

    result = await fan_out(placement(1, ["a", "b"]), nodes("a", "b"), never, 5.0, 1.0)
    assert attempts == {"a": 2, "b": 2}, "one retry each, no more"
    assert "unavailable" in result.missing[0]


async def test_only_the_first_call_of_a_partition_is_marked_first() -> None:
    """The first replica asked may decline for lag (max_lag); the fallback and the hedge may
    not, so a partition whose replicas all lag still gets an answer."""
    firsts: list[tuple[str, bool]] = []

    async def call(
        address: str, partition: int, timeout_s: float, first: bool
    ) -> tuple[str, str | None]:
        firsts.append((address, first))
        return f"{address}:{partition}", ("lagging" if first else None)

    result = await fan_out(placement(1, ["a", "b"]), nodes("a", "b"), call, 5.0, 1.0)
    assert firsts == [("a", True), ("b", False)]
    assert [a.response for a in result.answers] == ["b:0"]
