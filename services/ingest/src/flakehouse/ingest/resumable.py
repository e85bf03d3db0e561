"""Where resumable uploads keep their bytes between streams.

An upload whose header carries a ``resume_key`` is spooled to ``<spool_dir>/resumable/<key>``
instead of a temporary file, with the header beside it. When its stream is cut (a network
drop, the client's progress deadline, this process killed and restarted), the next stream with
the same key finds the bytes on disk and the client sends only the rest. The spool goes when
the upload ends (its events produced, or the file refused), or after ``ttl_s`` without a
stream. A finished upload's result is remembered for the same time, so a client that lost the
answer, not the upload, gets it back without sending anything.

Within this process one stream owns a key at a time: a new stream takes a key over from one
that is still receiving (its connection is probably dead), and waits its turn behind one that
is already parsing or producing. No gRPC and no Kafka here."""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from flakehouse.core.errors import Aborted, InvalidArgument
from flakehouse.ingest.uploads import Spool
from flakehouse.ingest.v1 import ingest_pb2

HASH_BLOCK = 1024 * 1024
MAX_RESULTS = 10_000


@dataclass
class Owner:
    """A stream holding a key; ``receiving`` is false once every byte arrived."""

    receiving: bool = True
    superseded: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)


class ResumableSpools:
    def __init__(self, spool_dir: str | None, ttl_s: float) -> None:
        self._root = Path(spool_dir or tempfile.gettempdir()) / "resumable"
        self._root.mkdir(parents=True, exist_ok=True)
        self._ttl_s = ttl_s
        self._owners: dict[str, Owner] = {}
        self._results: OrderedDict[str, tuple[float, ingest_pb2.UploadResult]] = OrderedDict()

    def finished(self, key: str) -> ingest_pb2.UploadResult | None:
        """The result of an upload with this key that ended within ttl_s, if any."""
        self._forget_old_results()
        entry = self._results.get(key)
        return entry[1] if entry else None

    def remember(self, key: str, result: ingest_pb2.UploadResult) -> None:
        self._results[key] = (time.monotonic(), result)
        self._results.move_to_end(key)
        while len(self._results) > MAX_RESULTS:
            self._results.popitem(last=False)

    async def claim(self, key: str) -> Owner:
        """Makes this stream the key's owner: takes over from a stream still receiving, waits for
        one past that (it may finish the upload, which ``finished`` then answers)."""
        while (current := self._owners.get(key)) is not None:
            if current.receiving:
                current.superseded = True
                break
            await current.done.wait()
        owner = Owner()
        self._owners[key] = owner
        return owner

    def release(self, key: str, owner: Owner) -> None:
        owner.done.set()
        if self._owners.get(key) is owner:
            del self._owners[key]

    async def open(self, header: ingest_pb2.UploadHeader) -> Spool:
        """The key's spool, holding what earlier streams received (checked against this
        header), or a new one."""
        return await asyncio.to_thread(self._open, header)

    def _open(self, header: ingest_pb2.UploadHeader) -> Spool:
        path = self._root / header.resume_key
        header_path = path.with_name(path.name + ".header")
        identity = _identity(header)
        if path.exists() and header_path.exists():
            if header_path.read_bytes() != identity:
                raise InvalidArgument(
                    f"resume_key {header.resume_key!r} belongs to another upload (different "
                    "dataset, labels, format or upload_id): use a new key for a new upload"
                )
            digest = hashlib.sha256()
            with path.open("rb") as held:
                while block := held.read(HASH_BLOCK):
                    digest.update(block)
            return Spool(path, path.open("ab"), path.stat().st_size, digest, keep=header_path)
        header_path.write_bytes(identity)
        return Spool(path, path.open("wb"), keep=header_path)

    def sweep(self) -> int:
        """Removes spools no stream touched for ttl_s (a client that gave up); how many."""
        cutoff = time.time() - self._ttl_s
        removed = 0
        for path in self._root.iterdir():
            try:
                if path.suffix == ".header" or path.stat().st_mtime >= cutoff:
                    continue
                if path.suffix in (".records", ".progress"):
                    # A stream's own files, left by a parse that outlived its stream.
                    if path.name.rsplit(".", 2)[0] not in self._owners:
                        path.unlink(missing_ok=True)
                elif path.name not in self._owners:
                    Spool(path, None, keep=path.with_name(path.name + ".header")).close()
                    removed += 1
            except FileNotFoundError:
                continue
        self._forget_old_results()
        return removed

    def _forget_old_results(self) -> None:
        cutoff = time.monotonic() - self._ttl_s
        while self._results and next(iter(self._results.values()))[0] < cutoff:
            self._results.popitem(last=False)


def check_owner(owner: Owner) -> None:
    if owner.superseded:
        raise Aborted("a newer stream of this upload took it over")


def _identity(header: ingest_pb2.UploadHeader) -> bytes:
    """What must match between the streams of one upload."""
    same = ingest_pb2.UploadHeader(
        dataset=header.dataset,
        format=header.format,
        labels=header.labels,
        upload_id=header.upload_id,
        upload_time_us=header.upload_time_us,
    )
    return same.SerializeToString(deterministic=True)
