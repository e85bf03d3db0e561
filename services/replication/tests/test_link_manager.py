"""Adding, listing and removing links (the records kept, the checks made before a link is kept,
the pullers started and stopped), against a fake store and fake source."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest

from flakehouse.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from flakehouse.replication.link_manager import LinkManager
from flakehouse.replication.link_source import SourceDataset
from flakehouse.replication.v1 import replication_pb2
from services.replication.tests.test_puller import HERE, THERE, FakeSource, Local, ports, record
from tests.support import eventually_async

CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


@dataclass
class FakeStore:
    links: dict[str, replication_pb2.LinkRecord] = field(default_factory=dict)
    checkpoints: dict[str, dict[int, int]] = field(default_factory=dict)
    fail_removal: bool = False

    async def load(
        self,
    ) -> tuple[dict[str, replication_pb2.LinkRecord], dict[str, replication_pb2.LinkCheckpoint]]:
        saved = {
            k: replication_pb2.LinkCheckpoint(next_offsets=v, source_generation=1)
            for k, v in self.checkpoints.items()
        }
        return dict(self.links), saved

    async def put_link(self, link: replication_pb2.LinkRecord) -> None:
        self.links[link.name] = link

    async def remove_link(self, link: replication_pb2.LinkRecord) -> None:
        if self.fail_removal:
            raise Unavailable("Kafka did not acknowledge")
        del self.links[link.name]
        self.checkpoints.pop(link.id, None)

    async def checkpoint(self, link_id: str, saved: replication_pb2.LinkCheckpoint) -> None:
        self.checkpoints[link_id] = dict(saved.next_offsets)


class RefusingSource(FakeSource):
    async def dataset(self, name: str) -> SourceDataset:
        raise PermissionDenied(f"the token may not read {name!r}")


def manager(store: FakeStore, source: FakeSource, local: Local | None = None) -> LinkManager:
    # The puller tests' ports, with checkpoints kept in the store, where a restart finds them.
    checkpointed = replace(ports(local or Local(), source), checkpoint=store.checkpoint)
    return LinkManager(store, checkpointed)  # type: ignore[arg-type]


def add_request(**changes: object) -> replication_pb2.AddLinkRequest:
    fields: dict[str, object] = {
        "name": "from-there",
        "source_address": "there.example.com:443",
        "dataset": "ci",
        "token": "secret-token",
        "ca_pem": CA,
    }
    fields.update(changes)
    return replication_pb2.AddLinkRequest(**fields)  # type: ignore[arg-type]


async def test_an_added_link_is_kept_pulls_and_lists_without_its_secrets() -> None:
    store, source = FakeStore(), FakeSource([record(0, 0, 1)])
    links = manager(store, source)
    await links.start()
    try:
        puller = await links.add(add_request())
        kept = store.links["from-there"]
        assert (kept.token, kept.ca_pem, kept.dataset) == ("secret-token", CA, "ci")
        assert puller.source_cluster == THERE
        await eventually_async(lambda: store.checkpoints.get(kept.id) == {0: 1}, "checkpoint")
        (status,) = links.statuses()
        assert (status.name, status.has_token, status.has_ca) == ("from-there", True, True)
        assert "secret-token" not in str(status) and "BEGIN" not in str(status)
        with pytest.raises(AlreadyExists):
            await links.add(add_request(source_address="other:1"))
    finally:
        await links.stop()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "Bad Name"}, "invalid link name"),
        ({"source_address": "no-port"}, "invalid source address"),
        ({"name": "name\n"}, "invalid link name"),
        ({"dataset": ""}, "needs the dataset"),
        ({"token": "two words"}, "one line"),
        ({"ca_pem": b"not a certificate"}, "must be PEM"),
    ],
)
async def test_bad_links_are_refused_and_nothing_is_kept(
    changes: dict[str, object], message: str
) -> None:
    store = FakeStore()
    links = manager(store, FakeSource([]))
    await links.start()
    with pytest.raises(InvalidArgument, match=message):
        await links.add(add_request(**changes))
    assert not store.links and not links.statuses()


async def test_the_source_and_the_dataset_are_checked_before_a_link_is_kept() -> None:
    store = FakeStore()
    links = manager(store, RefusingSource([]))
    await links.start()
    with pytest.raises(FailedPrecondition, match="may not read 'ci'"):
        await links.add(add_request())
    with pytest.raises(NotFound, match="does not exist in this cluster"):
        await links.add(add_request(dataset="nightly"))
    itself = manager(store, FakeSource([], cluster=HERE))
    await itself.start()
    with pytest.raises(InvalidArgument, match="is this cluster"):
        await itself.add(add_request())
    assert not store.links


async def test_links_resume_from_their_checkpoints_and_go_when_removed() -> None:
    store, source = FakeStore(), FakeSource([record(0, n, 3) for n in range(3)])
    kept = replication_pb2.LinkRecord(
        name="from-there", id="old", source_address="there:1", dataset="ci"
    )
    store.links[kept.name] = kept
    store.checkpoints["old"] = {0: 2}
    local = Local()
    links = manager(store, source, local)
    with pytest.raises(Unavailable):  # until this replica leads
        links.statuses()
    await links.start()
    try:
        await eventually_async(lambda: store.checkpoints["old"] == {0: 3}, "resumed")
        assert source.asked[0] == {0: 2, 1: 0}
        assert [r.offset for r in local.appended] == [2]
        # A removal Kafka does not take changes nothing: the link is still kept, and runs.
        store.fail_removal = True
        with pytest.raises(Unavailable):
            await links.remove("from-there")
        assert "from-there" in store.links and len(links.statuses()) == 1
        store.fail_removal = False
        await links.remove("from-there")
        assert not store.links and "old" not in store.checkpoints and not links.statuses()
        with pytest.raises(NotFound):
            await links.remove("from-there")
    finally:
        await links.stop()
