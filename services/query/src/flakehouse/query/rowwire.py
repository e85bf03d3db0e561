"""QueryResponse.rows serialized with numpy a column at a time, which protobuf parses in C: far
faster than a Row message per row and a Value per cell. The Python client asks for columnar
answers (QueryResponse.column_values); rows are for DESCRIBE, EXPLAIN and other gRPC clients."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from flakehouse.events.values import from_value, to_value
from flakehouse.query.finalexpr import Cell


def encode_rows(columns: list[list[Cell]], kinds: list[set[type]]) -> bytes:
    """Rows of Values (`kinds`: the Python types in each column) as a serialized QueryResponse
    holding nothing else, encoded a column at a time with numpy (`_RowEncoder`), which protobuf
    parses in C; far faster than a message per row and value."""
    if not columns or not columns[0]:
        return b""
    encoder = _RowEncoder(len(columns[0]), len(columns))
    row_sizes = np.zeros(len(columns[0]), dtype=np.int64)
    for i, (cells, column_kinds) in enumerate(zip(columns, kinds, strict=True)):
        if not column_kinds <= _PLAIN:
            cells = plain(cells, column_kinds)
            column_kinds = set(map(type, cells))
        row_sizes += encoder.column(i, cells, column_kinds)
    return encoder.payload(row_sizes)


_PLAIN = {str, int, float, bool, type(None)}


def plain(cells: list[Cell], kinds: set[type]) -> list[Cell]:
    """Subclasses of the scalar types (not encoded as such) as the types themselves."""
    if kinds <= _PLAIN:
        return cells
    return [None if c is None else from_value(to_value(c)) for c in cells]


# Wire format (protobuf encoding) of QueryResponse.rows: each row is field 2 (tag 0x12), each
# of its Values field 1 of Row (tag 0x0a); in a Value, string_value is field 1 (0x0a),
# int_value 2 (varint, 0x10), float_value 3 (fixed64, 0x19), bool_value 4 (varint, 0x20), and
# null is an empty Value. The constant bytes below are the start of the encoder's source.
_CONSTANTS = np.frombuffer(b"\x0a\x12\x10\x19\x20\x00\x01", dtype=np.uint8)
_VALUE_TAG, _ROW_TAG, _INT_TAG, _FLOAT_TAG, _BOOL_TAG, _FALSE, _TRUE = range(7)
_STRING_TAG = _VALUE_TAG
_SLOTS = 5  # per Value: its tag in Row, its length, its member's tag, payload, string bytes


class _RowEncoder:
    """The serialized rows of a QueryResponse, assembled with numpy: every piece (a tag, a
    varint, a float's bytes, a string's UTF-8) is a slice of one source buffer, and each row a
    fixed number of slots, each a (start, length) in that buffer (length 0: unused). The output
    gathers all slots in order, at once."""

    def __init__(self, size: int, width: int) -> None:
        self.size = size
        self._chunks: list[npt.NDArray[np.uint8]] = [_CONSTANTS]
        self._end = len(_CONSTANTS)
        self.starts = np.zeros((size, 2 + _SLOTS * width), dtype=np.int64)
        self.lengths = np.zeros((size, 2 + _SLOTS * width), dtype=np.int64)

    def _source(self, data: npt.NDArray[np.uint8]) -> int:
        """Appends bytes to the source; returns where they start."""
        start = self._end
        self._chunks.append(data.reshape(-1))
        self._end += data.size
        return start

    def _constant(self, rows: Any, slot: int, which: Any) -> None:
        self.starts[rows, slot] = which
        self.lengths[rows, slot] = 1

    def _varints(self, rows: Any, slot: int, values: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
        """`values` (as unsigned 64-bit ints) as varints in slot `slot` of `rows`; returns their
        lengths."""
        encoded, lengths = _varints(values)
        start = self._source(encoded)
        self.starts[rows, slot] = start + np.arange(len(values)) * encoded.shape[1]
        self.lengths[rows, slot] = lengths
        return lengths

    def column(self, index: int, cells: list[Cell], kinds: set[type]) -> npt.NDArray[np.int64]:
        """Encodes output column `index` (`kinds`: the types of its cells); returns the bytes it
        takes in each row."""
        slot = 2 + _SLOTS * index
        sizes = np.zeros(self.size, dtype=np.int64)  # of each Value
        parts: list[tuple[type, Any, list[Any]]]
        if len(kinds) == 1:
            parts = [(next(iter(kinds)), slice(None), cells)]
        else:
            positions: dict[type, list[int]] = {}
            for i, cell in enumerate(cells):
                positions.setdefault(type(cell), []).append(i)
            parts = [
                (kind, np.array(rows, dtype=np.intp), [cells[i] for i in rows])
                for kind, rows in positions.items()
            ]
        for kind, rows, values in parts:
            count = len(values)
            if kind is str:
                text = "".join(values)
                data = text.encode()
                if len(data) == len(text):  # ASCII: a character is a byte
                    lengths = np.fromiter(map(len, values), dtype=np.int64, count=count)
                else:
                    lengths = np.fromiter(
                        (len(value.encode()) for value in values), dtype=np.int64, count=count
                    )
                start = self._source(np.frombuffer(data, dtype=np.uint8))
                self._constant(rows, slot + 2, _STRING_TAG)
                header = self._varints(rows, slot + 3, lengths)
                self.starts[rows, slot + 4] = start + np.cumsum(lengths) - lengths
                self.lengths[rows, slot + 4] = lengths
                sizes[rows] = 1 + header + lengths
            elif kind is int:
                self._constant(rows, slot + 2, _INT_TAG)
                ints = np.array(values, dtype=np.int64).view(np.uint64)
                sizes[rows] = 1 + self._varints(rows, slot + 3, ints)
            elif kind is float:
                self._constant(rows, slot + 2, _FLOAT_TAG)
                start = self._source(np.array(values, dtype="<f8").view(np.uint8))
                self.starts[rows, slot + 3] = start + np.arange(count) * 8
                self.lengths[rows, slot + 3] = 8
                sizes[rows] = 9
            elif kind is bool:
                self._constant(rows, slot + 2, _BOOL_TAG)
                flags = np.array(values, dtype=bool)
                self._constant(rows, slot + 3, np.where(flags, _TRUE, _FALSE))
                sizes[rows] = 2
            # None: an empty Value.
        self._constant(slice(None), slot, _VALUE_TAG)
        return 1 + self._varints(slice(None), slot + 1, sizes) + sizes

    def payload(self, row_sizes: npt.NDArray[np.int64]) -> bytes:
        """The serialized QueryResponse, given the bytes of each row's values."""
        self._constant(slice(None), 0, _ROW_TAG)
        self._varints(slice(None), 1, row_sizes)
        starts, lengths = self.starts.reshape(-1), self.lengths.reshape(-1)
        ends = np.cumsum(lengths)
        # Byte i of slot s comes from starts[s] + (i - where s starts in the output).
        index = np.repeat(starts - (ends - lengths), lengths) + np.arange(int(ends[-1]))
        return np.concatenate(self._chunks)[index].tobytes()


def _varints(values: npt.NDArray[Any]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """Protobuf varints of `values` as unsigned 64-bit ints: a byte matrix holding each one
    left-aligned in its row, and their lengths."""
    unsigned = values.astype(np.uint64)
    lengths = np.ones(len(unsigned), dtype=np.int64)
    rest = unsigned >> np.uint64(7)
    while rest.any():
        lengths += rest != 0
        rest >>= np.uint64(7)
    width = int(lengths.max()) if len(lengths) else 1
    shifts = np.arange(width, dtype=np.uint64) * np.uint64(7)
    encoded = ((unsigned[:, None] >> shifts) & np.uint64(0x7F)).astype(np.uint8)
    if width > 1:
        encoded[np.arange(width) < (lengths - 1)[:, None]] |= 0x80  # more bytes follow
    return encoded, lengths
