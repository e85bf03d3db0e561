"""The Kafka record codec: events to columnar ``EventBatch`` messages and back, the deterministic
ids that let storage drop a retried upload, and the JSON form of one event."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Final

from flakehouse.common.v1 import events_pb2
from flakehouse.events.model import SCHEMA_VERSION, TIMESTAMP, Event
from flakehouse.events.timestamps import format_timestamp
from flakehouse.events.values import BOOL, FLOAT, INT, STRING, Scalar, type_of

MAX_ROWS: Final = 5000
MAX_BYTES: Final = 768 * 1024
"""Default bound on one encoded batch: well under Kafka's default 1 MiB record limit."""

_VALUE_LISTS: Final[dict[int, str]] = {
    STRING: "string_values",
    INT: "int_values",
    FLOAT: "float_values",
    BOOL: "bool_values",
}

# Size estimates are upper bounds of the protobuf encoding, so that a batch never exceeds
# max_bytes: tag + length of the batch's own fields, a column's tags and lengths, a row's
# timestamp (varint, ≤ 10 bytes) and event id (fixed64), a row index (varint < 2**21).
_BATCH_OVERHEAD: Final = 32
_COLUMN_OVERHEAD: Final = 32
_ROW_BYTES: Final = 10 + 8
_ROW_INDEX_BYTES: Final = 3
_STRING_OVERHEAD: Final = 1 + 5


def event_id(dataset: str, upload_id: str, position: int) -> int:
    """Unsigned 64-bit id of the event at ``position`` (0-based) in an upload."""
    return _id_from(_id_prefix(dataset, upload_id), position)


def _id_prefix(dataset: str, upload_id: str) -> hashlib.blake2b:
    # Length-prefixed parts so that ("a", "bc") and ("ab", "c") never share a prefix.
    hasher = hashlib.blake2b(digest_size=8, person=b"flakehouse.evid")
    for part in (dataset.encode(), upload_id.encode()):
        hasher.update(len(part).to_bytes(4, "big"))
        hasher.update(part)
    return hasher


def _id_from(prefix: hashlib.blake2b, position: int) -> int:
    if position < 0:
        raise ValueError(f"position must be >= 0, got {position}")
    hasher = prefix.copy()
    hasher.update(position.to_bytes(8, "big"))
    return int.from_bytes(hasher.digest(), "big")


def upload_id_for(dataset: str, labels: Mapping[str, str], content_digest: bytes) -> str:
    """32 hex characters derived from the dataset, the labels and the content's digest: sending
    the same file with the same labels again is a retry, and its events get the same ids."""
    hasher = hashlib.blake2b(digest_size=16, person=b"flakehouse.upid")
    parts = [dataset.encode()]
    for key in sorted(labels):
        parts += [key.encode(), labels[key].encode()]
    parts.append(bytes(content_digest))
    for part in parts:
        hasher.update(len(part).to_bytes(4, "big"))
        hasher.update(part)
    return hasher.hexdigest()


class _Builder:
    """One batch being filled: plain lists per (field, type), turned into protobuf at the end."""

    def __init__(self, upload_id: str, first_position: int) -> None:
        self.upload_id = upload_id
        self.first_position = first_position
        self.timestamps: list[int] = []
        self.event_ids: list[int] = []
        self.columns: dict[tuple[str, int], tuple[list[int], list[Scalar]]] = {}
        self.size = _BATCH_OVERHEAD + len(upload_id.encode())

    def estimate(self, event: Event) -> int:
        """Upper bound of the bytes that adding ``event`` would add."""
        size = _ROW_BYTES
        columns = self.columns
        for name, value in event.items():
            if name == TIMESTAMP:
                continue
            kind = _kind(value)
            if (name, kind) not in columns:
                size += _COLUMN_OVERHEAD + len(name.encode())
            size += _ROW_INDEX_BYTES + _value_bytes(kind, value)
        return size

    def add(self, event: Event, event_id: int, size: int) -> None:
        row = len(self.timestamps)
        timestamp = event.get(TIMESTAMP)
        if type(timestamp) is not int:
            raise ValueError(f"event {self.first_position + row} has no int timestamp")
        self.timestamps.append(timestamp)
        self.event_ids.append(event_id)
        columns = self.columns
        for name, value in event.items():
            if name == TIMESTAMP:
                continue
            key = (name, _kind(value))
            column = columns.get(key)
            if column is None:
                column = columns[key] = ([], [])
            column[0].append(row)
            column[1].append(value)
        self.size += size

    def build(self) -> events_pb2.EventBatch:
        batch = events_pb2.EventBatch(
            schema_version=SCHEMA_VERSION,
            upload_id=self.upload_id,
            row_count=len(self.timestamps),
        )
        batch.timestamps.extend(self.timestamps)
        batch.event_ids.extend(self.event_ids)
        for (name, kind), (rows, values) in sorted(self.columns.items()):
            column = batch.columns.add(name=name, type=kind)  # type: ignore[arg-type]
            column.rows.extend(rows)
            getattr(column, _VALUE_LISTS[kind]).extend(values)
        return batch


