"""python -m flakehouse.console: the page and the JSON API on one HTTP(S) port, metrics and
probes on the plain metrics port, JSON logs on stderr, a graceful stop on SIGTERM."""

from __future__ import annotations

import logging

import uvicorn
from prometheus_client import CollectorRegistry

from flakehouse.console.app import create_app
from flakehouse.console.settings import ConsoleSettings
from flakehouse.core.http_endpoint import HttpEndpoint
from flakehouse.core.logging import configure_logging
from flakehouse.core.settings import load_settings

log = logging.getLogger("flakehouse.console")


def main() -> None:
    settings = load_settings(ConsoleSettings)
    configure_logging("console", settings.log_level)
    registry = CollectorRegistry()
    config = uvicorn.Config(
        create_app(settings, registry),
        host=settings.host,
        port=settings.port,
        log_config=None,  # the root logger's JSON handler, as every service
        access_log=False,  # requests are counted in metrics instead of a line each
        ssl_certfile=str(settings.tls_cert_file) if settings.tls_cert_file else None,
        ssl_keyfile=str(settings.tls_key_file) if settings.tls_key_file else None,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    http = HttpEndpoint(registry, lambda: server.started)
    metrics_port = http.start(settings.metrics_host, settings.metrics_port)
    log.info(
        "console starting",
        extra={"port": settings.port, "metrics_port": metrics_port, "https": settings.serves_https},
    )
    try:
        server.run()
    finally:
        http.stop()


main()
