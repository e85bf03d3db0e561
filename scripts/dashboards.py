"""Generates the Grafana dashboards the Helm chart ships (charts/flakehouse/dashboards) with
Grafana's Foundation SDK, so panels are reviewed as code and every query is tested
(tests/test_monitoring.py). `python scripts/dashboards.py` writes them; `--check` fails when the
checked-in files differ from what this script generates.

Every metric used here is one the services export; the services do not register the
prometheus_client process collector, so there are no process_* (CPU, memory) panels."""

from __future__ import annotations

import argparse
import json
import string
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from grafana_foundation_sdk.builders import common, prometheus, stat, timeseries
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import units
from grafana_foundation_sdk.models.common import (
    BigValueColorMode,
    BigValueGraphMode,
    LegendDisplayMode,
    LegendPlacement,
    SortOrder,
    StackingMode,
    TooltipDisplayMode,
)
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DashboardLinkType,
    DataSourceRef,
    Threshold,
    ThresholdsMode,
    VariableRefresh,
    VariableSort,
)

OUT_DIR = Path(__file__).resolve().parent.parent / "charts" / "flakehouse" / "dashboards"
TAG = "flakehouse"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
# Grafana widens this to at least four scrape intervals, so rate() always has two samples.
RATE_WINDOW = "$__rate_interval"
NODE = 'instance=~"$node"'
# An unlabelled storage counter: every node exports it from the start, before any data arrives,
# so the node picker lists idle nodes too.
NODE_METRIC = "flakehouse_storage_segments_sealed_total"

TIMESERIES_HEIGHT = 8
STAT_HEIGHT = 4
P = TypeVar("P", timeseries.Panel, stat.Panel)


# --- PromQL -----------------------------------------------------------------------------------


def series(metric: str, matchers: str = "") -> str:
    """`metric{matchers}`, with braces only when there is something to match."""
    return f"{metric}{{{matchers}}}" if matchers else metric


def by(labels: Sequence[str]) -> str:
    return f" by ({', '.join(labels)}) " if labels else ""


def aggregate(op: str, metric: str, labels: Sequence[str] = (), matchers: str = "") -> str:
    return f"{op}{by(labels)}({series(metric, matchers)})"


def sum_rate(metric: str, labels: Sequence[str] = (), matchers: str = "") -> str:
    return f"sum{by(labels)}(rate({series(metric, matchers)}[{RATE_WINDOW}]))"


def sum_increase(metric: str, labels: Sequence[str] = (), matchers: str = "") -> str:
    """For rare events, where a count per interval reads better than 0.003/s."""
    return f"sum{by(labels)}(increase({series(metric, matchers)}[{RATE_WINDOW}]))"


def quantile(q: float, histogram: str, labels: Sequence[str] = (), matchers: str = "") -> str:
    buckets = sum_rate(f"{histogram}_bucket", [*labels, "le"], matchers)
    return f"histogram_quantile({q}, {buckets})"


# --- panels -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


def latencies(
    histogram: str, quantiles: Sequence[float], labels: Sequence[str] = (), matchers: str = ""
) -> list[Query]:
    prefix = "".join(f"{{{{{label}}}}} " for label in labels)
    return [
        Query(quantile(q, histogram, labels, matchers), f"{prefix}p{round(q * 100)}")
        for q in quantiles
    ]


def _common(panel: P, title: str, description: str, unit: str, queries: Sequence[Query]) -> P:
    """What every panel shares: the datasource variable, and refIds A, B, … in query order."""
    panel.title(title).description(description).datasource(DATASOURCE).unit(unit)
    for index, query in enumerate(queries):
        panel.with_target(
            prometheus.Dataquery()
            .ref_id(string.ascii_uppercase[index])
            .expr(query.expr)
            .legend_format(query.legend)
        )
    return panel


