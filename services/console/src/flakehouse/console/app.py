"""The console's composition root: the ASGI app (pages, assets, the JSON API) with its security
headers and request metrics."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flakehouse.console.api import ConsoleApi
from flakehouse.console.clients import ClientPool
from flakehouse.console.metrics import ConsoleMetrics
from flakehouse.console.pages import PAGE_PATHS, SECURITY_HEADERS, page_routes
from flakehouse.console.settings import ConsoleSettings


def route_label(path: str) -> str:
    """A bounded label for a path: the route, not the dataset or file asked for."""
    if path in PAGE_PATHS:
        return path
    if path.startswith("/static/"):
        return "/static"
    if path.startswith("/api/v1/datasets/"):
        if path.endswith("/uploads"):
            return "/api/v1/datasets/{name}/uploads"
        return "/api/v1/datasets/{name}"
    if path in ("/api/v1/session", "/api/v1/datasets", "/api/v1/query", "/api/v1/flaky"):
        return path
    return "other"


class HeadersAndMetrics:
    """Pure ASGI (a BaseHTTPMiddleware would hide a closed connection from the query route,
    which cancels the query when its page goes away)."""

    def __init__(self, app: ASGIApp, metrics: ConsoleMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self.headers = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = route_label(scope["path"])
        started = time.monotonic()
        code = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
                message["headers"] = [*message.get("headers", []), *self.headers]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            self.metrics.requests.labels(route, str(code)).inc()
            self.metrics.request_seconds.labels(route).observe(time.monotonic() - started)


def create_app(settings: ConsoleSettings, registry: CollectorRegistry) -> ASGIApp:
    metrics = ConsoleMetrics(registry)
    clients = ClientPool(settings)
    api = ConsoleApi(settings, clients, metrics)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        clients.close()

    app = Starlette(routes=[*api.routes(), *page_routes()], lifespan=lifespan)
    return HeadersAndMetrics(app, metrics)
