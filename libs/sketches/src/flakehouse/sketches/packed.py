"""Helpers of the batch finalizers: groups of serialized states flattened into one byte buffer,
and little-endian unsigned ints read and written at many byte offsets at once with numpy."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import NoReturn, TypeVar

import numpy as np
import numpy.typing as npt

from flakehouse.sketches.errors import SketchFormatError

Ints = npt.NDArray[np.int64]
Bytes = npt.NDArray[np.uint8]
Words = npt.NDArray[np.uint64]
T = TypeVar("T")

WIDTHS = (1, 2, 4, 8)
"""Byte widths of packed ints, by width class 0..3."""


def width_classes(maxima: Ints) -> Ints:
    """The class (index in WIDTHS) of the narrowest width holding each value (≥ 0)."""
    m = np.asarray(maxima, dtype=np.int64)
    return (m >= 1 << 8).astype(np.int64) + (m >= 1 << 16) + (m >= 1 << 32)


def width_class(maximum: int) -> int:
    return 0 if maximum < 1 << 8 else 1 if maximum < 1 << 16 else 2 if maximum < 1 << 32 else 3


def gather(buf: Bytes, positions: Ints, width: int) -> Words:
    """The little-endian unsigned int of `width` bytes (1, 2, 4 or 8) at each position of buf."""
    if width == 1:
        return buf[positions].astype(np.uint64)
    raw = np.zeros((len(positions), 8), dtype=np.uint8)
    raw[:, :width] = buf[positions[:, None] + np.arange(width)]
    return raw.view("<u8").reshape(-1).astype(np.uint64, copy=False)


def segments(size: int, starts: Ints, lengths: Ints) -> npt.NDArray[np.bool_]:
    """A mask of `size` elements, True in [starts[i], starts[i] + lengths[i]) (segments
    ascending, not overlapping, of length ≥ 0): one np.repeat, no work per element in Python."""
    flags = np.zeros(2 * len(starts) + 1, dtype=bool)
    flags[1::2] = True
    runs = np.empty(2 * len(starts) + 1, dtype=np.int64)
    ends = starts + lengths
    runs[0:-1:2] = starts - np.concatenate([[0], ends[:-1]])
    runs[1::2] = lengths
    runs[-1] = size - (ends[-1] if len(ends) else 0)
    return np.repeat(flags, runs)


def sections(buf: Bytes, starts: Ints, counts: Ints, width: int) -> Words:
    """The little-endian unsigned ints of `width` bytes in counts[i] ints from buf[starts[i]],
    one section after the other."""
    raw = buf[segments(len(buf), starts, counts * width)]
    return raw.view(f"<u{width}").astype(np.uint64)


def first_of(offsets: Ints, index: int) -> int:
    """The segment of element `index`, segments starting at `offsets` (ascending)."""
    return int(np.searchsorted(offsets, index, side="right")) - 1


def scatter(out: Bytes, positions: Ints, values: Ints, widths: Ints) -> None:
    """Write values[i] (≥ 0, fitting its width) as a little-endian int of widths[i] bytes at
    out[positions[i]]."""
    for width in WIDTHS:
        chosen = widths == width
        if not bool(chosen.any()):
            continue
        where, what = positions[chosen], values[chosen]
        if width == 1:
            out[where] = what.astype(np.uint8)
        else:
            raw = what.astype("<u8").view(np.uint8).reshape(-1, 8)
            out[where[:, None] + np.arange(width)] = raw[:, :width]


class Flat:
    """Groups of serialized states as one sequence of states: `states`, the group of each
    (`group_of`), and their bytes joined (`buf`, state i at starts[i]:starts[i]+lengths[i])."""

    def __init__(self, groups: Sequence[Sequence[bytes]]) -> None:
        self.n_groups = len(groups)
        self.sizes = np.fromiter(map(len, groups), dtype=np.int64, count=self.n_groups)
        self.states: list[bytes] = list(itertools.chain.from_iterable(groups))
        self.lengths = np.fromiter(map(len, self.states), dtype=np.int64, count=len(self.states))
        self.starts = np.cumsum(self.lengths) - self.lengths
        self.buf: Bytes = np.frombuffer(b"".join(self.states), dtype=np.uint8)
        self.group_of: Ints = np.repeat(np.arange(self.n_groups), self.sizes)

    def located(self, state: int, error: SketchFormatError) -> SketchFormatError:
        """`error` of state number `state`, saying where in the batch that state is."""
        group = int(self.group_of[state])
        position = state - int(np.sum(self.sizes[:group]))
        return SketchFormatError(f"group {group}, state {position}: {error}")

    def first(self, bad: Iterable[Ints]) -> int:
        """The first state numbered in any of `bad`, or the number of states if none is."""
        return min((int(states.min()) for states in bad if len(states)), default=len(self.states))

    def decode(self, state: int, decode: Callable[[bytes], T]) -> T:
        """decode(bytes of state number `state`), raising its SketchFormatError `located`."""
        try:
            return decode(self.states[state])
        except SketchFormatError as exc:
            raise self.located(state, exc) from None

    def refuse(self, state: int, decode: Callable[[bytes], object], what: str) -> NoReturn:
        """Raise the error of state number `state`, which the batch checks found malformed: the
        message of `decode` (the one-state decoder), located, or a generic one naming `what`."""
        self.decode(state, decode)
        raise self.located(state, SketchFormatError(f"malformed {what} state"))