def graph(
    title: str,
    description: str,
    unit: str,
    *queries: Query,
    width: int = 8,
    stacked: bool = False,
) -> timeseries.Panel:
    legend = (
        common.VizLegendOptions()
        .display_mode(LegendDisplayMode.TABLE)
        .placement(LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs(["lastNotNull", "max"])
    )
    panel = (
        timeseries.Panel()
        .span(width)
        .height(TIMESERIES_HEIGHT)
        .min(0)
        .fill_opacity(10)
        .legend(legend)
        .tooltip(
            common.VizTooltipOptions().mode(TooltipDisplayMode.MULTI).sort(SortOrder.DESCENDING)
        )
        .stacking(
            common.StackingConfig().mode(StackingMode.NORMAL if stacked else StackingMode.NONE)
        )
    )
    return _common(panel, title, description, unit, queries)


def single(
    title: str, description: str, query: Query, steps: Sequence[tuple[float | None, str]]
) -> stat.Panel:
    """A stat coloured by `steps`: (lowest value, colour), the first with None as its value."""
    thresholds = (
        db.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value, color) for value, color in steps])
    )
    panel = (
        stat.Panel()
        .span(8)
        .height(STAT_HEIGHT)
        .thresholds(thresholds)
        .graph_mode(BigValueGraphMode.AREA)
        .color_mode(BigValueColorMode.BACKGROUND)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    return _common(panel, title, description, units.Short, [query])


BAD_ABOVE_ZERO = [(None, "green"), (1, "red")]
BAD_AT_ZERO = [(None, "red"), (1, "green")]


# --- dashboards -------------------------------------------------------------------------------

Section = tuple[str, list[timeseries.Panel | stat.Panel]]


def datasource_variable() -> db.DatasourceVariable:
    return db.DatasourceVariable("datasource").label("Data source").type("prometheus")


def node_variable() -> db.QueryVariable:
    """Storage nodes by their scrape address; several can be compared side by side."""
    return (
        db.QueryVariable("node")
        .label("Storage node")
        .datasource(DATASOURCE)
        .query(f"label_values({NODE_METRIC}, instance)")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
    )


def assemble(
    title: str,
    uid: str,
    description: str,
    variables: Sequence[db.DatasourceVariable | db.QueryVariable],
    sections: Sequence[Section],
) -> db.Dashboard:
    builder = (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG])
        .time("now-1h", "now")
        .refresh("30s")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        # An empty list rather than the SDK's default of none: Grafana's dashboard model
        # expects `annotations.list`, where it adds its built-in annotation.
        .annotations([])
        .link(
            db.DashboardLink("Flakehouse")
            .type(DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(True)
            .keep_time(True)
        )
    )
    for variable in variables:
        builder.with_variable(variable)
    for name, panels in sections:
        builder.with_row(db.Row(name))
        for panel in panels:
            builder.with_panel(panel)
    return builder


