"""The JSON API against a fake client: shapes, errors, the cookie, and what each route asks of
the client. The real services answer in tests/test_console.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from flakehouse.client.client import QueryResult, UploadResult
from flakehouse.console.app import create_app, route_label
from flakehouse.console.sessions import COOKIE
from flakehouse.console.settings import ConsoleSettings
from flakehouse.core.errors import (
    Cancelled,
    FlakehouseError,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
)
from flakehouse.query.v1 import query_pb2

GOOD = "fh_good"


class FakeClient:
    """Answers as the query service would for one token: GOOD reads `ci`, anything else is
    unknown."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.queries: list[dict[str, Any]] = []
        self.uploads: list[dict[str, Any]] = []
        self.closed = False

    def _check(self) -> None:
        if self.token != GOOD:
            raise Unauthenticated("the token is not valid: unknown, or revoked")

    def readable_datasets(self) -> list[query_pb2.DatasetInfo]:
        self._check()
        return [query_pb2.DatasetInfo(name="ci", partitions=4)]

    def describe(self, dataset: str) -> query_pb2.DescribeDatasetResponse:
        self._check()
        if dataset != "ci":
            raise PermissionDenied(f"read on dataset {dataset!r} is not granted")
        return query_pb2.DescribeDatasetResponse(dataset="ci")

    def query(
        self,
        sql: str,
        *,
        time_zone: str = "",
        after: Any = None,
        cancelled: threading.Event | None = None,
        **kwargs: Any,
    ) -> QueryResult:
        self._check()
        self.queries.append({"sql": sql, "time_zone": time_zone, "after": after})
        if sql.startswith("SLOW"):
            assert cancelled is not None
            cancelled.wait(10)
            raise Cancelled("the query was cancelled")
        if "bad" in sql:
            raise InvalidArgument("no field bad (line 2, column 8)")
        return QueryResult(
            columns=["t", "n"],
            types=["timestamp", "int"],
            rows=[[datetime(2026, 11, 20, 9, 14, 3, 512345, tzinfo=UTC), 3]],
            partial=True,
            missing_partitions=[{"dataset": "ci", "partition": 2, "reason": "no replica"}],
            stats={"elapsed_ms": 5},
        )

    def upload_files(
        self, files: list[tuple[str, bytes]], *, dataset: str, labels: Any, format: Any
    ) -> list[UploadResult | FlakehouseError]:
        self._check()
        self.uploads.append(
            {"files": files, "dataset": dataset, "labels": labels, "format": format}
        )
        if b"<bad" in files[0][1]:
            return [InvalidArgument(f"{files[0][0]}: not well-formed XML (line 1)")]
        return [
            UploadResult("u1", dataset, 2, {"passed": 2}, {1: 41}, False, "junit", {"parse": 0.1})
        ]

    def close(self) -> None:
        self.closed = True


class FakePool:
    def __init__(self) -> None:
        self.clients: dict[str, FakeClient] = {}
        self.forgotten: list[str] = []

    def client(self, token: str) -> FakeClient:
        return self.clients.setdefault(token, FakeClient(token))

    def forget(self, token: str) -> None:
        self.forgotten.append(token)
        self.clients.pop(token, None)

    def close(self) -> None:
        pass


@pytest.fixture
def settings(tmp_path: Path) -> ConsoleSettings:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read by these tests")
    return ConsoleSettings(
        query_address="127.0.0.1:1", ingest_address="127.0.0.1:2", tls_ca_file=ca
    )


@pytest.fixture
def pool(monkeypatch: pytest.MonkeyPatch) -> FakePool:
    fake = FakePool()
    monkeypatch.setattr("flakehouse.console.app.ClientPool", lambda settings: fake)
    return fake


@pytest.fixture
def http(settings: ConsoleSettings, pool: FakePool) -> Iterator[TestClient]:
    # https: the session cookie is Secure, so a client sends it back over HTTPS only.
    with TestClient(
        create_app(settings, CollectorRegistry()), base_url="https://testserver"
    ) as client:
        yield client


def bearer(token: str = GOOD) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_without_a_token_every_data_route_is_unauthenticated(http: TestClient) -> None:
    for path in ("/api/v1/datasets", "/api/v1/datasets/ci", "/api/v1/query"):
        answer = http.get(path)
        assert answer.status_code == 401, path
        assert answer.json()["error"]["code"] == "UNAUTHENTICATED"


def test_the_session_says_signed_out_without_a_token_and_refuses_a_bad_one(
    http: TestClient,
) -> None:
    assert http.get("/api/v1/session").json() == {"signed_in": False}
    assert http.get("/api/v1/session", headers=bearer("fh_revoked")).status_code == 401


@pytest.mark.parametrize("header", ["Basic abc", "Bearer", "Bearer ", "Bearer " + "x" * 600])
def test_a_malformed_authorization_header_is_refused(http: TestClient, header: str) -> None:
    answer = http.get("/api/v1/datasets", headers={"Authorization": header})
    assert answer.status_code == 401
    assert "Bearer <token>" in answer.json()["error"]["message"]


