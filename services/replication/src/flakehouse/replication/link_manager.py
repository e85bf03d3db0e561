"""The links of this cluster (DESIGN.md §12): their records, kept in Kafka (link_store), and one
puller each, run by the replication replica that leads (one active puller per link, however
many replicas run). Adding a link checks the source first, so that a wrong address, CA, token or
dataset is said at once rather than found in a status later."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import Callable

from flakehouse.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    FlakehouseError,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from flakehouse.replication.link_store import LinkStore
from flakehouse.replication.puller import LinkPorts, LinkPuller
from flakehouse.replication.v1 import replication_pb2

log = logging.getLogger(__name__)

LINK_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
ADDRESS = re.compile(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}")
MAX_TOKEN_BYTES = 4096
MAX_CA_BYTES = 256 * 1024


class LinkManager:
    def __init__(
        self, store: LinkStore, ports: LinkPorts, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._ports = ports
        self._clock = clock
        self._pullers: dict[str, LinkPuller] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._lock = asyncio.Lock()
        self.leading = False

    @property
    def local_cluster(self) -> str:
        return self._ports.local_cluster

    @property
    def pullers(self) -> list[LinkPuller]:
        # A copy first: the metrics endpoint reads this from another thread.
        return [puller for _, puller in sorted(self._pullers.copy().items())]

    async def start(self) -> None:
        """Takes every link on, from its checkpoint: called once this replica leads."""
        links, checkpoints = await self._store.load()
        for link in links.values():
            self._run(link, checkpoints.get(link.id, replication_pb2.LinkCheckpoint()))
        self.leading = True
        log.info("links taken on", extra={"links": sorted(links)})

    def _run(
        self, link: replication_pb2.LinkRecord, checkpoint: replication_pb2.LinkCheckpoint
    ) -> None:
        puller = LinkPuller(link, checkpoint, self._ports, self._clock)
        self._pullers[link.name] = puller
        self._tasks[link.name] = asyncio.create_task(puller.run(), name=f"link-{link.name}")

    def _check_leading(self) -> None:
        if not self.leading:
            raise Unavailable(
                "this replication replica does not lead; ask again", retry_after_ms=1000
            )

    async def add(self, request: replication_pb2.AddLinkRequest) -> LinkPuller:
        self._check_leading()
        link = replication_pb2.LinkRecord(
            name=request.name,
            id=secrets.token_hex(8),
            source_address=request.source_address.strip(),
            dataset=request.dataset,
            token=request.token.strip(),
            ca_pem=request.ca_pem,
            created_us=int(self._clock() * 1e6),
        )
        _validate(link)
        async with self._lock:
            if link.name in self._pullers:
                raise AlreadyExists(f"link {link.name!r} exists; remove it first to change it")
            await self._ports.local_topic(link.dataset)  # NotFound: create the dataset first
            source_cluster = await self._check_source(link)
            self._check_leading()  # it may have stopped leading while the source answered
            await self._store.put_link(link)
            self._run(link, replication_pb2.LinkCheckpoint())
            self._pullers[link.name].source_cluster = source_cluster
            log.info(
                "link added",
                extra={"link": link.name, "source": link.source_address, "dataset": link.dataset},
            )
            return self._pullers[link.name]

    async def _check_source(self, link: replication_pb2.LinkRecord) -> str:
        source = self._ports.connect(link)
        try:
            cluster = await source.cluster_id()
            if cluster == self._ports.local_cluster:
                raise InvalidArgument(
                    f"{link.source_address} is this cluster ({cluster}): a link pulls from "
                    "another one"
                )
            await source.dataset(link.dataset)
            return cluster
        except InvalidArgument:
            raise
        except FlakehouseError as exc:
            raise FailedPrecondition(
                f"the source {link.source_address} refused or could not be reached: {exc}"
            ) from None
        finally:
            await source.close()

    async def remove(self, name: str) -> None:
        """Tombstones first, then the puller: a removal that fails (Kafka away, the caller
        gone) leaves the link as it was, kept and running, for the caller to ask again, never
        gone here but kept in Kafka, to come back at the next start."""
        self._check_leading()
        async with self._lock:
            puller = self._pullers.get(name)
            if puller is None:
                raise NotFound(f"no link named {name!r}")
            # Shielded: a caller that gives up mid-way does not cut the two writes apart.
            await asyncio.shield(self._store.remove_link(puller.link))
            task = self._tasks.pop(name)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            del self._pullers[name]
            log.info("link removed", extra={"link": name})

    def statuses(self) -> list[replication_pb2.LinkStatus]:
        self._check_leading()
        return [puller.status() for puller in self.pullers]

    async def stop(self) -> None:
        self.leading = False
        async with self._lock:  # an add under way finds leading False and starts nothing
            tasks = list(self._tasks.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._tasks.clear()
            self._pullers.clear()


def _validate(link: replication_pb2.LinkRecord) -> None:
    if not LINK_NAME.fullmatch(link.name):
        raise InvalidArgument(
            f"invalid link name {link.name!r}: lowercase letters, digits, '-' and '_', "
            "at most 63, starting with a letter or digit"
        )
    if not ADDRESS.fullmatch(link.source_address):
        raise InvalidArgument(
            f"invalid source address {link.source_address!r}: host:port of the other "
            "cluster's ingest service"
        )
    if not link.dataset:
        raise InvalidArgument("a link needs the dataset to pull")
    if len(link.token) > MAX_TOKEN_BYTES or any(c.isspace() for c in link.token):
        raise InvalidArgument("the token must be one line without blanks")
    if len(link.ca_pem) > MAX_CA_BYTES:
        raise InvalidArgument(f"the CA is larger than {MAX_CA_BYTES} bytes")
    if link.ca_pem and b"-----BEGIN CERTIFICATE-----" not in link.ca_pem:
        raise InvalidArgument("the CA must be PEM: a -----BEGIN CERTIFICATE----- block")