def cluster_overview() -> db.Dashboard:
    query_rpc = 'method="Query"'
    return assemble(
        "Flakehouse: cluster overview",
        "flakehouse-cluster-overview",
        "Ingest, query and replication health of the whole cluster.",
        [datasource_variable()],
        [
            (
                "Ingest",
                [
                    graph(
                        "Events ingested",
                        "Events acknowledged by Kafka, per second.",
                        units.EventsPerSecond,
                        Query(sum_rate("flakehouse_ingest_events_total"), "events"),
                    ),
                    graph(
                        "Uploads by outcome",
                        "Uploads finished per second: ok, or failed for any reason.",
                        units.RequestsPerSecond,
                        Query(
                            sum_rate("flakehouse_ingest_uploads_total", ["outcome"]), "{{outcome}}"
                        ),
                    ),
                    graph(
                        "Uploads rejected",
                        "Uploads refused per second, by ingest's reason, and by the quota service"
                        " (lease denied: the dataset is over its rate).",
                        units.RequestsPerSecond,
                        Query(
                            sum_rate("flakehouse_ingest_rejections_total", ["reason"]), "{{reason}}"
                        ),
                        Query(
                            sum_rate("flakehouse_quota_leases_total", [], 'result="denied"'),
                            "quota",
                        ),
                    ),
                ],
            ),
            (
                "Query",
                [
                    graph(
                        "Queries",
                        "Query RPCs per second, by status code.",
                        units.RequestsPerSecond,
                        Query(
                            sum_rate("flakehouse_query_grpc_requests_total", ["code"], query_rpc),
                            "{{code}}",
                        ),
                    ),
                    graph(
                        "Query latency",
                        "Time to answer a Query RPC, at the 50th, 95th and 99th percentile.",
                        units.Seconds,
                        *latencies(
                            "flakehouse_query_grpc_request_duration_seconds",
                            [0.5, 0.95, 0.99],
                            matchers=query_rpc,
                        ),
                    ),
                    graph(
                        "Hedged partition calls",
                        "Partition calls sent to a second replica because the first was slow."
                        " A steady rise points at a slow storage node.",
                        units.OpsPerSecond,
                        Query(sum_rate("flakehouse_query_hedged_total"), "hedged"),
                    ),
                    graph(
                        "Partial answers",
                        "Answers that left out partitions no replica answered in time. Anything"
                        " above zero means users saw incomplete results.",
                        units.RequestsPerSecond,
                        Query(
                            sum_rate(
                                "flakehouse_query_answers_total", ["dataset"], 'answer="partial"'
                            ),
                            "{{dataset}}",
                        ),
                        width=12,
                    ),
                    graph(
                        "Missing partitions",
                        "Partitions left out of answers, per second.",
                        units.OpsPerSecond,
                        Query(
                            sum_rate("flakehouse_query_missing_partitions_total", ["dataset"]),
                            "{{dataset}}",
                        ),
                        width=12,
                    ),
                ],
            ),
            (
                "Replication",
                [
                    single(
                        "Live storage nodes",
                        "Storage nodes that heartbeat the replication controller in time.",
                        Query(aggregate("max", "flakehouse_replication_live_nodes"), "live"),
                        BAD_AT_ZERO,
                    ),
                    single(
                        "Under-replicated partitions",
                        "Partitions with fewer serving replicas than the replication factor.",
                        Query(
                            aggregate("max", "flakehouse_replication_under_replicated_partitions"),
                            "under-replicated",
                        ),
                        BAD_ABOVE_ZERO,
                    ),
                    single(
                        "Offline partitions",
                        "Partitions with no serving replica: queries answer them as missing.",
                        Query(
                            aggregate("max", "flakehouse_replication_offline_partitions"), "offline"
                        ),
                        BAD_ABOVE_ZERO,
                    ),
                    graph(
                        "Replicas by state",
                        "Replicas the controller placed, stacked by state: bootstrapping,"
                        " catching up, online, draining. Only online and draining ones serve.",
                        units.Short,
                        Query(
                            aggregate("max", "flakehouse_replication_replicas", ["state"]),
                            "{{state}}",
                        ),
                        width=12,
                        stacked=True,
                    ),
                    graph(
                        "Kafka lag per partition",
                        "Records between each partition's end and what its slowest replica"
                        " applied.",
                        units.Short,
                        Query(
                            aggregate(
                                "max",
                                "flakehouse_storage_partition_lag_records",
                                ["dataset", "partition"],
                            ),
                            "{{dataset}}/{{partition}}",
                        ),
                        width=12,
                    ),
                ],
            ),
            (
                "Storage and quota",
                [
                    graph(
                        "Stored bytes by dataset",
                        "Bytes of sealed segments, summed over all replicas.",
                        units.BytesIEC,
                        Query(
                            aggregate("sum", "flakehouse_storage_stored_bytes", ["dataset"]),
                            "{{dataset}}",
                        ),
                        width=12,
                        stacked=True,
                    ),
                    graph(
                        "Quota leases",
                        "Lease requests per second, granted or denied; unchecked: uploads let"
                        " through because the quota service could not be reached.",
                        units.RequestsPerSecond,
                        Query(sum_rate("flakehouse_quota_leases_total", ["result"]), "{{result}}"),
                        Query(sum_rate("flakehouse_ingest_quota_unchecked_total"), "unchecked"),
                        width=12,
                    ),
                ],
            ),
            (
                "Quotas and retention",
                [
                    graph(
                        "Usage against limits",
                        "Each dataset's usage as a share of each of its limits (stored bytes,"
                        " ingest rates, concurrent queries). Alerts fire above 90%.",
                        units.PercentUnit,
                        Query(
                            aggregate("max", "flakehouse_quota_usage_ratio", ["dataset", "limit"]),
                            "{{dataset}} {{limit}}",
                        ),
                    ),
                    graph(
                        "Logical stored bytes",
                        "One replica's worth of each dataset (what max_stored_bytes counts), and"
                        " the limit where one is set.",
                        units.BytesIEC,
                        Query(
                            aggregate("max", "flakehouse_quota_stored_bytes", ["dataset"]),
                            "{{dataset}}",
                        ),
                        Query(
                            aggregate(
                                "max",
                                "flakehouse_quota_limit",
                                ["dataset"],
                                'limit="max_stored_bytes"',
                            ),
                            "{{dataset}} limit",
                        ),
                    ),
                    graph(
                        "Age of the cutoff",
                        "How old the oldest event a query can see is, per dataset with a"
                        " retention or a stored-bytes limit.",
                        units.DurationSeconds,
                        Query(
                            "time() - "
                            + aggregate(
                                "max", "flakehouse_quota_cutoff_timestamp_seconds", ["dataset"]
                            ),
                            "{{dataset}}",
                        ),
                    ),
                    graph(
                        "Rows dropped",
                        "Rows deleted by storage nodes (every replica counts), by dataset and"
                        " reason: retention or the stored-bytes limit.",
                        units.Short,
                        Query(
                            sum_increase(
                                "flakehouse_storage_dropped_rows_total", ["dataset", "reason"]
                            ),
                            "{{dataset}} {{reason}}",
                        ),
                    ),
                    graph(
                        "Drops behind",
                        "How far below the drop bound a node's oldest sealed segment still"
                        " is after a drop round: 0 when deletion keeps up.",
                        units.Seconds,
                        Query(
                            aggregate("max", "flakehouse_storage_drop_behind_seconds", ["dataset"]),
                            "{{dataset}}",
                        ),
                    ),
                    graph(
                        "Quota refusals",
                        "Uploads refused for the ingest rate and queries refused for the"
                        " concurrency limit, per second, by dataset and kind.",
                        units.RequestsPerSecond,
                        Query(
                            sum_rate("flakehouse_quota_refusals_total", ["dataset", "kind"]),
                            "{{dataset}} {{kind}}",
                        ),
                    ),
                ],
            ),
        ],
    )


