"""What `flakehouse ingest` does with its files: a large file as a resumable stream, small ones
several per UploadFiles call, `parallel` calls at once, each file's outcome reported in order
and counted on the progress bar."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from flakehouse.client.client import Client, UploadResult
from flakehouse.client.ingest_report import IngestReport
from flakehouse.client.inputs import UploadCall, upload_calls
from flakehouse.client.progress import Progress
from flakehouse.client.uploads import UploadProgress
from flakehouse.core.errors import FlakehouseError, InvalidArgument, NotFound

Outcome = UploadResult | FlakehouseError
REFUSALS = (InvalidArgument, NotFound)
"""Errors that refuse the files of a call (and are reported), not the whole command."""


class IngestRun:
    def __init__(
        self,
        client: Client,
        report: IngestReport,
        *,
        labels: Mapping[str, str],
        format: str | None,
        print_lines: bool,
    ) -> None:
        self._client = client
        self._report = report
        self._labels = dict(labels)
        self._format = format
        self._print_lines = print_lines
        self._progress = Progress(0, 0)

    def upload(self, files: list[Path], parallel: int) -> None:
        """Uploads every file, reporting each as its call ends, in the files' order."""
        sizes = [(path, path.stat().st_size) for path in files]
        self._progress = Progress(sum(size for _, size in sizes), len(files))
        calls = upload_calls(sizes, parallel)
        try:
            with ThreadPoolExecutor(parallel) as pool:
                futures = [(call, pool.submit(self._send, call)) for call in calls]
                for call, future in futures:
                    for path, outcome in self._outcomes(call, future.result):
                        self._said(path, outcome)
        finally:
            self._progress.close()

    def _outcomes(
        self, call: UploadCall, result: Callable[[], list[Outcome]]
    ) -> Iterator[tuple[Path, Outcome]]:
        try:
            outcomes = result()
        except REFUSALS as refused:
            outcomes = [refused] * len(call.paths)
        yield from zip(call.paths, outcomes, strict=True)

    def _said(self, path: Path, outcome: Outcome) -> None:
        if isinstance(outcome, FlakehouseError):
            if not isinstance(outcome, REFUSALS):
                raise outcome
            self._progress.print(self._report.refused(str(path), outcome.message), sys.stderr)
            return
        line = self._report.uploaded(path, outcome)
        if self._print_lines:
            self._progress.print(line)

    def _send(self, call: UploadCall) -> list[Outcome]:
        if call.streamed:
            return [self._stream(call.paths[0])]
        contents = [(path, path.read_bytes()) for path in call.paths]
        try:
            outcomes = self._client.upload_files(
                [(str(path), data) for path, data in contents],
                dataset=self._report.dataset,
                labels=self._labels,
                format=self._format,
            )
        finally:
            self._progress.advance(sum(len(data) for _, data in contents))
        for path, outcome in zip(call.paths, outcomes, strict=True):
            if isinstance(outcome, UploadResult):
                self._progress.events(path, outcome.events)
            self._progress.file_done()
        return outcomes

    def _stream(self, path: Path) -> UploadResult:
        acknowledged = 0

        def on_progress(reached: UploadProgress) -> None:
            nonlocal acknowledged
            if reached.stage == "receiving":
                self._progress.advance(reached.received_bytes - acknowledged)
                acknowledged = reached.received_bytes
            else:
                self._progress.events(path, reached.events)

        try:
            result = self._client.upload(
                path,
                dataset=self._report.dataset,
                labels=self._labels,
                filename=str(path),
                format=self._format,
                on_progress=on_progress,
            )
            self._progress.events(path, result.events)
            return result
        finally:
            self._progress.file_done()
