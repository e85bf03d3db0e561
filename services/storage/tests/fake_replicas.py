"""Fakes for the storage servicer's tests: replicas and a node that hold what a test gives them,
and the gRPC context's deadline."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any


@dataclass
class FakeReplica:
    end_offset: int = -1
    next_offset: int = 0
    online: bool = False
    dataset: str = "ci"
    partition: int = 0
    generation: int = 1
    drop_watermark_us: int = 0
    snapshots: int = 0

    @property
    def lag(self) -> int:
        return max(0, self.end_offset - self.next_offset) if self.end_offset >= 0 else -1

    def behind_s(self, now: float) -> float:
        return 0.0

    def snapshot(self, fields: Any) -> list[Any]:
        self.snapshots += 1
        return []


@dataclass
class FakeNode:
    replicas: dict[int, FakeReplica]
    progress: asyncio.Condition = field(default_factory=asyncio.Condition)

    def replica(self, dataset: str, partition: int) -> FakeReplica | None:
        return self.replicas.get(partition)

    async def learn_end(self, partition: int, end: int, after_s: float) -> None:
        await asyncio.sleep(after_s)
        replica = self.replicas[partition]
        replica.end_offset = end
        replica.online = replica.next_offset >= end
        async with self.progress:
            self.progress.notify_all()


class Context:
    def __init__(self, remaining: float) -> None:
        self.remaining = remaining

    def time_remaining(self) -> float:
        return self.remaining