def storage_node() -> db.Dashboard:
    per_dataset = ["instance", "dataset"]
    per_node = ["instance"]
    return assemble(
        "Flakehouse: storage node",
        "flakehouse-storage-node",
        "What one storage node (or a few, side by side) consumes, holds and serves.",
        [datasource_variable(), node_variable()],
        [
            (
                "Consuming",
                [
                    graph(
                        "Rows applied",
                        "Events applied from Kafka, per second and dataset.",
                        units.RowsPerSecond,
                        Query(
                            sum_rate("flakehouse_storage_rows_applied_total", per_dataset, NODE),
                            "{{instance}} {{dataset}}",
                        ),
                    ),
                    graph(
                        "Duplicates dropped",
                        "Events dropped because their id was already applied (an upload retried"
                        " or produced twice).",
                        units.RowsPerSecond,
                        Query(
                            sum_rate(
                                "flakehouse_storage_duplicates_dropped_total", per_dataset, NODE
                            ),
                            "{{instance}} {{dataset}}",
                        ),
                    ),
                    graph(
                        "Partition lag",
                        "Records between each partition's end and what this node applied.",
                        units.Short,
                        Query(
                            series("flakehouse_storage_partition_lag_records", NODE),
                            "{{instance}} {{dataset}}/{{partition}}",
                        ),
                    ),
                ],
            ),
            (
                "Anomalies and repair",
                [
                    graph(
                        "Bad records",
                        "Kafka records that could not be decoded, per interval. Should stay zero.",
                        units.Short,
                        Query(
                            sum_increase("flakehouse_storage_bad_records_total", per_node, NODE),
                            "{{instance}}",
                        ),
                    ),
                    graph(
                        "Broker behind",
                        "Partitions whose broker end offset fell below what this node applied,"
                        " per interval: the broker lost data (or was replaced).",
                        units.Short,
                        Query(
                            sum_increase("flakehouse_storage_broker_behind_total", per_node, NODE),
                            "{{instance}}",
                        ),
                    ),
                    graph(
                        "Bootstrap copy",
                        "Bytes of sealed segments copied from peers to repair replicas.",
                        units.BytesPerSecondIEC,
                        Query(
                            sum_rate("flakehouse_storage_bootstrap_bytes_total", per_node, NODE),
                            "{{instance}}",
                        ),
                    ),
                ],
            ),
            (
                "Data",
                [
                    graph(
                        "Stored rows",
                        "Rows held (sealed and open), by dataset.",
                        units.Short,
                        Query(
                            aggregate("sum", "flakehouse_storage_stored_rows", per_dataset, NODE),
                            "{{instance}} {{dataset}}",
                        ),
                    ),
                    graph(
                        "Stored bytes",
                        "Bytes of sealed segments, by dataset.",
                        units.BytesIEC,
                        Query(
                            aggregate("sum", "flakehouse_storage_stored_bytes", per_dataset, NODE),
                            "{{instance}} {{dataset}}",
                        ),
                    ),
                    graph(
                        "Segments sealed and merged",
                        "Segments written to RocksDB, and small segments merged by compaction.",
                        units.OpsPerSecond,
                        Query(
                            sum_rate("flakehouse_storage_segments_sealed_total", per_node, NODE),
                            "{{instance}} sealed",
                        ),
                        Query(
                            sum_rate("flakehouse_storage_segments_merged_total", per_node, NODE),
                            "{{instance}} merged",
                        ),
                    ),
                ],
            ),
            (
                "gRPC",
                [
                    graph(
                        "Requests",
                        "Storage RPCs per second, by method and status code.",
                        units.RequestsPerSecond,
                        Query(
                            sum_rate(
                                "flakehouse_storage_grpc_requests_total", ["method", "code"], NODE
                            ),
                            "{{method}} {{code}}",
                        ),
                        width=12,
                    ),
                    graph(
                        "Latency",
                        "Time to handle a storage RPC, by method, at the 50th and 99th"
                        " percentile. StreamSegments (repair copies) is naturally slow.",
                        units.Seconds,
                        *latencies(
                            "flakehouse_storage_grpc_request_duration_seconds",
                            [0.5, 0.99],
                            ["method"],
                            NODE,
                        ),
                        width=12,
                    ),
                ],
            ),
        ],
    )


