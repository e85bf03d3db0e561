"""The bytes of quantile states (FORMAT.md): version 2 written, one state or many groups' at
once, and read, one state or all the states of a batch with a few numpy gathers."""

from __future__ import annotations

import struct

import numpy as np
import numpy.typing as npt

from flakehouse.sketches import packed
from flakehouse.sketches.errors import SketchFormatError
from flakehouse.sketches.packed import Flat, Ints
from flakehouse.sketches.quantile_buckets import (
    CODE_BITS,
    MAX_COUNT,
    N_CODES,
    checked_triples,
    summed,
)
from flakehouse.sketches.quantile_v1 import MAGIC_V1, decode_v1  # REMOVAL of version 1: FORMAT.md

MAGIC = b"FHQ\x02"
# Version 2: magic, buckets, first code, widths (count class | step class << 2).
_HEADER = struct.Struct("<4sIIB")
_HEADER_DTYPE = np.dtype([("magic", "S4"), ("n", "<u4"), ("first", "<u4"), ("widths", "u1")])
_WIDTHS_LIMIT = 12  # widths bytes from 12 up have bits 4-7 set or a step class of 3
_UINTS = ("<u1", "<u2", "<u4", "<u8")

# -- writing -----------------------------------------------------------------------------------


def encode_one(codes: Ints, counts: Ints) -> bytes:
    """The bytes of the state of these buckets (codes ascending, counts ≥ 1)."""
    if not len(codes):
        return b""
    steps = np.diff(codes)
    count_class = packed.width_class(int(counts.max()))
    step_class = packed.width_class(int(steps.max())) if len(steps) else 0
    header = _HEADER.pack(MAGIC, len(codes), int(codes[0]), count_class | step_class << 2)
    return (
        header
        + steps.astype(_UINTS[step_class]).tobytes()
        + counts.astype(_UINTS[count_class]).tobytes()
    )


def encode_many(states: Ints, codes: Ints, counts: Ints, n_states: int) -> list[bytes]:
    """The bytes of each state 0..n_states-1 from its buckets: (state, code, count) triples
    sorted by state and code, without repeats, counts ≥ 1. The same bytes as `encode_one`,
    written for all states at once into one buffer."""
    result = [b""] * n_states
    if not len(states):
        return result
    per_state = np.bincount(states, minlength=n_states)
    present = np.flatnonzero(per_state)
    n = per_state[present]
    firsts = np.cumsum(n) - n  # each state's first triple
    steps = np.diff(codes, prepend=0)
    steps[firsts] = 0
    count_class = packed.width_classes(np.maximum.reduceat(counts, firsts))
    step_class = packed.width_classes(np.maximum.reduceat(steps, firsts))
    count_width, step_width = 1 << count_class, 1 << step_class
    sizes = _HEADER.size + (n - 1) * step_width + n * count_width
    ends = np.cumsum(sizes)
    offsets = ends - sizes
    out = np.empty(int(ends[-1]), dtype=np.uint8)
    header = np.empty(len(present), dtype=_HEADER_DTYPE)
    header["magic"] = MAGIC
    header["n"] = n
    header["first"] = codes[firsts]
    header["widths"] = count_class | step_class << 2
    out[offsets[:, None] + np.arange(_HEADER.size)] = header.view(np.uint8).reshape(
        -1, _HEADER.size
    )
    index = np.arange(len(codes)) - np.repeat(firsts, n)  # of the bucket in its state
    body = np.repeat(offsets + _HEADER.size, n)
    each_step, each_count = np.repeat(step_width, n), np.repeat(count_width, n)
    counts_at = body + np.repeat((n - 1) * step_width, n) + index * each_count
    packed.scatter(out, counts_at, counts, each_count)
    later = index > 0
    steps_at = body[later] + (index[later] - 1) * each_step[later]
    packed.scatter(out, steps_at, steps[later], each_step[later])
    data = out.tobytes()
    for state, start, end in zip(present.tolist(), offsets.tolist(), ends.tolist(), strict=True):
        result[state] = data[start:end]
    return result


def encode_counts(codes: npt.ArrayLike, counts: npt.ArrayLike) -> bytes:
    """`to_bytes()` of the state holding counts[i] values of bucket code codes[i] (codes may
    repeat, in any order), without building the library's objects."""
    return encode_one(*summed(codes, counts))


def encode_grouped(
    groups: npt.ArrayLike, codes: npt.ArrayLike, counts: npt.ArrayLike, n_groups: int
) -> list[bytes]:
    """`to_bytes()` of the state of each group 0..n_groups-1, from (group, code, count) triples
    sorted by group and code without repeats (storage nodes serialize many groups this way);
    b"" for a group without triples."""
    return encode_many(*checked_triples(groups, codes, counts, n_groups), n_groups)


