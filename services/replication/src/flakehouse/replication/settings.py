"""Replication settings: FLAKEHOUSE_REPLICATION_*."""

from __future__ import annotations

import socket

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from flakehouse.core.settings import KafkaSettings, ServiceSettings


class ReplicationSettings(ServiceSettings, KafkaSettings):
    model_config = SettingsConfigDict(env_prefix="FLAKEHOUSE_REPLICATION_")

    replication_factor: int = Field(2, ge=1, le=5)
    heartbeat_interval_s: float = Field(1.0, gt=0)
    node_timeout_s: float = Field(10.0, gt=0, description="Silence after which a node is dead.")
    reconcile_interval_s: float = Field(
        1.0, gt=0, description="How often the dataset catalog is read and placement recomputed."
    )
    quota_address: str = Field(
        "",
        description="host:port of the quota service, whose ingest limits links respect; "
        "empty: links are not limited.",
    )
    link_source_timeout_s: float = Field(
        10.0, gt=0, description="Deadline of a link's calls to its source, stream aside."
    )
    link_append_timeout_s: float = Field(
        30.0,
        gt=0,
        description="How long a link waits for this cluster's Kafka to acknowledge a chunk "
        "before it pulls the chunk again.",
    )

    # In Kubernetes: storage membership from the pods and leader election with a Lease.
    kubernetes_namespace: str = Field(
        "",
        description="Namespace of the storage pods and of the lease; empty: not in Kubernetes, "
        "storage nodes are known from their gRPC registrations only.",
    )
    storage_selector: str = Field(
        "app.kubernetes.io/component=storage",
        min_length=1,
        description="Label selector of the storage pods.",
    )
    storage_service: str = Field(
        "",
        pattern=r"^([a-z]([-a-z0-9]{0,61}[a-z0-9])?)?$",
        description="The headless Service governing the storage StatefulSet (its serviceName): "
        "each storage pod is addressed as <pod>.<storage_service>.<namespace>.svc:"
        "<storage_grpc_port>, a name its TLS certificate carries (a pod IP is not). Required "
        "with kubernetes_namespace.",
    )
    storage_grpc_port: int = Field(
        7000, ge=1, le=65535, description="gRPC port of the storage pods (the chart's grpcPort)."
    )
    lease_name: str = Field(
        "flakehouse-replication",
        pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$",
        description="Name of the coordination.k8s.io Lease that elects the leader.",
    )
    lease_duration_s: int = Field(
        15, ge=2, description="Seconds after the last renewal before another replica takes over."
    )
    identity: str = Field(
        default_factory=socket.gethostname,
        min_length=1,
        description="This replica's name in the lease; the pod name by default.",
    )

    @model_validator(mode="after")
    def _storage_service_in_kubernetes(self) -> ReplicationSettings:
        if self.kubernetes_namespace and not self.storage_service:
            raise ValueError(
                "storage_service is required with kubernetes_namespace: the headless Service "
                "of the storage StatefulSet, under which its pods are addressed"
            )
        return self
