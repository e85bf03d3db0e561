"""What `flakehouse ingest` uploads: files as given, globs expanded (also when the shell did not),
and directories searched for report files."""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

REPORT_SUFFIXES = {".xml", ".json", ".jsonl", ".ndjson"}
GLOB_CHARS = set("*?[")


def expand_inputs(arguments: list[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """The files to upload, in a stable order without repeats, and the arguments that named
    nothing, each with its reason."""
    files: dict[Path, None] = {}
    problems: list[tuple[str, str]] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_file():
            files[path] = None
        elif path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in REPORT_SUFFIXES
            )
            if not found:
                problems.append((argument, "no report files (*.xml, *.json, *.jsonl) in directory"))
            files.update(dict.fromkeys(found))
        elif GLOB_CHARS & set(argument):
            found = sorted(
                Path(p) for p in glob.glob(argument, recursive=True) if Path(p).is_file()
            )
            if not found:
                problems.append((argument, "no file matches"))
            files.update(dict.fromkeys(found))
        else:
            problems.append((argument, "no such file or directory"))
    return list(files), problems


# Small files go several per UploadFiles call: a CI job's thousand small reports take a few
# calls, and their Kafka records share batches. The ingest service takes up to 16 MiB of files
# per call by default (max_files_request_bytes); a call stays well under it.
SMALL_FILE_BYTES = 256 * 1024
FILES_CALL_BYTES = 4 * 1024 * 1024
FILES_PER_CALL = 64


@dataclass(frozen=True)
class UploadCall:
    paths: list[Path]
    streamed: bool
    """One large file as a resumable stream, or small files in one UploadFiles call."""


def upload_calls(files: list[tuple[Path, int]], parallel: int) -> list[UploadCall]:
    """(file, size) in order → the calls that send them, in the same order: a large file alone,
    a run of small files in groups of at most FILES_PER_CALL files and FILES_CALL_BYTES, and no
    larger than it takes to keep `parallel` calls busy."""
    small = sum(1 for _, size in files if size <= SMALL_FILE_BYTES)
    per_call = min(FILES_PER_CALL, max(1, -(-small // max(parallel, 1))))
    calls: list[UploadCall] = []
    group: list[Path] = []
    group_bytes = 0
    for path, size in files:
        full = len(group) == per_call or group_bytes + size > FILES_CALL_BYTES
        if group and (size > SMALL_FILE_BYTES or full):
            calls.append(UploadCall(group, streamed=False))
            group, group_bytes = [], 0
        if size > SMALL_FILE_BYTES:
            calls.append(UploadCall([path], streamed=True))
        else:
            group.append(path)
            group_bytes += size
    if group:
        calls.append(UploadCall(group, streamed=False))
    return calls
