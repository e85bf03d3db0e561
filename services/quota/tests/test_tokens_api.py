"""TokenService against a recording store: what it writes to the token topic, replayed as every
service's follower replays it. A use report crossing a revocation never brings the token back,
and two creations of one name at once give one token."""

from __future__ import annotations

import asyncio

import pytest

from flakehouse.auth.v1 import tokens_pb2
from flakehouse.core.errors import AlreadyExists
from flakehouse.core.tokens import USE_SUFFIX, TokenTable, new_secret
from flakehouse.quota.tokens_api import USE_GRANULARITY_US, TokensApi


class SlowStore:
    """Keeps the records in topic order; each write yields, as a Kafka acknowledgement does."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None]] = []

    async def write(self, key: str, value: bytes | None) -> None:
        await asyncio.sleep(0.01)
        self.records.append((key, value))


def replayed(records: list[tuple[str, bytes | None]]) -> TokenTable:
    """The table a service that followed the topic from its start would hold."""
    table = TokenTable(new_secret())
    for key, value in records:
        if key.endswith(USE_SUFFIX):
            used = tokens_pb2.TokenUse.FromString(value).last_used_us if value else None
            table.note_use(key[: -len(USE_SUFFIX)], used)
        else:
            table.apply(key, tokens_pb2.TokenRecord.FromString(value) if value else None)
    return table


def grant(pattern: str) -> tokens_pb2.CreateTokenRequest:
    role = tokens_pb2.Grant(role=tokens_pb2.ROLE_READ, pattern=pattern)
    return tokens_pb2.CreateTokenRequest(name="ci", grants=[role])


async def test_a_use_report_crossing_a_revocation_does_not_revive_the_token() -> None:
    store = SlowStore()
    api = TokensApi(TokenTable(new_secret()), store)  # type: ignore[arg-type]
    created = await api.CreateToken(grant("a"), None)
    used_at = created.token.created_us + 2 * USE_GRANULARITY_US
    await asyncio.gather(
        api.record_use({"ci": used_at}),
        api.RevokeToken(tokens_pb2.RevokeTokenRequest(name="ci"), None),
    )
    follower = replayed(store.records)
    assert follower.principal(created.secret) is None and follower.infos() == []


async def test_use_is_recorded_apart_from_the_credential_at_most_once_a_minute() -> None:
    store = SlowStore()
    table = TokenTable(new_secret())
    api = TokensApi(table, store)  # type: ignore[arg-type]
    created = await api.CreateToken(grant("a"), None)
    start = created.token.created_us
    for used_us in (start + USE_GRANULARITY_US, start + USE_GRANULARITY_US + 5, start + 10**9):
        await api.record_use({"ci": used_us, "unknown": used_us})
    assert [key for key, _ in store.records] == ["ci", "ci#used", "ci#used"]
    [info] = (await api.ListTokens(tokens_pb2.ListTokensRequest(), None)).tokens
    assert info.last_used_us == start + 10**9
    assert replayed(store.records).infos() == [info]


async def test_two_creations_of_one_name_at_once_make_one_token() -> None:
    api = TokensApi(TokenTable(new_secret()), SlowStore())  # type: ignore[arg-type]
    results = await asyncio.gather(
        api.CreateToken(grant("a"), None), api.CreateToken(grant("b"), None), return_exceptions=True
    )
    assert sorted(type(r).__name__ for r in results) == ["AlreadyExists", "CreateTokenResponse"]
    with pytest.raises(AlreadyExists):
        await api.CreateToken(grant("c"), None)