def test_the_query_answer_is_the_cli_json_shape(http: TestClient, pool: FakePool) -> None:
    answer = http.get(
        "/api/v1/query", params={"sql": "SELECT 1", "time_zone": "Europe/Paris"}, headers=bearer()
    )
    assert answer.status_code == 200
    assert answer.json() == {
        "columns": ["t", "n"],
        "rows": [["2026-11-20T09:14:03.512345Z", 3]],
        "partial": True,
        "missing_partitions": [{"dataset": "ci", "partition": 2, "reason": "no replica"}],
        "freshness": {},
        "truncated": False,
    }
    assert pool.clients[GOOD].queries == [
        {"sql": "SELECT 1", "time_zone": "Europe/Paris", "after": {}}
    ]


def test_with_stats_adds_types_stats_and_nodes(http: TestClient) -> None:
    body = {"sql": "SELECT 1", "with": "stats", "after": {"ci": {"0": 12}}}
    answer = http.post("/api/v1/query", json=body, headers=bearer()).json()
    assert answer["types"] == ["timestamp", "int"]
    assert answer["stats"] == {"elapsed_ms": 5}
    assert answer["nodes"] == []


def test_after_is_passed_as_integers(http: TestClient, pool: FakePool) -> None:
    http.post(
        "/api/v1/query", json={"sql": "SELECT 1", "after": {"ci": {"3": "7"}}}, headers=bearer()
    )
    assert pool.clients[GOOD].queries[0]["after"] == {"ci": {3: 7}}


@pytest.mark.parametrize(
    "after",
    ['{"ci": 3}', "[1]", "not json", '{"ci": {"x": 1}}'],
    ids=["int", "list", "text", "key"],
)
def test_a_bad_after_is_a_clear_400(http: TestClient, after: str) -> None:
    answer = http.get("/api/v1/query", params={"sql": "SELECT 1", "after": after}, headers=bearer())
    assert answer.status_code == 400
    assert answer.json()["error"]["message"].startswith("after")


def test_a_located_sql_error_says_where(http: TestClient) -> None:
    answer = http.get("/api/v1/query", params={"sql": "SELECT\n  bad"}, headers=bearer())
    assert answer.status_code == 400
    assert answer.json() == {
        "error": {
            "code": "INVALID_ARGUMENT",
            "message": "no field bad (line 2, column 8)",
            "line": 2,
            "column": 8,
        }
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"params": {}}, "sql: the query to run is missing"),
        ({"params": {"sql": "  "}}, "sql: the query to run is missing"),
        ({"json": {"sql": "x" * 100_001}}, "sql: longer than 100000 characters"),
    ],
)
def test_a_missing_or_huge_query_is_refused(http: TestClient, kwargs: Any, message: str) -> None:
    method = http.post if "json" in kwargs else http.get
    answer = method("/api/v1/query", headers=bearer(), **kwargs)
    assert (answer.status_code, answer.json()["error"]["message"]) == (400, message)


def test_a_post_must_be_json(http: TestClient) -> None:
    answer = http.post("/api/v1/query", data={"sql": "SELECT 1"}, headers=bearer())
    assert answer.status_code == 400
    assert "application/json" in answer.json()["error"]["message"]


def test_sign_in_sets_an_http_only_strict_cookie_and_the_cookie_then_works(
    http: TestClient,
) -> None:
    answer = http.post("/api/v1/session", json={"token": GOOD})
    assert answer.status_code == 200
    assert answer.json() == {"signed_in": True, "datasets": [{"name": "ci", "partitions": 4}]}
    cookie = answer.headers["set-cookie"]
    assert f"{COOKIE}={GOOD}" in cookie
    for flag in ("HttpOnly", "SameSite=strict", "Secure", "Path=/"):
        assert flag in cookie
    assert http.get("/api/v1/datasets").json() == {"datasets": [{"name": "ci", "partitions": 4}]}
    assert http.get("/api/v1/session").json()["signed_in"] is True
    out = http.delete("/api/v1/session")
    assert out.json() == {"signed_in": False}
    assert http.get("/api/v1/datasets").status_code == 401


def test_a_refused_token_sets_no_cookie_and_is_forgotten(http: TestClient, pool: FakePool) -> None:
    answer = http.post("/api/v1/session", json={"token": "fh_revoked"})
    assert answer.status_code == 401
    assert "set-cookie" not in answer.headers
    assert pool.forgotten == ["fh_revoked"]
    assert http.post("/api/v1/session", json={"token": ""}).status_code == 400


def test_a_dataset_outside_the_grant_is_403(http: TestClient) -> None:
    answer = http.get("/api/v1/datasets/secret", headers=bearer())
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "PERMISSION_DENIED"


