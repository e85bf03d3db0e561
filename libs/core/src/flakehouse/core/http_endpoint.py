"""Every service's plain HTTP port: Prometheus metrics (`/metrics`), liveness (`/healthz`: 200
while the process serves) and readiness (`/readyz`: 200 when ready, else 503). Kubernetes probes
ask here because they cannot speak gRPC over TLS. It carries no data and takes no request that
changes anything, so it stays plaintext, bound to the pod network (the chart's NetworkPolicies
admit Prometheus and the kubelet) or to 127.0.0.1 in the local cluster."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes and scrapes every few seconds: not worth a log line each."""


class HttpEndpoint:
    def __init__(self, registry: CollectorRegistry, ready: Callable[[], bool]) -> None:
        self._metrics = make_wsgi_app(registry)
        self._ready = ready
        self._server: WSGIServer | None = None
        self.port = 0

    def start(self, host: str, port: int) -> int:
        self._server = make_server(host, port, self._app, ThreadingWSGIServer, _QuietHandler)
        self.port = self._server.server_port
        threading.Thread(target=self._server.serve_forever, name="http", daemon=True).start()
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return _text(start_response, "200 OK", "ok\n")
        if path == "/readyz":
            if self._ready():
                return _text(start_response, "200 OK", "ready\n")
            return _text(start_response, "503 Service Unavailable", "not ready\n")
        return self._metrics(environ, start_response)  # type: ignore[no-any-return]


def _text(start_response: StartResponse, status: str, body: str) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
    return [body.encode()]
