"""The Grafana dashboards the chart ships, held against the real thing: generated from
scripts/dashboards.py, every query valid PromQL, every metric they use exported by a running
local cluster, and that cluster scraped by a real Prometheus that accepts every query. The
per-link metrics have series only while a link exists, which the cluster has not: their labels
and states are checked against replication's own collector over pullers made here."""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import promql_parser
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from benchmarks.junitgen import report
from flakehouse.client import Client
from flakehouse.client.client import offsets_of
from flakehouse.core.net import free_port
from flakehouse.replication.link_metrics import STATES, register_link_metrics
from flakehouse.replication.puller import LinkPorts, LinkPuller
from flakehouse.replication.v1 import replication_pb2
from tests.localcluster import RunningCluster
from tests.support import eventually

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ROOT / "scripts" / "dashboards.py"
DASHBOARD_DIR = ROOT / "charts" / "flakehouse" / "dashboards"
ALERTS = ROOT / "charts" / "flakehouse" / "files" / "alerts.yaml"
PROMETHEUS = ROOT / "tools" / "bin" / "prometheus"
DATASET = "monitoring"

# At least the queries the dashboards have today: a walk that finds fewer (a renamed key, an
# emptied dashboard) fails rather than checking nothing.
MIN_EXPRESSIONS = {"cluster-overview.json": 36, "storage-node.json": 13}
# Grafana's own interval variables, each with a duration PromQL accepts.
GRAFANA_INTERVALS = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h"}
VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")
LABEL_VALUES = re.compile(r"label_values\((\w+),\s*\w+\)")
# The sample names prometheus_client writes for a family (its parser strips counters' _total).
SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
}
# One metric per service (and Prometheus's own `up`): samples for each prove every kind of
# target was scraped, including labelled series that exist only after an upload and a query.
CORE_METRICS = [
    "up",
    "flakehouse_ingest_events_total",
    "flakehouse_storage_rows_applied_total",
    "flakehouse_replication_live_nodes",
    "flakehouse_query_answers_total",
    "flakehouse_quota_leases_total",
]

T = TypeVar("T")


