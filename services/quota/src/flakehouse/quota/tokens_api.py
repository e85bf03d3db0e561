"""TokenService: quota keeps the tokens, as it keeps the limits, in a compacted topic
(`<prefix>.__tokens`, key: the token's name) that every service follows. A secret leaves this
service once, in CreateToken's answer; the topic holds its SHA-256 only. Quota runs one replica:
two creations of one name at once on two replicas would both be acknowledged and the last
written would win."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from flakehouse.auth.v1 import tokens_pb2, tokens_pb2_grpc
from flakehouse.core.errors import AlreadyExists, InvalidArgument, NotFound
from flakehouse.core.grants import DATASET_PATTERN
from flakehouse.core.tokens import (
    ADMIN_PRINCIPAL,
    ROLES,
    SERVICE_PRINCIPAL,
    USE_SUFFIX,
    TokenTable,
    new_secret,
    secret_hash,
)
from flakehouse.quota.token_store import TokenStore

TOKEN_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
USE_GRANULARITY_US = 60_000_000
"""A token's record is rewritten for its last use at most once a minute."""


class TokensApi(tokens_pb2_grpc.TokenServiceServicer):
    def __init__(self, table: TokenTable, store: TokenStore) -> None:
        self._table = table
        self._store = store
        # One change at a time: a creation checks then writes, a revocation writes then
        # forgets; neither may interleave with the other.
        self._lock = asyncio.Lock()

    async def CreateToken(
        self, request: tokens_pb2.CreateTokenRequest, context: Any
    ) -> tokens_pb2.CreateTokenResponse:
        _check(request)
        async with self._lock:
            if self._table.record(request.name) is not None:
                raise AlreadyExists(f"a token named {request.name!r} exists: revoke it first")
            secret = new_secret()
            info = tokens_pb2.TokenInfo(
                name=request.name,
                grants=request.grants,
                cluster_admin=request.cluster_admin,
                created_us=time.time_ns() // 1000,
            )
            record = tokens_pb2.TokenRecord(info=info, secret_sha256=secret_hash(secret))
            await self._store.write(request.name, record.SerializeToString())
            self._table.apply(request.name, record)  # at once here; the others follow
        return tokens_pb2.CreateTokenResponse(token=info, secret=secret)

    async def ListTokens(
        self, request: tokens_pb2.ListTokensRequest, context: Any
    ) -> tokens_pb2.ListTokensResponse:
        return tokens_pb2.ListTokensResponse(tokens=self._table.infos())

    async def RevokeToken(
        self, request: tokens_pb2.RevokeTokenRequest, context: Any
    ) -> tokens_pb2.RevokeTokenResponse:
        async with self._lock:
            record = self._table.record(request.name)
            if record is None:
                raise NotFound(f"no token named {request.name!r}")
            await self._store.write(request.name, None)
            self._table.apply(request.name, None)
            await self._store.write(request.name + USE_SUFFIX, None)
        return tokens_pb2.RevokeTokenResponse(token=record.info)

    async def ReportTokenUse(
        self, request: tokens_pb2.ReportTokenUseRequest, context: Any
    ) -> tokens_pb2.ReportTokenUseResponse:
        await self.record_use(dict(request.last_used_us))
        return tokens_pb2.ReportTokenUseResponse()

    async def record_use(self, used: dict[str, int]) -> None:
        """Writes `<name>#used` for the live tokens used at least a minute after their last
        recorded use. It never touches a token's credential record, so a report crossing a
        revocation cannot bring the token back."""
        async with self._lock:
            for name, used_us in sorted(used.items()):
                if self._table.record(name) is None:
                    continue
                if used_us < self._table.last_used_us(name) + USE_GRANULARITY_US:
                    continue
                value = tokens_pb2.TokenUse(last_used_us=used_us).SerializeToString()
                await self._store.write(name + USE_SUFFIX, value)
                self._table.note_use(name, used_us)


def _check(request: tokens_pb2.CreateTokenRequest) -> None:
    if not TOKEN_NAME.fullmatch(request.name) or request.name in (
        ADMIN_PRINCIPAL,
        SERVICE_PRINCIPAL,
    ):
        raise InvalidArgument(
            f"invalid token name {request.name!r}: use 1 to 63 characters of a-z, 0-9, '_' and "
            f"'-' (not {ADMIN_PRINCIPAL!r} or {SERVICE_PRINCIPAL!r})"
        )
    if not request.grants and not request.cluster_admin:
        raise InvalidArgument("a token needs at least one grant (ROLE:DATASET or cluster-admin)")
    for grant in request.grants:
        if grant.role not in ROLES or not DATASET_PATTERN.fullmatch(grant.pattern):
            raise InvalidArgument(
                f"invalid grant {grant.pattern!r}: the role is read, write or admin and the "
                "dataset a name, a prefix ending in * (team-*) or *"
            )
