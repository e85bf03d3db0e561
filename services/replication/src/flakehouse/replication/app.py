"""Composition root of the replication controller: the dataset catalog, the placement topic, the
reconcile loop and the server."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from flakehouse.core.catalog import CatalogReader
from flakehouse.core.cluster_identity import cluster_id
from flakehouse.core.errors import NotFound
from flakehouse.core.kafka import (
    KafkaConnection,
    make_producer,
    placement_topic,
    read_state_topic,
)
from flakehouse.core.quota_client import QuotaClient
from flakehouse.core.server import GrpcServer, service_name
from flakehouse.core.service_auth import ServiceAuth, report_to
from flakehouse.core.tasks import BackgroundTasks
from flakehouse.core.tls import service_channel
from flakehouse.replication.api import ReplicationApi
from flakehouse.replication.controller import Controller
from flakehouse.replication.link_appender import Appender
from flakehouse.replication.link_manager import LinkManager
from flakehouse.replication.link_metrics import register_link_metrics
from flakehouse.replication.link_source import SourceCluster
from flakehouse.replication.link_store import LinkStore
from flakehouse.replication.membership import Membership
from flakehouse.replication.metrics import ReplicationMetrics
from flakehouse.replication.placement import DatasetTopic
from flakehouse.replication.puller import LinkPorts
from flakehouse.replication.settings import ReplicationSettings
from flakehouse.replication.v1 import replication_pb2, replication_pb2_grpc

log = logging.getLogger(__name__)
PLACEMENT_KEY = b"placement"
CLIENT_ID = "flakehouse-replication"


class ReplicationApp:
    def __init__(self, settings: ReplicationSettings) -> None:
        self.settings = settings
        self.registry = CollectorRegistry()
        self.tasks = BackgroundTasks()
        self.failed = self.tasks.failed
        self.controller = Controller(
            Membership(settings.node_timeout_s), settings.replication_factor
        )
        self.topic = placement_topic(settings.topic_prefix)
        self.kafka = KafkaConnection.from_settings(settings)
        self.catalog = CatalogReader(settings, self.kafka, CLIENT_ID)
        self.producer = make_producer(self.kafka, CLIENT_ID)
        self._refresh_lock = asyncio.Lock()
        self.kube: Any = None  # the Kubernetes API client, in Kubernetes
        self._persisted_version = 0
        self.auth = ServiceAuth(settings, settings, self.kafka, CLIENT_ID)
        self.server = GrpcServer("replication", settings, self.registry, self.auth.table)
        self.quota_channel = (
            service_channel(settings.quota_address, settings) if settings.quota_address else None
        )
        self.quota = QuotaClient(
            self.quota_channel,
            "replication",
            Counter(
                "flakehouse_link_quota_unchecked",
                "Chunks a link appended without a lease because quota could not be reached.",
                registry=self.registry,
            ),
        )
        self.link_store = LinkStore(settings, self.kafka, self.producer, CLIENT_ID)
        self.links: LinkManager | None = None  # once the cluster's id is known (start)
        self.api = ReplicationApi(self.controller, settings.heartbeat_interval_s, self.refresh)
        self.server.add(
            replication_pb2_grpc.add_ReplicationServiceServicer_to_server,
            self.api,
            service_name(replication_pb2.DESCRIPTOR, "ReplicationService"),
        )
        self.metrics = ReplicationMetrics(self.registry)
        register_link_metrics(
            self.registry, lambda: self.links.pullers if self.links is not None else []
        )

    async def start(self) -> None:
        # Without a quota address, the use of tokens here (cluster admins asking for replica
        # status) is not reported.
        await self.auth.start(
            self.tasks, report_to(self.quota_channel) if self.quota_channel else None
        )
        await self.producer.start()
        await self.catalog.start()
        self.links = self._link_manager(await cluster_id(self.settings, self.kafka, CLIENT_ID))
        self.api.links = self.links
        await self.server.start()
        if self.settings.kubernetes_namespace:
            # Several controllers may run: only the lease holder acts (and reports SERVING, so
            # the Service sends nodes to it); the others wait for the lease.
            await self._start_kubernetes()
            self.tasks.spawn("lead", self._lead_when_elected())
        else:
            await self._lead()

    async def _lead(self) -> None:
        """Take over: the persisted placement, then reconcile for as long as this process runs."""
        await self._restore()
        await self.refresh()
        self.tasks.spawn("reconcile", self._reconcile_forever())
        assert self.links is not None
        await self.links.start()
        await self.server.set_serving(True)

    def _link_manager(self, local_cluster: str) -> LinkManager:
        settings = self.settings
        appender = Appender(self.producer, settings.link_append_timeout_s, local_cluster)
        ports = LinkPorts(
            connect=lambda link: SourceCluster(link, settings.link_source_timeout_s),
            local_topic=self._local_topic,
            append=appender.append,
            checkpoint=self.link_store.checkpoint,
            lease=lambda dataset, holder, events, size: self.quota.acquire_lease(
                dataset, events, size, holder=holder
            ),
            local_cluster=local_cluster,
        )
        return LinkManager(self.link_store, ports)

    async def _local_topic(self, dataset: str) -> str:
        record = (await self.catalog.sync()).live(dataset)
        if record is None:
            raise NotFound(
                f"dataset {dataset!r} does not exist in this cluster: create it first "
                f"(flakehouse datasets create {dataset})"
            )
        return record.topic

    async def _start_kubernetes(self) -> None:
        from flakehouse.replication.kube import kube_api_client
        from flakehouse.replication.kube_lease import LeaseElector
        from flakehouse.replication.kube_members import StoragePods

        settings = self.settings
        self.kube = await kube_api_client()
        self.pods = StoragePods(
            self.kube,
            settings.kubernetes_namespace,
            settings.storage_selector,
            settings.storage_service,
            settings.storage_grpc_port,
        )
        self.elector = LeaseElector(
            self.kube,
            settings.kubernetes_namespace,
            settings.lease_name,
            settings.identity,
            lease_duration_s=settings.lease_duration_s,
            on_stopped_leading=self._lost_lease,
        )
        self.tasks.spawn("storage-pods", self.pods.run())
        self.tasks.spawn("pod-membership", self._follow_pods())
        self.tasks.spawn("lease", self.elector.run())

    async def _lead_when_elected(self) -> None:
        await self.elector.leading.wait()
        log.info("elected leader", extra={"identity": self.settings.identity})
        await self._lead()

    def _lost_lease(self) -> None:
        # Another controller may act from now on: stop at once. The process exits and comes
        # back as a follower.
        log.error("lost the leader lease; exiting", extra={"identity": self.settings.identity})
        self.failed.set()

    async def _follow_pods(self) -> None:
        """Storage pods are members from the Kubernetes API: address (the pod's DNS name, the
        one storage advertises) and zone from the pod and its node; a pod being deleted (or
        gone) is dead at once, without waiting for its heartbeats to stop. Readiness is not
        used: a storage pod reports ready only once it holds its partitions, which needs it
        placed first."""
        async for members in self.pods.updates():
            now = time.monotonic()
            listed = {m.node_id for m in members}
            for member in members:
                if member.leaving:
                    self.controller.membership.expire(member.node_id)
                else:
                    self.controller.membership.register(
                        member.node_id, member.address, member.zone, now
                    )
            for known in self.controller.membership.members():
                if known.node_id not in listed:
                    self.controller.membership.expire(known.node_id)
            self.controller.reconcile(None, now)

    async def _restore(self) -> None:
        records = await read_state_topic(self.settings, self.kafka, CLIENT_ID, self.topic)
        saved = [value for key, value in records if key == PLACEMENT_KEY and value]
        if saved:
            placement = replication_pb2.Placement.FromString(saved[-1])
            self.controller.restore(placement, time.monotonic())
            self._persisted_version = placement.version
            log.info("restored placement", extra={"version": placement.version})

    async def refresh(self) -> None:
        """Reads what is new in the dataset catalog, recomputes the placement, persists it if it
        changed."""
        async with self._refresh_lock:
            catalog = await self.catalog.sync()
            topics = [
                DatasetTopic(r.name, r.topic, r.partitions, r.generation)
                for r in catalog.live_records()
            ]
            retired = [
                replication_pb2.RetiredDataset(dataset=r.name, generation=r.generation)
                for r in catalog.deleted_records()
            ]
            self.controller.reconcile(topics, time.monotonic(), retired)
            await self._persist()

    async def _persist(self) -> None:
        placement = self.controller.placement
        if placement.version != self._persisted_version:
            await self.producer.send_and_wait(
                self.topic, placement.SerializeToString(), key=PLACEMENT_KEY
            )
            self._persisted_version = placement.version
            log.info(
                "placement changed",
                extra={
                    "version": placement.version,
                    "live_nodes": [n.node_id for n in placement.nodes if n.alive],
                },
            )
        self.metrics.observe(placement, self.controller.membership.members())

    async def _reconcile_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reconcile_interval_s)
            try:
                await self.refresh()
            except Exception:  # Kafka away for a moment: keep serving the last placement
                log.warning("reconcile failed; keeping the current placement", exc_info=True)

    async def stop(self) -> None:
        await self.server.stop()
        if self.links is not None:
            await self.links.stop()
        await self.tasks.cancel_all()  # a leader releases its lease here
        if self.kube is not None:
            await self.kube.close()
        await self.producer.stop()
        await self.catalog.stop()
        await self.quota.close()
        await self.auth.stop()