def test_pages_and_answers_carry_the_security_headers(http: TestClient) -> None:
    for path in ("/", "/api/v1/datasets"):
        headers = http.get(path).headers
        assert "script-src 'self'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"


def test_a_query_is_cancelled_when_its_request_goes_away(
    settings: ConsoleSettings, pool: FakePool
) -> None:
    """The ASGI app is called directly: the request's receive() says the client left while the
    query runs, and the client's `cancelled` event must be set."""
    import asyncio

    app = create_app(settings, CollectorRegistry())
    sent: list[dict[str, Any]] = []
    disconnect = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if not sent and not disconnect.is_set():
            disconnect.set()
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(0.2)  # the user clicks Cancel
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/api/v1/query",
        "raw_path": b"/api/v1/query",
        "query_string": b"sql=SLOW",
        "headers": [(b"authorization", f"Bearer {GOOD}".encode())],
        "http_version": "1.1",
        "scheme": "http",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 1),
        "root_path": "",
        "app": None,
    }
    started = time.monotonic()
    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    assert time.monotonic() - started < 5, "the query was not cancelled"
    assert sent[0]["status"] == 499


def test_metrics_count_requests_by_route(settings: ConsoleSettings, pool: FakePool) -> None:
    registry = CollectorRegistry()
    with TestClient(create_app(settings, registry)) as http:
        http.get("/api/v1/datasets/ci", headers=bearer())
        http.get("/api/v1/datasets/other", headers=bearer())
    value = registry.get_sample_value(
        "flakehouse_console_requests_total", {"route": "/api/v1/datasets/{name}", "code": "200"}
    )
    assert value == 1


@pytest.mark.parametrize(
    ("path", "label"),
    [
        ("/", "/"),
        ("/static/js/app.js", "/static"),
        ("/api/v1/datasets/ci", "/api/v1/datasets/{name}"),
        ("/api/v1/query", "/api/v1/query"),
        ("/wp-admin", "other"),
    ],
)
def test_route_labels_are_bounded(path: str, label: str) -> None:
    assert route_label(path) == label


def test_settings_refuse_a_certificate_without_its_key(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    with pytest.raises(ValueError, match="both tls_cert_file and tls_key_file"):
        ConsoleSettings(query_address="q:1", tls_ca_file=ca, tls_cert_file=ca)


def test_an_upload_answers_the_cli_ingest_json(http: TestClient, pool: FakePool) -> None:
    answer = http.post(
        "/api/v1/datasets/ci/uploads?filename=r.xml&label=branch=main&label=commit=abc",
        content=b"<testsuite/>",
        headers={**bearer(), "Content-Type": "application/xml"},
    )
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert (report["dataset"], report["files"], report["events"]) == ("ci", 1, 2)
    assert report["uploads"][0]["offsets"] == {"1": 41}
    assert report["rejected"] == []
    assert pool.clients[GOOD].uploads == [
        {
            "files": [("r.xml", b"<testsuite/>")],
            "dataset": "ci",
            "labels": {"branch": "main", "commit": "abc"},
            "format": None,
        }
    ]


@pytest.mark.parametrize(
    ("query", "body", "content_type", "message"),
    [
        ("", b"<bad", "application/xml", "r.xml: not well-formed XML"),
        ("", b"", "application/xml", "the report is empty"),
        ("", b"x", "text/plain", "send the report as one of"),
        ("&label=nolabel", b"x", "application/xml", "label 'nolabel': expected KEY=VALUE"),
        ("&format=csv", b"x", "application/xml", "format: junit or json"),
        ("", b"x" * (15 * 2**20 + 1), "application/xml", "larger than 15 MiB"),
    ],
)
def test_a_bad_upload_is_a_clear_400(
    http: TestClient, query: str, body: bytes, content_type: str, message: str
) -> None:
    answer = http.post(
        f"/api/v1/datasets/ci/uploads?filename=r.xml{query}",
        content=body,
        headers={**bearer(), "Content-Type": content_type},
    )
    assert answer.status_code == 400
    assert message in answer.json()["error"]["message"]


def test_a_huge_json_body_is_refused_before_it_is_read(http: TestClient) -> None:
    answer = http.post(
        "/api/v1/session",
        content=b"{}",
        headers={"Content-Type": "application/json", "Content-Length": str(10**9)},
    )
    assert answer.status_code == 400
    assert "the body is larger than" in answer.json()["error"]["message"]


def test_sign_in_takes_the_token_from_the_body_only(http: TestClient) -> None:
    answer = http.post(f"/api/v1/session?token={GOOD}", json={})
    assert answer.status_code == 400
    assert "set-cookie" not in answer.headers


def test_another_authorization_scheme_leaves_the_cookie_in_charge(http: TestClient) -> None:
    http.post("/api/v1/session", json={"token": GOOD})
    answer = http.get("/api/v1/datasets", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert answer.status_code == 200
