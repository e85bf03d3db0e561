"""The storage-node dashboard: what one storage node (or a few, side by side) consumes, holds
and serves."""

from __future__ import annotations

from dashboard_panels import (
    DATASOURCE,
    Query,
    aggregate,
    assemble,
    datasource_variable,
    graph,
    latencies,
    series,
    sum_increase,
    sum_rate,
)
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import units
from grafana_foundation_sdk.models.dashboard import VariableRefresh, VariableSort

NODE = 'instance=~"$node"'
# An unlabelled storage counter: every node exports it from the start, before any data arrives,
# so the node picker lists idle nodes too.
NODE_METRIC = "flakehouse_storage_segments_sealed_total"


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
