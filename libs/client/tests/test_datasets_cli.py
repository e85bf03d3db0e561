"""`flakehouse datasets|quota|usage`: argument errors without a cluster, and the requests sent and
the answers printed through a real gRPC server that plays ingest and quota."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from flakehouse.client import cli
from flakehouse.client.client import Client
from flakehouse.core.errors import Unavailable
from flakehouse.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from flakehouse.quota.v1 import quota_pb2, quota_pb2_grpc
from libs.client.tests.fake_servers import serving

T0_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
DATASET = ingest_pb2.Dataset(
    name="ci", topic="flakehouse.ci.2", partitions=8, generation=2, created_us=T0_US
)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- arguments, no cluster needed ----------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["datasets", "create", "ci", "--retention", "3x"], "unknown unit 'x'"),
        (["datasets", "create", "ci", "--retention", "30s"], "shorter than 1m"),
        (["datasets", "create", "ci", "--max-stored-bytes", "20G"], "unknown unit 'G'"),
        (["datasets", "create", "ci", "--max-stored-bytes=-5MiB"], "negative"),
        (["datasets", "create", "ci", "--partitions", "0"], "at least 1 partition"),
        (["quota", "set", "ci", "--events-per-second", "-1"], "finite number >= 0"),
        (["quota", "set", "ci", "--bytes-per-second", "lots"], "not a size"),
        (["quota", "set", "ci", "--max-concurrent-queries", "1.5"], "whole number"),
        (["quota", "set", "ci", "--retention", ""], "not an age"),
        (["usage", "--format", "xml"], "invalid choice"),
    ],
)
def test_bad_values_exit_2_naming_the_option(
    capsys: pytest.CaptureFixture[str], argv: list[str], words: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert words in err
    assert "error: argument --" in err


def test_delete_without_yes_and_set_without_limits_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(capsys, "datasets", "delete", "ci")
    assert code == 2 and err.startswith("error: ") and "--yes" in err
    code, _, err = run(capsys, "quota", "set", "ci")
    assert code == 2 and "nothing to change" in err and "--retention" in err


def test_limits_the_cluster_refuses_are_refused_before_calling(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(capsys, "quota", "set", "ci", "--retention", "40000w")
    assert code == 2 and "more than 100 years" in err


def test_no_cluster_file_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    code, _, err = run(capsys, "usage", "--cluster", str(tmp_path / "none.json"))
    assert code == 1 and "no cluster file" in err and "--quota" in err


# --- through a server ----------------------------------------------------------------------


class Fake(ingest_pb2_grpc.IngestServiceServicer, quota_pb2_grpc.QuotaServiceServicer):
    """Ingest and quota in one: answers from `datasets`, `quotas` and `usages`, records what it
    was asked."""

    def __init__(self) -> None:
        self.datasets = {"ci": DATASET}
        self.quotas = {"ci": quota_pb2.Quota(dataset="ci", retention_seconds=30 * 86400)}
        self.usages: list[quota_pb2.DatasetUsage] = []
        self.requests: list[Any] = []
        self.failures: dict[str, int] = {}
        """Method name → calls still to answer UNAVAILABLE."""

    def _maybe_fail(self, method: str, context: Any) -> None:
        if self.failures.get(method):
            self.failures[method] -= 1
            context.abort(grpc.StatusCode.UNAVAILABLE, "busy")

    def CreateDataset(self, request: Any, context: Any) -> ingest_pb2.CreateDatasetResponse:
        self.requests.append(request)
        created = request.name not in self.datasets
        if not created and request.partitions not in (0, self.datasets[request.name].partitions):
            context.abort(grpc.StatusCode.ALREADY_EXISTS, "exists with 8 partitions")
        dataset = self.datasets.setdefault(
            request.name,
            ingest_pb2.Dataset(
                name=request.name,
                topic=f"flakehouse.{request.name}",
                partitions=request.partitions or 8,
                generation=1,
                created_us=T0_US,
            ),
        )
        return ingest_pb2.CreateDatasetResponse(dataset=dataset, created=created)

    def GetDataset(self, request: Any, context: Any) -> ingest_pb2.GetDatasetResponse:
        if request.name not in self.datasets:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no dataset {request.name!r}")
        return ingest_pb2.GetDatasetResponse(dataset=self.datasets[request.name])

    def ListDatasets(self, request: Any, context: Any) -> ingest_pb2.ListDatasetsResponse:
        return ingest_pb2.ListDatasetsResponse(datasets=list(self.datasets.values()))

    def DeleteDataset(self, request: Any, context: Any) -> ingest_pb2.DeleteDatasetResponse:
        self.requests.append(request)
        self._maybe_fail("DeleteDataset", context)
        if request.name not in self.datasets:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no dataset {request.name!r}")
        return ingest_pb2.DeleteDatasetResponse(dataset=self.datasets.pop(request.name))

    def GetQuota(self, request: Any, context: Any) -> quota_pb2.GetQuotaResponse:
        if request.dataset not in self.datasets:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no dataset {request.dataset!r}")
        return quota_pb2.GetQuotaResponse(
            quota=self.quotas.get(request.dataset, quota_pb2.Quota(dataset=request.dataset))
        )

    def SetQuota(self, request: Any, context: Any) -> quota_pb2.SetQuotaResponse:
        self.requests.append(request)
        self._maybe_fail("SetQuota", context)
        quota = self.quotas.setdefault(request.quota.dataset, quota_pb2.Quota())
        request.update_mask.MergeMessage(request.quota, quota)
        return quota_pb2.SetQuotaResponse(quota=quota)

    def GetUsage(self, request: Any, context: Any) -> quota_pb2.GetUsageResponse:
        return quota_pb2.GetUsageResponse(
            datasets=[u for u in self.usages if request.dataset in ("", u.dataset)]
        )


@pytest.fixture
def fake() -> Iterator[tuple[Fake, str]]:
    service = Fake()
    with serving(
        service,
        ingest_pb2_grpc.add_IngestServiceServicer_to_server,
        quota_pb2_grpc.add_QuotaServiceServicer_to_server,
    ) as address:
        yield service, address


def usage_of_ci() -> quota_pb2.DatasetUsage:
    return quota_pb2.DatasetUsage(
        dataset="ci",
        bytes=3 * 1024**3,
        rows=123456,
        replica_bytes=6 * 1024**3,
        oldest_us=T0_US - 86400 * 1_000_000,
        newest_us=T0_US + 1_500_000,
        events_per_second=12.5,
        bytes_per_second=2 * 1024**2,
        cutoff=quota_pb2.Cutoff(
            cutoff_us=T0_US - 3600 * 1_000_000, reason=quota_pb2.CUTOFF_REASON_STORED_BYTES
        ),
        quota=quota_pb2.Quota(
            dataset="ci",
            max_stored_bytes=4 * 1024**3,
            retention_seconds=30 * 86400,
            max_concurrent_queries=4,
        ),
        running_queries=1,
    )


def addresses(address: str, *services: str) -> list[str]:
    """The options that point a command at the fake as each of `services`: a command offers
    only the address options of the services it calls."""
    return [*(arg for service in services for arg in (f"--{service}", address)), "--timeout", "5"]


SERVICES = {"datasets": ("ingest", "quota"), "usage": ("quota",), "quota": ("quota",)}


def test_set_quota_sends_exactly_the_changed_limits(
    capsys: pytest.CaptureFixture[str], fake: tuple[Fake, str]
) -> None:
    service, address = fake
    argv = ["quota", "set", "ci", "--max-stored-bytes", "500MiB", "--retention", "0"]
    code, out, _ = run(capsys, *argv, *addresses(address, "quota"), "--format", "json")
    assert code == 0
    request = service.requests[-1]
    assert sorted(request.update_mask.paths) == ["max_stored_bytes", "retention_seconds"]
    assert request.quota.dataset == "ci" and request.quota.max_stored_bytes == 500 * 1024**2
    assert json.loads(out) == {
        "dataset": "ci",
        "limits": {
            "events_per_second": 0.0,
            "bytes_per_second": 0.0,
            "max_stored_bytes": 500 * 1024**2,
            "retention_seconds": 0,
            "max_concurrent_queries": 0,
        },
    }
    code, out, _ = run(capsys, "quota", "get", "ci", *addresses(address, "quota"))
    assert code == 0
    assert out.splitlines() == [
        "limits of 'ci'",
        "  events-per-second       unlimited",
        "  bytes-per-second        unlimited",
        "  max-stored-bytes        500 MiB",
        "  retention               unlimited",
        "  max-concurrent-queries  unlimited",
    ]


def test_create_sends_partitions_and_limits(
    capsys: pytest.CaptureFixture[str], fake: tuple[Fake, str]
) -> None:
    service, address = fake
    argv = ["datasets", "create", "web", "--partitions", "4", "--retention", "2w"]
    code, out, _ = run(capsys, *argv, "--max-stored-bytes", "20GB", *addresses(address, "ingest"))
    assert code == 0
    request = service.requests[-1]
    assert (request.name, request.partitions) == ("web", 4)
    assert request.limits.retention_seconds == 14 * 86400
    assert request.limits.max_stored_bytes == 20 * 1000**3
    assert out.strip() == (
        "created dataset 'web': 4 partitions, generation 1, topic flakehouse.web"
    )
    code, out, _ = run(
        capsys, "datasets", "create", "ci", *addresses(address, "ingest"), "--format", "json"
    )
    assert code == 0 and json.loads(out)["created"] is False
    code, out, err = run(
        capsys, "datasets", "create", "ci", "--partitions", "4", *addresses(address, "ingest")
    )
    assert (code, out, err) == (2, "", "error: exists with 8 partitions\n")


def test_list(capsys: pytest.CaptureFixture[str], fake: tuple[Fake, str]) -> None:
    _, address = fake
    code, out, _ = run(
        capsys, "datasets", "list", *addresses(address, "ingest"), "--format", "json"
    )
    assert code == 0
    assert json.loads(out) == {
        "datasets": [
            {
                "name": "ci",
                "topic": "flakehouse.ci.2",
                "partitions": 8,
                "generation": 2,
                "created": "2026-01-01T00:00:00.000000Z",
            }
        ]
    }
    code, out, _ = run(capsys, "datasets", "list", *addresses(address, "ingest"))
    assert out.splitlines() == [
        "name  partitions  generation  created               topic",
        "----  ----------  ----------  --------------------  ---------------",
        "ci             8           2  2026-01-01T00:00:00Z  flakehouse.ci.2",
        "(1 dataset)",
    ]


def test_describe_shows_dataset_limits_and_usage(
    capsys: pytest.CaptureFixture[str], fake: tuple[Fake, str]
) -> None:
    service, address = fake
    service.usages = [usage_of_ci()]
    code, out, _ = run(capsys, "datasets", "describe", "ci", *addresses(address, "ingest", "quota"))
    assert code == 0
    assert out.splitlines() == [
        "dataset     ci",
        "topic       flakehouse.ci.2",
        "partitions  8",
        "generation  2",
        "created     2026-01-01T00:00:00Z",
        "",
        "limits",
        "  events-per-second       unlimited",
        "  bytes-per-second        unlimited",
        "  max-stored-bytes        4 GiB",
        "  retention               30d",
        "  max-concurrent-queries  4",
        "",
        "usage",
        "  stored           3 GiB (75% of 4 GiB)",
        "  with replicas    6 GiB",
        "  rows             123456",
        "  oldest event     2025-12-31T00:00:00Z",
        "  newest event     2026-01-01T00:00:01Z",
        "  cutoff           2025-12-31T23:00:00Z (stored-bytes limit)",
        "  events/s         12.5",
        "  bytes/s          2 MiB",
        "  running queries  1 of 4",
    ]
    code, out, _ = run(
        capsys,
        "datasets",
        "describe",
        "ci",
        *addresses(address, "ingest", "quota"),
        "--format",
        "json",
    )
    described = json.loads(out)
    assert described["dataset"]["generation"] == 2
    assert described["limits"]["max_stored_bytes"] == 4 * 1024**3
    assert described["usage"] == {
        "dataset": "ci",
        "bytes": 3 * 1024**3,
        "replica_bytes": 6 * 1024**3,
        "rows": 123456,
        "oldest": "2025-12-31T00:00:00.000000Z",
        "newest": "2026-01-01T00:00:01.500000Z",
        "events_per_second": 12.5,
        "bytes_per_second": 2 * 1024**2,
        "cutoff": "2025-12-31T23:00:00.000000Z",
        "cutoff_reason": "stored_bytes",
        "running_queries": 1,
    }


def test_describe_of_an_empty_dataset_shows_its_limits(
    capsys: pytest.CaptureFixture[str], fake: tuple[Fake, str]
) -> None:
    _, address = fake
    code, out, _ = run(
        capsys,
        "datasets",
        "describe",
        "ci",
        *addresses(address, "ingest", "quota"),
        "--format",
        "json",
    )
    assert code == 0
    described = json.loads(out)
    assert described["limits"]["retention_seconds"] == 30 * 86400
    assert described["usage"]["bytes"] == 0 and described["usage"]["oldest"] is None
    assert described["usage"]["cutoff"] is None and described["usage"]["cutoff_reason"] is None


def test_unknown_dataset_exits_2(
    capsys: pytest.CaptureFixture[str], fake: tuple[Fake, str]
) -> None:
    _, address = fake
    for argv in (["datasets", "describe", "nope"], ["usage", "nope"], ["quota", "get", "nope"]):
        code, out, err = run(capsys, *argv, *addresses(address, *SERVICES[argv[0]]))
        assert (code, out) == (2, "") and err == "error: no dataset 'nope'\n"


def test_usage_table_and_json(capsys: pytest.CaptureFixture[str], fake: tuple[Fake, str]) -> None:
    service, address = fake
    service.usages = [usage_of_ci(), quota_pb2.DatasetUsage(dataset="aa", rows=3, bytes=1500)]
    code, out, _ = run(capsys, "usage", *addresses(address, "quota"))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split("  ")[0] == "dataset"
    assert lines[2].split() == [
        "aa", "1.46", "KiB", "0", "B", "3", "-", "-", "0", "0", "B", "0", "none",
    ]  # fmt: skip
    assert "3 GiB (75% of 4 GiB)" in lines[3] and "1 of 4" in lines[3]
    assert "2025-12-31T23:00:00Z (stored-bytes limit)" in lines[3]
    assert lines[-1] == "(2 datasets)"
    code, out, _ = run(capsys, "usage", *addresses(address, "quota"), "--format", "json")
    usages = json.loads(out)["datasets"]
    assert [u["dataset"] for u in usages] == ["ci", "aa"]
    assert usages[0]["limits"]["max_concurrent_queries"] == 4
    assert usages[0]["cutoff_reason"] == "stored_bytes"


def deletes(service: Fake) -> int:
    return sum(isinstance(r, ingest_pb2.DeleteDatasetRequest) for r in service.requests)


def test_delete_is_not_retried(capsys: pytest.CaptureFixture[str], fake: tuple[Fake, str]) -> None:
    service, address = fake
    service.failures["DeleteDataset"] = 1
    code, _, err = run(capsys, "datasets", "delete", "ci", "--yes", *addresses(address, "ingest"))
    assert (code, err) == (
        1,
        "error: busy: the cluster cannot answer for now; try again in a moment "
        "(`flakehouse status` shows what is down)\n",
    )
    assert deletes(service) == 1 and "ci" in service.datasets
    code, out, _ = run(
        capsys,
        "datasets",
        "delete",
        "ci",
        "--yes",
        *addresses(address, "ingest"),
        "--format",
        "json",
    )
    assert code == 0 and json.loads(out)["deleted"]["generation"] == 2
    assert deletes(service) == 2 and "ci" not in service.datasets


def test_client_limits_from_a_quota_and_keywords(fake: tuple[Fake, str]) -> None:
    service, address = fake
    with Client(ingest=address, quota=address, retries=0) as client:
        client.create_dataset(
            "web",
            limits=quota_pb2.Quota(events_per_second=10, max_concurrent_queries=2),
            max_concurrent_queries=3,
        )
        with pytest.raises(TypeError, match="not a limit: retention"):
            client.set_quota("web", retention=5)
        with pytest.raises(ValueError, match="at least one limit"):
            client.set_quota("web")
    limits = service.requests[-1].limits
    assert (limits.events_per_second, limits.max_concurrent_queries) == (10, 3)


def test_client_retries_set_quota_but_not_delete(fake: tuple[Fake, str]) -> None:
    service, address = fake
    service.failures = {"SetQuota": 1, "DeleteDataset": 1}
    with Client(ingest=address, quota=address, retries=3) as client:
        assert client.set_quota("ci", max_concurrent_queries=2).max_concurrent_queries == 2
        with pytest.raises(Unavailable):
            client.delete_dataset("ci")
    assert sum(isinstance(r, quota_pb2.SetQuotaRequest) for r in service.requests) == 2
    assert deletes(service) == 1


def test_usage_against_a_limit_is_a_percentage_in_tables_and_a_number_in_json(
    capsys: pytest.CaptureFixture[str], fake: tuple[Fake, str]
) -> None:
    service, address = fake
    usage = usage_of_ci()
    usage.quota.events_per_second, usage.quota.bytes_per_second = 100, 4 * 1024**2
    service.usages = [usage]
    code, out, _ = run(capsys, "usage", *addresses(address, "quota"))
    assert code == 0
    row = out.splitlines()[2]
    assert "3 GiB (75% of 4 GiB)" in row
    assert "12.5 (12.5% of 100)" in row and "2 MiB (50% of 4 MiB)" in row
    code, out, _ = run(capsys, "usage", *addresses(address, "quota"), "--format", "json")
    [shown] = json.loads(out)["datasets"]
    assert (shown["events_per_second"], shown["limits"]["events_per_second"]) == (12.5, 100)
    assert (shown["bytes"], shown["limits"]["max_stored_bytes"]) == (3 * 1024**3, 4 * 1024**3)
