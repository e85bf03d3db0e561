"""The catalog of known fields, over a scripted DESCRIBE source: when it asks storage, what it
concludes, and the error a field no event has gets."""

from __future__ import annotations

import asyncio

import pytest

from flakehouse.query.knownfields import (
    FieldCatalog,
    KnownFields,
    UnknownFields,
    unknown_field_error,
)

FIELDS = frozenset({"timestamp", "status", "suite", "name", "duration", "prop.os"})


class Storage:
    """A DESCRIBE source: what each call answers, and how many calls there were."""

    def __init__(self, known: KnownFields | None = None, delay_s: float = 0.0) -> None:
        self.known = known or KnownFields(FIELDS, events=10, complete=True, generation=1)
        self.delay_s = delay_s
        self.calls = 0
        self.fail = False

    async def __call__(self, dataset: str, timeout_s: float) -> KnownFields:
        self.calls += 1
        await asyncio.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("storage exploded")
        return self.known


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_known_field_costs_one_describe_then_none() -> None:
    storage = Storage()
    catalog = FieldCatalog(storage)
    assert await catalog.unknown("ci", 1, ["status", "suite"], 1.0) is None
    assert storage.calls == 1
    for _ in range(5):
        assert await catalog.unknown("ci", 1, ["status", "prop.os"], 1.0) is None
    assert storage.calls == 1


async def test_a_field_no_event_has_is_unknown_after_one_refresh() -> None:
    storage = Storage()
    catalog = FieldCatalog(storage)
    await catalog.unknown("ci", 1, ["status"], 1.0)
    unknown = await catalog.unknown("ci", 1, ["status", "statuz"], 1.0)
    assert unknown is not None and unknown.names == ["statuz"] and unknown.dataset == "ci"
    assert storage.calls == 2  # the cache missed: storage was asked once more, not twice


async def test_a_field_that_arrived_since_the_cache_was_filled_is_found() -> None:
    storage = Storage()
    catalog = FieldCatalog(storage)
    await catalog.unknown("ci", 1, ["status"], 1.0)
    storage.known = KnownFields(FIELDS | {"retries"}, events=11, complete=True, generation=1)
    assert await catalog.unknown("ci", 1, ["retries"], 1.0) is None
    assert await catalog.unknown("ci", 1, ["retries"], 1.0) is None
    assert storage.calls == 2


@pytest.mark.parametrize(
    "known",
    [
        KnownFields(FIELDS, events=10, complete=False, generation=1),  # partitions missing
        KnownFields(frozenset(), events=0, complete=True, generation=1),  # no events yet
        KnownFields(FIELDS, events=10, complete=True, generation=2),  # re-created since
    ],
    ids=["partial", "empty", "other-generation"],
)
async def test_no_error_when_storage_cannot_say_for_sure(known: KnownFields) -> None:
    storage = Storage(known)
    assert await FieldCatalog(storage).unknown("ci", 1, ["statuz"], 1.0) is None


async def test_no_error_when_the_describe_fails_or_is_too_slow() -> None:
    storage = Storage()
    storage.fail = True
    catalog = FieldCatalog(storage)
    assert await catalog.unknown("ci", 1, ["statuz"], 1.0) is None
    slow = Storage(delay_s=0.2)
    catalog = FieldCatalog(slow)
    assert await catalog.unknown("ci", 1, ["statuz"], 0.01) is None
    # The refresh went on without the query that gave up on it, and filled the cache.
    await asyncio.sleep(0.3)
    assert await catalog.unknown("ci", 1, ["status"], 1.0) is None
    assert slow.calls == 1


async def test_concurrent_queries_share_one_refresh() -> None:
    storage = Storage(delay_s=0.05)
    catalog = FieldCatalog(storage)
    answers = await asyncio.gather(
        *(catalog.unknown("ci", 1, ["statuz" if i % 2 else "status"], 1.0) for i in range(20))
    )
    assert storage.calls == 1
    assert [a is None for a in answers] == [i % 2 == 0 for i in range(20)]


async def test_known_fields_expire_and_other_generations_refresh() -> None:
    storage, clock = Storage(), Clock()
    catalog = FieldCatalog(storage, ttl_s=60, clock=clock)
    await catalog.unknown("ci", 1, ["status"], 1.0)
    clock.now += 59
    await catalog.unknown("ci", 1, ["status"], 1.0)
    assert storage.calls == 1
    clock.now += 2
    await catalog.unknown("ci", 1, ["status"], 1.0)
    assert storage.calls == 2
    # The name was deleted and created again: what the old one held says nothing.
    await catalog.unknown("ci", 2, ["status"], 1.0)
    assert storage.calls == 3


async def test_a_describe_statement_fills_the_cache() -> None:
    storage = Storage()
    catalog = FieldCatalog(storage)
    catalog.remember("ci", KnownFields(FIELDS, events=10, complete=True, generation=1))
    assert await catalog.unknown("ci", 1, ["status", "duration"], 1.0) is None
    assert storage.calls == 0


async def test_no_fields_no_question() -> None:
    storage = Storage()
    assert await FieldCatalog(storage).unknown("ci", 1, [], 1.0) is None
    assert storage.calls == 0


def unknown_message(sql: str, names: list[str], dataset: str = "ci") -> str:
    return unknown_field_error(sql, UnknownFields(dataset, names, FIELDS)).describe(sql)


def test_the_error_points_at_the_field_and_names_the_closest_known_one() -> None:
    sql = "SELECT count(*) FROM ci WHERE statuz = 'failed'"
    assert unknown_message(sql, ["statuz"]) == (
        "unknown field statuz: no event in ci has it; did you mean status? (line 1, column 31)"
    )
    grouped = "SELECT statuz, count(*)\nFROM ci GROUP BY statuz"
    assert unknown_message(grouped, ["statuz"]).endswith("(line 1, column 8)")


def test_the_first_unknown_field_in_the_sql_is_the_one_named() -> None:
    sql = "SELECT sutie, count(*) FROM ci WHERE nmae = 'x' GROUP BY sutie"
    message = unknown_message(sql, ["nmae", "sutie"])
    assert message.startswith("unknown field sutie:") and "did you mean suite?" in message
    assert message.endswith("(line 1, column 8)")


def test_explain_errors_point_into_the_original_statement() -> None:
    sql = "EXPLAIN SELECT count(*) FROM ci WHERE prop.oss = 'x'"
    assert unknown_message(sql, ["prop.oss"]) == (
        "unknown field prop.oss: no event in ci has it; did you mean prop.os? (line 1, column 39)"
    )


def test_several_close_fields_are_listed_and_none_says_how_to_list_them() -> None:
    sql = "SELECT count(*) FROM ci WHERE nam = 'x'"
    many = unknown_message(sql, ["nam"])
    assert "did you mean name?" in many
    close = UnknownFields("ci", ["stat"], frozenset({"stats", "state", "status", "start", "x"}))
    message = unknown_field_error("SELECT count(*) FROM ci WHERE stat = 1", close).message
    assert message.endswith("did you mean stats, state or start?")
    far = unknown_message('SELECT count(*) FROM "nightly-2" WHERE zzz = 1', ["zzz"], "nightly-2")
    assert 'no event in nightly-2 has it; DESCRIBE "nightly-2" lists its fields' in far
