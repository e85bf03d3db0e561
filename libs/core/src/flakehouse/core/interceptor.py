"""The one place where exceptions become gRPC statuses, and where every RPC is counted and timed."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

from flakehouse.core.errors import RETRY_AFTER_KEY, FlakehouseError

log = logging.getLogger(__name__)


class RpcMetrics:
    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            f"flakehouse_{service}_grpc_requests_total",
            "RPCs handled, by method and status code.",
            ["method", "code"],
            registry=registry,
        )
        self.latency = Histogram(
            f"flakehouse_{service}_grpc_request_duration_seconds",
            "Time to handle an RPC, by method.",
            ["method"],
            registry=registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )


# ServerInterceptor is generic in grpc-stubs only: the runtime class cannot be subscripted.
class ErrorInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Maps FlakehouseError to its status code with its message; anything else becomes INTERNAL
    with a generic message and a logged stack trace, so internals never leak to callers."""

    def __init__(self, metrics: RpcMetrics) -> None:
        self._metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method.rsplit("/", 1)[-1]
        return rewrapped(
            handler,
            lambda behavior: self._wrap_unary(method, behavior),
            lambda behavior: self._wrap_stream(method, behavior),
        )

    def _wrap_unary(self, method: str, behavior: Any) -> Any:
        async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            async with self._handled(method, context):
                return await behavior(request, context)

        return wrapper

    def _wrap_stream(self, method: str, behavior: Any) -> Any:
        async def wrapper(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            async with self._handled(method, context):
                async for item in behavior(request, context):
                    yield item

        return wrapper

    @contextlib.asynccontextmanager
    async def _handled(
        self, method: str, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[None]:
        """Times the call, counts it by status, and turns exceptions into statuses."""
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            yield
        except grpc.aio.AbortError:
            code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        except Exception as exc:
            code = status_of(exc)
            await _abort(method, exc, code, context)
        finally:
            self._metrics.latency.labels(method).observe(time.perf_counter() - started)
            self._metrics.requests.labels(method, code.name).inc()


def rewrapped(
    handler: Any, wrap_unary: Callable[[Any], Any], wrap_stream: Callable[[Any], Any]
) -> Any:
    """`handler` with its behavior wrapped: by wrap_unary when it answers one response, by
    wrap_stream when it streams them (whatever the requests are)."""
    serializers = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(wrap_unary(handler.unary_unary), **serializers)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(wrap_unary(handler.stream_unary), **serializers)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            wrap_stream(handler.unary_stream), **serializers
        )
    return grpc.stream_stream_rpc_method_handler(wrap_stream(handler.stream_stream), **serializers)


def status_of(exc: Exception) -> grpc.StatusCode:
    return (
        grpc.StatusCode[exc.status]
        if isinstance(exc, FlakehouseError)
        else grpc.StatusCode.INTERNAL
    )


async def _abort(
    method: str,
    exc: Exception,
    code: grpc.StatusCode,
    context: grpc.aio.ServicerContext[Any, Any],
) -> None:
    """Ends the call with `code`; always raises."""
    if isinstance(exc, FlakehouseError):
        trailing: tuple[tuple[str, str], ...] = ()
        if exc.retry_after_ms is not None:
            trailing = ((RETRY_AFTER_KEY, str(exc.retry_after_ms)),)
        log.info("%s failed: %s", method, exc.message, extra={"code": code.name})
        await context.abort(code, exc.message, trailing_metadata=trailing)
    log.error("%s failed unexpectedly", method, exc_info=exc)
    await context.abort(code, "internal error; see the service's log")
