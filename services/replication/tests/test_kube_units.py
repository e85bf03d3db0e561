"""The pure parts of the Kubernetes integration: pod → member (at its DNS name), node → zone,
lease expiry, time format, and the settings, without any server."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes.aio import client

from flakehouse.replication.kube_lease import LeaseElector, lease_holder, micro_time
from flakehouse.replication.kube_members import (
    LEGACY_ZONE_LABEL,
    ZONE_LABEL,
    PodMember,
    node_zone,
    pod_address,
    pod_member,
    pod_node_name,
    pod_ready,
)
from flakehouse.replication.settings import ReplicationSettings


def pod(**status: Any) -> client.V1Pod:
    body: dict[str, Any] = {
        "metadata": {"name": "storage-0", "namespace": "flake"},
        "spec": {"nodeName": "node-a", "containers": [{"name": "storage"}]},
        "status": {"podIP": "10.1.2.3", "conditions": [{"type": "Ready", "status": "True"}]},
    }
    body["status"].update(status)
    return client.V1Pod.from_dict(body)


ADDRESSING = {"service": "fh-storage", "namespace": "flake", "grpc_port": 7000}


def member_of(pod: client.V1Pod, zone: str = "", **addressing: Any) -> PodMember | None:
    return pod_member(pod, zone, **{**ADDRESSING, **addressing})


def test_a_ready_pod_is_a_serving_member_at_its_dns_name_and_grpc_port() -> None:
    assert member_of(pod(), "zone-a") == PodMember(
        "storage-0", "storage-0.fh-storage.flake.svc:7000", "zone-a", True
    )
    assert pod_node_name(pod()) == "node-a"


def test_a_member_is_addressed_by_its_name_under_the_headless_service_never_its_ip() -> None:
    """Clients verify the certificate against the host they dial, and the certificate names
    `*.<service>.<namespace>.svc`, never a pod IP: an IP here fails every TLS handshake."""
    for ip in ("10.1.2.3", "fd00::1"):
        member = member_of(pod(podIP=ip), service="st", namespace="ns", grpc_port=7010)
        assert member is not None
        host, _, port = member.address.rpartition(":")
        assert (host, port) == ("storage-0.st.ns.svc", "7010")
        assert ip not in member.address
    assert pod_address("storage-3", "fh-storage", "flake", 7000) == (
        "storage-3.fh-storage.flake.svc:7000"
    )


def test_readiness_comes_from_the_ready_condition() -> None:
    assert not pod_ready(pod(conditions=[]))
    assert not pod_ready(pod(conditions=None))
    assert not pod_ready(pod(conditions=[{"type": "Ready", "status": "False"}]))
    assert not pod_ready(pod(conditions=[{"type": "Ready", "status": "Unknown"}]))
    assert not pod_ready(pod(conditions=[{"type": "ContainersReady", "status": "True"}]))
    assert pod_ready(
        pod(
            conditions=[
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "True"},
            ]
        )
    )


def test_a_pod_being_deleted_is_leaving() -> None:
    leaving = pod()
    assert leaving.metadata is not None
    leaving.metadata.deletion_timestamp = datetime(2026, 1, 1, tzinfo=UTC)
    member = member_of(leaving)
    assert member is not None and not member.ready


def test_a_pod_without_ip_or_name_is_not_a_member_yet() -> None:
    # No IP: the headless Service has no DNS record for it yet, so its name would not resolve.
    assert member_of(pod(podIP=None)) is None
    assert member_of(client.V1Pod.from_dict({"status": {"podIP": "10.0.0.1"}})) is None
    assert member_of(client.V1Pod()) is None
    assert pod_node_name(client.V1Pod()) == ""


def test_zone_from_the_node_label_then_the_legacy_one() -> None:
    def node(labels: dict[str, str] | None) -> client.V1Node:
        return client.V1Node.from_dict({"metadata": {"name": "n", "labels": labels}})

    assert node_zone(node({ZONE_LABEL: "eu-1a", LEGACY_ZONE_LABEL: "old"})) == "eu-1a"
    assert node_zone(node({LEGACY_ZONE_LABEL: "old"})) == "old"
    assert node_zone(node({"kubernetes.io/hostname": "n"})) == ""
    assert node_zone(node(None)) == ""
    assert node_zone(client.V1Node()) == ""


def test_micro_time_always_has_six_fraction_digits_in_utc() -> None:
    assert micro_time(1767225600.0) == "2026-01-01T00:00:00.000000Z"
    assert micro_time(1767225600.25) == "2026-01-01T00:00:00.250000Z"
    parsed = client.V1LeaseSpec.from_dict({"renewTime": micro_time(1767225600.5)})
    assert parsed.renew_time is not None and parsed.renew_time.timestamp() == 1767225600.5


NOW = 1767225600.0


def spec(**fields: Any) -> client.V1LeaseSpec:
    body = {"holderIdentity": "a", "leaseDurationSeconds": 15, "renewTime": micro_time(NOW)}
    body.update(fields)
    return client.V1LeaseSpec.from_dict(body)


def test_a_lease_is_held_until_renew_time_plus_duration() -> None:
    assert lease_holder(spec(), NOW) == "a"
    assert lease_holder(spec(), NOW + 15) == "a"
    assert lease_holder(spec(), NOW + 15.001) == ""
    assert lease_holder(spec(renewTime=micro_time(NOW + 10)), NOW + 20) == "a"


def test_a_released_or_incomplete_lease_is_free() -> None:
    assert lease_holder(None, NOW) == ""
    assert lease_holder(spec(holderIdentity=None), NOW) == ""
    assert lease_holder(spec(holderIdentity=""), NOW) == ""
    assert lease_holder(spec(leaseDurationSeconds=None), NOW) == ""
    assert lease_holder(spec(renewTime=None), NOW) == ""
    # Without a renewal yet, the acquisition counts.
    assert lease_holder(spec(renewTime=None, acquireTime=micro_time(NOW)), NOW + 1) == "a"


def test_elector_timings_must_be_ordered() -> None:
    api = client.ApiClient(client.Configuration(host="http://127.0.0.1:9"))
    elector = LeaseElector(api, "ns", "lease", "me", lease_duration_s=15)
    assert (elector.renew_deadline_s, elector.retry_period_s) == (10.0, 2.0)
    assert not elector.is_leader
    with pytest.raises(ValueError):
        LeaseElector(api, "ns", "lease", "me", lease_duration_s=1, renew_deadline_s=2)
    with pytest.raises(ValueError):
        LeaseElector(api, "ns", "lease", "me", renew_deadline_s=5, retry_period_s=5)
    with pytest.raises(ValueError):
        LeaseElector(api, "ns", "lease", "")


def test_kubernetes_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = ReplicationSettings()
    assert settings.kubernetes_namespace == ""
    assert settings.storage_selector == "app.kubernetes.io/component=storage"
    assert settings.storage_service == ""
    assert settings.storage_grpc_port == 7000
    assert (settings.lease_name, settings.lease_duration_s) == ("flakehouse-replication", 15)
    assert settings.identity
    monkeypatch.setenv("FLAKEHOUSE_REPLICATION_KUBERNETES_NAMESPACE", "flake")
    monkeypatch.setenv("FLAKEHOUSE_REPLICATION_IDENTITY", "replication-1")
    monkeypatch.setenv("FLAKEHOUSE_REPLICATION_LEASE_DURATION_S", "30")
    # In Kubernetes the storage pods' headless Service is required: without it they have no
    # address the certificate covers.
    with pytest.raises(ValueError, match="storage_service is required"):
        ReplicationSettings()
    monkeypatch.setenv("FLAKEHOUSE_REPLICATION_STORAGE_SERVICE", "fh-storage")
    settings = ReplicationSettings()
    assert (settings.kubernetes_namespace, settings.identity) == ("flake", "replication-1")
    assert (settings.storage_service, settings.lease_duration_s) == ("fh-storage", 30)
    for bad in ("fh_storage", "fh-storage.flake", "Fh-storage", "0fh"):
        monkeypatch.setenv("FLAKEHOUSE_REPLICATION_STORAGE_SERVICE", bad)
        with pytest.raises(ValueError):
            ReplicationSettings()
    monkeypatch.setenv("FLAKEHOUSE_REPLICATION_STORAGE_SERVICE", "fh-storage")
    monkeypatch.setenv("FLAKEHOUSE_REPLICATION_LEASE_NAME", "Not_A_Name")
    with pytest.raises(ValueError):
        ReplicationSettings()