# --- the dashboards as shipped ----------------------------------------------------------------


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {
        path.name: json.loads(path.read_text()) for path in sorted(DASHBOARD_DIR.glob("*.json"))
    }


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def expressions(dashboard: Mapping[str, Any]) -> list[str]:
    return [
        target["expr"]
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def template_variables(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(dashboard.get("templating", {}).get("list", []))


def placeholder_values(dashboard: Mapping[str, Any]) -> dict[str, str]:
    """A value for each variable a query may use: the dashboard's own, and Grafana's."""
    own = {variable["name"]: "127.0.0.1:1" for variable in template_variables(dashboard)}
    return {**own, **GRAFANA_INTERVALS}


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """Replaces $name and ${name} as Grafana does; a variable the dashboard does not define
    fails here, since Grafana would send it to Prometheus verbatim."""

    def value(match: re.Match[str]) -> str:
        name = match[1] or match[2]
        assert name in values, f"{expr!r} uses ${name}, which the dashboard does not define"
        return values[name]

    return VARIABLE.sub(value, expr)


def metric_names(expr: str) -> set[str]:
    names: set[str] = set()

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def alert_expressions() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def used_metrics() -> set[str]:
    """Metrics in panel queries, in variables' label_values() queries and in alert rules."""
    used = {name for expr in alert_expressions() for name in metric_names(expr)}
    for dashboard in load_dashboards().values():
        values = placeholder_values(dashboard)
        for expr in expressions(dashboard):
            used |= metric_names(substitute(expr, values))
        for variable in template_variables(dashboard):
            query = variable.get("query")
            if isinstance(query, str):
                used.update(LABEL_VALUES.findall(query))
    return used


# --- tests without a cluster ------------------------------------------------------------------


def run_generator(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(GENERATOR), *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.processes  # the generator runs as a script
def test_checked_in_dashboards_are_what_the_generator_makes(tmp_path: Path) -> None:
    result = run_generator("--check")
    assert result.returncode == 0, result.stderr

    # The check itself must notice a hand edit and a missing file, or it proves nothing.
    copy = tmp_path / "dashboards"
    shutil.copytree(DASHBOARD_DIR, copy)
    edited = copy / "storage-node.json"
    edited.write_text(edited.read_text().replace("Rows applied", "Rows applied!"))
    (copy / "cluster-overview.json").unlink()
    result = run_generator("--check", "--out", str(copy))
    assert result.returncode == 1
    assert "storage-node.json" in result.stderr and "cluster-overview.json" in result.stderr


def test_every_query_is_valid_promql() -> None:
    dashboards = load_dashboards()
    assert set(dashboards) == set(MIN_EXPRESSIONS)
    for name, dashboard in dashboards.items():
        exprs = expressions(dashboard)
        assert len(exprs) >= MIN_EXPRESSIONS[name], f"{name}: only {len(exprs)} queries found"
        values = placeholder_values(dashboard)
        for expr in exprs:
            try:
                promql_parser.parse(substitute(expr, values))
            except ValueError as exc:
                pytest.fail(f"{name}: {expr!r} does not parse: {exc}")


def test_every_panel_queries_the_datasource_variable() -> None:
    """So the dashboards work with whatever the Prometheus data source is called."""
    for name, dashboard in load_dashboards().items():
        variables = {v["name"]: v for v in template_variables(dashboard)}
        assert variables["datasource"]["type"] == "datasource", name
        assert variables["datasource"]["query"] == "prometheus", name
        graphs = [panel for panel in panels(dashboard) if panel["type"] != "row"]
        assert graphs, name
        for panel in graphs:
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, (
                f"{name}: {panel['title']}"
            )
            assert panel.get("targets"), f"{name}: {panel['title']} has no query"


# --- the per-link metrics ---------------------------------------------------------------------

# Registered by the replication app itself, unlabelled, and exported with or without a link:
# the running cluster below shows it. The other flakehouse_link_* come from its LinkCollector.
APP_LINK_METRICS = {"flakehouse_link_quota_unchecked_total"}


def never(*args: object) -> Any:
    raise AssertionError("a puller made for its metrics does not run")


def link_samples() -> list[Sample]:
    """What replication's LinkCollector exports for two links: "eu" failing, after a pull,
    and "us" caught up."""
    ports = LinkPorts(
        connect=never,
        local_topic=never,
        append=never,
        checkpoint=never,
        lease=never,
        local_cluster="here",
    )
    pullers = []
    for name, dataset, state in [
        ("eu", "ci", replication_pb2.LINK_STATE_FAILING),
        ("us", "nightly", replication_pb2.LINK_STATE_CAUGHT_UP),
    ]:
        link = replication_pb2.LinkRecord(name=name, id=name, dataset=dataset)
        checkpoint = replication_pb2.LinkCheckpoint(next_offsets={0: 5})
        puller = LinkPuller(link, checkpoint, ports, clock=lambda: 1000.0)
        puller.state = state
        puller.end_offsets = {0: 9}
        puller.records_pulled, puller.events_pulled, puller.errors = 5, 50, 2
        pullers.append(puller)
    registry = CollectorRegistry()
    register_link_metrics(registry, lambda: pullers)
    text = generate_latest(registry).decode()
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def link_queries() -> list[str]:
    """Every dashboard and alert query that uses a per-link metric."""
    queries = alert_expressions()
    for dashboard in load_dashboards().values():
        values = placeholder_values(dashboard)
        queries += [substitute(expr, values) for expr in expressions(dashboard)]
    return [
        q
        for q in queries
        if any(n.startswith("flakehouse_link_") for n in metric_names(q) - APP_LINK_METRICS)
    ]


def selectors_and_grouping(expr: str) -> tuple[list[tuple[str, dict[str, str]]], set[str]]:
    """The query's selectors (metric, label=value matchers) and the labels it groups by."""
    selectors: list[tuple[str, dict[str, str]]] = []
    grouping: set[str] = set()

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            matchers = {}
            for matcher in node.matchers.matchers:
                assert matcher.op == promql_parser.MatchOp.Equal, (expr, matcher)
                matchers[matcher.name] = matcher.value
            selectors.append((node.name, matchers))
        if (
            isinstance(node, promql_parser.AggregateExpr)
            and node.modifier is not None
            and node.modifier.type == promql_parser.AggModifierType.By
        ):
            grouping.update(node.modifier.labels)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return selectors, grouping


def test_link_queries_select_and_group_by_labels_the_link_metrics_have() -> None:
    """A renamed label or state would leave a panel empty and an alert silent without an error:
    every label a link query matches on has that value on some series, and every label it
    groups by is on every series it selects."""
    samples = link_samples()
    queries = link_queries()
    assert len(queries) >= 7, queries  # five panels and two alerts
    for query in queries:
        selectors, grouping = selectors_and_grouping(query)
        for metric, matchers in selectors:
            if metric in APP_LINK_METRICS:
                continue
            of_metric = [s for s in samples if s.name == metric]
            assert of_metric, f"{query!r}: {metric} has no series for two links"
            assert any(matchers.items() <= s.labels.items() for s in of_metric), (query, matchers)
            for sample in of_metric:
                assert grouping <= set(sample.labels), (query, sample)


def test_the_link_state_panel_shows_every_state() -> None:
    """The state timeline numbers the states it knows: a new state would show as no value."""
    shown = {
        matchers["state"]
        for query in link_queries()
        for metric, matchers in selectors_and_grouping(query)[0]
        if metric == "flakehouse_link_state" and "state" in matchers
    }
    assert shown == set(STATES)
    by_state = {
        s.labels["link"]: s.labels["state"]
        for s in link_samples()
        if s.name == "flakehouse_link_state" and s.value == 1
    }
    assert by_state == {"eu": "failing", "us": "caught_up"}


# --- against a running cluster ----------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A local cluster that has taken one upload and answered queries, so that labelled series
    (rows applied per dataset, answers per dataset, leases per result) exist; yields its
    cluster.json."""
    running = RunningCluster(
        tmp_path_factory.mktemp("monitoring") / "cluster", storage_nodes=2, partitions=4
    )
    try:
        running.wait_ready()
        with Client.from_cluster_file(running.cluster_path) as client:
            upload = client.upload(report(7, 2000), dataset=DATASET, filename="report.xml")
            after = offsets_of([upload])
            answer = client.query(f"SELECT count(*) FROM {DATASET}", after=after, timeout_ms=10_000)
            assert answer.rows == [[upload.events]], answer.rows
            client.query(f"SELECT status, count(*) FROM {DATASET} GROUP BY status", after=after)
        yield running.info()
    finally:
        running.stop()


def metrics_addresses(info: Mapping[str, Any]) -> dict[str, list[str]]:
    """host:port of every metrics endpoint in cluster.json, by service."""
    addresses = {name: [endpoint["metrics"]] for name, endpoint in info["services"].items()}
    addresses["storage"] = [node["metrics"] for node in info["storage"]]
    addresses["console"] = [info["console_metrics"]]
    return addresses


def exported_metrics(address: str) -> set[str]:
    """Every sample name the endpoint exports or declares: a labelled family with no series
    yet (rejections before the first rejection) still counts, as it will have samples."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        text = response.read().decode()
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names |= {sample.name for sample in family.samples}
        names |= {family.name + suffix for suffix in SAMPLE_SUFFIXES.get(family.type, ("",))}
    return names


@pytest.mark.processes
@pytest.mark.broker
def test_every_metric_the_dashboards_and_alerts_use_is_exported(cluster: dict[str, Any]) -> None:
    addresses = metrics_addresses(cluster)
    assert sorted(addresses) == ["console", "ingest", "query", "quota", "replication", "storage"]
    assert len(addresses["storage"]) == 2
    exported: set[str] = set()
    for endpoints in addresses.values():
        for address in endpoints:
            exported |= exported_metrics(address)
    used = used_metrics()
    assert len(used) >= 25, sorted(used)
    missing = used - exported
    assert not missing, f"used by dashboards or alerts, exported by no service: {missing}"


# --- a real Prometheus ------------------------------------------------------------------------


def prometheus_config(addresses: Mapping[str, list[str]]) -> dict[str, Any]:
    """One job per service, as the chart's ServiceMonitors would have it."""
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": service, "static_configs": [{"targets": targets}]}
            for service, targets in sorted(addresses.items())
        ],
    }


def api(base: str, path: str, **params: str) -> dict[str, Any]:
    """A Prometheus HTTP API call; its JSON answer also when it is an error (HTTP 400)."""
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return dict(json.load(response))
    except urllib.error.HTTPError as exc:
        return dict(json.load(exc))


def prometheus_eventually(check: Callable[[], T], timeout_s: float, what: str, log: Path) -> T:
    """`eventually`, with Prometheus not listening yet as not yet, and its log on a failure."""
    try:
        return eventually(check, what, timeout_s, retry_on=(urllib.error.URLError,))
    except AssertionError as exc:
        pytest.fail(f"{exc}; prometheus log:\n{log.read_text()[-3000:]}")


def targets_up(base: str, expected: int) -> bool:
    active = api(base, "/api/v1/targets")["data"]["activeTargets"]
    return len(active) == expected and all(target["health"] == "up" for target in active)


def samples(base: str, expr: str) -> list[Any]:
    answer = api(base, "/api/v1/query", query=expr)
    assert answer["status"] == "success", f"{expr!r}: {answer.get('error')}"
    return list(answer["data"]["result"])


@pytest.mark.processes
@pytest.mark.broker
def test_prometheus_scrapes_the_cluster_and_runs_every_query(
    cluster: dict[str, Any], tmp_path: Path
) -> None:
    if not PROMETHEUS.exists():
        pytest.fail(f"{PROMETHEUS.relative_to(ROOT)} is missing: run `make tools`")
    addresses = metrics_addresses(cluster)
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps(prometheus_config(addresses), indent=2))  # JSON is YAML
    log = tmp_path / "prometheus.log"
    base = f"http://127.0.0.1:{free_port()}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(PROMETHEUS),
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address={base.removeprefix('http://')}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        expected = sum(len(targets) for targets in addresses.values())
        prometheus_eventually(lambda: targets_up(base, expected), 30, f"{expected} targets up", log)
        for metric in CORE_METRICS:
            prometheus_eventually(
                functools.partial(samples, base, metric), 15, f"{metric} samples", log
            )

        # Every panel query, with the node picker on "All" as Grafana would send it.
        nodes = "|".join(addresses["storage"])
        for dashboard in load_dashboards().values():
            values = {**placeholder_values(dashboard), "node": nodes}
            for expr in expressions(dashboard):
                samples(base, substitute(expr, values))
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
