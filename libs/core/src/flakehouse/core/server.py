"""The aio gRPC server every service runs: interceptors, health, reflection, a Prometheus
endpoint, and a graceful shutdown on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from flakehouse.core.authn import AuthInterceptor, TokenVerifier
from flakehouse.core.channel import CHANNEL_OPTIONS
from flakehouse.core.http_endpoint import HttpEndpoint
from flakehouse.core.interceptor import ErrorInterceptor, RpcMetrics
from flakehouse.core.logging import configure_logging
from flakehouse.core.settings import ServiceSettings, load_settings
from flakehouse.core.tls import CertificateFiles

log = logging.getLogger(__name__)


LIVENESS_SERVICE = "liveness"
"""Health service name that is SERVING from start to shutdown, whatever the readiness: what a
liveness probe asks (a storage node catching up is alive but not ready, and must not be
restarted for it). Readiness probes ask for the overall status, service ""."""


class GrpcServer:
    """Owns a service's grpc.aio server (TLS only) and its HTTP endpoint (metrics and probes).
    Health starts NOT_SERVING; the app says when it is ready with set_serving(True).
    `LIVENESS_SERVICE` is SERVING as soon as the server runs."""

    def __init__(
        self,
        service: str,
        settings: ServiceSettings,
        registry: CollectorRegistry,
        tokens: TokenVerifier,
    ):
        self.service = service
        self.settings = settings
        self.registry = registry
        # The error interceptor is outermost: it turns the auth interceptor's refusals into
        # statuses like any other error.
        self.server = grpc.aio.server(
            interceptors=[
                ErrorInterceptor(RpcMetrics(service, registry)),
                AuthInterceptor(service, tokens, registry),
            ],
            options=CHANNEL_OPTIONS,
        )
        # grpc-stubs' health.pyi leaves out the `aio` submodule that health.py imports.
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self._names: list[str] = []
        self._ready = False
        self._http = HttpEndpoint(registry, lambda: self._ready)
        self.port = 0
        self.metrics_port = 0

    def add(self, adder: Callable[[Any, grpc.aio.Server], None], servicer: Any, name: str) -> None:
        """Registers a servicer; `name` is its full service name, for health and reflection."""
        adder(servicer, self.server)
        self._names.append(name)

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.port}"

    async def start(self) -> None:
        reflection.enable_server_reflection(
            [
                *self._names,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ],
            self.server,
        )
        certificate = CertificateFiles(self.settings.tls_cert_file, self.settings.tls_key_file)
        self.port = self.server.add_secure_port(
            f"{self.settings.host}:{self.settings.port}", certificate.server_credentials()
        )
        if self.port == 0:
            raise OSError(f"cannot bind {self.settings.host}:{self.settings.port}")
        await self.set_serving(False)
        await self.health.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        await self.server.start()
        self.metrics_port = self._http.start(self.settings.metrics_host, self.settings.metrics_port)
        log.info(
            "%s listening",
            self.service,
            extra={
                "grpc": self.address,
                "metrics": f"{self.settings.metrics_host}:{self.metrics_port}",
            },
        )

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ["", *self._names]:
            await self.health.set(name, status)
        self._ready = serving

    async def stop(self) -> None:
        """NOT_SERVING first so load balancers stop sending, then give in-flight calls the grace."""
        self._ready = False
        await self.health.enter_graceful_shutdown()
        await self.server.stop(self.settings.shutdown_grace_s)
        self._http.stop()


class App(Protocol):
    """What run_app drives: the composition root of a service."""

    failed: asyncio.Event

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def run_app(app: App) -> None:
    """Starts the app, waits for SIGTERM/SIGINT or a crashed background task, then stops it."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await app.start()
    try:
        waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(app.failed.wait())]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
    finally:
        log.info("shutting down")
        await app.stop()
    if app.failed.is_set():
        raise SystemExit(1)


S = TypeVar("S", bound=ServiceSettings)


def service_main(service: str, settings_cls: type[S], make_app: Callable[[S], App]) -> None:
    """The whole of a service's __main__: settings, logging, then the app until a signal."""
    settings = load_settings(settings_cls)
    configure_logging(service, settings.log_level)

    async def main() -> None:
        # Built inside the loop: aiokafka and grpc.aio objects bind to the running loop.
        await run_app(make_app(settings))

    asyncio.run(main())


def service_name(file_descriptor: Any, short_name: str) -> str:
    """Full name of a service from a generated *_pb2 module's DESCRIPTOR."""
    return str(file_descriptor.services_by_name[short_name].full_name)
