"""Rendering query results as a table, JSON or CSV; only tables are ever cut or rounded."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Collection
from datetime import datetime
from typing import TYPE_CHECKING, Any

from flakehouse.client.tables import FULL, Fit, format_table, percent
from flakehouse.client.times import rfc3339

if TYPE_CHECKING:
    from flakehouse.client.client import Cell, QueryResult


def _cell(value: Cell) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def render_table(result: QueryResult, *, fit: Fit = FULL, shares: Collection[str] = ()) -> str:
    """The answer as an aligned table cut to `fit`. The columns named in `shares` hold shares
    (0 to 1), shown as percentages; JSON and CSV keep the numbers. Plain SQL answers name none:
    a column's name does not say what its numbers are."""
    is_share = [name in shares for name in result.columns]
    cells = [
        [_share(v) if share else _cell(v) for v, share in zip(row, is_share, strict=True)]
        for row in result.rows
    ]
    numeric = [t in ("int", "float") for t in result.types]
    out = format_table(result.columns, cells, numeric, fit)
    out.append(f"({len(result.rows)} row{'s' if len(result.rows) != 1 else ''})")
    if result.partial:
        missing = ", ".join(
            f"{m['dataset']}/{m['partition']} ({m['reason']})" for m in result.missing_partitions
        )
        out.append(f"PARTIAL ANSWER: missing partitions {missing}")
    return "\n".join(out)


def _share(value: Cell) -> str:
    if isinstance(value, float | int) and not isinstance(value, bool):
        return percent(value)
    return _cell(value)


def describe_staleness(freshness: dict[str, Any]) -> str:
    """`stale answer: up to 120 records and 1.4 s behind (partition 3 on storage-1: 120
    records, 1.4 s, ...)`: the worst, then the three partitions furthest behind."""
    behind = [p for p in freshness["partitions"] if p["records_behind"] or p["behind_ms"]]
    worst = ", ".join(
        f"partition {p['partition']} on {p['node_id']}: {p['records_behind']} records, "
        f"{p['behind_ms'] / 1000:.1f} s"
        for p in sorted(behind, key=lambda p: (-p["records_behind"], -p["behind_ms"]))[:3]
    )
    more = f" and {len(behind) - 3} more" if len(behind) > 3 else ""
    return (
        f"stale answer: up to {freshness['records_behind']} records and "
        f"{freshness['behind_ms'] / 1000:.1f} s behind ({worst}{more})"
    )


def json_value(value: Any) -> Any:
    """json.dumps's `default` for answers: times as RFC 3339 text, as the CLI prints them."""
    if isinstance(value, datetime):
        return rfc3339(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def render_json(result: QueryResult) -> str:
    return json.dumps(result.to_json_dict(), default=json_value)


def render_csv(result: QueryResult) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(result.columns)
    writer.writerows(
        ["" if v is None else rfc3339(v) if isinstance(v, datetime) else v for v in row]
        for row in result.rows
    )
    return buffer.getvalue().rstrip("\n")


RENDERERS = {"table": render_table, "json": render_json, "csv": render_csv}
