"""The Kafka record codec: events to columnar ``EventBatch`` messages and back, the deterministic
ids that let storage drop a retried upload, and the JSON form of one event."""

from __future__ import annotations

import hashlib
import json
import struct
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from itertools import accumulate, compress, repeat
from operator import add, itemgetter
from typing import Any, Final, NamedTuple

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
_STRING_ROW_BYTES: Final = _ROW_INDEX_BYTES + _STRING_OVERHEAD
_U64: Final = struct.Struct(">Q")
_KINDS: Final[dict[type, int]] = {str: STRING, int: INT, float: FLOAT, bool: BOOL}


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


class _Column:
    """The rows and values of one (field, type) column of a batch being filled."""

    __slots__ = ("kind", "name", "pytype", "rows", "values")

    def __init__(self, name: str, kind: int, pytype: type | None) -> None:
        self.name = name
        self.kind = kind
        # The exact Python type whose values take the fast path, None for a column that is
        # reached through the slow path only (a second type of a field, or subclasses).
        self.pytype = pytype
        self.rows: list[int] = []
        self.values: list[Scalar] = []


_FastEntry = tuple[type, Callable[[int], object], Callable[[Scalar], object]]

_SKIP: Final[_FastEntry] = (int, id, id)
"""Stands for the timestamp among a batch's fast entries: it is stored apart, not as a column."""


class _Builder:
    """One batch being filled event by event (the exact path of :func:`encode_batches`, for
    blocks that :func:`_block_batch` does not take): plain lists per (field, type), turned into
    protobuf at the end.

    ``add`` appends an event and returns the bytes it adds (an upper bound of its encoding);
    ``remove_last`` takes it back out when it turns out not to fit. Doing both in one pass over
    the event (instead of estimating first) keeps the per-value work to a dict lookup by field
    name, a type check and two appends."""

    def __init__(self, upload_id: str, first_position: int) -> None:
        self.upload_id = upload_id
        self.first_position = first_position
        self.timestamps: list[int] = []
        self.event_ids: list[int] = []
        # Field name -> the column of the first exact scalar type seen for it; every other
        # (field, type) column is in `others`.
        self.by_name: dict[str, _Column] = {}
        self.others: dict[tuple[str, int], _Column] = {}
        # Field name -> (exact type, rows.append, values.append) of its by_name column: the
        # fast path of add().
        self.fast: dict[str, _FastEntry] = {TIMESTAMP: _SKIP}
        self.size = _BATCH_OVERHEAD + len(upload_id.encode())

    def add(self, event: Event, event_id: int) -> int:
        row = len(self.timestamps)
        timestamp = event.get(TIMESTAMP)
        if type(timestamp) is not int:
            raise ValueError(f"event {self.first_position + row} has no int timestamp")
        fast = self.fast
        skip = _SKIP
        size = _ROW_BYTES
        # The branches below test `pytype`, which mypy does not narrow `value` from: hence the
        # ignores.
        for name, value in event.items():
            pytype = type(value)
            entry = fast.get(name)
            if entry is None or entry[0] is not pytype:
                size += self._add_slowly(name, value, row)
                continue
            if entry is skip:
                continue
            if pytype is str:
                text: str = value  # type: ignore[assignment]
                size += _STRING_ROW_BYTES + (len(text) if text.isascii() else len(text.encode()))
            elif pytype is float:
                size += _ROW_INDEX_BYTES + 8
            elif pytype is bool:
                size += _ROW_INDEX_BYTES + 1
            else:
                size += _ROW_INDEX_BYTES + _int_bytes(value)  # type: ignore[arg-type]
            entry[1](row)
            entry[2](value)
        self.timestamps.append(timestamp)
        self.event_ids.append(event_id)
        self.size += size
        return size

    def _add_slowly(self, name: str, value: Scalar, row: int) -> int:
        """The slow path of :meth:`add`: a field without a column of the value's exact type
        yet (creating it), a second type of a field, or a scalar subclass. Returns the bytes
        added; 0 for the timestamp, which is not a column."""
        kind = _kind(value)  # raises for a non-scalar
        if name == TIMESTAMP and kind == INT:
            return 0
        size = 0
        column = self.by_name.get(name)
        if column is None or column.kind != kind:
            column = self.others.get((name, kind))
        if column is None:
            size += _COLUMN_OVERHEAD + len(name.encode())
            pytype = type(value)
            if pytype in _KINDS and name not in self.by_name:
                column = self.by_name[name] = _Column(name, kind, pytype)
                self.fast[name] = (pytype, column.rows.append, column.values.append)
            else:
                column = self.others[(name, kind)] = _Column(name, kind, None)
        column.rows.append(row)
        column.values.append(value)
        if kind == STRING:
            text = str(value)
            return size + _STRING_ROW_BYTES + (len(text) if text.isascii() else len(text.encode()))
        if kind == INT:
            return size + _ROW_INDEX_BYTES + _int_bytes(int(value))
        if kind == FLOAT:
            return size + _ROW_INDEX_BYTES + 8
        return size + _ROW_INDEX_BYTES + 1

    def _find(self, name: str, value: Scalar) -> tuple[_Column, bool] | None:
        """The column that holds ``value`` of field ``name`` and whether it is in by_name."""
        kind = _kind(value)
        if name == TIMESTAMP and kind == INT:
            return None
        column = self.by_name.get(name)
        if column is not None and column.kind == kind:
            return column, True
        return self.others[(name, kind)], False

    def remove_last(self, event: Event, size: int) -> None:
        """Undoes the last :meth:`add` of ``event``, which added ``size`` bytes."""
        self.timestamps.pop()
        self.event_ids.pop()
        for name, value in event.items():
            found = self._find(name, value)
            if found is None:
                continue
            column, fast = found
            column.rows.pop()
            column.values.pop()
            if not column.rows:
                if fast:
                    del self.by_name[name]
                    del self.fast[name]
                else:
                    del self.others[(name, column.kind)]
        self.size -= size

    def build(self) -> events_pb2.EventBatch:
        batch = events_pb2.EventBatch(
            schema_version=SCHEMA_VERSION,
            upload_id=self.upload_id,
            row_count=len(self.timestamps),
        )
        batch.timestamps.extend(self.timestamps)
        batch.event_ids.extend(self.event_ids)
        columns = [*self.by_name.values(), *self.others.values()]
        columns.sort(key=lambda column: (column.name, column.kind))
        for column in columns:
            message = batch.columns.add(name=column.name, type=column.kind)
            message.rows.extend(column.rows)
            getattr(message, _VALUE_LISTS[column.kind]).extend(column.values)
        return batch


