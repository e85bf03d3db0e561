"""Who calls, and whether they may: the interceptor every server runs (DESIGN.md §10). It reads
the one `authorization: Bearer <token>` header, asks the token verifier (local state: no call),
and applies the RPC's rule from flakehouse.core.access; an RPC missing from the table is
refused. The principal is available to the servicer (current_principal) for what only it can
check: a query's datasets, which datasets a listing may show. Refusals name what is missing,
never the token, and are counted by reason."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import Any, Protocol

import grpc
from prometheus_client import CollectorRegistry, Counter

from flakehouse.core.access import RULES, Need, Rule
from flakehouse.core.errors import (
    DeadlineExceeded,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
)
from flakehouse.core.grants import Principal, Role, describe
from flakehouse.core.interceptor import rewrapped

MAX_HEADER_CHARS = 512
MAX_NAME_SHOWN = 80
"""A refusal quotes at most this much of a dataset name it was sent (which may be anything)."""
STREAM_RECHECK_S = 5.0
"""How often the caller of a long stream of answers is checked again."""
FIRST_MESSAGE_S = 60.0
"""How long a stream that authenticated may take to send the first message it is judged by."""
HOW_TO_SEND = (
    "send `authorization: Bearer <token>` (flakehouse: --token, FLAKEHOUSE_TOKEN or the "
    "cluster file's token_file)"
)

current_principal: ContextVar[Principal | None] = ContextVar("principal", default=None)


class TokenVerifier(Protocol):
    def principal(self, secret: str) -> Principal | None:
        """The principal a token's secret stands for; None for an unknown or revoked one."""
        ...


def principal() -> Principal:
    """The caller of the RPC being served (the interceptor has authenticated it)."""
    caller = current_principal.get()
    if caller is None:
        raise Unauthenticated("no authenticated caller")
    return caller


def require(role: Role, dataset: str, purpose: str = "") -> None:
    """For what only the servicer knows (a query's dataset): PermissionDenied unless the caller
    holds `role` on `dataset`; `purpose` says why, when the RPC alone does not."""
    caller = principal()
    if not caller.may(role, dataset):
        wanted = f"{role.name.lower()} on dataset {dataset[:MAX_NAME_SHOWN]!r}"
        raise denied(caller, f"{wanted} {purpose}" if purpose else wanted)


def require_cluster_admin(why: str) -> None:
    caller = principal()
    if not (caller.cluster_admin or caller.service):
        raise denied(caller, f"cluster-admin ({why})")


def readable(datasets: list[str]) -> set[str]:
    """Those of `datasets` the caller may read: what a listing shows."""
    caller = principal()
    return {name for name in datasets if caller.may(Role.READ, name)}


def denied(caller: Principal, wanted: str) -> PermissionDenied:
    return PermissionDenied(
        f"token {caller.name!r} does not grant {wanted}; it grants {describe(caller)}"
    )


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(
        self,
        service: str,
        verifier: TokenVerifier,
        registry: CollectorRegistry,
        rules: dict[str, Rule] = RULES,
    ) -> None:
        self._verifier = verifier
        self._rules = rules
        self._failures = Counter(
            f"flakehouse_{service}_auth_failures_total",
            "Calls refused by authentication or authorization, by reason.",
            ["reason"],
            registry=registry,
        )

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        rule = self._rules.get(method)
        if handler is None or (rule is not None and rule.need is Need.PUBLIC):
            return handler
        metadata = handler_call_details.invocation_metadata or ()

        def authenticate() -> Principal:
            if rule is None:
                self._failures.labels("unlisted").inc()
                raise PermissionDenied(f"{method} is not open to any caller")
            return self._authenticate(metadata)

        def authorize(caller: Principal, request: Any) -> Principal:
            assert rule is not None
            self._authorize(caller, rule, request)
            return caller

        return rewrapped(
            handler,
            lambda behavior: _guard_unary(behavior, authenticate, authorize),
            lambda behavior: _guard_stream(behavior, authenticate, authorize),
        )

    def _authenticate(self, metadata: Sequence[tuple[str, str | bytes]]) -> Principal:
        values = [value for key, value in metadata if key == "authorization"]
        if not values:
            self._failures.labels("missing").inc()
            raise Unauthenticated(f"no token: {HOW_TO_SEND}")
        if len(values) > 1:
            self._failures.labels("malformed").inc()
            raise Unauthenticated(f"{len(values)} authorization headers: send exactly one")
        value = values[0]
        scheme, _, secret = value.partition(" ") if isinstance(value, str) else ("", "", "")
        well_formed = (
            len(value) <= MAX_HEADER_CHARS
            and scheme.lower() == "bearer"
            and secret
            and secret.isascii()
            and secret.isprintable()
            and " " not in secret
        )
        if not well_formed:
            self._failures.labels("malformed").inc()
            raise Unauthenticated(f"the authorization header is not a bearer token: {HOW_TO_SEND}")
        caller = self._verifier.principal(secret)
        if caller is None:
            self._failures.labels("unknown").inc()
            raise Unauthenticated("the token is not valid: unknown, or revoked")
        return caller

    def _authorize(self, caller: Principal, rule: Rule, request: Any) -> None:
        need = rule.need
        if need is Need.AUTHENTICATED or (caller.service and rule.services):
            return
        if need is Need.CLUSTER_ADMIN and caller.cluster_admin:
            return
        if need is Need.DATASET and rule.role is not None:
            dataset = _field(request, rule.field)
            if caller.may(rule.role, dataset):
                return
            wanted = f"{rule.role.name.lower()} on dataset {dataset[:MAX_NAME_SHOWN]!r}"
        elif need is Need.SERVICE:
            wanted = "the services' own credentials (a user's token never reaches this RPC)"
        else:
            wanted = "cluster-admin"
        self._failures.labels("denied").inc()
        raise denied(caller, wanted)