def _decode_v2(data: bytes) -> tuple[Ints, Ints]:
    """The codes and counts of a version 2 state, validated."""
    if len(data) < _HEADER.size:
        raise SketchFormatError("quantile state truncated (shorter than its header)")
    _, n, first, widths = _HEADER.unpack_from(data)
    if widths >= _WIDTHS_LIMIT:
        raise SketchFormatError(f"quantile state widths byte {widths:#04x} is not valid")
    count_class, step_class = widths & 3, widths >> 2
    if n == 0:
        raise SketchFormatError("empty quantile state (the empty state is no bytes)")
    size = _HEADER.size + (n - 1) * (1 << step_class) + n * (1 << count_class)
    if len(data) != size:
        raise SketchFormatError(
            f"quantile state of {len(data)} bytes, not the {size} of its {n} buckets"
        )
    if first >= N_CODES:
        raise SketchFormatError(f"quantile bucket code {first} outside [0, {N_CODES})")
    steps = np.frombuffer(data, _UINTS[step_class], n - 1, _HEADER.size).astype(np.int64)
    at = _HEADER.size + (n - 1) * (1 << step_class)
    counts = np.frombuffer(data, _UINTS[count_class], n, at).astype(np.uint64)
    if len(steps) and int(steps.min()) < 1:
        raise SketchFormatError("quantile bucket codes are not strictly ascending")
    if (len(steps) and int(steps.max()) >= N_CODES) or first + int(steps.sum()) >= N_CODES:
        raise SketchFormatError(f"quantile bucket code outside [0, {N_CODES})")
    if int(counts.min()) < 1:
        raise SketchFormatError("quantile state has a bucket of count 0")
    if int(counts.max()) > MAX_COUNT or float(counts.sum(dtype=np.float64)) > 2.0**62:
        raise SketchFormatError("quantile state counts more than 2^53 values")
    total = int(counts.sum())  # exact in uint64: below 2^62 and some
    if total > MAX_COUNT:
        raise SketchFormatError(f"quantile state counts {total} values, more than 2^53")
    canonical_steps = packed.width_class(int(steps.max())) if len(steps) else 0
    if count_class != packed.width_class(int(counts.max())) or step_class != canonical_steps:
        raise SketchFormatError("quantile state widths are not the narrowest (not canonical)")
    codes = np.empty(n, dtype=np.int64)
    codes[0] = first
    np.cumsum(steps, out=codes[1:])
    codes[1:] += first
    return codes, counts.astype(np.int64)


def decode(data: bytes) -> tuple[Ints, Ints]:
    """The codes (ascending) and counts of a non-empty state's buckets, of either version,
    validated; raises SketchFormatError otherwise."""
    if len(data) < len(MAGIC) or data[:3] != MAGIC[:3]:
        raise SketchFormatError("not a quantile state (bad magic or truncated)")
    if data[3] == MAGIC[3]:
        return _decode_v2(data)
    if data[3] == MAGIC_V1[3]:  # REMOVAL of version 1: FORMAT.md
        return decode_v1(data)
    raise SketchFormatError(f"quantile state version {data[3]} is not supported")


# -- reading a batch ---------------------------------------------------------------------------

_MAGIC_WORD = int.from_bytes(MAGIC, "little")
_MAGIC_V1_WORD = int.from_bytes(MAGIC_V1, "little")  # REMOVAL of version 1: FORMAT.md
_V1, _V2, _BAD = 1, 2, -1


