"""The cluster-overview dashboard: ingest, query, replication, links, storage and quota health of
the whole cluster."""

from __future__ import annotations

from dashboard_panels import (
    BAD_ABOVE_ZERO,
    BAD_AT_ZERO,
    Query,
    aggregate,
    assemble,
    datasource_variable,
    graph,
    latencies,
    single,
    state_number,
    sum_increase,
    sum_rate,
    timeline,
)
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import units

# A link's states (flakehouse_link_state's `state` label), each with how the dashboard shows it.
LINK_STATES = [
    ("caught_up", "caught up", "green"),
    ("pulling", "pulling", "blue"),
    ("starting", "starting", "yellow"),
    ("throttled", "throttled", "orange"),
    ("failing", "failing", "red"),
]
LINK = ["link", "dataset"]
LINK_LEGEND = "{{link}} ({{dataset}})"


def cluster_overview() -> db.Dashboard:
    query_rpc = 'method="Query"'
    return assemble(
        "Flakehouse: cluster overview",
        "flakehouse-cluster-overview",
        "Ingest, query, console, replication and links health of the whole cluster.",
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
                "Console",
                [
                    graph(
                        "Console requests",
                        "HTTP requests to the console (page and JSON API) per second, by route"
                        " and status code; 401 and 403 are sign-ins and reads the token does not"
                        " grant.",
                        units.RequestsPerSecond,
                        Query(
                            sum_rate("flakehouse_console_requests_total", ["route", "code"]),
                            "{{route}} {{code}}",
                        ),
                    ),
                    graph(
                        "Console latency",
                        "Time to answer a console request, by route, at the 50th and 95th"
                        " percentile (a query's time is mostly the query service's).",
                        units.Seconds,
                        *latencies("flakehouse_console_request_seconds", [0.5, 0.95], ["route"]),
                    ),
                    graph(
                        "Console queries by outcome",
                        "Queries asked through the console: ok, partial, or the error's status"
                        " (CANCELLED: the user gave up).",
                        units.RequestsPerSecond,
                        Query(
                            sum_rate("flakehouse_console_queries_total", ["outcome"]),
                            "{{outcome}}",
                        ),
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
                "Links",
                [
                    graph(
                        "Events pulled by link",
                        "Events each link (`flakehouse links list`) appended here from its source"
                        " cluster, per second.",
                        units.EventsPerSecond,
                        Query(sum_rate("flakehouse_link_events_pulled_total", LINK), LINK_LEGEND),
                    ),
                    graph(
                        "Link lag",
                        "Seconds since each link last had every record of its source: 0 while"
                        " caught up. FlakehouseLinkBehind fires past 15 minutes.",
                        units.Seconds,
                        Query(aggregate("max", "flakehouse_link_lag_seconds", LINK), LINK_LEGEND),
                    ),
                    graph(
                        "Link lag in records",
                        "Records the source holds beyond each link's checkpoint, as of the"
                        " source's last word.",
                        units.Short,
                        Query(aggregate("max", "flakehouse_link_lag_records", LINK), LINK_LEGEND),
                    ),
                    graph(
                        "Link errors",
                        "Failed attempts of each link per minute, each retried from its"
                        " checkpoint; `flakehouse links list` shows the last error.",
                        units.OpsPerMinute,
                        Query(
                            "60 * " + sum_rate("flakehouse_link_errors_total", LINK), LINK_LEGEND
                        ),
                        width=12,
                    ),
                    timeline(
                        "Link state",
                        "Each link's state: caught up; pulling (behind, catching up); starting"
                        " (connecting to its source); throttled (held to the dataset's ingest"
                        " limits here); failing (retrying after an error). FlakehouseLinkFailing"
                        " fires after 10 minutes of failing.",
                        Query(
                            state_number(
                                "flakehouse_link_state",
                                "state",
                                [state for state, _, _ in LINK_STATES],
                                LINK,
                            ),
                            LINK_LEGEND,
                        ),
                        [(text, colour) for _, text, colour in LINK_STATES],
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
                        "Lease requests per second, granted or denied; unchecked: uploads, and"
                        " chunks links pulled, let through because the quota service could not"
                        " be reached.",
                        units.RequestsPerSecond,
                        Query(sum_rate("flakehouse_quota_leases_total", ["result"]), "{{result}}"),
                        Query(sum_rate("flakehouse_ingest_quota_unchecked_total"), "unchecked"),
                        Query(sum_rate("flakehouse_link_quota_unchecked_total"), "links unchecked"),
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
