"""The Helm chart, checked without a cluster: `helm lint --strict`; `helm template` with default
values, with `kafka.deploy=true` and with monitoring on, every manifest validated against the
Kubernetes schemas (kubernetes-validate, strict: unknown fields fail); the alert rules checked
with promtool; bad values refused; and what the manifests promise, read from them: storage
pods never share a node, so with storage.replicas=4 and 16 partitions no two replicas of a
partition can be scheduled on one node.

helm and promtool come from `make tools` (tools/bin)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from flakehouse.replication.placement import DatasetTopic, NodeInfo, compute_placement

# helm and promtool run as processes.
pytestmark = pytest.mark.processes

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "flakehouse"
HELM = ROOT / "tools" / "bin" / "helm"
PROMTOOL = ROOT / "tools" / "bin" / "promtool"
KUBERNETES_VERSION = "1.30.0"
COMPONENTS = ["ingest", "query", "quota", "replication", "storage"]
# prometheus-operator kinds: no schema in kubernetes-validate; checked on their own below.
OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}
MONITORING_ON = [
    "monitoring.serviceMonitor.enabled=true",
    "monitoring.prometheusRule.enabled=true",
]


def _tool(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"{path.relative_to(ROOT)} is missing: run `make tools`")
    return path


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(_tool(HELM)), *args], capture_output=True, text=True, timeout=60, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
    return result


def render(*sets: str, release: str = "fh") -> list[dict[str, Any]]:
    args = ["template", release, str(CHART), "--namespace", "tests"]
    for value in sets:
        args += ["--set", value]
    docs = yaml.safe_load_all(helm(*args).stdout)
    return [d for d in docs if d]


def find(manifests: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (match,) = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    return match


def containers(manifests: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for m in manifests:
        if m["kind"] in ("Deployment", "StatefulSet"):
            for container in m["spec"]["template"]["spec"]["containers"]:
                yield m["metadata"]["name"], container


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


VARIANTS = {
    "default": [],
    "kafka": ["kafka.deploy=true"],
    "monitoring": MONITORING_ON,
    "scaled": ["components.storage.replicas=4", "partitionsPerDataset=16", *MONITORING_ON],
}


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: render(*sets) for name, sets in VARIANTS.items()}


# -- lint and schemas ----------------------------------------------------------------------------


@pytest.mark.parametrize("sets", [[], ["kafka.deploy=true", *MONITORING_ON]])
def test_helm_lint_strict(sets: list[str]) -> None:
    args = ["lint", "--strict", str(CHART)]
    for value in sets:
        args += ["--set", value]
    assert "0 chart(s) failed" in helm(*args).stdout


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_manifest_is_valid_kubernetes_in_strict_mode(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    manifests = rendered[variant]
    checked = 0
    for manifest in manifests:
        if manifest["kind"] in OPERATOR_KINDS:
            continue
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        checked += 1
    assert checked >= 15


def test_an_unknown_field_fails_the_validation_used_above() -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {"containerz": []}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["components.quota.replicas=2"], "components.quota.replicas: Must be less than"),
        (["components.storage.replicas=1"], "below replicationFactor"),
        (["components.ingest.grpcPort=70000"], "grpcPort"),
        (["components.extra.replicas=1"], "Additional property extra"),
        (["default.logLevel=verbose"], "logLevel"),
        (["kafka.minInsyncReplicas=4"], "must not exceed kafka.topicReplicationFactor"),
        (["kafka.deploy=true", "kafka.brokers=1"], "needs at least as many kafka.brokers"),
        (["kafka.deploy=true", "kafka.clusterId=short"], "clusterId"),
        (["kafka.bootstrapServers=no-port"], "bootstrapServers"),
        (["components.storage.persistence.size=lots"], "size"),
        (["default.env.lower_case=1"], "lower_case"),
        (["image.pullPolicy=Sometimes"], "pullPolicy"),
        # Every address the services are given uses default.grpcPort: no per-component port.
        (["components.quota.grpcPort=7100"], "Additional property grpcPort"),
        (["components.replication.replicas=2"], "components.replication.replicas"),
    ],
)
def test_bad_values_are_refused_with_a_message(sets: list[str], message: str) -> None:
    args = ["template", "fh", str(CHART)]
    for value in sets:
        args += ["--set", value]
    result = helm(*args, check=False)
    assert result.returncode != 0, f"{sets} rendered"
    assert message in result.stderr, result.stderr


# -- alerts --------------------------------------------------------------------------------------


def test_alert_rules_pass_promtool(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(_tool(PROMTOOL)), "check", "rules", str(CHART / "files" / "alerts.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_prometheus_rule_carries_the_checked_rules(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    rule = find(rendered["monitoring"], "PrometheusRule", "fh-monitoring")
    source = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"] == source
    rules_file = tmp_path / "rendered-rules.yaml"
    rules_file.write_text(yaml.safe_dump(rule["spec"]))
    result = subprocess.run(
        [str(_tool(PROMTOOL)), "check", "rules", str(rules_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(source["groups"][0]["rules"]) >= 4


def test_the_service_monitor_scrapes_every_component(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    manifests = rendered["monitoring"]
    monitor = find(manifests, "ServiceMonitor", "fh-monitoring")
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "interval": "30s"}]
    selector = monitor["spec"]["selector"]
    (components,) = selector["matchExpressions"]
    assert sorted(components["values"]) == COMPONENTS
    for component in COMPONENTS:
        service = find(manifests, "Service", f"fh-{component}")
        labels = service["metadata"]["labels"]
        assert selector["matchLabels"].items() <= labels.items()
        assert "metrics" in [p["name"] for p in service["spec"]["ports"]]
    assert not [m for m in rendered["default"] if m["kind"] in OPERATOR_KINDS]


# -- workloads ------------------------------------------------------------------------------------


def test_one_workload_per_component_with_probes_resources_and_metrics(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    manifests = rendered["default"]
    seen = dict(containers(manifests))
    assert sorted(seen) == [f"fh-{c}" for c in COMPONENTS]
    for name, container in seen.items():
        component = name.removeprefix("fh-")
        assert container["image"] == f"flakehouse/{component}:0.1.0"
        assert container["resources"]["requests"] and container["resources"]["limits"]
        assert {"name": "metrics", "containerPort": 9100, "protocol": "TCP"} in container["ports"]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        env = env_of(container)
        assert env[f"FLAKEHOUSE_{component.upper()}_PORT"] == "7000"
    kinds = {m["metadata"]["name"]: m["kind"] for m in manifests if "spec" in m}
    assert kinds["fh-storage"] == "StatefulSet" and kinds["fh-query"] == "Deployment"
    # One replication controller and one quota ledger at a time, also during upgrades.
    for name in ("fh-replication", "fh-quota"):
        assert find(manifests, "Deployment", name)["spec"]["strategy"] == {"type": "Recreate"}
    rolling = find(manifests, "Deployment", "fh-query")["spec"]["strategy"]
    assert rolling["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}


def test_probes_ask_the_plaintext_metrics_port_over_http(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """The gRPC port speaks TLS only, which the kubelet's gRPC probes cannot: readiness and
    liveness are HTTP on the metrics port, with the timings the gRPC probes had."""
    for name, container in containers(rendered["default"]):
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        ready, alive = container["readinessProbe"], container["livenessProbe"]
        assert ready == {
            "httpGet": {"path": "/readyz", "port": "metrics"},
            "periodSeconds": 5,
            "failureThreshold": 2,
        }, name
        assert alive == {
            "httpGet": {"path": "/healthz", "port": "metrics"},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "failureThreshold": 6,
        }, name
        env = env_of(container)
        prefix = f"FLAKEHOUSE_{name.removeprefix('fh-').upper()}_"
        assert ports["metrics"] == int(env[prefix + "METRICS_PORT"]) != ports["grpc"]


def test_a_component_image_can_be_set_whole() -> None:
    images = dict(
        (name, c["image"])
        for name, c in containers(render("components.query.image=reg/q@sha256:1"))
    )
    assert images["fh-query"] == "reg/q@sha256:1"
    assert images["fh-ingest"] == "flakehouse/ingest:0.1.0"


def test_storage_keeps_a_volume_and_its_identity(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    storage = find(rendered["default"], "StatefulSet", "fh-storage")
    (claim,) = storage["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    (container,) = storage["spec"]["template"]["spec"]["containers"]
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    env = env_of(container)
    assert env["FLAKEHOUSE_STORAGE_NODE_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["FLAKEHOUSE_STORAGE_DATA_DIR"] == "/data"
    headless = find(rendered["default"], "Service", "fh-storage")
    assert headless["spec"]["clusterIP"] == "None"
    assert env["FLAKEHOUSE_STORAGE_ADVERTISED_ADDRESS"].startswith("$(POD_NAME).fh-storage.")


def test_replicas_of_a_partition_never_share_a_node_with_4_storage_nodes_and_16_partitions(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """Two facts make it so: replication puts a partition's replicas on distinct storage pods
    (its placement, computed here for the pods the chart creates), and the chart's required
    anti-affinity never schedules two storage pods on one node."""
    manifests = rendered["scaled"]
    storage = find(manifests, "StatefulSet", "fh-storage")
    assert storage["spec"]["replicas"] == 4
    pod = storage["spec"]["template"]
    (term,) = pod["spec"]["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert term["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "storage"
    (zones,) = pod["spec"]["topologySpreadConstraints"]
    assert zones["topologyKey"] == "topology.kubernetes.io/zone"

    env = {name: env_of(c) for name, c in containers(manifests)}
    assert env["fh-ingest"]["FLAKEHOUSE_INGEST_DEFAULT_PARTITIONS"] == "16"
    factor = int(env["fh-replication"]["FLAKEHOUSE_REPLICATION_REPLICATION_FACTOR"])
    pods = [NodeInfo(f"fh-storage-{i}") for i in range(4)]
    placement = compute_placement([DatasetTopic("ci", "flakehouse.ci", 16)], pods, factor)
    assert len(placement["ci"]) == 16
    for replicas in placement["ci"].values():
        assert len(replicas) == factor == 2 and len(set(replicas)) == 2

    budget = find(manifests, "PodDisruptionBudget", "fh-storage")
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"] == term["labelSelector"]["matchLabels"]


def test_replication_may_watch_pods_read_nodes_and_hold_a_lease_only(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    manifests = rendered["default"]
    role = find(manifests, "Role", "fh-replication")
    assert sorted(
        (tuple(r["apiGroups"]), tuple(r["resources"]), tuple(r["verbs"])) for r in role["rules"]
    ) == [
        (("",), ("pods",), ("get", "list", "watch")),
        (("coordination.k8s.io",), ("leases",), ("get", "create", "patch")),
    ]
    nodes = find(manifests, "ClusterRole", "tests-fh-replication-nodes")
    assert nodes["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]
    deployments = {
        m["metadata"]["name"]: m for m in manifests if m["kind"] in ("Deployment", "StatefulSet")
    }
    for name, workload in deployments.items():
        spec = workload["spec"]["template"]["spec"]
        if name == "fh-replication":
            assert spec["serviceAccountName"] == "fh-replication"
        else:
            assert spec["automountServiceAccountToken"] is False
    env = env_of(deployments["fh-replication"]["spec"]["template"]["spec"]["containers"][0])
    assert env["FLAKEHOUSE_REPLICATION_KUBERNETES_NAMESPACE"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }
    assert env["FLAKEHOUSE_REPLICATION_STORAGE_SELECTOR"] == (
        "app.kubernetes.io/instance=fh,app.kubernetes.io/component=storage"
    )


# -- Kafka ---------------------------------------------------------------------------------------


def test_kafka_deploy_adds_a_kraft_cluster_of_3_brokers_used_by_every_service(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    manifests = rendered["kafka"]
    kafka = find(manifests, "StatefulSet", "fh-kafka")
    assert kafka["spec"]["replicas"] == 3
    (container,) = kafka["spec"]["template"]["spec"]["containers"]
    assert container["image"].startswith("apache/kafka:")
    env = env_of(container)
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    assert voters == [f"{i}@fh-kafka-{i}.fh-kafka-headless.tests.svc:9093" for i in range(3)]
    assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
    assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
    # Below the volume's root, where a filesystem may keep lost+found.
    (mount,) = container["volumeMounts"]
    assert env["KAFKA_LOG_DIRS"].startswith(mount["mountPath"] + "/")
    assert env["KAFKA_NODE_ID"] == {
        "fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}
    }
    for name, service in containers(manifests):
        if name == "fh-kafka" or name == "fh-query":
            continue
        service_env = env_of(service)
        prefix = f"FLAKEHOUSE_{name.removeprefix('fh-').upper()}_"
        assert service_env[prefix + "KAFKA_BOOTSTRAP"] == "fh-kafka:9092"
        assert service_env[prefix + "TOPIC_REPLICATION_FACTOR"] == "3"
    assert not [m for m in rendered["default"] if m["metadata"]["name"].startswith("fh-kafka")]


# -- dashboards and notes -------------------------------------------------------------------------


def test_dashboards_ship_as_configmaps_for_the_grafana_sidecar(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    files = sorted((CHART / "dashboards").glob("*.json"))
    assert len(files) >= 2
    maps = [m for m in rendered["default"] if m["kind"] == "ConfigMap"]
    assert len(maps) == len(files)
    for path in files:
        config_map = find(maps, "ConfigMap", f"fh-monitoring-{path.stem}")
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert json.loads(config_map["data"][path.name]) == json.loads(path.read_text())


def test_notes_tell_how_to_port_forward_and_run_a_first_query(tmp_path: Path) -> None:
    # `helm template` does not render NOTES.txt: in a copy of the chart, it becomes a named
    # template that a ConfigMap includes.
    copy = tmp_path / "flakehouse"
    shutil.copytree(CHART, copy)
    notes_txt = copy / "templates" / "NOTES.txt"
    (copy / "templates" / "_notes.tpl").write_text(
        '{{- define "notes" -}}\n' + notes_txt.read_text() + "{{- end -}}\n"
    )
    notes_txt.unlink()
    (copy / "templates" / "notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        'data: {notes: {{ include "notes" . | toJson }}}\n'
    )
    shown = helm("template", "fh", str(copy), "--show-only", "templates/notes.yaml").stdout
    notes = yaml.safe_load(shown)["data"]["notes"]
    assert "port-forward svc/fh-query 7002:7000" in notes
    assert 'flakehouse query --query 127.0.0.1:7002 "SELECT' in notes
    assert "storage      3 pod(s)" in notes
