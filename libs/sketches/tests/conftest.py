"""Helpers of the sketch tests, offered as fixtures (test modules cannot import each other under
importlib mode): quantile states in the version 1 form that earlier releases wrote."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable

import numpy as np
import pytest
from ddsketch.mapping import LogarithmicMapping
from ddsketch.pb import ddsketch_pb2

from flakehouse.sketches import RELATIVE_ACCURACY
from flakehouse.sketches.quantile_buckets import (
    CODE_NAN,
    CODE_NEG_INF,
    CODE_POS_INF,
    CODE_ZERO,
    KEY_MAX,
    KEY_MIN,
)

V1 = Callable[..., bytes]


def v2_buckets(data: bytes) -> tuple[list[int], list[int]]:
    """Codes and counts of version 2 bytes, read as FORMAT.md describes them."""
    magic, n, first, widths = struct.unpack_from("<4sIIB", data)
    assert magic == b"FHQ\x02" and widths < 12
    count_width, step_width = 1 << (widths & 3), 1 << (widths >> 2)
    at = 13 + (n - 1) * step_width
    steps = [
        int.from_bytes(data[13 + i * step_width : 13 + (i + 1) * step_width], "little")
        for i in range(n - 1)
    ]
    counts = [
        int.from_bytes(data[at + i * count_width : at + (i + 1) * count_width], "little")
        for i in range(n)
    ]
    assert len(data) == at + n * count_width
    codes = [first]
    for step in steps:
        codes.append(codes[-1] + step)
    return codes, counts


def v1_bytes(data: bytes, *, sparse: bool = False) -> bytes:
    """The version 1 bytes of the state whose version 2 bytes are `data`: its stores as
    contiguous bins, or as sparse `binCounts` maps."""
    if not data:
        return b""
    codes, counts = v2_buckets(data)
    specials = {CODE_NAN: 0, CODE_NEG_INF: 0, CODE_POS_INF: 0, CODE_ZERO: 0}
    negative: dict[int, int] = {}
    positive: dict[int, int] = {}
    for code, count in zip(codes, counts, strict=True):
        if code in specials:
            specials[code] = count
        elif code < CODE_ZERO:
            negative[KEY_MAX - (code - 1)] = count
        else:
            positive[code - CODE_ZERO - 1 + KEY_MIN] = count
    message = ddsketch_pb2.DDSketch()
    message.mapping.gamma = LogarithmicMapping(RELATIVE_ACCURACY).gamma
    for store, bins in ((message.negativeValues, negative), (message.positiveValues, positive)):
        if not bins:
            continue
        if sparse:
            for key, count in bins.items():
                store.binCounts[key] = float(count)
        else:
            low = min(bins)
            dense = np.zeros(max(bins) - low + 1)
            for key, count in bins.items():
                dense[key - low] = count
            store.contiguousBinIndexOffset = low
            store.contiguousBinCounts.extend(dense.tolist())
    message.zeroCount = float(specials[CODE_ZERO])
    header = struct.pack(
        "<4sQQQ", b"FHQ\x01", specials[CODE_NAN], specials[CODE_NEG_INF], specials[CODE_POS_INF]
    )
    return header + message.SerializeToString()


@pytest.fixture
def v1() -> V1:
    """`v1_bytes`: version 1 bytes of the state of some version 2 bytes."""
    return v1_bytes


@pytest.fixture
def buckets() -> Callable[[bytes], tuple[list[int], list[int]]]:
    """`v2_buckets`: codes and counts of version 2 bytes, read independently of the module."""
    return v2_buckets


Corrupt = Callable[[random.Random, bytes, int | None], bytes]


def _corrupt(rng: random.Random, data: bytes, head: int | None = None) -> bytes:
    """`data` damaged at random: cut short (40 %), 1 to 3 bytes overwritten (40 %; within the
    first `head` bytes when given), or replaced by random bytes (20 %)."""
    damaged = bytearray(data)
    action = rng.random()
    if action < 0.4:
        return bytes(damaged[: rng.randrange(len(damaged))])
    if action < 0.8:
        span = len(damaged) if head is None else min(len(damaged), head)
        for _ in range(rng.randrange(1, 4)):
            damaged[rng.randrange(span)] = rng.randrange(256)
        return bytes(damaged)
    return rng.randbytes(rng.randrange(1, 80))


@pytest.fixture
def corrupt() -> Corrupt:
    return _corrupt
