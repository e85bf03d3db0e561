"""`flakehouse query`: a partial answer is printed, said on stderr and exits 3, so a script never
takes it for the whole answer; --allow-partial accepts it with exit 0. Through a real gRPC server
that plays the query service."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import pytest

from flakehouse.client import cli
from flakehouse.client.client import Client
from flakehouse.client.tables import PIPED_CELL
from flakehouse.common.v1 import events_pb2
from flakehouse.core.errors import InvalidArgument
from flakehouse.events.columns import to_value_column
from flakehouse.query.v1 import query_pb2, query_pb2_grpc
from libs.client.tests.fake_servers import serving
from tests import credentials


class Query(query_pb2_grpc.QueryServiceServicer):
    def __init__(self) -> None:
        self.partial = True
        self.freshness = query_pb2.Freshness()
        self.truncated = False
        self.time_column = False
        self.times: list[int | None] = [1_763_630_043_512_345, None]
        self.refusal = ""  # RESOURCE_EXHAUSTED with this message, without a retry delay
        self.requests: list[query_pb2.QueryRequest] = []

    def Query(self, request: Any, context: Any) -> query_pb2.QueryResponse:
        self.requests.append(request)
        if self.refusal:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, self.refusal)
        if self.time_column:
            return self._times(request)
        response = query_pb2.QueryResponse(
            columns=[query_pb2.ResultColumn(name="count(*)", type=events_pb2.VALUE_TYPE_INT)],
            rows=[events_pb2.Row(values=[events_pb2.Value(int_value=0)])],
            partial=self.partial,
            freshness=self.freshness,
            truncated=self.truncated,
        )
        if self.partial:
            response.missing_partitions.add(dataset="ci", partition=3, reason="catching up")
        return response

    def _times(self, request: query_pb2.QueryRequest) -> query_pb2.QueryResponse:
        kind = events_pb2.VALUE_TYPE_INT if request.raw_times else events_pb2.VALUE_TYPE_TIMESTAMP
        return query_pb2.QueryResponse(
            columns=[
                query_pb2.ResultColumn(name="h", type=kind),
                query_pb2.ResultColumn(name="n", type=events_pb2.VALUE_TYPE_INT),
            ],
            column_values=[
                to_value_column(self.times),
                to_value_column(list(range(3, 3 + len(self.times)))),
            ],
        )


@pytest.fixture
def query() -> Iterator[tuple[Query, str]]:
    service = Query()
    with serving(service, query_pb2_grpc.add_QueryServiceServicer_to_server) as address:
        yield service, address


def test_a_partial_answer_exits_3_unless_allowed(
    query: tuple[Query, str], capsys: pytest.CaptureFixture[str]
) -> None:
    service, address = query
    sql = "SELECT count(*) FROM ci"
    code = cli.main(["query", "--query", address, "--format", "json", sql])
    out, err = capsys.readouterr()
    assert code == cli.EXIT_PARTIAL == 3
    assert json.loads(out)["partial"] is True  # the answer is still printed
    assert err.startswith("error: partial answer: 1 partition missing")

    code = cli.main(["query", "--query", address, "--allow-partial", sql])
    out, err = capsys.readouterr()
    assert code == 0 and "PARTIAL ANSWER" in out and err == ""

    service.partial = False
    assert cli.main(["query", "--query", address, sql]) == 0


def test_a_stale_answer_says_how_far_behind_it_is(
    query: tuple[Query, str], capsys: pytest.CaptureFixture[str]
) -> None:
    service, address = query
    service.partial = False
    sql = "SELECT count(*) FROM ci"
    assert cli.main(["query", "--query", address, sql]) == 0
    assert capsys.readouterr().err == ""  # fresh: nothing said

    service.freshness = query_pb2.Freshness(
        records_behind=120,
        behind_ms=1400,
        partitions=[
            query_pb2.PartitionFreshness(partition=0, node_id="storage-0"),
            query_pb2.PartitionFreshness(
                partition=3, node_id="storage-1", records_behind=120, behind_ms=1400
            ),
        ],
    )
    assert cli.main(["query", "--query", address, "--format", "json", sql]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["freshness"]["records_behind"] == 120
    assert json.loads(out)["freshness"]["partitions"][1] == {
        "partition": 3,
        "node_id": "storage-1",
        "records_behind": 120,
        "behind_ms": 1400,
    }
    assert err == (
        "note: stale answer: up to 120 records and 1.4 s behind "
        "(partition 3 on storage-1: 120 records, 1.4 s)\n"
    )


def test_an_answer_cut_at_the_default_limit_says_so(
    query: tuple[Query, str], capsys: pytest.CaptureFixture[str]
) -> None:
    service, address = query
    service.partial = False
    sql = "SELECT name FROM ci"
    assert cli.main(["query", "--query", address, "--format", "json", sql]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["truncated"] is False and err == ""

    service.truncated = True
    assert cli.main(["query", "--query", address, "--format", "json", sql]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["truncated"] is True
    assert err == (
        "note: only the first 1 rows are shown (the default LIMIT); more matched: add LIMIT n"
        " (up to 100000), an ORDER BY, or a narrower WHERE\n"
    )


def test_times_are_shown_as_rfc3339_in_utc_unless_raw_times(
    query: tuple[Query, str], capsys: pytest.CaptureFixture[str]
) -> None:
    service, address = query
    service.partial, service.time_column = False, True
    sql = "SELECT time_bucket(timestamp, '1h') AS h, count(*) AS n FROM ci GROUP BY h"
    moment = "2025-11-20T09:14:03.512345Z"
    for fmt, shown in (
        ("json", f'"rows": [["{moment}", 3], [null, 4]]'),
        ("csv", f"h,n\n{moment},3\n,4"),
        ("table", f"{moment}  3\nNULL                         4"),
    ):
        assert cli.main(["query", "--query", address, "--format", fmt, sql]) == 0
        assert shown in capsys.readouterr().out, fmt
    assert not service.requests[-1].raw_times

    assert cli.main(["query", "--query", address, "--raw-times", "--format", "csv", sql]) == 0
    assert capsys.readouterr().out == "h,n\n1763630043512345,3\n,4\n"
    assert service.requests[-1].raw_times


def test_the_client_gives_times_as_utc_datetimes(query: tuple[Query, str]) -> None:
    service, address = query
    service.partial, service.time_column = False, True
    with Client(query=address) as client:
        result = client.query("SELECT …")
        assert result.types == ["timestamp", "int"]
        assert result.rows[0][0] == datetime(2025, 11, 20, 9, 14, 3, 512345, tzinfo=UTC)
        assert result.rows[1][0] is None
        raw = client.query("SELECT …", raw_times=True)
        assert raw.types == ["int", "int"] and raw.rows[0][0] == 1_763_630_043_512_345


# Either side of Paris's two DST changes in 2026 (01:00 UTC on 29 March and 25 October).
AROUND_DST = [
    1_774_744_200_000_000,
    1_774_747_800_000_000,
    1_792_888_200_000_000,
    1_792_891_800_000_000,
]


def test_tz_sends_the_zone_and_shows_times_with_its_offset(
    query: tuple[Query, str], capsys: pytest.CaptureFixture[str]
) -> None:
    service, address = query
    service.partial, service.time_column = False, True
    service.times = [*AROUND_DST, None]
    sql = "SELECT date_trunc('hour', timestamp) AS h, count(*) AS n FROM ci GROUP BY h"
    paris = [
        "2026-03-29T01:30:00.000000+01:00",
        "2026-03-29T03:30:00.000000+02:00",
        "2026-10-25T02:30:00.000000+02:00",
        "2026-10-25T02:30:00.000000+01:00",
    ]
    args = ["query", "--query", address, "--tz", "Europe/Paris", "--format"]

    assert cli.main([*args, "json", sql]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == [
        *([moment, n] for n, moment in enumerate(paris, 3)),
        [None, 7],
    ]
    assert service.requests[-1].time_zone == "Europe/Paris"
    assert cli.main([*args, "csv", sql]) == 0
    assert (
        capsys.readouterr().out
        == "h,n\n" + "".join(f"{moment},{n}\n" for n, moment in enumerate(paris, 3)) + ",7\n"
    )
    assert cli.main([*args, "table", sql]) == 0
    table = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in table[2:7]] == [*paris, "NULL"]

    # --raw-times keeps the integers; the zone still goes with the query (its buckets).
    assert cli.main([*args, "csv", "--raw-times", sql]) == 0
    assert capsys.readouterr().out.splitlines()[1] == f"{AROUND_DST[0]},3"
    assert service.requests[-1].raw_times and service.requests[-1].time_zone == "Europe/Paris"

    # Without --tz: no zone in the request (UTC), times in UTC with Z.
    assert cli.main(["query", "--query", address, "--format", "csv", sql]) == 0
    assert capsys.readouterr().out.splitlines()[1] == "2026-03-29T00:30:00.000000Z,3"
    assert service.requests[-1].time_zone == ""


def test_an_unknown_zone_is_refused_before_the_query_is_sent(
    query: tuple[Query, str], capsys: pytest.CaptureFixture[str]
) -> None:
    service, address = query
    code = cli.main(["query", "--query", address, "--tz", "Europe/Pari", "SELECT 1 FROM ci"])
    assert code == cli.EXIT_BAD_INPUT == 2
    assert capsys.readouterr().err.endswith(
        "error: argument --tz: unknown time zone 'Europe/Pari'; did you mean 'Europe/Paris'?\n"
    )
    with Client(query=address) as client, pytest.raises(InvalidArgument) as raised:
        client.query("SELECT 1 FROM ci", time_zone="Europe/Pari")
    assert raised.value.message == ("unknown time zone 'Europe/Pari'; did you mean 'Europe/Paris'?")
    assert service.requests == []


def test_the_client_gives_times_as_aware_datetimes_in_the_query_zone(
    query: tuple[Query, str],
) -> None:
    service, address = query
    service.partial, service.time_column = False, True
    service.times = [1_763_630_043_512_345, None]
    with Client(query=address) as client:
        result = client.query("SELECT …", time_zone="Asia/Kathmandu")
    moment = result.rows[0][0]
    # A ZoneInfo read from the tzdata package, as the server reads it: not the object that
    # ZoneInfo("Asia/Kathmandu") gives, which may come from the host's files.
    assert isinstance(moment, datetime) and isinstance(moment.tzinfo, ZoneInfo)
    assert moment.tzinfo.key == "Asia/Kathmandu"
    assert moment.isoformat() == "2025-11-20T14:59:03.512345+05:45"
    assert moment == datetime(2025, 11, 20, 9, 14, 3, 512345, tzinfo=UTC)
    assert result.rows[1][0] is None
    assert service.requests[-1].time_zone == "Asia/Kathmandu"


def test_a_query_past_a_limit_is_printed_as_an_error_and_not_retried(
    query: tuple[Query, str], capsys: pytest.CaptureFixture[str]
) -> None:
    service, address = query
    service.refusal = "the query holds more than 1000000 groups (max_groups); narrow the query"
    code = cli.main(["query", "--query", address, "SELECT name, count(*) FROM ci GROUP BY name"])
    out, err = capsys.readouterr()
    assert code == cli.EXIT_FAILED == 1
    assert out == "" and err == f"error: {service.refusal}\n"
    assert len(service.requests) == 1  # the same query would only fail again


# --- the SQL from a file or stdin ------------------------------------------------------------


def test_the_query_comes_from_a_file_or_stdin(
    query: tuple[Query, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    service, address = query
    service.partial = False
    sql = "-- failures per day\nSELECT count(*)\nFROM ci\nWHERE status = 'failed';\n"
    (tmp_path / "q.sql").write_text(sql)
    base = ["query", "--query", address, "--format", "json"]
    assert cli.main([*base, "-f", str(tmp_path / "q.sql")]) == 0
    assert service.requests[-1].sql == sql
    assert cli.main([*base, "--file", str(tmp_path / "q.sql")]) == 0
    assert service.requests[-1].sql == sql
    for argv in (["-"], ["-f", "-"]):
        monkeypatch.setattr("sys.stdin", io.StringIO("SELECT 1 FROM ci"))
        assert cli.main([*base, *argv]) == 0
        assert service.requests[-1].sql == "SELECT 1 FROM ci"
    capsys.readouterr()


@pytest.mark.parametrize(
    ("argv", "stdin", "error"),
    [
        (
            ["-f", "q.sql", "SELECT 1 FROM ci"],
            "",
            "give the query once: as the SQL argument or with -f FILE",
        ),
        ([], "", "no query: give it as the SQL argument, with -f FILE, or on stdin (-)"),
        (["-f", "nowhere.sql"], "", "nowhere.sql: No such file or directory"),
        (["-"], " \n", "stdin: no SQL in it"),
        (["-f", "empty.sql"], "", "empty.sql: no SQL in it"),
    ],
)
def test_a_missing_or_doubled_query_exits_2_before_sending(
    query: tuple[Query, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    argv: list[str],
    stdin: str,
    error: str,
) -> None:
    service, address = query
    monkeypatch.chdir(tmp_path)
    (tmp_path / "q.sql").write_text("SELECT 1 FROM ci")
    (tmp_path / "empty.sql").write_text("")
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    assert cli.main(["query", "--query", address, *argv]) == cli.EXIT_BAD_INPUT
    assert capsys.readouterr().err == f"error: {error}\n"
    assert service.requests == []


# --- tables that fit ---------------------------------------------------------------------------


class Names(query_pb2_grpc.QueryServiceServicer):
    """Answers one row: a 272-character test name, a failure rate and a count."""

    def Query(self, request: Any, context: Any) -> query_pb2.QueryResponse:
        return query_pb2.QueryResponse(
            columns=[
                query_pb2.ResultColumn(name="name", type=events_pb2.VALUE_TYPE_STRING),
                query_pb2.ResultColumn(name="failure_rate", type=events_pb2.VALUE_TYPE_FLOAT),
            ],
            column_values=[to_value_column([LONG_NAME, "short"]), to_value_column([0.25, 0.5])],
        )


LONG_NAME = "test_" + "x" * 267


def test_a_long_name_is_cut_in_tables_only(capsys: pytest.CaptureFixture[str]) -> None:
    server = grpc.server(ThreadPoolExecutor(2))
    query_pb2_grpc.add_QueryServiceServicer_to_server(Names(), server)
    port = server.add_secure_port("127.0.0.1:0", credentials.server_credentials())
    server.start()
    base = ["query", "--query", f"127.0.0.1:{port}", "SELECT name, failure_rate FROM ci"]
    try:
        assert cli.main(base) == 0
        table = capsys.readouterr().out.splitlines()
        assert cli.main([*base, "--full-width"]) == 0
        full = capsys.readouterr().out.splitlines()
        assert cli.main([*base, "--format", "csv"]) == 0
        csv_text = capsys.readouterr().out
        assert cli.main([*base, "--format", "json"]) == 0
        answer = json.loads(capsys.readouterr().out)
    finally:
        server.stop(None)
    # Not a terminal (captured): cells of PIPED_CELL at most, so every row is as wide as that
    # and the failure_rate column, not 272 and more.
    assert [len(line) for line in table[2:4]] == [PIPED_CELL + 2 + len("failure_rate")] * 2
    assert table[2].split()[0] == LONG_NAME[: PIPED_CELL - 1] + "…"
    assert table[2].split()[1] == "0.25"  # a plain SQL answer: its numbers are not guessed at
    assert full[2].split() == [LONG_NAME, "0.25"]
    assert f"{LONG_NAME},0.25" in csv_text and answer["rows"][0] == [LONG_NAME, 0.25]
