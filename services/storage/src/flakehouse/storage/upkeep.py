"""A storage node's upkeep of the data it holds: compaction of small sealed segments, usage
reports for quota, and deleting the sealed segments quota's drop bounds allow. Blocking store
work runs off the event loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping

from flakehouse.quota.v1 import quota_pb2
from flakehouse.storage.compaction import merge_segments, pick_run
from flakehouse.storage.identity import PartitionKey
from flakehouse.storage.metrics import StorageMetrics, drop_reason
from flakehouse.storage.replica import Replica, SealPolicy
from flakehouse.storage.retention import behind_us, bound_for
from flakehouse.storage.store import SegmentStore
from flakehouse.storage.usage import partition_usage

log = logging.getLogger(__name__)


class Upkeep:
    def __init__(
        self,
        store: SegmentStore,
        replicas: Mapping[PartitionKey, Replica],
        seal_policy: SealPolicy,
        metrics: StorageMetrics,
    ) -> None:
        self._store = store
        # The node's replicas, as they change: what compaction and usage reports cover.
        self._replicas = replicas
        self._seal_policy = seal_policy
        self._metrics = metrics
        # The partitions of the last usage report and their generation: what drops apply to.
        self._reported: dict[PartitionKey, int] = {}

    async def compact(self, min_segments: int) -> int:
        """Merges runs of small sealed segments (under a quarter of the seal size) into one per
        run, off the event loop; queries keep reading their snapshot meanwhile. Returns how many
        segments were merged away."""
        small, most = self._seal_policy.rows // 4, self._seal_policy.rows
        merged_away = 0
        for replica in list(self._replicas.values()):
            key = (replica.dataset, replica.partition)
            metas = await asyncio.to_thread(self._store.segment_metas, *key)
            run = pick_run(metas, small, most, min_segments)
            if not run:
                continue
            sequences = {m.sequence for m in run}

            def merge(sequences: set[int] = sequences, key: PartitionKey = key) -> bool:
                # Read before the segments: if any is deleted meanwhile (a drop, the partition
                # deleted and its sequence numbers reused), the replace refuses.
                epoch = self._store.epoch(*key)
                segments = list(self._store.segment_protos(*key, sequences))
                if len(segments) != len(sequences):
                    return False
                merged = merge_segments(segments)
                return self._store.replace_segments(*key, sequences, merged, epoch)

            if await asyncio.to_thread(merge):
                merged_away += len(sequences) - 1
                self._metrics.segments_merged.inc(len(sequences))
        return merged_away

    async def collect_usage(self) -> list[quota_pb2.PartitionUsage]:
        """Usage of every partition followed, for quota's ReportUsage (drops apply to these);
        also sets the stored bytes and rows gauges."""

        def measure(replica: Replica) -> quota_pb2.PartitionUsage:
            with replica.lock:  # the open segment and the sealed ones as of one moment
                sealed = self._store.segment_sizes(replica.dataset, replica.partition)
                return partition_usage(
                    replica.dataset,
                    replica.partition,
                    sealed,
                    replica.open_rows(),
                    replica.open_time_range(),
                    replica.generation,
                )

        replicas = list(self._replicas.values())
        usage = [await asyncio.to_thread(measure, replica) for replica in replicas]
        self._reported = {(r.dataset, r.partition): r.generation for r in replicas}
        self._metrics.usage(usage)
        return usage

    async def drop_expired(self, bounds: Iterable[quota_pb2.DropBound]) -> None:
        """Deletes, in each partition of the last usage report still held with the same
        generation, the sealed segments whose every event is older than the bound for its
        dataset and generation (retention.bound_for): one WriteBatch per partition, off the
        event loop. A crash between partitions leaves each one whole; the next round deletes the
        rest. How far behind each bound is gets measured first, so that drops that keep failing
        show a growing backlog; a partition whose drop fails is logged and the round goes on."""
        bounds = list(bounds)
        due: list[tuple[PartitionKey, int, quota_pb2.DropBound]] = []
        for key, generation in sorted(self._reported.items()):
            bound = bound_for(bounds, key[0], generation)
            replica = self._replicas.get(key)
            if bound is not None and replica is not None and replica.generation == generation:
                due.append((key, generation, bound))
        behind: dict[str, int] = {}
        for key, _, bound in due:
            metas = await asyncio.to_thread(self._store.segment_metas, *key)
            behind[key[0]] = max(behind.get(key[0], 0), behind_us(metas, bound.before_us))
        self._metrics.drop_behind(behind)
        for key, generation, bound in due:
            where = {
                "dataset": key[0],
                "partition": key[1],
                "before_us": bound.before_us,
                "reason": drop_reason(bound.reason),
            }
            try:
                dropped = await asyncio.to_thread(
                    self._store.drop_expired, *key, bound.before_us, generation
                )
            except Exception:  # this partition waits for the next round; the others go on
                # The alert on drop_behind_seconds tells operators to look for "drop failed".
                log.exception("drop failed", extra=where)
                continue
            if dropped:
                self._metrics.dropped(key[0], bound.reason, dropped)
                log.info(
                    "dropped segments",
                    extra={
                        **where,
                        "segments": len(dropped),
                        "rows": sum(m.row_count for m in dropped),
                    },
                )
