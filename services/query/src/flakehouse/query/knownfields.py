"""Fields no event has: per dataset, the field names storage knows (from the DESCRIBE fan-out),
so that `WHERE statuz = 'failed'` is an error naming `status` rather than an answer of 0."""

from __future__ import annotations

import asyncio
import difflib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from flakehouse.query.sql.errors import QueryError
from flakehouse.query.sql.locate import field_positions
from flakehouse.query.sql.parsing import DATASET_NAME

log = logging.getLogger(__name__)

FIELDS_TTL_S = 60.0
"""How long a dataset's known fields answer without asking storage again. Fields only come (a
new one misses the cache and refreshes it at once); they go only when retention deletes the last
event holding one, and until the entry expires such a field reads as NULL, as it always did."""

REFRESH_TIMEOUT_S = 1.0
"""Deadline of a refresh: a DescribeFields per partition, from segment metadata. Partitions that
do not answer in time make it partial, and a partial refresh never refuses a field."""

SUGGESTIONS = 3


@dataclass(frozen=True)
class KnownFields:
    """What a DESCRIBE fan-out said about a dataset's fields."""

    names: frozenset[str]
    events: int
    """Events the partitions that answered hold (the count of `timestamp`)."""
    complete: bool
    """Every partition answered."""
    generation: int
    """The incarnation of the dataset name that was described."""

    @property
    def conclusive(self) -> bool:
        """Whether a field missing here is in no event at all: every partition answered, and
        some event exists (over no events, every field is missing; that proves nothing)."""
        return self.complete and self.events > 0


DescribeSource = Callable[[str, float], Awaitable[KnownFields]]
"""(dataset, timeout_s) -> its fields: the DESCRIBE fan-out."""


@dataclass(frozen=True)
class UnknownFields:
    dataset: str
    names: list[str]
    known: frozenset[str]


@dataclass
class _Entry:
    known: KnownFields
    fetched_at: float


class FieldCatalog:
    """The known fields of each dataset, refreshed from storage when a query names a field the
    cache does not know, or its entry is older than `ttl_s`; one refresh in flight per dataset,
    which every query waiting for it shares. A field the cache knows costs no RPC."""

    def __init__(
        self,
        describe: DescribeSource,
        *,
        ttl_s: float = FIELDS_TTL_S,
        refresh_timeout_s: float = REFRESH_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._describe = describe
        self._ttl_s = ttl_s
        self._refresh_timeout_s = refresh_timeout_s
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._refreshing: dict[str, asyncio.Task[KnownFields]] = {}

    def remember(self, dataset: str, known: KnownFields) -> None:
        """Keep what a DESCRIBE statement just learned."""
        now = self._clock()
        self._entries[dataset] = _Entry(known, now)
        # Datasets nobody queries any more (deleted, say) do not stay forever.
        for name in [n for n, e in self._entries.items() if now - e.fetched_at > 10 * self._ttl_s]:
            del self._entries[name]

    async def unknown(
        self, dataset: str, generation: int, fields: Iterable[str], wait_s: float
    ) -> UnknownFields | None:
        """The fields of `fields` that no event of the dataset has, if that can be known;
        None when every one is known, or when storage cannot say for sure (partitions that did
        not answer, no events yet, or no answer within `wait_s`)."""
        wanted = list(fields)
        if not wanted:
            return None
        entry = self._entries.get(dataset)
        if (
            entry is not None
            and entry.known.generation == generation
            and self._clock() - entry.fetched_at < self._ttl_s
            and all(name in entry.known.names for name in wanted)
        ):
            return None
        known = await self._refreshed(dataset, wait_s)
        if known is None or known.generation != generation or not known.conclusive:
            return None
        missing = [name for name in wanted if name not in known.names]
        return UnknownFields(dataset, missing, known.names) if missing else None

    async def _refreshed(self, dataset: str, wait_s: float) -> KnownFields | None:
        task = self._refreshing.get(dataset)
        if task is None:
            task = asyncio.ensure_future(self._refresh(dataset))
            self._refreshing[dataset] = task
            task.add_done_callback(lambda done: self._done(dataset, done))
        try:
            # Shielded: a query that stops waiting must not cancel what others wait for.
            return await asyncio.wait_for(asyncio.shield(task), max(wait_s, 0.001))
        except TimeoutError:
            return None
        except Exception:
            # The check is a help, never a new way for a query to fail.
            log.warning("could not learn the fields of %s", dataset, exc_info=True)
            return None

    async def _refresh(self, dataset: str) -> KnownFields:
        started = self._clock()
        known = await self._describe(dataset, self._refresh_timeout_s)
        self._entries[dataset] = _Entry(known, started)
        return known

    def _done(self, dataset: str, task: asyncio.Task[KnownFields]) -> None:
        if self._refreshing.get(dataset) is task:
            del self._refreshing[dataset]
        if not task.cancelled():
            task.exception()  # retrieved: logged by the waiters, not as "never retrieved"


def unknown_field_error(sql: str, unknown: UnknownFields) -> QueryError:
    """The error for the first unknown field the SQL names, located there, with the known
    fields closest to it."""
    positions = field_positions(sql, set(unknown.names))
    name = min(unknown.names, key=lambda n: (n not in positions, positions.get(n, 0)))
    close = difflib.get_close_matches(name, sorted(unknown.known), n=SUGGESTIONS)
    if close:
        hint = "did you mean " + _either(close) + "?"
    else:
        hint = f"DESCRIBE {_sql_name(unknown.dataset)} lists its fields"
    return QueryError(
        f"unknown field {name}: no event in {unknown.dataset} has it; {hint}", positions.get(name)
    )


def _either(names: list[str]) -> str:
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " or " + names[-1]


def _sql_name(dataset: str) -> str:
    """The dataset as FROM takes it: quoted when it starts with a digit or holds a dash."""
    plain = DATASET_NAME.fullmatch(dataset) and dataset[0].isalpha() and "-" not in dataset
    return dataset if plain else f'"{dataset}"'
