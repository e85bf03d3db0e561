"""Timestamps as events store them (int microseconds since the Unix epoch, UTC): parsing the
forms that test tools write, and the RFC 3339 form that ``junit2json`` writes."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The range that datetime (and so RFC 3339 output) can represent: 0001-01-01 to 9999-12-31.
MIN_US = -62_135_596_800_000_000
MAX_US = 253_402_300_799_999_999

_ZONE_NAME = re.compile(r"\s*(?:UTC|GMT)$", re.IGNORECASE)
_RFC2822_HINT = re.compile(r"[A-Za-z]{3},?\s")
_T_BLANKS = re.compile(r"^(\d{4}-\d\d-\d\dT)\s+")


def datetime_to_us(value: datetime) -> int:
    """Microseconds since the epoch; a naive datetime is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - EPOCH
    # Integer arithmetic: timedelta.total_seconds() is a float and loses microseconds.
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def parse_timestamp(text: str) -> int:
    """Microseconds since the epoch from ISO 8601 / RFC 3339 (``T`` or a space, fractional
    seconds, ``Z`` or an offset, or a `` UTC``/`` GMT`` suffix) or RFC 2822 (``Sat, 03 Dec
    2022 23:10:07 GMT``, as mocha writes). No zone means UTC. Blanks after the ``T`` are
    ignored: JunitXml.TestLogger (``dotnet test --logger junit``) writes
    ``2019-09-01T 23:56:54Z``. ValueError when it is none of these."""
    raw = text.strip()
    us = _parse(raw)
    if us is None:
        raise ValueError(f"unrecognised timestamp {text[:64]!r}: expected ISO 8601 / RFC 3339")
    if not MIN_US <= us <= MAX_US:
        raise ValueError(f"timestamp {text[:64]!r} is outside years 1 to 9999")
    return us


def _parse(raw: str) -> int | None:
    iso = _ZONE_NAME.sub("+00:00", raw)
    if "T " in iso or "T\t" in iso:
        iso = _T_BLANKS.sub(r"\1", iso)
    try:
        return datetime_to_us(datetime.fromisoformat(iso))
    except ValueError:
        pass
    # Only strings that look like RFC 2822: its parser is lenient enough to accept junk.
    if _RFC2822_HINT.match(raw) or _ZONE_NAME.search(raw):
        try:
            return datetime_to_us(parsedate_to_datetime(raw))
        except (TypeError, ValueError, IndexError, OverflowError):
            pass
    return None


def epoch_seconds_to_us(seconds: int | float) -> int:
    """Microseconds from a number of seconds since the epoch; ValueError when it is not finite
    or outside years 1 to 9999 (often a sign of milliseconds passed as seconds)."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ValueError(f"epoch seconds must be a number, got {type(seconds).__name__}")
    if isinstance(seconds, float):
        if not math.isfinite(seconds):
            raise ValueError(f"epoch seconds must be finite, got {seconds!r}")
        scaled = seconds * 1_000_000
        # Checked before rounding: past 1.8e302 seconds the product is infinite, which round()
        # cannot take. The bounds are far beyond 2**53, where every float is a whole number.
        if not MIN_US <= scaled <= MAX_US:
            raise _outside(seconds)
        return round(scaled)
    us = seconds * 1_000_000
    if not MIN_US <= us <= MAX_US:
        raise _outside(seconds)
    return us


def _outside(seconds: int | float) -> ValueError:
    return ValueError(
        f"epoch seconds {seconds!r} is outside years 1 to 9999 (milliseconds given as seconds?)"
    )


def format_timestamp(us: int) -> str:
    """RFC 3339 UTC with microseconds, e.g. ``2026-11-01T12:00:00.123456Z``."""
    moment = EPOCH + timedelta(microseconds=us)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
