"""The JSON API (`/api/v1/…`): what the page calls, and what scripts and Grafana's JSON data
sources call with `Authorization: Bearer <token>`. Answers are the CLI's `--format json` shapes;
every call runs with the caller's own token, so it answers what that token may read."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flakehouse.client.client import Client, QueryResult
from flakehouse.client.flaky import DEFAULT_MIN_RUNS, flaky_tests, since_interval
from flakehouse.client.ingest_report import IngestReport
from flakehouse.client.output import json_value
from flakehouse.console.clients import ClientPool
from flakehouse.console.errors import error_response, json_error
from flakehouse.console.metrics import ConsoleMetrics
from flakehouse.console.sessions import (
    MAX_TOKEN_CHARS,
    NoToken,
    clear_session,
    request_token,
    set_session,
)
from flakehouse.console.settings import ConsoleSettings
from flakehouse.core.errors import (
    FlakehouseError,
    InvalidArgument,
    Unauthenticated,
    Unimplemented,
)
from flakehouse.events.model import TIMESTAMP
from flakehouse.events.values import TYPE_NAMES

log = logging.getLogger(__name__)

MAX_SQL_CHARS = 100_000
# A query's JSON body: its SQL, its time zone and its offsets.
MAX_JSON_BYTES = MAX_SQL_CHARS * 4 + 64 * 1024
# Uploads buffered at once (each up to MAX_UPLOAD_BYTES): the others wait their turn.
UPLOAD_SLOTS = 4
# Threads for queries (each holds one until the services answer, up to the query timeout), apart
# from anyio's default pool, so that slow queries never keep a sign-in or a listing waiting.
QUERY_THREADS = 32
# A report from the browser goes in one UploadFiles call, whose limit is the ingest service's
# MAX_FILES_REQUEST_BYTES (16 MiB by default); larger files are the CLI's (it streams).
MAX_UPLOAD_BYTES = 15 * 2**20
UPLOAD_TYPES = frozenset(
    {"application/octet-stream", "application/xml", "text/xml", "application/x-ndjson"}
)
Handler = Callable[[Request], Awaitable[Response]]


def answer_json(payload: dict[str, Any], status_code: int = 200) -> Response:
    """JSON with times as RFC 3339 text, as the CLI prints them."""
    body = json.dumps(payload, default=json_value)
    return Response(body, status_code=status_code, media_type="application/json")


def query_json(result: QueryResult, *, with_stats: bool) -> dict[str, Any]:
    """The CLI's `--format json` answer; with_stats adds the column types, the query's stats and
    the nodes that answered (what the page shows under the table)."""
    payload = result.to_json_dict()
    if with_stats:
        payload.update(types=result.types, stats=result.stats, nodes=result.nodes)
    return payload


def parse_after(raw: Any) -> dict[str, dict[int, int]]:
    """`after`: {"dataset": {"partition": offset, …}, …}, as an upload's answer gives them."""
    if raw in (None, "", {}):
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise InvalidArgument("after: expected a JSON object") from None
    if not isinstance(raw, dict):
        raise InvalidArgument('after: expected {"dataset": {"partition": offset}}')
    after: dict[str, dict[int, int]] = {}
    for dataset, offsets in raw.items():
        if not isinstance(offsets, dict):
            raise InvalidArgument(f"after.{dataset}: expected {{partition: offset}}")
        try:
            after[str(dataset)] = {int(p): int(o) for p, o in offsets.items()}
        except (TypeError, ValueError):
            raise InvalidArgument(f"after.{dataset}: partitions and offsets are integers") from None
    return after


async def json_body(request: Request) -> dict[str, Any]:
    """A POST's JSON object, read up to MAX_JSON_BYTES (a bigger body is refused before it is
    all read: it would only fill memory)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise InvalidArgument("send the body as application/json")
    try:
        body = json.loads(await read_body(request, MAX_JSON_BYTES, "the body"))
    except ValueError:
        raise InvalidArgument("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidArgument("the body must be a JSON object")
    return body


async def request_params(request: Request) -> dict[str, Any]:
    """The query string of a GET, the JSON body of a POST (which takes precedence)."""
    params: dict[str, Any] = dict(request.query_params)
    if request.method == "POST":
        params.update(await json_body(request))
    return params


def field_type(name: str, value_type: int) -> str:
    """A field's type as the answers name it: `timestamp` is stored as int microseconds, and
    is a time (DESIGN.md §2)."""
    return "timestamp" if name == TIMESTAMP else TYPE_NAMES.get(value_type, "mixed")


def parse_label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise InvalidArgument(f"label {text!r}: expected KEY=VALUE")
    return key, value


async def read_body(request: Request, limit: int, what: str) -> bytes:
    """The request's body, refused past `limit` bytes: at once when its Content-Length says so,
    else before it is all read."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise InvalidArgument(too_large(what, limit))
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise InvalidArgument(too_large(what, limit))
        chunks.append(chunk)
    if not size:
        raise InvalidArgument(f"{what} is empty")
    return b"".join(chunks)


