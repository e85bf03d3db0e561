"""Tokens through real processes (`flakehouse up`, the CLI): no token, a wrong one and a revoked
one are UNAUTHENTICATED; a `read:a` token reads `a` and nothing else, and cannot upload or
change quotas; a `write:a` token uploads to `a` only, once an admin created it; a user's token,
even the admin's, cannot call a storage node; `tokens list` never shows a secret."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from flakehouse.core.tls import channel_credentials
from flakehouse.query.v1 import query_pb2, query_pb2_grpc
from flakehouse.storage.v1 import storage_pb2, storage_pb2_grpc
from tests import credentials
from tests.localcluster import RunningCluster
from tests.support import eventually

pytestmark = [pytest.mark.processes, pytest.mark.broker]

REPORT = '<testsuite name="s"><testcase classname="c" name="t"/></testsuite>'


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    running = RunningCluster(tmp_path_factory.mktemp("tokens") / "cluster", 1, 1)
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


def _create(cluster: RunningCluster, name: str, *grants: str) -> str:
    argv = ["tokens", "create", "--name", name, "--cluster", str(cluster.cluster_path)]
    argv += [arg for grant in grants for arg in ("--grant", grant)]
    created = json.loads(cluster.cli(*argv, "--format", "json").stdout)
    assert created["name"] == name and created["token"].startswith("fh_")
    return str(created["token"])


def _refusal(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result
    return result.stderr


def test_grants_hold_through_the_cli_and_revocation_is_prompt(
    cluster: RunningCluster, tmp_path: Path
) -> None:
    report = tmp_path / "r.xml"
    report.write_text(REPORT)
    reader = _create(cluster, "reader", "read:a")
    writer = _create(cluster, "writer", "write:a")

    def ingest(dataset: str, token: str) -> subprocess.CompletedProcess[str]:
        return cluster.cli("ingest", "--dataset", dataset, str(report), token=token, check=False)

    def query(dataset: str, token: str) -> subprocess.CompletedProcess[str]:
        sql = f"SELECT count(*) FROM {dataset}"
        return cluster.cli("query", "--format", "json", sql, token=token, check=False)

    # Creating a dataset on first upload takes admin on it; writing to it, write. (A new token
    # works everywhere within a fetch of the token topic: until then it is unknown.)
    creating = "does not grant admin on dataset 'a' to create it on first upload"
    eventually(lambda: creating in _refusal(ingest("a", writer)), "writer refused creating", 10)
    for dataset in ("a", "b"):
        assert ingest(dataset, credentials.admin_token()).returncode == 0
    assert ingest("a", writer).returncode == 0
    eventually(lambda: query("a", reader).returncode == 0, "reader admitted", 10)
    assert "does not grant write on dataset 'b'" in _refusal(ingest("b", writer))
    assert "does not grant write on dataset 'a'" in _refusal(ingest("a", reader))
    assert query("a", reader).returncode == 0
    assert "does not grant read on dataset 'b'" in _refusal(query("b", reader))
    quota = cluster.cli("quota", "set", "a", "--retention", "30d", "--cluster",
                        str(cluster.cluster_path), token=reader, check=False)  # fmt: skip
    assert "does not grant cluster-admin" in _refusal(quota)
    listed = cluster.cli("datasets", "list", "--format", "json", "--cluster",
                         str(cluster.cluster_path), token=reader)  # fmt: skip
    assert [d["name"] for d in json.loads(listed.stdout)["datasets"]] == ["a"]

    wrong = "fh_" + "x" * 43
    refused = _refusal(query("a", wrong))
    assert "the token is not valid: unknown, or revoked" in refused and wrong not in refused
    # No token at all: the CLI always has one (the cluster file names the admin's), so ask
    # the query service directly over TLS alone.
    tls_only = channel_credentials(cluster.info()["ca_file"])
    request = query_pb2.QueryRequest(sql="SELECT count(*) FROM a")
    with (
        grpc.secure_channel(cluster.info()["services"]["query"]["grpc"], tls_only) as channel,
        pytest.raises(grpc.RpcError) as anonymous,
    ):
        query_pb2_grpc.QueryServiceStub(channel).Query(request, timeout=5)
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
    assert "no token" in anonymous.value.details()  # type: ignore[attr-defined]

    tokens = cluster.cli("tokens", "list", "--cluster", str(cluster.cluster_path)).stdout
    assert "reader" in tokens and "read:a" in tokens and "fh_" not in tokens

    cluster.cli("tokens", "revoke", "reader", "--cluster", str(cluster.cluster_path))
    deadline = time.monotonic() + 10
    while query("a", reader).returncode == 0:
        assert time.monotonic() < deadline, "a revoked token still works"
        time.sleep(0.2)
    assert "not valid: unknown, or revoked" in _refusal(query("a", reader))


def test_a_users_token_cannot_call_a_storage_node(cluster: RunningCluster) -> None:
    node = cluster.info()["storage"][0]["grpc"]
    ca = channel_credentials(cluster.info()["ca_file"])
    request = storage_pb2.GetPartitionStatusRequest()

    def refusal(user: str) -> grpc.RpcError:
        call = grpc.access_token_call_credentials(user)
        with (
            grpc.secure_channel(node, grpc.composite_channel_credentials(ca, call)) as channel,
            pytest.raises(grpc.RpcError) as refused,
        ):
            storage_pb2_grpc.StorageServiceStub(channel).GetPartitionStatus(request, timeout=5)
        # A token just created reaches the node within a fetch of the token topic.
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED, refused.value  # type: ignore[attr-defined]
        return refused.value

    for user in (credentials.admin_token(), _create(cluster, "ops", "admin:*", "cluster-admin")):
        refused = eventually(lambda user=user: refusal(user), "the node's refusal", 10)
        assert "services' own credentials" in refused.details()  # type: ignore[attr-defined]