DASHBOARDS: dict[str, Callable[[], db.Dashboard]] = {
    "cluster-overview.json": cluster_overview,
    "storage-node.json": storage_node,
}


# --- output -----------------------------------------------------------------------------------


def render(builder: db.Dashboard) -> str:
    """Stable JSON: panels numbered in order, keys sorted, so a diff shows only real changes."""
    model = builder.build()
    for number, panel in enumerate(model.panels or [], start=1):
        panel.id_val = number
    return json.dumps(model, cls=JSONEncoder, sort_keys=True, indent=2) + "\n"


def generate() -> dict[str, str]:
    return {name: render(make()) for name, make in DASHBOARDS.items()}


def stale(out_dir: Path) -> list[str]:
    """Files in out_dir that differ from what generate() makes, are missing, or are left over."""
    expected = generate()
    present = {path.name for path in out_dir.glob("*.json")}
    differing = [
        name
        for name, text in expected.items()
        if not (out_dir / name).is_file() or (out_dir / name).read_text() != text
    ]
    return sorted({*differing, *(present - expected.keys())})


def write(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in generate().items():
        (out_dir / name).write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the files differ from the generated ones"
    )
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="directory of the JSON files")
    args = parser.parse_args(argv)
    if not args.check:
        write(args.out)
        return 0
    outdated = stale(args.out)
    for name in outdated:
        print(f"{args.out / name}: not what this script generates", file=sys.stderr)
    if outdated:
        print("run: .venv/bin/python scripts/dashboards.py", file=sys.stderr)
    return 1 if outdated else 0


if __name__ == "__main__":
    sys.exit(main())
