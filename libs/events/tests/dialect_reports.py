"""The dialect reports (dialects/*.xml, one per test tool) as events, and small views of them
for the test_dialects_*.py modules."""

from __future__ import annotations

import collections
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flakehouse.events.junit import parse_junit_all
from flakehouse.events.model import Event

DIALECTS = Path(__file__).resolve().parent / "dialects"
UPLOAD = 1_700_000_000_123_456
# What jest and Playwright put between describe titles (U+203A, single right angle quote).
ARROW = "\u203a"


def us(*args: int, tz: timedelta = timedelta(0)) -> int:
    """Microseconds of a wall-clock time in a given UTC offset, computed independently of the
    code under test."""
    moment = datetime(*args, tzinfo=UTC) - tz  # type: ignore[misc]
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def load(name: str) -> list[Event]:
    with (DIALECTS / name).open("rb") as source:
        return parse_junit_all(source, filename=name, upload_time_us=UPLOAD)


def statuses(events: list[Event]) -> dict[str, int]:
    return dict(collections.Counter(str(e["status"]) for e in events))


def by_name(events: list[Event]) -> dict[str, Event]:
    named = {str(e["name"]): e for e in events}
    assert len(named) == len(events), "names are not unique in this fixture"
    return named


def props(event: Event) -> dict[str, object]:
    return {k: v for k, v in event.items() if k.startswith("prop.")}
