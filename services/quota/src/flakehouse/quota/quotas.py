"""The quota service's behaviour behind its API: limits and floors made durable, then kept in
memory, then published; leases, query slots, and usage with the cutoffs it leads to."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from aiokafka.errors import KafkaError

from flakehouse.core.catalog import Catalog, CatalogReader
from flakehouse.core.errors import NotFound, Unavailable
from flakehouse.core.limit_rules import validate_quota
from flakehouse.core.limits import cutoff_at
from flakehouse.quota.changes import Changes
from flakehouse.quota.cutoff import stored_bytes_cutoff
from flakehouse.quota.drops import FloorHistory, RetentionHistory, drop_bound
from flakehouse.quota.ledger import Entry, Ledger
from flakehouse.quota.limits import (
    empty_limits,
    merged_quota,
    of_generation,
    updated_limits,
    with_floor,
)
from flakehouse.quota.metrics import QuotaMetrics
from flakehouse.quota.rates import IngestRates
from flakehouse.quota.settings import QuotaSettings
from flakehouse.quota.slots import QuerySlots, SlotAnswer
from flakehouse.quota.store import LimitsStore
from flakehouse.quota.usage import Totals, UsageBook, UsageView
from flakehouse.quota.v1 import quota_pb2

log = logging.getLogger(__name__)


def wall_clock_us() -> int:
    return time.time_ns() // 1000


def _generation_of(catalog: Catalog, dataset: str) -> int | None:
    """The generation of the live dataset, None when it is gone. An empty catalog has never been
    written (an install from before the catalog; deleted datasets keep their record): it says
    nothing is gone, and its datasets count as the first of their name."""
    if not catalog.records:
        return 1
    record = catalog.live(dataset)
    return record.generation if record is not None else None


class Quotas:
    def __init__(
        self,
        settings: QuotaSettings,
        store: LimitsStore,
        catalog: CatalogReader,
        metrics: QuotaMetrics,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall_us: Callable[[], int] = wall_clock_us,
    ) -> None:
        self._settings = settings
        self._store = store
        self._catalog = catalog
        self._metrics = metrics
        self._monotonic = monotonic
        self._wall_us = wall_us
        self._ledger = Ledger(settings.burst_s)
        self._usage = UsageBook(settings.usage_stale_s)
        self._rates = IngestRates()
        self._floors = FloorHistory(settings.drop_grace_s)
        self._retentions = RetentionHistory(settings.drop_grace_s)
        self._slots = QuerySlots(
            lambda dataset: self._ledger.quota(dataset).max_concurrent_queries, monotonic
        )
        self._changes = Changes()
        # One change at a time: each reads the limits, writes Kafka, then applies, and two
        # interleaved (a SetQuota and a floor moving) would lose one of them.
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        """Takes the limits persisted for every live dataset (the catalog reader started) and
        deletes those of datasets that are gone or were created again since."""
        loaded = await self._store.load()
        catalog = self._catalog.catalog
        now, now_us = self._monotonic(), self._wall_us()
        for name, stored in sorted(loaded.items()):
            generation = _generation_of(catalog, name)
            # A record written before generations were kept belongs to the first.
            if generation is None or (stored.generation or 1) < generation:
                # Deleted (and maybe created again) while this service was down: the limits,
                # above all the floor, of an earlier dataset of the name must not hold back the
                # new one.
                log.info("limits of a deleted dataset dropped", extra={"dataset": name})
                await self._store.delete(name)
                continue
            # Newer than the catalog only with an empty catalog, whose datasets are the first.
            limits = of_generation(stored, generation)
            self._ledger.put(limits, generation, now)
            # Published (again) now as far as drops go: a floor or retention persisted just
            # before a crash may never have reached the query processes.
            self._floors.record(name, limits.floor, now_us)
            self._retentions.record(name, limits.quota.retention_seconds, now_us)
        log.info(
            "limits loaded",
            extra={"datasets": len(self._ledger.datasets()), "records": len(loaded)},
        )
        self._show_metrics()

    async def close(self) -> None:
        await self._changes.close()

    # Limits

    def quota(self, dataset: str) -> quota_pb2.Quota:
        return self._ledger.quota(dataset)

    def published(self) -> tuple[int, list[quota_pb2.DatasetLimits]]:
        """The version of the limits and every dataset with a limit or a floor."""
        return self._changes.version, self._ledger.published()

    async def wait_for_change(self, version: int) -> int | None:
        """The new version once the limits change after `version`; None once closing."""
        return await self._changes.wait_after(version)

    async def set_quota(self, update: quota_pb2.Quota, paths: Sequence[str]) -> quota_pb2.Quota:
        """Sets the limits named in `paths` (every limit when empty) of a live dataset and
        returns all its limits."""
        name = update.dataset
        # Bad limits are refused before anything is looked up.
        validate_quota(merged_quota(quota_pb2.Quota(dataset=name), update, paths))
        async with self._lock:
            record = (await self._catalog.sync()).live(name)
            if record is None:
                raise NotFound(f"dataset {name!r} does not exist")
            entry = self._ledger.get(name)
            # Limits of an earlier dataset of the name (deleted while they were not forgotten
            # yet) do not carry over, above all not its floor.
            current = (
                entry.limits
                if entry is not None and entry.generation == record.generation
                else empty_limits(name, record.generation)
            )
            limits = updated_limits(current, update, paths, self._wall_us())
            await self._store.save(limits)
            await self._apply(limits, record.generation)
        log.info("limits set", extra={"dataset": name, "quota": str(limits.quota)})
        return limits.quota

    async def delete_quota(self, dataset: str, generation: int = 0) -> None:
        """Forgets the limits of the dataset's `generation` or an earlier one (0: whatever
        generation): a late call for a deleted dataset leaves those of the name created again."""

        def deleted(of_generation: int) -> bool:
            return not generation or of_generation <= generation

        async with self._lock:
            entry = self._ledger.get(dataset)
            if entry is not None and not deleted(entry.generation):
                log.info(
                    "limits of a later dataset of the name kept",
                    extra={
                        "dataset": dataset,
                        "generation": generation,
                        "kept_generation": entry.generation,
                    },
                )
                return
            live = self._live_generation(dataset)
            # The ingest rates of the last minute are the name's: those of a dataset created
            # again meanwhile stay.
            if live is None or deleted(live):
                self._rates.forget(dataset)
            await self._forget(dataset)

    async def _apply(self, limits: quota_pb2.DatasetLimits, generation: int) -> None:
        """In memory, then published: called once the limits are durable."""
        name = limits.quota.dataset
        old = self._ledger.get(name)
        if old is not None and old.generation != generation:
            self._floors.forget(name)
            self._retentions.forget(name)
        self._ledger.put(limits, generation, self._monotonic())
        now_us = self._wall_us()
        self._floors.record(name, limits.floor, now_us)
        self._retentions.record(name, limits.quota.retention_seconds, now_us)
        await self._changes.publish()
        if old is None or old.limits.quota.max_concurrent_queries != (
            limits.quota.max_concurrent_queries
        ):
            await self._slots.limits_changed()
        self._show_metrics()

    async def _forget(self, dataset: str) -> None:
        if self._ledger.get(dataset) is None:
            return
        await self._store.delete(dataset)
        self._ledger.remove(dataset)
        self._floors.forget(dataset)
        self._retentions.forget(dataset)
        await self._changes.publish()
        await self._slots.limits_changed()
        self._show_metrics()

    # Leases and slots

    def acquire_lease(self, dataset: str, events: int, size: int, holder: str = "") -> float:
        """0 when granted, else the seconds to wait (nothing taken). `holder` names the writer
        (an ingest replica, a link) in the log of a refusal."""
        now = self._monotonic()
        wait = self._ledger.try_acquire(dataset, events, size, now)
        if wait > 0:
            log.debug(
                "lease refused",
                extra={"dataset": dataset, "holder": holder, "events": events, "wait_s": wait},
            )
            self._metrics.leases.labels(dataset, "denied").inc()
            self._metrics.refusals.labels(dataset, "ingest_rate").inc()
            return wait
        self._metrics.leases.labels(dataset, "granted").inc()
        self._rates.record(dataset, events, size, now)
        return 0.0

    async def acquire_slot(self, dataset: str, holder: str, hold_s: float) -> SlotAnswer:
        wait_s = self._settings.query_slot_wait_ms / 1000
        answer = await self._slots.acquire(dataset, holder, hold_s, wait_s)
        running = self._slots.running(dataset)
        if answer.slot_id:
            log.debug(
                "query slot granted",
                extra={
                    "dataset": dataset,
                    "holder": holder,
                    "slot_id": answer.slot_id,
                    "running": running,
                },
            )
        else:
            self._metrics.refusals.labels(dataset, "query_concurrency").inc()
            log.info(
                "query slot refused",
                extra={
                    "dataset": dataset,
                    "holder": holder,
                    "running": running,
                    "limit": self._ledger.quota(dataset).max_concurrent_queries,
                    "retry_after_s": answer.retry_after_s,
                },
            )
        return answer

    async def release_slot(self, dataset: str, slot_id: str) -> None:
        await self._slots.release(dataset, slot_id)

    # Usage and cutoffs

    def report_usage(
        self, node_id: str, partitions: Sequence[quota_pb2.PartitionUsage]
    ) -> list[quota_pb2.DropBound]:
        """Keeps a node's report and answers what storage may delete."""
        self._usage.report(node_id, partitions, self._monotonic())
        return self.drop_bounds()

    def drop_bounds(self) -> list[quota_pb2.DropBound]:
        """Bounds only from the limits of a dataset's live generation, for that generation:
        limits of a deleted dataset not forgotten yet (its DeleteQuota failed) must not drop
        the rows of the name created again, nor those of anything else."""
        now_us = self._wall_us()
        bounds = []
        for name in self._ledger.datasets():
            entry = self._ledger.get(name)
            if entry is None or entry.generation != self._live_generation(name):
                continue
            bound = drop_bound(
                name,
                entry.generation,
                self._floors.of(name),
                self._retentions.of(name),
                now_us,
                self._settings.drop_grace_s,
                self._settings.clock_skew_s,
            )
            if bound is not None:
                bounds.append(bound)
        return bounds

    async def usage(self, dataset: str = "") -> list[UsageView]:
        """Every dataset's usage (live, limited or reported by a node), or one dataset's."""
        views = self._views()
        if dataset and not any(v.dataset == dataset for v in views):
            # A dataset created a moment ago: read the catalog before saying nothing of it.
            await self._catalog.sync()
            views = self._views()
        return [v for v in views if not dataset or v.dataset == dataset]

    def _views(self) -> list[UsageView]:
        now, now_us = self._monotonic(), self._wall_us()
        totals = self._usage.totals(now, self._live_generation)
        live = {record.name for record in self._catalog.catalog.live_records()}
        views = []
        for name in sorted(set(totals) | set(self._ledger.datasets()) | live):
            events_per_s, bytes_per_s = self._rates.rates(name, now)
            views.append(
                UsageView(
                    dataset=name,
                    totals=totals.get(name, Totals()),
                    events_per_second=events_per_s,
                    bytes_per_second=bytes_per_s,
                    cutoff=cutoff_at(self._ledger.limits(name), now_us),
                    quota=self._ledger.quota(name),
                    running_queries=self._slots.running(name),
                )
            )
        return views

    def _live_generation(self, dataset: str) -> int | None:
        """The live generation as of the last read of the catalog."""
        return _generation_of(self._catalog.catalog, dataset)

    def _show_metrics(self) -> None:
        self._metrics.show(self._views())

    async def run_forever(self) -> None:
        """Every `cutoff_interval_s`: floors from the latest usage, limits of datasets that are
        gone forgotten. A round that fails on Kafka is tried again at the next one."""
        while True:
            try:
                await self.run_round()
            except (KafkaError, Unavailable) as exc:
                log.warning("quota round failed; next round retries", extra={"error": repr(exc)})
            await asyncio.sleep(self._settings.cutoff_interval_s)

    async def run_round(self) -> None:
        catalog = await self._catalog.sync()
        segments = self._usage.segments(self._monotonic(), self._live_generation)
        for name in self._ledger.datasets():
            async with self._lock:
                entry = self._ledger.get(name)
                if entry is None:
                    continue
                if _generation_of(catalog, name) != entry.generation:
                    log.info("limits of a deleted dataset forgotten", extra={"dataset": name})
                    await self._forget(name)
                else:
                    await self._move_floor(entry, segments.get(name, []))
        self._show_metrics()

    async def _move_floor(self, entry: Entry, segments: Sequence[quota_pb2.SegmentUsage]) -> None:
        """Past its stored-bytes limit, the dataset's floor moves to where its oldest segments
        bring it back under (durable first, then published)."""
        limits = entry.limits
        limit = limits.quota.max_stored_bytes
        if not limit:
            return
        name = limits.quota.dataset
        now_us = self._wall_us()
        target = stored_bytes_cutoff(segments, limit, now_us)
        # Below the cutoff of the moment (retention's, which only moves on), a floor is no news.
        if target is None or target <= cutoff_at(limits, now_us).cutoff_us:
            return
        floor = quota_pb2.Cutoff(cutoff_us=target, reason=quota_pb2.CUTOFF_REASON_STORED_BYTES)
        moved = with_floor(limits, floor)
        await self._store.save(moved)
        await self._apply(moved, entry.generation)
        log.info(
            "floor moved by the stored-bytes limit",
            extra={"dataset": name, "cutoff_us": target, "limit": limit},
        )
