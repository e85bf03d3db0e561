"""What `flakehouse ingest` uploads: files as given, globs expanded (also when the shell did not),
and directories searched for report files."""

from __future__ import annotations

import glob
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