def encode_batches(
    events: Iterable[Event],
    *,
    dataset: str,
    upload_id: str,
    max_rows: int = MAX_ROWS,
    max_bytes: int = MAX_BYTES,
) -> Iterator[events_pb2.EventBatch]:
    """Columnar batches of at most ``max_rows`` events and (by a conservative estimate)
    ``max_bytes`` bytes each. Event ids use the event's position in ``events``, counted across
    batches. ValueError for an event without an int timestamp, a value that is not a scalar,
    or an event that alone does not fit in ``max_bytes``."""
    if max_rows < 1 or max_bytes < 1:
        raise ValueError("max_rows and max_bytes must be positive")
    prefix = _id_prefix(dataset, upload_id)
    position = 0
    builder = _Builder(upload_id, position)
    for event in events:
        size = builder.estimate(event)
        if builder.timestamps and (
            len(builder.timestamps) >= max_rows or builder.size + size > max_bytes
        ):
            yield builder.build()
            builder = _Builder(upload_id, position)
            size = builder.estimate(event)
        if builder.size + size > max_bytes:
            raise ValueError(
                f"event {position} needs about {size} bytes, more than a batch may hold "
                f"({max_bytes}); lower the text limits or split the event"
            )
        builder.add(event, _id_from(prefix, position), size)
        position += 1
    if builder.timestamps:
        yield builder.build()


def decode_batch(batch: events_pb2.EventBatch) -> list[Event]:
    """The events of a batch, in row order (the inverse of :func:`encode_batches`).
    ValueError when the batch is inconsistent."""
    count = batch.row_count
    if len(batch.timestamps) != count or len(batch.event_ids) != count:
        raise ValueError(
            f"batch has row_count {count} but {len(batch.timestamps)} timestamps "
            f"and {len(batch.event_ids)} event ids"
        )
    events: list[Event] = [{TIMESTAMP: timestamp} for timestamp in batch.timestamps]
    for column in batch.columns:
        list_name = _VALUE_LISTS.get(column.type)
        if list_name is None:
            raise ValueError(f"column {column.name!r} has unknown type {column.type}")
        values = getattr(column, list_name)
        if len(values) != len(column.rows):
            raise ValueError(
                f"column {column.name!r} has {len(column.rows)} rows but {len(values)} values"
            )
        name = column.name
        for row, value in zip(column.rows, values, strict=True):
            if row >= count:
                raise ValueError(f"column {name!r} names row {row} of {count}")
            events[row][name] = value
    return events


def event_to_json(event: Event) -> str:
    """One line of ``flakehouse junit2json``: the event as a JSON object, ``timestamp`` first as
    RFC 3339 UTC with microseconds, so that :func:`parse_json_lines` reads it back unchanged."""
    timestamp = event[TIMESTAMP]
    if type(timestamp) is not int:
        raise ValueError("event has no int timestamp")
    out: dict[str, Scalar] = {TIMESTAMP: format_timestamp(timestamp)}
    for name, value in event.items():
        if name != TIMESTAMP:
            out[name] = value
    return json.dumps(out, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _kind(value: Scalar) -> int:
    kind = type(value)
    if kind is str:
        return STRING
    if kind is int:
        return INT
    if kind is float:
        return FLOAT
    if kind is bool:
        return BOOL
    return type_of(value)  # subclasses (e.g. an IntEnum) and non-scalars, which raise


def _value_bytes(kind: int, value: Scalar) -> int:
    if kind == STRING:
        text = value
        assert isinstance(text, str)
        return _STRING_OVERHEAD + (len(text) if text.isascii() else len(text.encode()))
    if kind == INT:
        # sint64 zigzag varint: 7 payload bits per byte.
        return ((abs(int(value)) * 2 + 1).bit_length() + 6) // 7
    if kind == FLOAT:
        return 8
    return 1
