"""How a node's sealed segments lie in RocksDB (FORMAT.md, "Key layout"): the keys of a partition
and of a segment, a segment's records and its metadata record, the batch keys of applied records,
and reading a segment back from a snapshot. Pure code apart from the snapshot reads."""

from __future__ import annotations

import functools
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from rocksdict import Snapshot, WriteBatch

from flakehouse.storage.codec import segment_column_stats, validate_segment
from flakehouse.storage.segment import ColumnStats
from flakehouse.storage.v1 import storage_pb2

_DATASET = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
VERSION_KEY = b"v"
PARTITION_PREFIX = b"p/"
GENERATION = b"g"
OFFSET = b"o"
WATERMARK = b"w"
META = b"m"
DATA = b"s"
TIMESTAMPS = b"t"
EVENT_IDS = b"i"
COLUMN = b"c"
BATCH_KEY = b"b"
U64 = struct.Struct(">Q")
I64 = struct.Struct(">q")
U32 = struct.Struct(">I")
# A batch key's value: the record's event count and last event id.
BATCH_VALUE = struct.Struct(">IQ")
# One batch key in a transfer (StreamSegmentsResponse.batch_keys): first id, count, last id.
BATCH_ENTRY = struct.Struct(">QIQ")


@functools.lru_cache(maxsize=4096)
def partition_prefix(dataset: str, partition: int) -> bytes:
    """The prefix of every key of the partition; cached, since applying a record looks up its
    batch key under it."""
    if not _DATASET.match(dataset):
        raise ValueError(f"invalid dataset name {dataset!r}")
    if not 0 <= partition < 2**32:
        raise ValueError(f"invalid partition {partition}")
    return PARTITION_PREFIX + dataset.encode() + b"/" + U32.pack(partition)


def prefix_end(prefix: bytes) -> bytes:
    # Every key under a partition continues with one of b"b", b"g", b"m", b"o", b"s", b"w": all
    # below 0xff.
    return prefix + b"\xff"


def batch_key(prefix: bytes, first_id: int) -> bytes:
    """The key that says a record whose first event id is `first_id` was applied."""
    return prefix + BATCH_KEY + U64.pack(first_id)


def batch_key_records(prefix: bytes, entries: bytes) -> Iterator[tuple[bytes, bytes]]:
    """The key/values of packed BATCH_ENTRY entries (a transfer's chunk); ValueError when the
    chunk is not a whole number of entries."""
    if len(entries) % BATCH_ENTRY.size:
        raise ValueError(f"batch keys of {len(entries)} bytes: not whole entries")
    key_size = U64.size
    for start in range(0, len(entries), BATCH_ENTRY.size):
        entry = entries[start : start + BATCH_ENTRY.size]
        yield prefix + BATCH_KEY + entry[:key_size], entry[key_size:]


def batch_key_chunks(snap: Snapshot, prefix: bytes, per_chunk: int) -> Iterator[bytes]:
    """The partition's batch keys, packed as BATCH_ENTRY entries, up to `per_chunk` of them a
    chunk. rocksdict's Snapshot.iter() sees writes made after the snapshot: read them all
    while nothing can write them (SegmentStore.batch_key_chunks)."""
    start = prefix + BATCH_KEY
    it = snap.iter()
    it.seek(start)
    chunk: list[bytes] = []
    while it.valid():
        key: bytes = it.key()
        if not key.startswith(start):
            break
        chunk.append(key[len(start) :] + it.value())
        if len(chunk) >= per_chunk:
            yield b"".join(chunk)
            chunk = []
        it.next()
    if chunk:
        yield b"".join(chunk)


def meta_key(prefix: bytes, sequence: int) -> bytes:
    return prefix + META + U64.pack(sequence)


def data_prefix(prefix: bytes, sequence: int) -> bytes:
    return prefix + DATA + U64.pack(sequence)


def column_key(prefix: bytes, sequence: int, name: str, kind: int) -> bytes:
    return data_prefix(prefix, sequence) + COLUMN + bytes([kind]) + name.encode()


@dataclass(frozen=True)
class SegmentInfo:
    """A sealed segment's metadata (the Segment message without data; its ColumnChunks carry
    name, type, count and stats only) and the bytes its data takes in RocksDB."""

    meta: storage_pb2.Segment
    nbytes: int
    # Per (field, type) min/max/count, for pruning segments without reading their data.
    column_stats: dict[tuple[str, int], ColumnStats]
    # Per (field, type) rows holding a value; both are computed once, not per query.
    column_counts: dict[tuple[str, int], int]


def _encode_meta(meta: storage_pb2.Segment, nbytes: int) -> bytes:
    return U64.pack(nbytes) + meta.SerializeToString()


def decode_meta(raw: bytes) -> SegmentInfo:
    meta = storage_pb2.Segment()
    meta.ParseFromString(raw[U64.size :])
    counts = {(c.name, int(c.type)): c.count for c in meta.columns}
    return SegmentInfo(meta, U64.unpack_from(raw)[0], segment_column_stats(meta), counts)


def _strip(segment: storage_pb2.Segment) -> storage_pb2.Segment:
    meta = storage_pb2.Segment()
    meta.CopyFrom(segment)
    meta.ClearField("timestamps")
    meta.ClearField("event_ids")
    for chunk in meta.columns:
        chunk.ClearField("rows")
        chunk.ClearField("values")
        chunk.ClearField("dictionary")
    return meta


def segment_records(prefix: bytes, segment: storage_pb2.Segment) -> list[tuple[bytes, bytes]]:
    """Every key/value of one sealed segment, its metadata record last."""
    validate_segment(segment)
    seq = segment.sequence
    data = data_prefix(prefix, seq)
    records = [(data + TIMESTAMPS, segment.timestamps), (data + EVENT_IDS, segment.event_ids)]
    for chunk in segment.columns:
        records.append((column_key(prefix, seq, chunk.name, chunk.type), chunk.SerializeToString()))
    nbytes = sum(len(value) for _, value in records)
    records.append((meta_key(prefix, seq), _encode_meta(_strip(segment), nbytes)))
    return records


def delete_segment(batch: WriteBatch, prefix: bytes, sequence: int) -> None:
    """Adds the deletion of one sealed segment, data and metadata, to `batch`."""
    data = data_prefix(prefix, sequence)
    batch.delete_range(data, data + b"\xff")
    batch.delete(meta_key(prefix, sequence))


def read_segment(snap: Snapshot, prefix: bytes, info: SegmentInfo) -> storage_pb2.Segment:
    """The full sealed segment `info` describes, as of the snapshot."""
    seq = info.meta.sequence
    segment = storage_pb2.Segment()
    segment.CopyFrom(info.meta)
    data = data_prefix(prefix, seq)
    segment.timestamps = snap[data + TIMESTAMPS]
    segment.event_ids = snap[data + EVENT_IDS]
    for chunk in segment.columns:
        chunk.ParseFromString(snap[column_key(prefix, seq, chunk.name, chunk.type)])
    return segment
