"""The event model shared by every service: what an event is, which names are valid, the fields
that JUnit schema v1 owns, the parsing limits, and upload labels."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields

from flakehouse.events.values import Scalar

Event = dict[str, Scalar]
"""A flat map from field name to scalar. ``timestamp`` is always present: int microseconds since
the Unix epoch, UTC. An absent field is null; None is never stored."""

SCHEMA_VERSION = 1
"""Version of the JUnit/JSON-to-event mapping; written into every EventBatch."""

# Use .fullmatch() (or the validate_* functions): with .match(), "$" also matches before a
# trailing newline, so "ci\n" would pass.
DATASET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:/-]{0,127}$")

TIMESTAMP = "timestamp"

SCHEMA_V1_FIELDS: frozenset[str] = frozenset(
    {
        "timestamp",
        "suite",
        "classname",
        "name",
        "file",
        "line",
        "status",
        "duration",
        "message",
        "signature",
        "type",
        "retries",
        "flaky",
        "hostname",
        "stack",
        "stdout",
        "stderr",
    }
)
"""Fields the JUnit mapping writes; labels may not use these names (nor ``prop.*``)."""

PROPERTY_PREFIX = "prop."

STATUSES = ("passed", "failed", "error", "skipped")


def validate_dataset_name(name: str) -> str:
    """The name itself when it is a valid dataset name; ValueError saying what is allowed if not."""
    if not isinstance(name, str) or not DATASET_NAME.fullmatch(name):
        raise ValueError(
            f"invalid dataset name {name!r}: use 1 to 63 characters of a-z, 0-9, '_' and '-', "
            "starting with a letter or digit"
        )
    return name


def validate_field_name(name: str) -> str:
    """The name itself when it is a valid field name; ValueError saying what is allowed if not."""
    if not isinstance(name, str) or not FIELD_NAME.fullmatch(name):
        raise ValueError(
            f"invalid field name {name!r}: use 1 to 128 characters of A-Z, a-z, 0-9 and _.:/-, "
            "starting with a letter or '_'"
        )
    return name


@dataclass(frozen=True)
class Limits:
    """Bounds on untrusted input. Exceeding a ``max_*_bytes``, ``max_depth`` or
    ``max_fields_per_event`` limit rejects the file; long texts are truncated instead (see
    each parser for which). Every bound is configurable; the defaults suit CI reports."""

    max_file_bytes: int = 512 * 1024 * 1024
    max_depth: int = 64
    # JUnit: any other attribute or property value is truncated to this; JSON lines: a longer
    # string value rejects the file.
    max_attribute_chars: int = 64 * 1024
    # JUnit message attribute of failure/error/skipped, truncated.
    max_message_chars: int = 8 * 1024
    # JUnit stack, stdout and stderr, truncated.
    max_text_chars: int = 8 * 1024
    max_fields_per_event: int = 256
    # JUnit: one piece of markup (a start tag with all its attributes, a comment, a processing
    # instruction) larger than this rejects the file (certainly when over twice this; never
    # when within it). The XML parser must hold a whole piece in memory; attribute values
    # within it are then truncated to max_attribute_chars.
    max_markup_bytes: int = 8 * 1024 * 1024
    # JSON lines: one line, read with this bound so that a file without newlines cannot make
    # the parser buffer it whole.
    max_line_bytes: int = 1024 * 1024

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Limits.{f.name} must be a positive int, got {value!r}")


def truncate_text(text: str, limit: int, total: int | None = None) -> str:
    """``text`` cut to at most ``limit`` characters, ending with a marker that says how long the
    original was (``total`` when the caller already dropped the tail while reading)."""
    total = len(text) if total is None else max(total, len(text))
    if total <= limit:
        return text
    marker = f"… [truncated, {total} chars]"
    if limit <= len(marker):
        return text[:limit]
    return text[: limit - len(marker)] + marker


def validate_label(key: str, value: str) -> None:
    """ValueError naming the label when it is not usable as a top-level string field."""
    if not isinstance(key, str) or not FIELD_NAME.fullmatch(key):
        raise ValueError(
            f"invalid label {key!r}: a label key must be a valid field name "
            "(1 to 128 characters of A-Z, a-z, 0-9 and _.:/-, starting with a letter or '_')"
        )
    if key in SCHEMA_V1_FIELDS or key.startswith(PROPERTY_PREFIX):
        raise ValueError(
            f"invalid label {key!r}: it collides with a field of the event schema "
            f"({', '.join(sorted(SCHEMA_V1_FIELDS))}, {PROPERTY_PREFIX}*)"
        )
    if not isinstance(value, str):
        raise ValueError(f"invalid label {key!r}: the value must be a string")
    if value == "":
        # An empty value is nearly always an unset CI variable (--label branch=$BRANCH);
        # storing "" would look like data.
        raise ValueError(f"invalid label {key!r}: the value is empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"invalid label {key!r}: the value is not valid Unicode") from None


def validate_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """A plain copy of ``labels`` after checking every one (see :func:`validate_label`)."""
    for key, value in labels.items():
        validate_label(key, value)
    return dict(labels)


def apply_labels(event: Event, labels: Mapping[str, str]) -> Event:
    """Adds the upload's labels to ``event`` as top-level string fields, in place, and returns
    it. A label overrides a field of the same name: the uploader's word is authoritative."""
    for key, value in labels.items():
        validate_label(key, value)
    event.update(labels)
    return event


def parse_label(text: str) -> tuple[str, str]:
    """``"key=value"`` (as given to ``--label``) split at the first ``=`` and validated."""
    key, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"invalid label {text!r}: expected key=value")
    if not key:
        raise ValueError(f"invalid label {text!r}: the key before '=' is empty")
    validate_label(key, value)
    return key, value


def check_parse_arguments(labels: Mapping[str, str], upload_time_us: int) -> dict[str, str]:
    """What every parser checks before reading: the labels (returned validated) and the
    fallback timestamp's type. Raises at once, before any input is read."""
    checked = validate_labels(labels)
    if isinstance(upload_time_us, bool) or not isinstance(upload_time_us, int):
        raise TypeError("upload_time_us must be an int (microseconds since the epoch)")
    return checked
