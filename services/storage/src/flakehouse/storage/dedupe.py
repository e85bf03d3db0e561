"""A bounded memory of the event ids a partition has applied, to drop replayed events.

The newest ids sit in a small set; every CHUNK of them is frozen into a sorted numpy uint64
array (8 bytes an id, against ~70 for a Python set), and the oldest chunks are forgotten once the
rest still cover `capacity` ids. So any id among the last `capacity` applied is remembered, and
memory stays near 8 x (capacity + CHUNK) bytes. A batch is checked at once with a binary search
per chunk. A duplicate arrives when an upload is retried or a producer retries, within minutes;
the window covers far more events than that on a partition (docs/architecture.md, Storage)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

CHUNK = 65_536

IdArray = npt.NDArray[np.uint64]


class DedupeWindow:
    def __init__(self, capacity: int, chunk: int = CHUNK) -> None:
        self.capacity = capacity
        self._chunk = max(1, min(chunk, capacity)) if capacity > 0 else 1
        self._young: set[int] = set()
        self._frozen: deque[IdArray] = deque()
        self._frozen_ids = 0

    def __len__(self) -> int:
        return len(self._young) + self._frozen_ids

    def __contains__(self, event_id: object) -> bool:
        return isinstance(event_id, int) and bool(self.seen([event_id]))

    @property
    def nbytes(self) -> int:
        """Memory of the frozen chunks (the young set holds fewer than one chunk of ids)."""
        return sum(chunk.nbytes for chunk in self._frozen)

    def seen(self, event_ids: Sequence[int]) -> set[int]:
        """The ids among `event_ids` that were applied before."""
        found = {i for i in event_ids if i in self._young}
        if self._frozen and event_ids:
            ids = np.fromiter(event_ids, dtype=np.uint64, count=len(event_ids))
            hit = np.zeros(len(ids), dtype=bool)
            for chunk in self._frozen:
                where = np.minimum(np.searchsorted(chunk, ids), len(chunk) - 1)
                hit |= chunk[where] == ids
            if hit.any():
                found.update(ids[hit].tolist())
        return found

    def add_many(self, event_ids: Iterable[int]) -> None:
        if self.capacity <= 0:
            return
        self._young.update(event_ids)
        if len(self._young) >= self._chunk:
            frozen = np.sort(np.fromiter(self._young, dtype=np.uint64, count=len(self._young)))
            self._frozen.append(frozen)
            self._frozen_ids += len(frozen)
            self._young = set()
            # Forget the oldest chunk only while the others still cover the capacity.
            while self._frozen and self._frozen_ids - len(self._frozen[0]) >= self.capacity:
                self._frozen_ids -= len(self._frozen.popleft())
