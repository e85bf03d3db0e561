"""The CLI starts without the services' machinery: what `flakehouse --help`, `--version` and a
query import, seen in a fresh interpreter. The start-up times are in benchmarks/startup.py."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from flakehouse.common.v1 import events_pb2
from flakehouse.events.columns import to_value_column
from flakehouse.query.v1 import query_pb2, query_pb2_grpc
from libs.client.tests.fake_servers import serving

pytestmark = pytest.mark.processes

NEVER = (
    "flakehouse.core.server",
    "flakehouse.core.settings",
    "pydantic",
    "pydantic_settings",
    "prometheus_client",
    "numpy",
    # `import grpc` itself imports grpc.aio (its server side included) and the top packages of
    # grpc_health and grpc_reflection: what no client command needs is their servicers.
    "grpc_health.v1",
    "grpc_reflection.v1alpha",
)
"""What the server bootstrap and the services need, and no client command."""
BEFORE_A_CALL = ("grpc", "google.protobuf", "flakehouse.query.v1", "flakehouse.common.v1")
"""What only a command that talks to a service needs (gRPC and the generated messages)."""

RUN_CLI = """
import json, sys
from flakehouse.client.cli import main
code = main(sys.argv[2:])
with open(sys.argv[1], "w") as out:
    json.dump({"code": code, "modules": sorted(sys.modules)}, out)
"""


def imported(tmp_path: Path, *argv: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Runs `flakehouse ARGV` in a fresh interpreter: its output and the modules it imported."""
    report = tmp_path / "modules.json"
    run = subprocess.run(
        [sys.executable, "-c", RUN_CLI, str(report), *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )
    result = json.loads(report.read_text())
    assert result["code"] == 0, run.stderr
    return run, set(result["modules"])


def among(modules: set[str], packages: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in packages))


@pytest.mark.parametrize("option", ["--help", "--version"])
def test_help_and_version_import_no_grpc_protobuf_or_server_code(
    tmp_path: Path, option: str
) -> None:
    run, modules = imported(tmp_path, option)
    if option == "--version":
        assert run.stdout == f"flakehouse {version('flakehouse-client')}\n"
    else:
        assert run.stdout.startswith("usage: flakehouse") and "--version" in run.stdout
    assert among(modules, NEVER + BEFORE_A_CALL) == []


class Query(query_pb2_grpc.QueryServiceServicer):
    """A query service that answers a time column and a count, in columns as the real one."""

    def Query(self, request: Any, context: Any) -> query_pb2.QueryResponse:
        return query_pb2.QueryResponse(
            columns=[
                query_pb2.ResultColumn(name="day", type=events_pb2.VALUE_TYPE_TIMESTAMP),
                query_pb2.ResultColumn(name="runs", type=events_pb2.VALUE_TYPE_INT),
            ],
            column_values=[
                to_value_column([1_763_596_800_000_000]),
                to_value_column([42]),
            ],
        )


@pytest.fixture
def query_address() -> Iterator[str]:
    with serving(Query(), query_pb2_grpc.add_QueryServiceServicer_to_server) as address:
        yield address


@pytest.mark.parametrize("output", ["table", "json", "csv"])
def test_a_query_imports_no_server_code(tmp_path: Path, query_address: str, output: str) -> None:
    run, modules = imported(
        tmp_path,
        "query",
        "--query",
        query_address,
        "--format",
        output,
        "--tz",
        "Europe/Paris",
        "SELECT date_trunc('day', timestamp) AS day, count(*) AS runs FROM ci GROUP BY 1",
    )
    assert "2025-11-20T01:00:00.000000+01:00" in run.stdout and "42" in run.stdout
    assert among(modules, NEVER) == []