def encode_batches(
    events: Iterable[Event],
    *,
    dataset: str,
    upload_id: str,
    max_rows: int = MAX_ROWS,
    max_bytes: int = MAX_BYTES,
    first_position: int = 0,
) -> Iterator[events_pb2.EventBatch]:
    """Columnar batches of at most ``max_rows`` events and (by a conservative estimate)
    ``max_bytes`` bytes each. Event ids use the event's position in the upload: in ``events``,
    counted across batches, plus ``first_position`` (the events before, when ``events`` is a
    part of an upload). ValueError for an event without an int timestamp, a value that is not
    a scalar, or an event that alone does not fit in ``max_bytes``.

    ``events`` is consumed lazily, one batch at a time: given the iterator of
    :func:`~flakehouse.events.junit.parse_junit`, memory stays bounded by one batch however
    large the report. Events must not be changed after they are handed over.

    A batch is the longest run of events that fits both bounds. It is normally found a whole
    block of ``max_rows`` events at a time, column by column (see :func:`_block_batch`): the
    whole block, or, when it does not fit ``max_bytes``, as many of its first events as fit,
    the others beginning the next block. A block that holds anything unusual (a field with two
    types, a scalar subclass, a bad event) goes through :class:`_Builder` event by event,
    which gives the same batches, ids and bytes."""
    if max_rows < 1 or max_bytes < 1:
        raise ValueError("max_rows and max_bytes must be positive")
    id_of = _ids(dataset, upload_id)
    position = first_position  # of the next event read
    block: list[Event] = []
    block_start = first_position
    exact: _Builder | None = None
    full: events_pb2.EventBatch | None = None  # handed out once the next event is known good
    reach = max_rows  # the length of block at which to look for a batch
    for event in events:
        if full is not None:
            _check_values(event)
            yield full
            full = None
        if exact is not None:
            exact = yield from _place(exact, event, position, id_of(position), max_rows, max_bytes)
            position += 1
            if len(exact.timestamps) == 1:
                # This event begins a batch: back to whole blocks.
                block, block_start, exact = [event], position - 1, None
            continue
        if not block:
            block_start = position
        block.append(event)
        position += 1
        if len(block) == reach:
            found = _block_batch(block, upload_id, block_start, id_of, max_bytes)
            if found is None:
                exact = yield from _replay(
                    block, upload_id, block_start, id_of, max_rows, max_bytes
                )
                block, reach = [], max_rows
            elif found[1] == max_rows:
                full, block = found[0], []
            elif found[1] == reach:
                # All fit, and more may: only max_rows events or one that does not fit end a
                # batch.
                reach = max_rows
            else:
                # Closed by size: the event after the batch is in the block, known good, and
                # begins the next block. The next batch likely holds about as many events:
                # looking for it a little past that sizes fewer events twice.
                yield found[0]
                del block[: found[1]]
                block_start += found[1]
                reach = min(max_rows, max(len(block) + 1, found[1] + found[1] // 8 + 1))
    if full is not None:
        yield full
    while exact is None and block:
        found = _block_batch(block, upload_id, block_start, id_of, max_bytes)
        if found is None:
            exact = yield from _replay(block, upload_id, block_start, id_of, max_rows, max_bytes)
            break
        yield found[0]
        del block[: found[1]]
        block_start += found[1]
    if exact is not None and exact.timestamps:
        yield exact.build()


def _ids(dataset: str, upload_id: str) -> Callable[[int], int]:
    """``event_id(dataset, upload_id, position)`` as a function of the position alone."""
    copy = _id_prefix(dataset, upload_id).copy
    pack, unpack = _U64.pack, _U64.unpack

    def id_of(position: int) -> int:
        hasher = copy()
        hasher.update(pack(position))
        event_id: int = unpack(hasher.digest())[0]
        return event_id

    return id_of


def _place(
    builder: _Builder, event: Event, position: int, event_id: int, max_rows: int, max_bytes: int
) -> Generator[events_pb2.EventBatch, None, _Builder]:
    """Adds one event the exact way, yielding the batch it closes; returns the builder that
    now holds it."""
    if len(builder.timestamps) >= max_rows:
        # An event whose values cannot be encoded fails before the full batch is handed out.
        _check_values(event)
        yield builder.build()
        builder = _Builder(builder.upload_id, position)
    size = builder.add(event, event_id)
    if builder.size > max_bytes:
        # Take the event back, close the batch, and try it alone in the next one.
        builder.remove_last(event, size)
        if builder.timestamps:
            yield builder.build()
            builder = _Builder(builder.upload_id, position)
            size = builder.add(event, event_id)
        if builder.size > max_bytes or not builder.timestamps:
            raise ValueError(
                f"event {position} needs about {size} bytes, more than a batch may hold "
                f"({max_bytes}); lower the text limits or split the event"
            )
    return builder


def _replay(
    block: list[Event],
    upload_id: str,
    first_position: int,
    id_of: Callable[[int], int],
    max_rows: int,
    max_bytes: int,
) -> Generator[events_pb2.EventBatch, None, _Builder]:
    """The events of a block the exact way; returns the builder of the last, open batch."""
    builder = _Builder(upload_id, first_position)
    for offset, event in enumerate(block):
        position = first_position + offset
        builder = yield from _place(builder, event, position, id_of(position), max_rows, max_bytes)
    return builder


def _block_batch(
    block: list[Event],
    upload_id: str,
    first_position: int,
    id_of: Callable[[int], int],
    max_bytes: int,
) -> tuple[events_pb2.EventBatch, int] | None:
    """The longest run of the block's first events that fits ``max_bytes``, as one batch built
    column by column with list comprehensions rather than value by value, and how many events
    it holds; None when the block is unusual, or when its first event alone does not fit (the
    caller then takes the exact path). The size estimate is the exact path's, summed by column
    (and, when the block does not fit, by row: see :func:`_rows_that_fit`), so both paths
    agree on where a batch ends."""
    count = len(block)
    # Events with the same fields, in the same order, share a shape.
    keys = list(map(tuple, block))
    shape_index = {key: index for index, key in enumerate(dict.fromkeys(keys))}
    shapes = [frozenset(key) for key in shape_index]
    names = frozenset().union(*shapes)
    if TIMESTAMP not in names:
        return None
    shape_of = list(map(shape_index.__getitem__, keys)) if len(shapes) > 1 else None
    base = _BATCH_OVERHEAD + len(upload_id.encode())
    size = base + count * _ROW_BYTES
    timestamps: list[int] | None = None
    columns: list[_BlockColumn] = []
    for name in names:
        rows: list[int] | None = None
        # Any: the values are checked below to be of one type, which mypy cannot narrow a list
        # to.
        values: list[Any]
        if shape_of is None or all(name in shape for shape in shapes):
            values = list(map(itemgetter(name), block))
        else:
            members = {index for index, shape in enumerate(shapes) if name in shape}
            rows = list(compress(range(count), map(members.__contains__, shape_of)))
            values = [block[row][name] for row in rows]
        types = set(map(type, values))
        if len(types) != 1:
            return None
        kind = _KINDS.get(types.pop())
        if kind is None:
            return None
        if name == TIMESTAMP:
            if kind != INT or rows is not None:
                return None
            timestamps = values
            continue
        width: int | None  # bytes of every value, or None when they differ
        if kind == STRING:
            try:
                text = len("".join(values).encode())
            except UnicodeEncodeError:
                return None
            width = None
            size += len(values) * _STRING_OVERHEAD + text
        elif kind == INT:
            width = _int_width(values)
            if width is None:
                size += sum(map(_int_bytes, values))
            else:
                size += len(values) * width
        else:
            width = 8 if kind == FLOAT else 1
            size += len(values) * width
        size += _COLUMN_OVERHEAD + len(name.encode()) + len(values) * _ROW_INDEX_BYTES
        columns.append(_BlockColumn(name, kind, rows, values, width))
    if timestamps is None:
        return None
    taken = count
    if size > max_bytes:
        taken = _rows_that_fit(columns, count, max_bytes - base)
        if taken == 0:
            return None
    batch = events_pb2.EventBatch(
        schema_version=SCHEMA_VERSION, upload_id=upload_id, row_count=taken
    )
    batch.timestamps.extend(timestamps[:taken])
    batch.event_ids.extend(map(id_of, range(first_position, first_position + taken)))
    columns.sort(key=lambda column: (column.name, column.kind))
    every_row = range(taken)
    for column in columns:
        rows, values = column.rows, column.values
        if taken < count:
            if rows is None:
                values = values[:taken]
            else:
                present = bisect_left(rows, taken)
                if present == 0:
                    continue
                rows, values = rows[:present], values[:present]
        message = batch.columns.add(name=column.name, type=column.kind)
        message.rows.extend(every_row if rows is None else rows)
        getattr(message, _VALUE_LISTS[column.kind]).extend(values)
    return batch, taken


class _BlockColumn(NamedTuple):
    """One (field, type) column of a block: its rows (None: every row), its values, and the
    encoded bytes of each value when they are all alike (None when they differ)."""

    name: str
    kind: int
    rows: list[int] | None
    values: list[Scalar]
    width: int | None


def _rows_that_fit(columns: list[_BlockColumn], count: int, budget: int) -> int:
    """How many of a block's first rows fit in ``budget`` bytes: each row costs what
    :meth:`_Builder.add` would count for it, a column's overhead falling on its first row."""
    # What every row costs: its timestamp and id, and a value of each column it always has
    # whose values all take the same bytes.
    every_row = _ROW_BYTES
    for column in columns:
        if column.rows is None:
            every_row += _ROW_INDEX_BYTES
            if column.width is not None:
                every_row += column.width
            elif column.kind == STRING:
                every_row += _STRING_OVERHEAD
    by_row = [every_row] * count
    for column in columns:
        rows, values, width = column.rows, column.values, column.width
        by_row[0 if rows is None else rows[0]] += _COLUMN_OVERHEAD + len(column.name.encode())
        if rows is None and width is not None:
            continue
        # The bytes of each value, beyond those counted in every_row. `values` hold one Python
        # type, the one `kind` names: hence the ignores. ASCII strings are as long as their
        # encoding (isascii() is O(1)).
        sizes: Iterable[int]
        if column.kind == STRING:
            all_ascii = "".join(values).isascii()  # type: ignore[arg-type]
            sizes = map(len, values if all_ascii else map(str.encode, values))  # type: ignore[arg-type]
        elif width is None:
            sizes = map(_int_bytes, values)  # type: ignore[arg-type]
        else:
            sizes = repeat(width, len(values))
        if rows is None:
            by_row = list(map(add, by_row, sizes))
        else:
            extra = _STRING_ROW_BYTES if column.kind == STRING else _ROW_INDEX_BYTES
            for row, size in zip(rows, sizes, strict=True):
                by_row[row] += extra + size
    return max(0, bisect_right(list(accumulate(by_row, initial=0)), budget) - 1)


def _int_width(values: list[int]) -> int | None:
    """The bytes that each value takes when it is the same for all (as when they share a sign
    and the smallest and the largest take the same), else None."""
    low, high = min(values), max(values)
    if low > -64 and high < 64:
        return 1
    if (low >= 0 or high <= 0) and _int_bytes(low) == _int_bytes(high):
        return _int_bytes(low)
    return None


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


def column_values(column: events_pb2.Column) -> Sequence[Scalar]:
    """The values of a batch's column, one per row it names (the list of its type)."""
    list_name = _VALUE_LISTS.get(column.type)
    if list_name is None:
        raise ValueError(f"column {column.name!r} has unknown type {column.type}")
    values: Sequence[Scalar] = getattr(column, list_name)
    return values


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


def _check_values(event: Event) -> None:
    """TypeError for a value that is not a scalar, UnicodeEncodeError for a string that is
    not valid Unicode: the errors that adding ``event`` to a batch would raise."""
    for value in event.values():
        if _kind(value) == STRING and not str(value).isascii():
            str(value).encode()


def _int_bytes(number: int) -> int:
    """Upper bound of a sint64 zigzag varint: 7 payload bits per byte."""
    if -64 < number < 64:
        return 1
    return ((abs(number) * 2 + 1).bit_length() + 6) // 7


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
