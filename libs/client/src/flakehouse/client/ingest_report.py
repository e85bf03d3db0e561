"""What `flakehouse ingest` says: a line per file as it goes and a summary, or with `--output
json` one document at the end. A rejected file is said once, when it is rejected."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flakehouse.client.client import UploadResult

STAGES = ("receive", "parse", "produce")


def statuses(counts: dict[str, int] | Counter[str]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(counts.items())) or "no cases"


@dataclass
class IngestReport:
    dataset: str
    uploads: list[tuple[Path, UploadResult]] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)
    """{"file": the file or argument, "error": the message, which names it}"""

    def uploaded(self, path: Path, result: UploadResult) -> str:
        """Records an upload; the line that says it."""
        self.uploads.append((path, result))
        return f"{path}: {result.events} events ({statuses(result.by_status)})"

    def refused(self, file: str, message: str) -> str:
        """Records a rejection; the line that says it, which is the only one: the summary counts
        rejections without repeating them."""
        # The ingest service's messages start with the file name it was sent (and the line).
        error = message if message.startswith(file) else f"{file}: {message}"
        self.rejected.append({"file": file, "error": error})
        return f"error: {error}"

    @property
    def events(self) -> int:
        return sum(result.events for _, result in self.uploads)

    def by_status(self) -> Counter[str]:
        totals: Counter[str] = Counter()
        for _, result in self.uploads:
            totals.update(result.by_status)
        return totals

    def server_seconds(self) -> dict[str, float]:
        """The server's time per stage (receive, parse, produce), summed over the uploads
        (which overlap with --parallel)."""
        seconds: Counter[str] = Counter()
        for _, result in self.uploads:
            seconds.update(result.seconds)
        return {stage: round(seconds[stage], 3) for stage in STAGES}

    def summary(self, elapsed_s: float) -> str:
        done = len(self.uploads)
        line = (
            f"ingested {done} file{'s' if done != 1 else ''}, {self.events} events into "
            f"{self.dataset!r} in {elapsed_s:.1f}s ({statuses(self.by_status())})"
        )
        if not done:
            return line
        seconds = self.server_seconds()
        line += "\nserver time: " + ", ".join(f"{s} {seconds[s]:.1f}s" for s in STAGES)
        resumed = sum(result.streams - 1 for _, result in self.uploads)
        if resumed:
            sent = sum(result.sent_bytes for _, result in self.uploads)
            line += f"; resumed {resumed} time(s), {sent / 1e6:.1f} MB sent in all"
        return line

    def rejections(self) -> str | None:
        """The closing line for stderr when something was rejected."""
        count = len(self.rejected)
        if not count:
            return None
        files = "1 file" if count == 1 else f"{count} files"
        return f"{files} rejected (said above): a rejected file writes nothing"

    def to_json(self, elapsed_s: float) -> str:
        return json.dumps(
            {
                "dataset": self.dataset,
                "files": len(self.uploads),
                "events": self.events,
                "by_status": dict(sorted(self.by_status().items())),
                "elapsed_s": round(elapsed_s, 3),
                "server_seconds": self.server_seconds(),
                "uploads": [_upload(path, result) for path, result in self.uploads],
                "rejected": self.rejected,
            }
        )


def _upload(path: Path, result: UploadResult) -> dict[str, Any]:
    return {
        "file": str(path),
        "upload_id": result.upload_id,
        "events": result.events,
        "by_status": dict(sorted(result.by_status.items())),
        "format": result.format,
        "dataset_created": result.dataset_created,
        "offsets": {str(p): o for p, o in sorted(result.offsets.items())},
        "server_seconds": result.seconds,
        "streams": result.streams,
        "sent_bytes": result.sent_bytes,
    }
