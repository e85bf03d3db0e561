"""UploadFiles in-process against the real broker: several small files in one call land as the
same events with the same upload ids as one stream each, a bad file is refused alone, and what
concerns every file refuses the call before anything is written."""

from __future__ import annotations

import asyncio

import pytest

from flakehouse.client.broker import EmbeddedBroker
from flakehouse.client.client import Client, UploadResult
from flakehouse.core.errors import InvalidArgument
from flakehouse.events.batch import decode_batch
from services.ingest.tests.conftest import StartIngest
from services.ingest.tests.test_ingest_service import CORRUPT, REPORT, read_topic

pytestmark = [pytest.mark.processes, pytest.mark.broker]

JSON = b'{"name": "a", "status": "passed"}\n{"name": "b", "status": "failed"}\n'


async def test_files_of_one_call_are_uploads_of_their_own(
    start_ingest: StartIngest, broker: EmbeddedBroker, topic_prefix: str
) -> None:
    app = await start_ingest(parse_workers=1)
    client = Client(ingest=app.server.address, retries=0)
    files = [("nested.xml", REPORT.read_bytes()), ("corrupt.xml", CORRUPT.read_bytes())]
    files += [("events.jsonl", JSON), ("empty.xml", b"")]
    labels = {"branch": "main"}
    outcomes = await asyncio.to_thread(client.upload_files, files, dataset="ci", labels=labels)

    nested, corrupt, events, empty = outcomes
    assert isinstance(nested, UploadResult) and isinstance(events, UploadResult)
    assert isinstance(corrupt, InvalidArgument) and isinstance(empty, InvalidArgument)
    assert corrupt.message.startswith("corrupt.xml:11: ")
    assert empty.message == "empty.xml: the file is empty"
    assert nested.dataset_created and not events.dataset_created  # said once
    assert (nested.format, events.format) == ("junit", "json")
    assert events.events == 2 and events.by_status == {"passed": 1, "failed": 1}

    # The same file streamed alone is the same upload: same id, so storage counts it once.
    streamed = await asyncio.to_thread(
        client.upload, REPORT, dataset="ci", labels=labels, filename="nested.xml"
    )
    assert streamed.upload_id == nested.upload_id and streamed.events == nested.events

    batches = await read_topic(broker.bootstrap, f"{topic_prefix}.ci", 2)
    by_upload: dict[str, list[dict[str, object]]] = {}
    for batch in batches:
        by_upload.setdefault(batch.upload_id, []).extend(decode_batch(batch))
    assert set(by_upload) == {nested.upload_id, events.upload_id}  # nothing of the bad files
    assert len(by_upload[nested.upload_id]) == 2 * nested.events  # the call's, then the stream's
    assert [e["name"] for e in by_upload[events.upload_id]] == ["a", "b"]
    assert all(e["branch"] == "main" for e in by_upload[events.upload_id])
    for result in (nested, events):
        partition = next(iter(result.offsets))
        assert len(result.offsets) == 1 and 0 <= partition < 2
    client.close()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dataset": "CI"}, "invalid dataset name"),
        ({"files": []}, "needs at least one file"),
        ({"labels": {"timestamp": "x"}}, "collides with a field of the event schema"),
        ({"files": [("big.xml", b"<a/>" + b" " * 4096)]}, "at most 4096 bytes of files"),
    ],
)
async def test_what_concerns_every_file_refuses_the_call(
    start_ingest: StartIngest, change: dict[str, object], message: str
) -> None:
    app = await start_ingest(max_files_request_bytes=4096)
    client = Client(ingest=app.server.address, retries=0)
    call: dict[str, object] = {"files": [("a.xml", REPORT.read_bytes())], "dataset": "ci"}
    call.update(change)
    files = call.pop("files")
    with pytest.raises(InvalidArgument, match=message):
        await asyncio.to_thread(client.upload_files, files, **call)  # type: ignore[arg-type]
    assert await asyncio.to_thread(client.list_datasets) == []  # nothing written
    client.close()