def decode_many(flat: Flat) -> tuple[Ints, Ints]:
    """The buckets of every state of `flat` as keys (group << CODE_BITS | code) and counts:
    version 2 states decoded and validated with numpy for all at once (the checks of
    `_decode_v2`), version 1 ones one by one. Raises SketchFormatError for the first malformed
    state, with the message of `decode` and its place in the batch."""
    buf, starts, lengths = flat.buf, flat.starts, flat.lengths
    kind = np.zeros(len(lengths), dtype=np.int64)  # 0 for empty states
    kind[lengths > 0] = _BAD
    sized = np.flatnonzero(lengths >= len(MAGIC))
    magic = packed.gather(buf, starts[sized], 4)
    # REMOVAL of version 1: FORMAT.md. decode_v1 refuses those too short.
    kind[sized[magic == _MAGIC_V1_WORD]] = _V1
    kind[sized[(magic == _MAGIC_WORD) & (lengths[sized] >= _HEADER.size)]] = _V2
    bad = [np.flatnonzero(kind == _BAD)]

    # Headers, all in one gather.
    states = np.flatnonzero(kind == _V2)
    header = buf[starts[states, None] + np.arange(_HEADER.size)].view(_HEADER_DTYPE).reshape(-1)
    n = header["n"].astype(np.int64)
    first = header["first"].astype(np.int64)
    widths = header["widths"].astype(np.int64)
    valid = widths < _WIDTHS_LIMIT
    count_class, step_class = widths & 3, np.where(valid, widths >> 2, 0)
    size = _HEADER.size + (n - 1) * (1 << step_class) + n * (1 << count_class)
    wrong = ~valid | (n == 0) | (size != lengths[states]) | (first >= N_CODES)
    wrong |= (n == 1) & (step_class > 0)  # one bucket and wide steps: not canonical
    bad.append(states[wrong])
    right = ~wrong
    states, n, first = states[right], n[right], first[right]
    count_class, step_class = count_class[right], step_class[right]

    # Steps and counts: the sections of each width in one boolean mask over the joined bytes.
    # The first bucket of each state has no step.
    firsts = np.cumsum(n) - n
    total = int(n.sum())
    steps = np.zeros(total, dtype=np.int64)
    counts = np.zeros(total, dtype=np.int64)
    steps_at = starts[states] + _HEADER.size
    counts_at = steps_at + (n - 1) * (1 << step_class)
    for cls in np.flatnonzero(np.bincount(step_class, minlength=4)).tolist():
        chosen = np.flatnonzero(step_class == cls)
        got = packed.sections(buf, steps_at[chosen], n[chosen] - 1, 1 << cls)
        offsets = np.cumsum(n[chosen] - 1) - (n[chosen] - 1)
        wrong_at = np.flatnonzero((got == 0) | (got >= N_CODES))
        if len(wrong_at):
            bad.append(states[chosen[[packed.first_of(offsets, int(wrong_at[0]))]]])
        if cls:  # canonical: some step needs this width
            small = np.maximum.reduceat(got, offsets) < 1 << (4 << cls)
            bad.append(states[chosen[small]])
        if len(chosen) == len(states):
            later = np.ones(total, dtype=bool)
            later[firsts] = False
        else:
            later = packed.segments(total, firsts[chosen] + 1, n[chosen] - 1)
        steps[later] = np.minimum(got, N_CODES)  # kept below N_CODES (and refused) if above
    for cls in np.flatnonzero(np.bincount(count_class, minlength=4)).tolist():
        chosen = np.flatnonzero(count_class == cls)
        got = packed.sections(buf, counts_at[chosen], n[chosen], 1 << cls)
        offsets = np.cumsum(n[chosen]) - n[chosen]
        wrong_at = np.flatnonzero((got == 0) | (got > MAX_COUNT))
        if len(wrong_at):
            bad.append(states[chosen[[packed.first_of(offsets, int(wrong_at[0]))]]])
        if cls:
            small = np.maximum.reduceat(got, offsets) < 1 << (4 << cls)
            bad.append(states[chosen[small]])
        clipped = np.minimum(got, MAX_COUNT + 1).astype(np.int64)
        if len(chosen) == len(states):
            counts = clipped
        else:
            counts[packed.segments(total, firsts[chosen], n[chosen])] = clipped
    if total:
        if bool((count_class == 3).any()):
            # Int sums of up to ~2^17 counts of 2^53 could wrap: floats first.
            bad.append(states[np.add.reduceat(counts.astype(np.float64), firsts) > 2.0**62])
        bad.append(states[np.add.reduceat(counts, firsts) > MAX_COUNT])
        last = first + np.add.reduceat(steps, firsts)
        bad.append(states[last >= N_CODES])
        # Keys: one cumulative sum over all steps, each state's first step going from the key
        # of the last bucket before to the key of its first bucket.
        high = flat.group_of[states] << CODE_BITS
        steps[firsts] = high + first - np.concatenate([[0], (high + last)[:-1]])
    keys = np.cumsum(steps)

    first_bad = flat.first(bad)
    extra_keys, extra_counts = [keys], [counts]
    for state in np.flatnonzero(kind == _V1).tolist():  # REMOVAL of version 1: FORMAT.md
        if state > first_bad:
            break
        codes, more = flat.decode(state, decode_v1)
        extra_keys.append(int(flat.group_of[state]) << CODE_BITS | codes)
        extra_counts.append(more)
    if first_bad < len(lengths):
        flat.refuse(first_bad, decode, "quantile")
    if len(extra_keys) > 1:
        return np.concatenate(extra_keys), np.concatenate(extra_counts)
    return keys, counts
