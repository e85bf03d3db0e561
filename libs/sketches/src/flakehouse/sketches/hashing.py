"""Typed 64-bit hashes of field values for count distinct: a value's hash depends on its type
and value, so 1, 1.0, '1' and true are four distinct values, as in the query service's GROUP BY.

The canonical encoding, which storage nodes and the query service must share:

- INT: the int64 two's-complement bits.
- FLOAT: the IEEE-754 binary64 bits, after -0.0 → 0.0 and every NaN → 0x7ff8000000000000
  (so 0.0 and -0.0 are one value and NaNs are one value, like the GROUP BY keys and DuckDB).
- BOOL: 0 or 1.
- STRING: the first 8 bytes (little-endian) of BLAKE2b over the UTF-8 bytes, with a
  personalization string of its own.

The 8 bytes of a number or bool go through the MurmurHash3 64-bit finalizer, are XOR-ed with a
constant of their type, and go through the finalizer again. The finalizer is a bijection, so two
ints (or two floats, or two bools) never share a hash; values of different types, and strings,
collide with probability 2^-64 per pair. Numbers and bools are hashed with numpy, strings one
by one (callers hash each distinct string once, e.g. a segment's dictionary)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

Hashes = npt.NDArray[np.uint64]

_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)
# One constant per type (digits of pi), so equal bit patterns of different types part ways.
_SALT_INT = np.uint64(0x243F6A8885A308D3)
_SALT_FLOAT = np.uint64(0x13198A2E03707344)
_SALT_BOOL = np.uint64(0xA4093822299F31D0)
_STRING_PERSON = b"flakehouse/str"
_CANONICAL_NAN = np.uint64(0x7FF8000000000000)


def _fmix64(x: Hashes) -> Hashes:
    """MurmurHash3's 64-bit finalizer (a bijection); uint64 arithmetic wraps, as intended."""
    x = x ^ (x >> _S33)
    x = x * _M1
    x = x ^ (x >> _S33)
    x = x * _M2
    return x ^ (x >> _S33)


def _typed(bits: Hashes, salt: np.uint64) -> Hashes:
    return _fmix64(_fmix64(bits) ^ salt)


def hash_ints(values: npt.ArrayLike) -> Hashes:
    """Hashes of int64 values."""
    array = np.ascontiguousarray(values, dtype=np.int64)
    return _typed(array.view(np.uint64), _SALT_INT)


def hash_floats(values: npt.ArrayLike) -> Hashes:
    """Hashes of float64 values; 0.0 and -0.0 hash alike, and so do all NaNs."""
    array = np.array(values, dtype=np.float64)  # a copy: canonicalized in place below
    array[array == 0.0] = 0.0
    bits = array.view(np.uint64)
    bits[np.isnan(array)] = _CANONICAL_NAN
    return _typed(bits, _SALT_FLOAT)


def hash_bools(values: npt.ArrayLike) -> Hashes:
    """Hashes of bool values."""
    array = np.asarray(values, dtype=bool)
    return _typed(array.astype(np.uint64), _SALT_BOOL)


_STRING_HASHER = hashlib.blake2b(digest_size=8, person=_STRING_PERSON)


def hash_strings(values: Iterable[str]) -> Hashes:
    """Hashes of strings (one BLAKE2b each, ~0.4 µs: pass each distinct string once)."""
    digests = []
    for s in values:
        # Copying a keyed hasher is about twice as fast as making one.
        hasher = _STRING_HASHER.copy()
        hasher.update(s.encode("utf-8", "surrogatepass"))
        digests.append(hasher.digest())
    return np.frombuffer(b"".join(digests), dtype="<u8").astype(np.uint64)


def hash_scalars(values: Iterable[object]) -> Hashes:
    """Hashes of Python scalars (str, int, float, bool), NULLs (None) skipped. For tests and
    small inputs; bulk callers hash typed numpy columns with the functions above."""
    ints: list[int] = []
    floats: list[float] = []
    bools: list[bool] = []
    strings: list[str] = []
    for value in values:
        # bool before int: bool is a subclass of int.
        if value is None:
            continue
        if isinstance(value, bool):
            bools.append(value)
        elif isinstance(value, int):
            ints.append(value)
        elif isinstance(value, float):
            floats.append(value)
        elif isinstance(value, str):
            strings.append(value)
        else:
            raise TypeError(f"not a scalar: {type(value).__name__}")
    parts: Sequence[Hashes] = [
        hash_ints(np.array(ints, dtype=np.int64)),
        hash_floats(np.array(floats, dtype=np.float64)),
        hash_bools(np.array(bools, dtype=bool)),
        hash_strings(strings),
    ]
    return np.concatenate(parts)
