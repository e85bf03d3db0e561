"""Datasets, their limits and their usage as the CLI prints them: plain data for `--format json`
and text for `--format table`, from the services' answers.

The JSON shapes are stable (other tools read them). Times are RFC 3339 UTC with microseconds, or
null when there is none; a limit of 0 means unlimited.

- DATASET: `{"name", "topic", "partitions", "generation", "created"}`
- LIMITS: `{"events_per_second", "bytes_per_second", "max_stored_bytes", "retention_seconds",
  "max_concurrent_queries"}`
- USAGE: `{"dataset", "bytes" (logical: one replica's worth), "replica_bytes" (every replica),
  "rows", "oldest", "newest" (event times), "events_per_second", "bytes_per_second" (ingest over
  the last minute), "cutoff", "cutoff_reason" ("retention" | "stored_bytes" | null),
  "running_queries"}`

`datasets list` → `{"datasets": [DATASET, ...]}`; `datasets create` → `{"dataset": DATASET,
"created": bool}`; `datasets describe` → `{"dataset": DATASET, "limits": LIMITS, "usage": USAGE}`;
`datasets delete` → `{"deleted": DATASET}`; `quota get` and `quota set` → `{"dataset": NAME,
"limits": LIMITS}` (after the change); `usage` → `{"datasets": [USAGE + {"limits": LIMITS}, ...]}`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from flakehouse.client.tables import FULL, Fit, format_table, percent
from flakehouse.client.units import parse_size, render_age, render_number, render_size
from flakehouse.core.limit_rules import QUOTA_FIELDS
from flakehouse.core.limits import CUTOFF_REASONS
from flakehouse.events.timestamps import format_timestamp
from flakehouse.ingest.v1 import ingest_pb2
from flakehouse.quota.v1 import quota_pb2

REASON_KEYS = {
    quota_pb2.CUTOFF_REASON_RETENTION: "retention",
    quota_pb2.CUTOFF_REASON_STORED_BYTES: "stored_bytes",
}
UNLIMITED = "unlimited"


# --- plain data (JSON) ---------------------------------------------------------------------


def _time(us: int) -> str | None:
    return format_timestamp(us) if us else None


def dataset_dict(dataset: ingest_pb2.Dataset) -> dict[str, Any]:
    return {
        "name": dataset.name,
        "topic": dataset.topic,
        "partitions": dataset.partitions,
        "generation": dataset.generation,
        "created": _time(dataset.created_us),
    }


def limits_dict(quota: quota_pb2.Quota) -> dict[str, Any]:
    return {name: getattr(quota, name) for name in QUOTA_FIELDS}


def usage_dict(usage: quota_pb2.DatasetUsage) -> dict[str, Any]:
    cutoff = usage.cutoff.cutoff_us
    return {
        "dataset": usage.dataset,
        "bytes": usage.bytes,
        "replica_bytes": usage.replica_bytes,
        "rows": usage.rows,
        "oldest": _time(usage.oldest_us),
        "newest": _time(usage.newest_us),
        "events_per_second": usage.events_per_second,
        "bytes_per_second": usage.bytes_per_second,
        "cutoff": _time(cutoff),
        "cutoff_reason": REASON_KEYS.get(usage.cutoff.reason) if cutoff else None,
        "running_queries": usage.running_queries,
    }


def datasets_json(datasets: Iterable[ingest_pb2.Dataset]) -> str:
    return json.dumps({"datasets": [dataset_dict(d) for d in datasets]})


def created_json(response: ingest_pb2.CreateDatasetResponse) -> str:
    return json.dumps({"dataset": dataset_dict(response.dataset), "created": response.created})


def describe_json(dataset: ingest_pb2.Dataset, usage: quota_pb2.DatasetUsage) -> str:
    return json.dumps(
        {
            "dataset": dataset_dict(dataset),
            "limits": limits_dict(usage.quota),
            "usage": usage_dict(usage),
        }
    )


def deleted_json(dataset: ingest_pb2.Dataset) -> str:
    return json.dumps({"deleted": dataset_dict(dataset)})


def quota_json(dataset: str, quota: quota_pb2.Quota) -> str:
    return json.dumps({"dataset": dataset, "limits": limits_dict(quota)})


def usage_json(usages: Iterable[quota_pb2.DatasetUsage]) -> str:
    return json.dumps(
        {"datasets": [{**usage_dict(u), "limits": limits_dict(u.quota)} for u in usages]}
    )


# --- text (tables) -------------------------------------------------------------------------


def _when(us: int) -> str:
    """Seconds are precise enough to read; JSON has the microseconds."""
    return format_timestamp(us)[:19] + "Z" if us else "-"


def _size(size: int | float) -> str:
    """The size readably, with the exact bytes when the readable form rounds."""
    text = render_size(size)
    return text if parse_size(text.replace(" ", "")) == size else f"{text} ({int(size)} bytes)"


def _cutoff(cutoff: quota_pb2.Cutoff) -> str:
    if not cutoff.cutoff_us:
        return "none"
    reason = CUTOFF_REASONS.get(cutoff.reason, "")
    return f"{_when(cutoff.cutoff_us)} ({reason})" if reason else _when(cutoff.cutoff_us)


def _pairs(pairs: list[tuple[str, str]], indent: str = "") -> list[str]:
    width = max(len(key) for key, _ in pairs)
    return [f"{indent}{key.ljust(width)}  {value}".rstrip() for key, value in pairs]


def limit_pairs(quota: quota_pb2.Quota) -> list[tuple[str, str]]:
    """Each limit, labelled like the `quota set` option that changes it."""

    def limited(value: float, text: str) -> str:
        return text if value else UNLIMITED

    return [
        (
            "events-per-second",
            limited(quota.events_per_second, render_number(quota.events_per_second)),
        ),
        (
            "bytes-per-second",
            limited(quota.bytes_per_second, render_size(quota.bytes_per_second) + "/s"),
        ),
        ("max-stored-bytes", limited(quota.max_stored_bytes, _size(quota.max_stored_bytes))),
        ("retention", limited(quota.retention_seconds, render_age(quota.retention_seconds))),
        (
            "max-concurrent-queries",
            limited(quota.max_concurrent_queries, str(quota.max_concurrent_queries)),
        ),
    ]


def _of(used: str, limit_value: float, limit: str) -> str:
    """`used of limit`, or `used` alone for an unlimited one."""
    return f"{used} of {limit}" if limit_value else used


def _share_of(used: str, used_value: float, limit_value: float, limit: str) -> str:
    """`used (share of limit)`, or `used` alone for an unlimited one."""
    if not limit_value:
        return used
    return f"{used} ({percent(used_value / limit_value)} of {limit})"


def _stored(usage: quota_pb2.DatasetUsage) -> str:
    limit = usage.quota.max_stored_bytes
    return _share_of(render_size(usage.bytes), usage.bytes, limit, render_size(limit))


def usage_pairs(usage: quota_pb2.DatasetUsage) -> list[tuple[str, str]]:
    quota = usage.quota
    return [
        ("stored", _stored(usage)),
        ("with replicas", render_size(usage.replica_bytes)),
        ("rows", str(usage.rows)),
        ("oldest event", _when(usage.oldest_us)),
        ("newest event", _when(usage.newest_us)),
        ("cutoff", _cutoff(usage.cutoff)),
        (
            "events/s",
            _share_of(
                render_number(usage.events_per_second),
                usage.events_per_second,
                quota.events_per_second,
                render_number(quota.events_per_second),
            ),
        ),
        (
            "bytes/s",
            _share_of(
                render_size(usage.bytes_per_second),
                usage.bytes_per_second,
                quota.bytes_per_second,
                render_size(quota.bytes_per_second),
            ),
        ),
        (
            "running queries",
            _of(
                str(usage.running_queries),
                quota.max_concurrent_queries,
                str(quota.max_concurrent_queries),
            ),
        ),
    ]


def _count(n: int, word: str) -> str:
    return f"({n} {word}{'s' if n != 1 else ''})"


def datasets_table(datasets: list[ingest_pb2.Dataset], fit: Fit = FULL) -> str:
    rows = [
        [d.name, str(d.partitions), str(d.generation), _when(d.created_us), d.topic]
        for d in sorted(datasets, key=lambda d: d.name)
    ]
    out = format_table(
        ["name", "partitions", "generation", "created", "topic"],
        rows,
        [False, True, True, False, False],
        fit,
    )
    out.append(_count(len(rows), "dataset"))
    return "\n".join(out)


def created_table(response: ingest_pb2.CreateDatasetResponse) -> str:
    dataset = response.dataset
    if response.created:
        return (
            f"created dataset {dataset.name!r}: {dataset.partitions} partitions, "
            f"generation {dataset.generation}, topic {dataset.topic}"
        )
    return (
        f"dataset {dataset.name!r} already exists with {dataset.partitions} partitions; "
        "its limits are unchanged (change them with `flakehouse quota set`)"
    )


def describe_table(dataset: ingest_pb2.Dataset, usage: quota_pb2.DatasetUsage) -> str:
    out = _pairs(
        [
            ("dataset", dataset.name),
            ("topic", dataset.topic),
            ("partitions", str(dataset.partitions)),
            ("generation", str(dataset.generation)),
            ("created", _when(dataset.created_us)),
        ]
    )
    out += ["", "limits", *_pairs(limit_pairs(usage.quota), "  ")]
    out += ["", "usage", *_pairs(usage_pairs(usage), "  ")]
    return "\n".join(out)


def deleted_table(dataset: ingest_pb2.Dataset) -> str:
    return (
        f"deleted dataset {dataset.name!r} (generation {dataset.generation}, "
        f"topic {dataset.topic}): its data is being removed from every replica"
    )


def quota_table(dataset: str, quota: quota_pb2.Quota) -> str:
    return "\n".join([f"limits of {dataset!r}", *_pairs(limit_pairs(quota), "  ")])


def usage_table(usages: list[quota_pb2.DatasetUsage], fit: Fit = FULL) -> str:
    header = [
        "dataset",
        "stored",
        "replicas",
        "rows",
        "oldest event",
        "newest event",
        "events/s",
        "bytes/s",
        "queries",
        "cutoff",
    ]
    rows = []
    for usage in sorted(usages, key=lambda u: u.dataset):
        pairs = dict(usage_pairs(usage))
        rows.append(
            [
                usage.dataset,
                pairs["stored"],
                pairs["with replicas"],
                pairs["rows"],
                pairs["oldest event"],
                pairs["newest event"],
                pairs["events/s"],
                pairs["bytes/s"],
                pairs["running queries"],
                pairs["cutoff"],
            ]
        )
    out = format_table(
        header, rows, [False, True, True, True, False, False, True, True, True, False], fit
    )
    out.append(_count(len(rows), "dataset"))
    return "\n".join(out)
