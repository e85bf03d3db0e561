"""Fan-out benchmark: how soon the query service's fan-out hedges a slow replica and gives up at
the deadline, against scripted replicas (no servers), with the targets the tests once asserted.
services/query/tests/test_fanout.py checks who answered; the times live here.

`python -m benchmarks fanout`."""

from __future__ import annotations

import asyncio
import statistics
import time

from flakehouse.query.fanout import fan_out
from flakehouse.replication.v1 import replication_pb2

RUNS = 20


def _placement(partitions: int, alternate: bool) -> replication_pb2.DatasetPlacement:
    """Every partition on a then b; with `alternate`, odd partitions on b then a."""
    return replication_pb2.DatasetPlacement(
        dataset="ci",
        partitions=[
            replication_pb2.PartitionPlacement(
                partition=p, replicas=["b", "a"] if alternate and p % 2 else ["a", "b"]
            )
            for p in range(partitions)
        ],
    )


NODES = {n: replication_pb2.Node(node_id=n, address=n, alive=True) for n in ("a", "b")}


def _replicas(delays: dict[str, float]):  # type: ignore[no-untyped-def]
    async def call(
        address: str, partition: int, timeout_s: float, first: bool
    ) -> tuple[str, str | None]:
        await asyncio.sleep(delays[address])
        return f"{address}:{partition}", None

    return call


async def _seconds(
    placement: replication_pb2.DatasetPlacement,
    delays: dict[str, float],
    deadline_s: float,
    hedge_after_s: float,
) -> float:
    started = time.perf_counter()
    await fan_out(placement, NODES, _replicas(delays), deadline_s, hedge_after_s)
    return time.perf_counter() - started


async def _fanout() -> None:
    cases = [
        (
            "a replica behind its peers, hedged",
            _placement(4, alternate=True),
            {"a": 2.0, "b": 0.05},
            3.0,
            0.01,
            "< 0.5 s",
        ),
        (
            "one partition, hedged after hedge_after (50 ms)",
            _placement(1, alternate=False),
            {"a": 5.0, "b": 0.01},
            3.0,
            0.05,
            "< 0.5 s",
        ),
        (
            "every first replica hung, deadline 1 s",
            _placement(2, alternate=False),
            {"a": 5.0, "b": 0.01},
            1.0,
            0.05,
            "0.5 to 0.9 s: half the deadline",
        ),
        (
            "every replica hung, deadline 0.3 s",
            _placement(2, alternate=False),
            {"a": 5.0, "b": 5.0},
            0.3,
            0.1,
            "< 1 s",
        ),
    ]
    print(f"fan-out against scripted replicas (median and max of {RUNS} runs; target)")
    for what, placement, delays, deadline_s, hedge_after_s, target in cases:
        times = [await _seconds(placement, delays, deadline_s, hedge_after_s) for _ in range(RUNS)]
        print(f"  {what:48} {statistics.median(times):6.3f} s  max {max(times):6.3f} s  ({target})")


def fanout() -> None:
    asyncio.run(_fanout())


if __name__ == "__main__":
    fanout()
