"""Composition root of a storage node: RocksDB store, Kafka consumer, registration and
heartbeats with the controller, the placement watch, usage reports, and the server. The node
reports SERVING only once it has caught up with its partitions."""

from __future__ import annotations

import asyncio
import logging

import grpc
from prometheus_client import CollectorRegistry

from flakehouse.core.kafka import KafkaConnection, make_consumer
from flakehouse.core.server import GrpcServer, service_name
from flakehouse.core.service_auth import ServiceAuth, report_to
from flakehouse.core.tasks import BackgroundTasks
from flakehouse.core.tls import service_channel
from flakehouse.quota.v1 import quota_pb2, quota_pb2_grpc
from flakehouse.replication.v1 import replication_pb2, replication_pb2_grpc
from flakehouse.storage.api import StorageApi
from flakehouse.storage.bootstrap import Peer, Transfer, fetch_segments
from flakehouse.storage.metrics import StorageMetrics
from flakehouse.storage.node import StorageNode
from flakehouse.storage.replica import SealPolicy
from flakehouse.storage.settings import StorageSettings
from flakehouse.storage.store import SegmentStore
from flakehouse.storage.v1 import storage_pb2, storage_pb2_grpc

log = logging.getLogger(__name__)
RETRY_S = 1.0


class StorageApp:
    def __init__(self, settings: StorageSettings) -> None:
        self.settings = settings
        self.registry = CollectorRegistry()
        self.tasks = BackgroundTasks()
        self.failed = self.tasks.failed
        self.metrics = StorageMetrics(self.registry)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = SegmentStore(
            str(settings.data_dir / "segments.rocksdb"), cache_bytes=settings.cache_bytes
        )
        kafka = KafkaConnection.from_settings(settings)
        client_id = f"flakehouse-{settings.node_id}"
        self.consumer = make_consumer(kafka, client_id)
        self.node = StorageNode(
            settings.node_id,
            self.store,
            self.consumer,
            settings.topic_prefix,
            SealPolicy(settings.seal_rows, settings.seal_bytes, settings.seal_age_s),
            settings.dedupe_window,
            self.metrics,
            fetch_segments=self._fetch_segments,
        )
        self.auth = ServiceAuth(settings, settings, kafka, client_id)
        self.server = GrpcServer("storage", settings, self.registry, self.auth.table)
        self.server.add(
            storage_pb2_grpc.add_StorageServiceServicer_to_server,
            StorageApi(self.node),
            service_name(storage_pb2.DESCRIPTOR, "StorageService"),
        )
        self.channel = service_channel(settings.replication_address, settings)
        self.replication = replication_pb2_grpc.ReplicationServiceStub(self.channel)
        self.quota_channel = (
            service_channel(settings.quota_address, settings) if settings.quota_address else None
        )

    async def _fetch_segments(
        self, peer: Peer, dataset: str, partition: int, generation: int
    ) -> Transfer:
        return await fetch_segments(
            peer,
            dataset,
            partition,
            generation,
            self.settings.bootstrap_timeout_s,
            lambda address: service_channel(address, self.settings),
        )

    @property
    def address(self) -> str:
        return self.settings.advertised_address or self.server.address

    async def start(self) -> None:
        report = report_to(self.quota_channel) if self.quota_channel else None
        await self.auth.start(self.tasks, report)
        await self.consumer.start()
        await self.server.start()
        heartbeat_s = await self._register()
        self.tasks.spawn("placement", self._watch_placement())
        self.tasks.spawn("consume", self.node.run())
        self.tasks.spawn("heartbeat", self._heartbeat_forever(heartbeat_s))
        if self.quota_channel is not None:
            self.tasks.spawn("usage", self._report_usage_forever())
        self.tasks.spawn("ready", self._serve_when_caught_up())
        self.tasks.spawn("compaction", self._compact_forever())

    async def _register(self) -> float:
        request = replication_pb2.RegisterNodeRequest(
            node_id=self.settings.node_id, address=self.address, zone=self.settings.zone
        )
        while True:
            try:
                response = await self.replication.RegisterNode(request, timeout=5)
                log.info(
                    "registered", extra={"node_id": self.settings.node_id, "address": self.address}
                )
                return response.heartbeat_interval_ms / 1000
            except grpc.aio.AioRpcError as exc:
                log.warning("replication unreachable; retrying", extra={"code": exc.code().name})
                await asyncio.sleep(RETRY_S)

    async def _watch_placement(self) -> None:
        while True:
            try:
                stream = self.replication.WatchPlacement(replication_pb2.WatchPlacementRequest())
                async for update in stream:
                    self.node.follow(update.placement)
            except grpc.aio.AioRpcError as exc:
                log.warning("placement watch broken; reconnecting", extra={"code": exc.code().name})
            await asyncio.sleep(RETRY_S)

    async def _serve_when_caught_up(self) -> None:
        await self.node.placement_seen.wait()
        await self.node.caught_up.wait()
        await self.server.set_serving(True)
        log.info("caught up; serving", extra={"partitions": len(self.node.replicas)})

    async def _compact_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.compaction_interval_s)
            try:
                merged = await self.node.upkeep.compact(self.settings.compaction_min_segments)
            except Exception:  # the node serves without compaction; try again next round
                log.exception("compaction failed")
                continue
            if merged:
                log.info("compacted", extra={"segments_merged_away": merged})

    async def _heartbeat_forever(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                response = await self.replication.Heartbeat(
                    replication_pb2.HeartbeatRequest(
                        node_id=self.settings.node_id, replicas=self.node.replica_reports()
                    ),
                    timeout=max(interval_s, 1.0),
                )
                if response.reregister:
                    await self._register()
            except grpc.aio.AioRpcError as exc:
                log.warning("heartbeat failed", extra={"code": exc.code().name})

    async def _report_usage_forever(self) -> None:
        """Reports usage to quota and, after each report, deletes what quota's drop bounds allow
        (a drop round at a time; the next report shows what it freed)."""
        assert self.quota_channel is not None
        quota = quota_pb2_grpc.QuotaServiceStub(self.quota_channel)
        while True:
            await asyncio.sleep(self.settings.usage_interval_s)
            usage = await self.node.upkeep.collect_usage()
            try:
                response = await quota.ReportUsage(
                    quota_pb2.ReportUsageRequest(node_id=self.settings.node_id, partitions=usage),
                    timeout=5,
                )
            except grpc.aio.AioRpcError as exc:
                log.warning("usage report failed", extra={"code": exc.code().name})
                continue
            try:
                await self.node.upkeep.drop_expired(response.drops)
            except Exception:  # the node serves without deleting; the next round tries again
                log.exception("drop failed")

    async def stop(self) -> None:
        await self.server.stop()
        await self.tasks.cancel_all()
        await self.consumer.stop()
        # Sealing on the way out is an optimisation only: without it, the open segment is
        # rebuilt from Kafka at the next start.
        await self.node.seal_all()
        await self.auth.stop()
        await self.channel.close(None)
        if self.quota_channel is not None:
            await self.quota_channel.close(None)
        await asyncio.to_thread(self.store.close)
