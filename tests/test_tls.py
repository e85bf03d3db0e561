"""TLS through real processes (`flakehouse up` making its own CA): every gRPC port refuses
plaintext and a client that trusts another CA, the CLI works with no flags through the CA that
cluster.json names, keys are the owner's only, probes answer on the plain metrics port, and a
restart reuses the certificates."""

from __future__ import annotations

import stat
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from flakehouse.core.tls import channel_credentials
from tests import credentials
from tests.localcluster import RunningCluster

pytestmark = [pytest.mark.processes, pytest.mark.broker]


def _health(channel: grpc.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return int(stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status)


def _grpc_addresses(cluster: RunningCluster) -> list[str]:
    info = cluster.info()
    return [s["grpc"] for s in info["services"].values()] + [n["grpc"] for n in info["storage"]]


def _refused(channel: grpc.Channel) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as failed:
        _health(channel)
    return failed.value.code()  # type: ignore[attr-defined, no-any-return]


def test_every_port_speaks_tls_only_with_the_clusters_own_ca(tmp_path: Path) -> None:
    data_dir = tmp_path / "cluster"
    cluster = RunningCluster(data_dir, storage_nodes=1, partitions=1, session_secrets=False)
    try:
        cluster.wait_ready()
        ca_file = Path(cluster.info()["ca_file"])
        assert ca_file == data_dir.resolve() / "secrets" / "ca.pem"
        trusted = channel_credentials(ca_file)
        for address in _grpc_addresses(cluster):
            with grpc.secure_channel(address, trusted) as channel:
                assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
            with grpc.insecure_channel(address) as channel:
                assert _refused(channel) == grpc.StatusCode.UNAVAILABLE, address
            with credentials.channel(address) as channel:  # another CA: the session's
                assert _refused(channel) == grpc.StatusCode.UNAVAILABLE, address

        listed = cluster.cli("datasets", "list", "--cluster", str(cluster.cluster_path))
        assert listed.returncode == 0  # no --ca: the cluster file's CA
        other = cluster.cli(
            "datasets", "list", "--cluster", str(cluster.cluster_path),
            "--ca", str(credentials.ca_file()), check=False,
        )  # fmt: skip
        assert other.returncode == 1, other.stderr
        assert other.stderr.startswith("error: cannot verify ") and other.stderr.count("\n") == 1

        tls = data_dir / "secrets"
        assert stat.S_IMODE(tls.stat().st_mode) == 0o700
        keys = sorted(tls.glob("*.key"))
        assert {k.stem for k in keys} >= {"ca", "ingest", "query", "storage-0"}
        assert all(stat.S_IMODE(k.stat().st_mode) == 0o600 for k in keys)

        for service in cluster.info()["services"].values():
            for path, status in (("/healthz", 200), ("/readyz", 200)):
                with urllib.request.urlopen(f"http://{service['metrics']}{path}", timeout=5) as r:
                    assert r.status == status
        files = {p.name: p.read_bytes() for p in tls.iterdir()}
    finally:
        cluster.stop()

    again = RunningCluster(
        data_dir, storage_nodes=1, partitions=1, port_base=cluster.port_base, session_secrets=False
    )
    try:
        again.wait_ready()
        assert {p.name: p.read_bytes() for p in tls.iterdir()} == files  # reused as they were
        assert again.cli("datasets", "list", "--cluster", str(again.cluster_path)).returncode == 0
    finally:
        again.stop()