def _field(request: Any, path: str) -> str:
    """The dataset a request names at `path`; InvalidArgument when it names none (no message at
    all, or a first message that is not the header that carries it)."""
    if request is None:
        raise InvalidArgument(f"the call sent no message: its first must carry {path}")
    value = request
    for name in path.split("."):
        if not isinstance(getattr(value, name), str) and not value.HasField(name):
            raise InvalidArgument(f"the first message must carry {path}")
        value = getattr(value, name)
    return str(value)


def _guard_unary(
    behavior: Any,
    authenticate: Callable[[], Principal],
    authorize: Callable[[Principal, Any], Principal],
) -> Any:
    async def guarded(request: Any, context: Any) -> Any:
        request = await _admitted(request, authenticate, authorize)
        return await behavior(request, context)

    return guarded


def _guard_stream(
    behavior: Any,
    authenticate: Callable[[], Principal],
    authorize: Callable[[Principal, Any], Principal],
) -> Any:
    async def guarded(request: Any, context: Any) -> AsyncIterator[Any]:
        # A stream of answers to one request may last for days (another cluster's link
        # pulling, a watch): its caller is checked again, by the same rule, every
        # STREAM_RECHECK_S, so that a revoked token or a withdrawn grant ends it.
        unary = not hasattr(request, "__aiter__")
        admitted = await _admitted(request, authenticate, authorize)
        checked = time.monotonic()
        # Closed when the check fails: what the stream holds (a consumer, a slot) goes at once.
        async with contextlib.aclosing(behavior(admitted, context)) as responses:
            async for response in responses:
                if unary and time.monotonic() - checked >= STREAM_RECHECK_S:
                    authorize(authenticate(), request)
                    checked = time.monotonic()
                yield response

    return guarded


async def _admitted(
    request: Any,
    authenticate: Callable[[], Principal],
    authorize: Callable[[Principal, Any], Principal],
) -> Any:
    """The request once its caller is admitted. The token is checked before anything is read;
    a streamed request is then judged by its first message (an upload's header), which must come
    within FIRST_MESSAGE_S and which the servicer reads as if nothing happened."""
    caller = authenticate()
    if not hasattr(request, "__aiter__"):
        current_principal.set(authorize(caller, request))
        return request
    iterator = aiter(request)
    try:
        async with asyncio.timeout(FIRST_MESSAGE_S):
            first = await anext(iterator)
    except StopAsyncIteration:
        first = None
    except TimeoutError:
        raise DeadlineExceeded(f"no message within {FIRST_MESSAGE_S:g}s") from None
    current_principal.set(authorize(caller, first))

    async def replay() -> AsyncIterator[Any]:
        if first is not None:
            yield first
        async for message in iterator:
            yield message

    return replay()
