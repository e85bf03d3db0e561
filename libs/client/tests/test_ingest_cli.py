"""`flakehouse ingest`: a rejected file said once, a bad dataset name refused before any upload,
and `--output json`. Through a real gRPC server that plays the ingest service."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from flakehouse.client import cli
from flakehouse.client.inputs import SMALL_FILE_BYTES
from flakehouse.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from libs.client.tests.fake_servers import serving


class Ingest(ingest_pb2_grpc.IngestServiceServicer):
    """Takes every file but those named bad*, which it refuses as the real service does: with a
    message that starts with the file name and the line. A file of N bytes has N events."""

    def __init__(self) -> None:
        self.headers: list[ingest_pb2.UploadHeader] = []
        self.files_calls: list[ingest_pb2.UploadFilesRequest] = []

    def Upload(self, requests: Iterator[Any], context: Any) -> Iterator[ingest_pb2.UploadResponse]:
        header = next(requests).header
        self.headers.append(header)
        size = 0
        yield _received(size)  # a new upload: send from the start
        for request in requests:
            size += len(request.chunk)
            yield _received(size)
        if _refused(header.filename):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, _refusal(header.filename))
        yield ingest_pb2.UploadResponse(result=_result(header.filename, header.dataset, size))

    def UploadFiles(
        self, request: ingest_pb2.UploadFilesRequest, context: Any
    ) -> ingest_pb2.UploadFilesResponse:
        self.files_calls.append(request)
        response = ingest_pb2.UploadFilesResponse()
        for file in request.files:
            if _refused(file.filename):
                rejection = ingest_pb2.FileRejection(
                    code="INVALID_ARGUMENT", message=_refusal(file.filename)
                )
                response.outcomes.add(rejection=rejection)
            else:
                result = _result(file.filename, request.dataset, len(file.content))
                result.receive_seconds = 0.5  # the real service says 0: the figures add up here
                response.outcomes.add(result=result)
        return response


def _refused(filename: str) -> bool:
    return Path(filename).name.startswith("bad")


def _refusal(filename: str) -> str:
    return f"{filename}:11: malformed XML: no element found (column 22)"


def _result(filename: str, dataset: str, size: int) -> ingest_pb2.UploadResult:
    return ingest_pb2.UploadResult(
        upload_id=f"u-{Path(filename).name}",
        dataset=dataset,
        events=size,
        events_by_status={"passed": size - 1, "failed": 1},
        offsets=[ingest_pb2.PartitionOffset(partition=3, offset=41 + size)],
        format=ingest_pb2.UPLOAD_FORMAT_JUNIT_XML,
        receive_seconds=0.5,
        parse_seconds=0.25,
        produce_seconds=0.125,
    )


def _received(size: int) -> ingest_pb2.UploadResponse:
    return ingest_pb2.UploadResponse(
        progress=ingest_pb2.UploadProgress(
            stage=ingest_pb2.UPLOAD_STAGE_RECEIVING, received_bytes=size
        )
    )


@pytest.fixture
def ingest() -> Iterator[tuple[Ingest, str]]:
    service = Ingest()
    with serving(service, ingest_pb2_grpc.add_IngestServiceServicer_to_server) as address:
        yield service, address


@pytest.fixture
def reports(tmp_path: Path) -> Path:
    (tmp_path / "good.xml").write_text("<testsuite/>")  # 12 bytes: 12 "events"
    (tmp_path / "bad.xml").write_text("<testsuite")
    return tmp_path


def test_a_rejected_file_is_said_once(
    ingest: tuple[Ingest, str], reports: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, address = ingest
    missing = str(reports / "missing.xml")
    code = cli.main(["ingest", "--ingest", address, "--dataset", "ci", str(reports), missing])
    out, err = capsys.readouterr()
    assert code == cli.EXIT_BAD_INPUT
    reason = f"{reports / 'bad.xml'}:11: malformed XML: no element found (column 22)"
    assert err.count("malformed XML") == 1 and f"error: {reason}\n" in err
    assert err.count("missing.xml") == 1 and f"error: {missing}: no such file or directory" in err
    assert err.endswith("2 files rejected (said above): a rejected file writes nothing\n")
    assert f"{reports / 'good.xml'}: 12 events (failed 1, passed 11)" in out
    assert "ingested 1 file, 12 events into 'ci'" in out and "malformed" not in out
    assert "server time: receive 0.5s, parse 0.2s, produce 0.1s" in out


@pytest.mark.parametrize("name", ["CI", "ci/main", "-ci", "c" * 64, "ci\n"])
def test_a_bad_dataset_name_is_refused_before_any_upload(
    ingest: tuple[Ingest, str], reports: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    service, address = ingest
    code = cli.main(["ingest", "--ingest", address, f"--dataset={name}", str(reports)])
    err = capsys.readouterr().err
    assert code == cli.EXIT_BAD_INPUT
    assert service.headers == [] and service.files_calls == []  # nothing sent
    assert err.count("invalid dataset name") == 1  # once, not once per file
    assert "use 1 to 63 characters of a-z, 0-9, '_' and '-'" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["flaky", "--query", "127.0.0.1:1", "--dataset", "Nightly"],
        ["datasets", "create", "Nightly", "--ingest", "127.0.0.1:1"],
        ["quota", "set", "Nightly", "--quota", "127.0.0.1:1", "--retention", "1d"],
        ["usage", "Nightly", "--quota", "127.0.0.1:1"],
    ],
)
def test_every_command_refuses_a_bad_dataset_name_before_calling(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Port 1 answers nothing: a call would fail with exit 1 (after retries), not 2.
    assert cli.main(argv) == cli.EXIT_BAD_INPUT
    assert "invalid dataset name 'Nightly'" in capsys.readouterr().err


def test_output_json(
    ingest: tuple[Ingest, str], reports: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, address = ingest
    argv = ["ingest", "--ingest", address, "--dataset", "ci", "--output", "json", str(reports)]
    assert cli.main(argv) == cli.EXIT_BAD_INPUT
    out, err = capsys.readouterr()
    report = json.loads(out)  # the whole of stdout: one document
    assert report["elapsed_s"] >= 0
    del report["elapsed_s"]
    assert report == {
        "dataset": "ci",
        "files": 1,
        "events": 12,
        "by_status": {"failed": 1, "passed": 11},
        "server_seconds": {"receive": 0.5, "parse": 0.25, "produce": 0.125},
        "uploads": [
            {
                "file": str(reports / "good.xml"),
                "upload_id": "u-good.xml",
                "events": 12,
                "by_status": {"failed": 1, "passed": 11},
                "format": "junit",
                "dataset_created": False,
                "offsets": {"3": 53},
                "server_seconds": {"receive": 0.5, "parse": 0.25, "produce": 0.125},
                "streams": 1,
                "sent_bytes": 12,
            }
        ],
        "rejected": [
            {
                "file": str(reports / "bad.xml"),
                "error": f"{reports / 'bad.xml'}:11: malformed XML: no element found (column 22)",
            }
        ],
    }
    assert err.count("malformed XML") == 1  # said on stderr too, once


def test_format_is_the_input_format_and_output_is_what_is_printed(
    ingest: tuple[Ingest, str], reports: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    service, address = ingest
    good = str(reports / "good.xml")
    argv = ["ingest", "--ingest", address, "--dataset", "ci", "--format", "json", good]
    assert cli.main(argv) == 0
    assert service.files_calls[-1].format == ingest_pb2.UPLOAD_FORMAT_JSON_LINES
    assert capsys.readouterr().out.startswith(f"{good}: 12 events")


def test_small_files_go_several_per_call_and_a_large_one_as_a_stream(
    ingest: tuple[Ingest, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    service, address = ingest
    names = [f"r{i:02d}.xml" for i in range(10)]
    for name in names:
        (tmp_path / name).write_text("<testsuite/>")
    big = tmp_path / "r05x-big.xml"  # sorts between r05 and r06
    big.write_bytes(b"<testsuite>" + b" " * SMALL_FILE_BYTES + b"</testsuite>")
    argv = ["ingest", "--ingest", address, "--dataset", "ci", "--parallel", "2", str(tmp_path)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    # 10 small files, 2 calls at once: groups of 5, cut where the large file comes.
    calls = sorted([Path(f.filename).name for f in c.files] for c in service.files_calls)
    assert calls == [
        names[:5],
        names[5:6],
        names[6:],
    ]
    assert [Path(h.filename).name for h in service.headers] == ["r05x-big.xml"]
    printed = [line.split(":")[0] for line in out.splitlines()[:11]]
    assert printed == [str(tmp_path / n) for n in [*names[:6], "r05x-big.xml", *names[6:]]]
    assert "ingested 11 files" in out
