"""Authentication and authorization in one interceptor, through a real gRPC server over TLS: the
access table covers every RPC of every proto, grants are checked against the request (a
streamed upload's header included), node RPCs refuse users, malformed metadata is refused
cleanly, and no refusal holds the token."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from prometheus_client import CollectorRegistry

from flakehouse.auth.v1 import tokens_pb2, tokens_pb2_grpc
from flakehouse.core import authn
from flakehouse.core.access import RULES
from flakehouse.core.authn import AuthInterceptor, principal
from flakehouse.core.grants import Grant, Principal, Role, parse_grant
from flakehouse.core.interceptor import ErrorInterceptor, RpcMetrics
from flakehouse.core.tokens import TokenTable, new_secret, secret_hash
from flakehouse.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from flakehouse.quota.v1 import quota_pb2, quota_pb2_grpc
from tests import credentials

SERVICE, ADMIN, READ_A, WRITE_A = (new_secret() for _ in range(4))
PROTOS = Path(__file__).resolve().parents[3] / "protos"


def _proto_modules() -> Iterator[Any]:
    """The generated module of every proto under protos/."""
    for proto in sorted(PROTOS.rglob("*.proto")):
        yield importlib.import_module(
            ".".join(proto.relative_to(PROTOS).with_suffix("").parts) + "_pb2"
        )


def test_every_rpc_of_every_proto_is_in_the_access_table() -> None:
    methods = {
        f"/{service.full_name}/{method.name}"
        for module in [*_proto_modules(), health_pb2, reflection_pb2]
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    assert {m for m in methods if m.startswith("/flakehouse.auth.")}, "the tokens proto is found"
    assert methods - set(RULES) == set(), "RPCs nobody may call: add them to access.RULES"
    assert set(RULES) - methods == set(), "rules of RPCs that no longer exist"


def test_grants_cover_names_patterns_and_everything_and_roles_include_lower_ones() -> None:
    team = Principal("t", (Grant(Role.WRITE, "team-*"), Grant(Role.READ, "shared")))
    assert team.may(Role.READ, "team-a") and team.may(Role.WRITE, "team-")
    assert not team.may(Role.ADMIN, "team-a") and not team.may(Role.READ, "teams")
    assert team.may(Role.READ, "shared") and not team.may(Role.WRITE, "shared")
    assert Principal("all", (Grant(Role.READ, "*"),)).may(Role.READ, "anything")
    assert parse_grant("admin:team-*") == Grant(Role.ADMIN, "team-*")
    assert parse_grant("cluster-admin") is None
    for bad in ("read", "owner:a", "read:A", "read:a*b", "read:", "write:**"):
        with pytest.raises(ValueError, match="expected ROLE:DATASET"):
            parse_grant(bad)


class Quota(quota_pb2_grpc.QuotaServiceServicer):
    async def GetQuota(self, request: Any, context: Any) -> quota_pb2.GetQuotaResponse:
        return quota_pb2.GetQuotaResponse(quota=quota_pb2.Quota(dataset=request.dataset))

    async def SetQuota(self, request: Any, context: Any) -> quota_pb2.SetQuotaResponse:
        return quota_pb2.SetQuotaResponse(quota=request.quota)

    async def AcquireLease(self, request: Any, context: Any) -> quota_pb2.AcquireLeaseResponse:
        return quota_pb2.AcquireLeaseResponse(granted_events=request.events)

    async def GetUsage(self, request: Any, context: Any) -> quota_pb2.GetUsageResponse:
        # What only the servicer can narrow: here, it answers who called.
        return quota_pb2.GetUsageResponse(
            datasets=[quota_pb2.DatasetUsage(dataset=principal().name)]
        )


class Tokens(tokens_pb2_grpc.TokenServiceServicer):
    async def ListTokens(self, request: Any, context: Any) -> tokens_pb2.ListTokensResponse:
        return tokens_pb2.ListTokensResponse()


class Ingest(ingest_pb2_grpc.IngestServiceServicer):
    async def ReadChanges(self, request: Any, context: Any) -> AsyncIterator[Any]:
        while True:  # a link's stream: it never ends on its own
            yield ingest_pb2.ReadChangesResponse(caught_up=True)
            await asyncio.sleep(0.02)

    async def Upload(self, requests: Any, context: Any) -> AsyncIterator[Any]:
        first = await anext(aiter(requests))  # the header the interceptor read is still here
        yield ingest_pb2.UploadResponse(
            result=ingest_pb2.UploadResult(dataset=first.header.dataset)
        )


TABLE: TokenTable | None = None  # the running server's, for the tests that revoke


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, CollectorRegistry]]:
    global TABLE
    TABLE = table = TokenTable(SERVICE, ADMIN)
    for name, secret, grant in (("reader", READ_A, "read:a"), ("writer", WRITE_A, "write:a")):
        parsed = parse_grant(grant)
        assert parsed is not None
        role = {Role.READ: tokens_pb2.ROLE_READ, Role.WRITE: tokens_pb2.ROLE_WRITE}[parsed.role]
        info = tokens_pb2.TokenInfo(name=name, grants=[tokens_pb2.Grant(role=role, pattern="a")])
        table.apply(name, tokens_pb2.TokenRecord(info=info, secret_sha256=secret_hash(secret)))
    registry = CollectorRegistry()
    auth = AuthInterceptor("test", table, registry)
    running = grpc.aio.server(interceptors=[ErrorInterceptor(RpcMetrics("test", registry)), auth])
    quota_pb2_grpc.add_QuotaServiceServicer_to_server(Quota(), running)
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(Ingest(), running)
    tokens_pb2_grpc.add_TokenServiceServicer_to_server(Tokens(), running)
    port = running.add_secure_port("127.0.0.1:0", credentials.server_credentials())
    await running.start()
    yield f"127.0.0.1:{port}", registry
    await running.stop(None)


def _bearer(secret: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {secret}"),)


async def _call(address: str, rpc: str, request: Any, metadata: Any) -> Any:
    async with credentials.aio_channel(address, bearer=False) as channel:
        stub = quota_pb2_grpc.QuotaServiceStub(channel)
        return await getattr(stub, rpc)(request, metadata=metadata, timeout=5)


async def _refused(address: str, rpc: str, request: Any, metadata: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _call(address, rpc, request, metadata)
    return refused.value


async def test_grants_decide_per_dataset_and_node_rpcs_refuse_users(
    server: tuple[str, CollectorRegistry],
) -> None:
    address, registry = server
    get_a, get_b = quota_pb2.GetQuotaRequest(dataset="a"), quota_pb2.GetQuotaRequest(dataset="b")
    assert (await _call(address, "GetQuota", get_a, _bearer(READ_A))).quota.dataset == "a"
    denied = await _refused(address, "GetQuota", get_b, _bearer(READ_A))
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    assert denied.details() == "token 'reader' does not grant read on dataset 'b'; it grants read:a"

    set_a = quota_pb2.SetQuotaRequest(quota=quota_pb2.Quota(dataset="a"))
    refused = await _refused(address, "SetQuota", set_a, _bearer(WRITE_A))
    assert (
        refused.code() == grpc.StatusCode.PERMISSION_DENIED and "cluster-admin" in refused.details()
    )
    assert (await _call(address, "SetQuota", set_a, _bearer(ADMIN))).quota.dataset == "a"

    lease = quota_pb2.AcquireLeaseRequest(dataset="a", events=3)
    for user in (ADMIN, WRITE_A):  # not even the admin: node RPCs are the services' own
        refused = await _refused(address, "AcquireLease", lease, _bearer(user))
        assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "services' own credentials" in refused.details()
    assert (await _call(address, "AcquireLease", lease, _bearer(SERVICE))).granted_events == 3

    usage = await _call(address, "GetUsage", quota_pb2.GetUsageRequest(), _bearer(WRITE_A))
    assert [d.dataset for d in usage.datasets] == ["writer"]  # the servicer knows its caller
    denied_count = registry.get_sample_value(
        "flakehouse_test_auth_failures_total", {"reason": "denied"}
    )
    assert denied_count == 4


async def test_an_upload_is_checked_on_its_header(server: tuple[str, CollectorRegistry]) -> None:
    address, _ = server

    async def upload(dataset: str) -> Any:
        async with credentials.aio_channel(address, bearer=False) as channel:
            call = ingest_pb2_grpc.IngestServiceStub(channel).Upload(
                iter([ingest_pb2.UploadRequest(header=ingest_pb2.UploadHeader(dataset=dataset))]),
                metadata=_bearer(WRITE_A),
                timeout=5,
            )
            return [reply async for reply in call]

    assert [r.result.dataset for r in await upload("a")] == ["a"]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await upload("b")
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "write on dataset 'b'" in refused.value.details()


@pytest.mark.parametrize(
    ("metadata", "says"),
    [
        ((), "no token: send `authorization: Bearer <token>`"),
        ((("authorization", ""),), "not a bearer token"),
        ((("authorization", "Bearer"),), "not a bearer token"),
        ((("authorization", "Bearer "),), "not a bearer token"),
        ((("authorization", "Basic dXNlcjpwYXNz"),), "not a bearer token"),
        ((("authorization", "Bearer " + "x" * 4000),), "not a bearer token"),
        ((("authorization", "Bearer zq9 x7"),), "not a bearer token"),
        (_bearer(READ_A) + _bearer(READ_A), "2 authorization headers: send exactly one"),
        (_bearer("fh_" + "A" * 43), "the token is not valid: unknown, or revoked"),
    ],
)
async def test_bad_credentials_are_unauthenticated_and_never_echoed(
    server: tuple[str, CollectorRegistry], metadata: Any, says: str
) -> None:
    address, _ = server
    refused = await _refused(address, "GetQuota", quota_pb2.GetQuotaRequest(dataset="a"), metadata)
    assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
    assert says in refused.details()
    for _, value in metadata:
        secret = value.partition(" ")[2]
        assert len(secret) < 4 or secret not in refused.details()


async def test_metadata_gRPC_cannot_carry_is_refused_without_an_internal_error(
    server: tuple[str, CollectorRegistry],
) -> None:
    address, _ = server
    request = quota_pb2.GetQuotaRequest(dataset="a")
    huge = await _refused(address, "GetQuota", request, _bearer("x" * 2_000_000))
    assert huge.code() != grpc.StatusCode.INTERNAL
    # gRPC refuses a non-ASCII header value before it leaves the client.
    with pytest.raises(Exception, match=r"execute_batch|Illegal|invalid") as non_ascii:
        await _call(address, "GetQuota", request, _bearer("jeton-é"))
    assert not isinstance(non_ascii.value, grpc.aio.AioRpcError)


async def test_a_revoked_token_stops_working_at_once(server: tuple[str, CollectorRegistry]) -> None:
    table = TokenTable(SERVICE)
    secret = new_secret()
    info = tokens_pb2.TokenInfo(
        name="ci", grants=[tokens_pb2.Grant(role=tokens_pb2.ROLE_READ, pattern="*")]
    )
    table.apply("ci", tokens_pb2.TokenRecord(info=info, secret_sha256=secret_hash(secret)))
    caller = table.principal(secret)
    assert caller is not None and caller.may(Role.READ, "x")
    assert set(table.used_since_report()) == {"ci"} and table.used_since_report() == {}
    table.apply("ci", None)
    table.note_use("ci", 10**15)  # a late use report names a revoked token: nothing comes back
    assert table.principal(secret) is None and table.infos() == []
    assert len(secret) >= 43 and secret.startswith("fh_")  # 256 bits, url-safe base64


async def test_a_stream_is_authenticated_before_it_is_read_and_judged_by_its_header(
    server: tuple[str, CollectorRegistry],
) -> None:
    address, _ = server

    async def silent() -> AsyncIterator[ingest_pb2.UploadRequest]:
        await asyncio.sleep(3600)  # sends nothing: without a token it must not be waited for
        yield ingest_pb2.UploadRequest()

    async def upload(requests: Any, metadata: Any) -> grpc.aio.AioRpcError:
        async with credentials.aio_channel(address, bearer=False) as channel:
            call = ingest_pb2_grpc.IngestServiceStub(channel).Upload(
                requests, metadata=metadata, timeout=10
            )
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                _ = [reply async for reply in call]
            return refused.value

    anonymous = await upload(silent(), ())
    assert anonymous.code() == grpc.StatusCode.UNAUTHENTICATED
    empty = await upload(iter([]), _bearer(WRITE_A))
    assert empty.code() == grpc.StatusCode.INVALID_ARGUMENT, empty
    assert "sent no message" in empty.details()
    chunk_first = await upload(iter([ingest_pb2.UploadRequest(chunk=b"x")]), _bearer(WRITE_A))
    assert chunk_first.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "must carry header.dataset" in chunk_first.details()


async def test_the_services_own_token_cannot_manage_tokens(
    server: tuple[str, CollectorRegistry],
) -> None:
    address, _ = server
    async with credentials.aio_channel(address, bearer=False) as channel:
        stub = tokens_pb2_grpc.TokenServiceStub(channel)
        request = tokens_pb2.ListTokensRequest()
        assert await stub.ListTokens(request, metadata=_bearer(ADMIN), timeout=5) is not None
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ListTokens(request, metadata=_bearer(SERVICE), timeout=5)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "does not grant cluster-admin" in refused.value.details()


async def test_a_revoked_token_ends_a_stream_it_opened(
    server: tuple[str, CollectorRegistry], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(authn, "STREAM_RECHECK_S", 0.1)
    address, _ = server
    async with credentials.aio_channel(address, bearer=False) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        request = ingest_pb2.ReadChangesRequest(dataset="a")
        stream = stub.ReadChanges(request, metadata=_bearer(READ_A))
        await stream.read()
        await asyncio.sleep(0.2)
        await stream.read()  # rechecked by now: still valid
        assert TABLE is not None
        TABLE.apply("reader", None)
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            async with asyncio.timeout(5):
                while True:
                    await stream.read()
    assert ended.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in (ended.value.details() or "")