def too_large(what: str, limit: int) -> str:
    if limit >= 2**20:
        return (
            f"{what} is larger than {limit // 2**20} MiB: upload it with `flakehouse ingest`, "
            "which streams files of any size"
        )
    return f"{what} is larger than {limit // 1024} KiB"


class ConsoleApi:
    def __init__(
        self, settings: ConsoleSettings, clients: ClientPool, metrics: ConsoleMetrics
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.metrics = metrics
        self._upload_slots = asyncio.Semaphore(UPLOAD_SLOTS)
        self._query_threads: anyio.CapacityLimiter | None = None

    def _threads(self) -> anyio.CapacityLimiter:
        """The queries' own threads (made in the event loop, at the first query)."""
        if self._query_threads is None:
            self._query_threads = anyio.CapacityLimiter(QUERY_THREADS)
        return self._query_threads

    def routes(self) -> list[Route]:
        return [
            Route("/api/v1/session", self._guard(self.get_session, public=True), methods=["GET"]),
            Route("/api/v1/session", self._guard(self.sign_in, public=True), methods=["POST"]),
            Route("/api/v1/session", self._guard(self.sign_out, public=True), methods=["DELETE"]),
            Route("/api/v1/datasets", self._guard(self.datasets), methods=["GET"]),
            Route("/api/v1/datasets/{name}", self._guard(self.describe), methods=["GET"]),
            Route("/api/v1/query", self._guard(self.query), methods=["GET", "POST"]),
            Route("/api/v1/flaky", self._guard(self.flaky), methods=["GET"]),
            Route("/api/v1/datasets/{name}/uploads", self._guard(self.upload), methods=["POST"]),
        ]

    def _guard(self, handler: Handler, *, public: bool = False) -> Handler:
        """Errors as JSON with their HTTP status, and the caller's token checked for presence
        (the services judge it) unless the route is public."""

        async def guarded(request: Request) -> Response:
            try:
                if not public:
                    request.state.token = request_token(request)
                return await handler(request)
            except NoToken as exc:
                return json_error("UNAUTHENTICATED", str(exc))
            except FlakehouseError as exc:
                token = getattr(request.state, "token", None)
                if isinstance(exc, Unauthenticated) and token:
                    self.clients.forget(token)
                return error_response(exc)

        return guarded

    def _client(self, request: Request) -> Client:
        return self.clients.client(request.state.token)

    # --- session ------------------------------------------------------------------------------

    async def get_session(self, request: Request) -> Response:
        """Signed out is an answer here, not an error (a page asks on every load); a token
        that is no longer valid is still UNAUTHENTICATED."""
        try:
            request.state.token = request_token(request)
        except NoToken:
            return answer_json({"signed_in": False})
        return answer_json({"signed_in": True, **await self._readable(self._client(request))})

    async def sign_in(self, request: Request) -> Response:
        """Checks the token with the query service (it lists what the token may read), then
        sets the cookie. A refused token sets nothing. The token comes in the JSON body only,
        never in the URL (which proxies log)."""
        token = str((await json_body(request)).get("token") or "").strip()
        if not token or len(token) > MAX_TOKEN_CHARS:
            self.metrics.sign_ins.labels("INVALID_ARGUMENT").inc()
            raise InvalidArgument("paste a token (it starts with fh_)")
        try:
            readable = await self._readable(self.clients.client(token))
        except FlakehouseError as exc:
            self.clients.forget(token)
            self.metrics.sign_ins.labels(exc.status).inc()
            raise
        self.metrics.sign_ins.labels("ok").inc()
        response = answer_json({"signed_in": True, **readable})
        set_session(
            response,
            token,
            secure=self.settings.cookie_secure,
            max_age_s=self.settings.session_max_age_s,
        )
        return response

    async def sign_out(self, request: Request) -> Response:
        with contextlib.suppress(NoToken):
            self.clients.forget(request_token(request))
        response = answer_json({"signed_in": False})
        clear_session(response, secure=self.settings.cookie_secure)
        return response

    # --- datasets -----------------------------------------------------------------------------

    async def datasets(self, request: Request) -> Response:
        return answer_json(await self._readable(self._client(request)))

    @staticmethod
    async def _readable(client: Client) -> dict[str, Any]:
        """{"datasets": [{"name", "partitions"}]}: those the client's token may read."""
        datasets = await anyio.to_thread.run_sync(client.readable_datasets)
        return {"datasets": [{"name": d.name, "partitions": d.partitions} for d in datasets]}

    async def describe(self, request: Request) -> Response:
        client = self._client(request)
        name = request.path_params["name"]
        answer = await anyio.to_thread.run_sync(client.describe, name)
        return answer_json(
            {
                "dataset": answer.dataset,
                "fields": [
                    {"name": f.name, "type": field_type(f.name, f.type), "count": f.count}
                    for f in answer.fields
                ],
                "partial": answer.partial,
                "missing_partitions": [
                    {"dataset": m.dataset, "partition": m.partition, "reason": m.reason}
                    for m in answer.missing_partitions
                ],
            }
        )

    async def upload(self, request: Request) -> Response:
        """One report, the request's body, into dataset `name`, with `label=K=V` parameters
        and an optional `format` (junit or json; else detected) and `filename`: answers what
        `flakehouse ingest --output json` prints, its offsets ready for a query's `after`."""
        if not self.settings.ingest_address:
            raise Unimplemented("this console has no ingest address: upload with the CLI")
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        if content_type not in UPLOAD_TYPES:
            raise InvalidArgument(f"send the report as one of {', '.join(sorted(UPLOAD_TYPES))}")
        params = request.query_params
        labels = dict(parse_label(text) for text in params.getlist("label"))
        fmt = params.get("format") or None
        if fmt not in (None, "junit", "json"):
            raise InvalidArgument("format: junit or json (or leave it out to detect it)")
        filename = params.get("filename") or "upload"
        dataset = request.path_params["name"]
        async with self._upload_slots:
            return await self._upload(request, dataset, filename, labels, fmt)

    async def _upload(
        self,
        request: Request,
        dataset: str,
        filename: str,
        labels: dict[str, str],
        fmt: str | None,
    ) -> Response:
        body = await read_body(request, MAX_UPLOAD_BYTES, "the report")
        client = self._client(request)
        started = time.monotonic()
        (outcome,) = await anyio.to_thread.run_sync(
            lambda: client.upload_files(
                [(filename, body)], dataset=dataset, labels=labels, format=fmt
            ),
            limiter=self._threads(),
        )
        if isinstance(outcome, FlakehouseError):
            raise outcome
        report = IngestReport(dataset)
        report.uploaded(Path(filename), outcome)
        return Response(report.to_json(time.monotonic() - started), media_type="application/json")

    # --- queries ------------------------------------------------------------------------------

    async def query(self, request: Request) -> Response:
        params = await request_params(request)
        sql = params.get("sql")
        if not isinstance(sql, str) or not sql.strip():
            raise InvalidArgument("sql: the query to run is missing")
        if len(sql) > MAX_SQL_CHARS:
            raise InvalidArgument(f"sql: longer than {MAX_SQL_CHARS} characters")
        zone = params.get("time_zone") or ""
        if not isinstance(zone, str):
            raise InvalidArgument("time_zone: expected an IANA name such as Europe/Paris")
        after = parse_after(params.get("after"))
        with_stats = params.get("with") == "stats"
        client = self._client(request)
        started = time.monotonic()
        try:
            result = await self._cancellable(
                request,
                lambda cancelled: client.query(
                    sql, time_zone=zone, after=after, cancelled=cancelled
                ),
            )
        except FlakehouseError as exc:
            self.metrics.queries.labels(exc.status).inc()
            raise
        self.metrics.queries.labels("partial" if result.partial else "ok").inc()
        log.info(
            "query",
            extra={
                "rows": len(result.rows),
                "partial": result.partial,
                "elapsed_s": round(time.monotonic() - started, 3),
            },
        )
        return answer_json(query_json(result, with_stats=with_stats))

    async def flaky(self, request: Request) -> Response:
        params = request.query_params
        dataset = params.get("dataset", "")
        if not dataset:
            raise InvalidArgument("dataset: which dataset to look at")
        since: str | None = params.get("since", "7d")
        if since == "all":
            since = None
        try:
            if since is not None:
                since_interval(since)
            min_runs = int(params.get("min_runs", DEFAULT_MIN_RUNS))
            limit = int(params.get("limit", 50))
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        if min_runs < 1 or limit < 0:
            raise InvalidArgument("min_runs must be 1 or more, limit 0 or more")
        client = self._client(request)
        result = await anyio.to_thread.run_sync(
            lambda: flaky_tests(
                client,
                dataset,
                since,
                limit or None,
                branch=params.get("branch") or None,
                min_runs=min_runs,
            ),
            limiter=self._threads(),
        )
        return answer_json(query_json(result, with_stats=params.get("with") == "stats"))

    async def _cancellable(
        self, request: Request, call: Callable[[threading.Event], QueryResult]
    ) -> QueryResult:
        """Runs `call` in a thread; when the caller goes away (a page's Cancel closes the
        request), the call is cancelled, and with it the query on the services."""
        cancelled = threading.Event()

        async def watch() -> None:
            # Once the body is read, the next message the server sends is the disconnect.
            while (await request.receive())["type"] != "http.disconnect":
                pass
            cancelled.set()

        watcher = asyncio.ensure_future(watch())
        try:
            return await anyio.to_thread.run_sync(call, cancelled, limiter=self._threads())
        finally:
            watcher.cancel()
