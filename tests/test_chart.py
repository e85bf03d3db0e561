"""The Helm chart, checked without a cluster: `helm lint --strict`; `helm template` with default
values, with `kafka.deploy=true`, with monitoring on and in each TLS mode, every manifest
validated against the Kubernetes schemas (kubernetes-validate, strict: unknown fields fail; the
cert-manager Certificate against tests/schemas); the alert rules checked with promtool, the
links' run over sample series (promtool test rules); bad values refused; and what the manifests
promise, read from them: storage pods never share a node, so with storage.replicas=4 and 16
partitions no two replicas of a partition can be scheduled on one node; the generated
certificate is signed by its CA and valid for every name the components are reached by,
including the storage pods' names replication dials; every component is given the tokens Secret
(two random `fh_` tokens, kept across upgrades) and no token appears anywhere else; with a
managed Kafka (SASL_SSL), every component is told the protocol, mechanism and user and mounts
the password and TLS files from the user's Secrets, and no password is ever a value; every
variable the chart sets is a setting of its component; the NetworkPolicies, evaluated over a
model of the pods and addresses around the release, let through exactly the flows of DESIGN.md
§1 and what the networkPolicy values add, links to other clusters' ingest services only where
networkPolicy.links opens them. The console (DESIGN.md §11) is told its settings, mounts the
cluster CA and no token, serves HTTPS with a certificate of its own when asked (signed by the
cluster CA, or from cert-manager or a Secret), has an Ingress only when enabled, and goes away
whole when disabled.

helm and promtool come from `make tools` (tools/bin)."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from jsonschema import Draft202012Validator

from flakehouse.core.tokens import SECRET_PREFIX, new_secret, read_secret
from flakehouse.ingest.settings import IngestSettings
from flakehouse.query.settings import QuerySettings
from flakehouse.quota.settings import QuotaSettings
from flakehouse.replication.kube_members import pod_address
from flakehouse.replication.placement import DatasetTopic, NodeInfo, compute_placement
from flakehouse.replication.settings import ReplicationSettings
from flakehouse.storage.settings import StorageSettings

# helm and promtool run as processes.
pytestmark = pytest.mark.processes

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "flakehouse"
HELM = ROOT / "tools" / "bin" / "helm"
PROMTOOL = ROOT / "tools" / "bin" / "promtool"
KUBERNETES_VERSION = "1.30.0"
COMPONENTS = ["ingest", "query", "quota", "replication", "storage"]
# The console's settings (FLAKEHOUSE_CONSOLE_*), as its package defines them: no token file, no
# Kafka.
CONSOLE_SETTINGS = {
    "host",
    "port",
    "metrics_host",
    "metrics_port",
    "log_level",
    "query_address",
    "ingest_address",
    "tls_ca_file",
    "tls_cert_file",
    "tls_key_file",
    "cookie_secure",
    "query_timeout_s",
}
CONSOLE_HOST = "flakehouse.example.com"
# The console serving HTTPS itself, behind an Ingress that ends TLS too, with two pods.
CONSOLE_EXPOSED = [
    "console.replicas=2",
    "console.tls.enabled=true",
    "console.ingress.enabled=true",
    f"console.ingress.host={CONSOLE_HOST}",
    "console.ingress.className=nginx",
    "console.ingress.tls.secretName=flakehouse-web",
    r"console.ingress.annotations.nginx\.ingress\.kubernetes\.io/backend-protocol=HTTPS",
]
NO_CONSOLE = ["console.enabled=false"]
# Links (issue 19): the other clusters' ingest services this one pulls from, at 192.0.2.0/24 on
# the gRPC port, and the links' settings given through env.
LINK_SOURCES = "192.0.2.0/24"
LINKS = [
    f"networkPolicy.links.egress[0].to[0].ipBlock.cidr={LINK_SOURCES}",
    "networkPolicy.links.egress[0].ports[0].port=7000",
    "networkPolicy.links.egress[0].ports[0].protocol=TCP",
    "components.replication.env.LINK_SOURCE_TIMEOUT_S=20",
    "components.replication.env.LINK_APPEND_TIMEOUT_S=45",
    "components.ingest.env.MAX_CHANGE_STREAMS=32",
]
# prometheus-operator kinds: no schema in kubernetes-validate; checked on their own below.
OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}
MONITORING_ON = [
    "monitoring.serviceMonitor.enabled=true",
    "monitoring.prometheusRule.enabled=true",
]
# Nor for cert-manager's Certificate: a hand-written subset of its CRD's schema.
CERTIFICATE_SCHEMA = ROOT / "tests" / "schemas" / "cert-manager-certificate-v1.schema.json"
TLS_SECRET_MODE = ["tls.mode=secret", "tls.existingSecret=flakehouse-certs"]
TLS_CERT_MANAGER = [
    "tls.mode=certManager",
    "tls.certManager.issuerRef.name=cluster-ca",
    "tls.certManager.issuerRef.kind=ClusterIssuer",
]
TLS_DIR = "/etc/flakehouse/tls"
TOKENS_DIR = "/etc/flakehouse/tokens"
TOKENS_SECRET_MODE = ["tokens.existingSecret=flakehouse-tokens"]
NO_ADMIN = ["tokens.admin=false"]
# A managed Kafka: SASL_SSL with SCRAM-SHA-512, the brokers' CA and a client certificate from
# Secrets of the user's.
KAFKA_SASL_SSL = [
    "kafka.bootstrapServers=b-1.kafka.example.com:9096",
    "kafka.securityProtocol=SASL_SSL",
    "kafka.sasl.mechanism=SCRAM-SHA-512",
    "kafka.sasl.username=flakehouse",
    "kafka.sasl.passwordSecret.name=kafka-credentials",
    "kafka.sasl.passwordSecret.key=scram-password",
    "kafka.tls.caSecret.name=kafka-ca",
    "kafka.tls.clientCertSecret=kafka-client",
]
KAFKA_DIR = "/etc/flakehouse/kafka"
# Clients from the "apps" namespace only, Prometheus from "monitoring" only, the API server and
# the managed Kafka by address, the console's page from the Ingress controller's namespace only.
NETWORK_NARROWED = [
    r"networkPolicy.clients[0].namespaceSelector.matchLabels.kubernetes\.io/metadata\.name=apps",
    r"networkPolicy.prometheus[0].namespaceSelector.matchLabels.kubernetes\.io/metadata\.name=monitoring",
    r"networkPolicy.prometheus[0].podSelector.matchLabels.app\.kubernetes\.io/name=prometheus",
    "networkPolicy.kubernetesApi.to[0].ipBlock.cidr=172.18.0.2/32",
    "networkPolicy.externalKafka.to[0].ipBlock.cidr=198.51.100.0/24",
    r"networkPolicy.console.from[0].namespaceSelector.matchLabels.kubernetes\.io/metadata\.name=ingress-nginx",
]
# What a token looks like (flakehouse.core.tokens.new_secret): fh_ and 256 bits, URL-safe.
TOKEN = re.compile(r"fh_[A-Za-z0-9_-]{43}")


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


def render(*sets: str, release: str = "fh", set_json: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    args = ["template", release, str(CHART), "--namespace", "tests"]
    for value in sets:
        args += ["--set", value]
    for value in set_json:
        args += ["--set-json", value]
    docs = yaml.safe_load_all(helm(*args).stdout)
    return [d for d in docs if d]


def find(manifests: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (match,) = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    return match


def find_kind(manifests: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (match,) = [m for m in manifests if m["kind"] == kind]
    return match


def containers(manifests: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for m in manifests:
        if m["kind"] in ("Deployment", "StatefulSet"):
            for container in m["spec"]["template"]["spec"]["containers"]:
                yield m["metadata"]["name"], container


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def component_of(workload: dict[str, Any]) -> str:
    component: str = workload["spec"]["template"]["metadata"]["labels"][
        "app.kubernetes.io/component"
    ]
    return component


def services(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The workloads of the five gRPC services (not the console, not the chart's Kafka)."""
    return [w for w in workloads(manifests) if component_of(w) in COMPONENTS]


def console_of(manifests: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The console's Deployment and its container."""
    deployment = find(manifests, "Deployment", "fh-console")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return deployment, container


VARIANTS = {
    "default": [],
    "kafka": ["kafka.deploy=true"],
    "monitoring": MONITORING_ON,
    "scaled": ["components.storage.replicas=4", "partitionsPerDataset=16", *MONITORING_ON],
    "tls-secret": TLS_SECRET_MODE,
    "tls-cert-manager": TLS_CERT_MANAGER,
    "tokens-secret": TOKENS_SECRET_MODE,
    "no-admin": NO_ADMIN,
    "kafka-sasl-ssl": KAFKA_SASL_SSL,
    "network-narrowed": NETWORK_NARROWED,
    "console-exposed": CONSOLE_EXPOSED,
    "console-cert-manager": [*TLS_CERT_MANAGER, "console.tls.enabled=true"],
    "console-secret": [
        *TLS_SECRET_MODE,
        "console.tls.enabled=true",
        "console.tls.existingSecret=web",
    ],
    "no-console": NO_CONSOLE,
    "links": LINKS,
}


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: render(*sets) for name, sets in VARIANTS.items()}


# -- lint and schemas ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sets",
    [
        [],
        ["kafka.deploy=true", *MONITORING_ON],
        TLS_SECRET_MODE,
        TLS_CERT_MANAGER,
        [*TOKENS_SECRET_MODE, *NO_ADMIN],
        KAFKA_SASL_SSL,
        CONSOLE_EXPOSED,
        NO_CONSOLE,
        LINKS,
    ],
)
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
        if manifest["kind"] == "Certificate":
            assert certificate_errors(manifest) == []
        else:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        checked += 1
    assert checked >= 15


def test_an_unknown_field_fails_the_validation_used_above() -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {"containerz": []}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)


def certificate_errors(certificate: dict[str, Any]) -> list[str]:
    schema = json.loads(CERTIFICATE_SCHEMA.read_text())
    Draft202012Validator.check_schema(schema)
    return [
        f"/{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in Draft202012Validator(schema).iter_errors(certificate)
    ]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (["spec", "dnsName"], ["x"]),
        (["spec", "privateKey", "algorithm"], "EC"),
        (["spec", "issuerRef"], {"kind": "Issuer"}),
        (["spec", "duration"], "90d"),
        (["spec", "usages"], ["server"]),
    ],
)
def test_the_certificate_schema_refuses_a_broken_certificate(
    rendered: dict[str, list[dict[str, Any]]], path: list[str], value: object
) -> None:
    """The schema is closed and typed, so the check above can fail."""
    certificate = json.loads(json.dumps(find_kind(rendered["tls-cert-manager"], "Certificate")))
    node = certificate
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert certificate_errors(certificate)


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
        (["tls.mode=selfSigned"], "tls.mode"),
        (["tls.mode=secret"], "tls.mode=secret needs tls.existingSecret"),
        (["tls.mode=certManager"], "tls.mode=certManager needs tls.certManager.issuerRef.name"),
        (["tls.certManager.duration=90d"], "duration"),
        (["tls.key=x"], "Additional property key"),
        # A token is never a value: only the name of a Secret that holds them.
        (["tokens.service=x"], "Additional property service"),
        (["tokens.admin=maybe"], "tokens.admin"),
        (["tokens.existingSecret=Not_A_Name"], "tokens.existingSecret"),
        # Kafka: a SASL protocol without its credentials, and settings nothing would use.
        (
            ["kafka.securityProtocol=SASL_SSL"],
            "kafka.securityProtocol=SASL_SSL needs kafka.sasl.mechanism, kafka.sasl.username, "
            "kafka.sasl.passwordSecret.name",
        ),
        (
            [
                "kafka.securityProtocol=SASL_PLAINTEXT",
                "kafka.sasl.mechanism=PLAIN",
                "kafka.sasl.username=flakehouse",
            ],
            "kafka.securityProtocol=SASL_PLAINTEXT needs kafka.sasl.passwordSecret.name",
        ),
        (
            [*KAFKA_SASL_SSL, "kafka.sasl.mechanism="],
            "kafka.securityProtocol=SASL_SSL needs kafka.sasl.mechanism (",
        ),
        (
            ["kafka.sasl.mechanism=PLAIN"],
            "kafka.sasl.mechanism set, but kafka.securityProtocol=PLAINTEXT uses no SASL",
        ),
        (
            [*KAFKA_SASL_SSL, "kafka.securityProtocol=SASL_PLAINTEXT"],
            "kafka.tls.caSecret.name, kafka.tls.clientCertSecret set, but "
            "kafka.securityProtocol=SASL_PLAINTEXT uses no TLS",
        ),
        (
            ["kafka.tls.clientCertSecret=kafka-client"],
            "kafka.tls.clientCertSecret set, but kafka.securityProtocol=PLAINTEXT uses no TLS",
        ),
        (
            ["kafka.deploy=true", "kafka.securityProtocol=SSL"],
            "kafka.deploy=true runs a Kafka that listens in PLAINTEXT only",
        ),
        (["kafka.securityProtocol=TLS"], "kafka.securityProtocol"),
        (["kafka.sasl.mechanism=GSSAPI"], "kafka.sasl.mechanism"),
        # A password is never a value: only the name and key of the Secret that holds it.
        (["kafka.sasl.password=hunter2"], "Additional property password"),
        (["kafka.sasl.passwordSecret.value=hunter2"], "Additional property value"),
        (["kafka.sasl.passwordSecret.name=Not_A_Name"], "kafka.sasl.passwordSecret.name"),
        # Network policies: NetworkPolicy's own shapes, ports by number.
        (["networkPolicy.enable=true"], "Additional property enable"),
        (["networkPolicy.kubernetesApi.ports[0].port=https"], "kubernetesApi.ports.0.port"),
        (["networkPolicy.dns.ports[0].protocol=ICMP"], "dns.ports.0.protocol"),
        (["networkPolicy.externalKafka.to[0].ipBlock.cidr=10.0.0.1"], "ipBlock.cidr"),
        # An ipBlock stands alone in a peer.
        (
            [
                "networkPolicy.clients[0].ipBlock.cidr=10.0.0.0/8",
                "networkPolicy.clients[0].namespaceSelector.matchLabels.team=ci",
            ],
            "networkPolicy.clients.0",
        ),
        (["networkPolicy.console.from[0].ipBlock.cidr=10.0.0.1"], "ipBlock.cidr"),
        # Links: a rule names its ports (without them it would open every port), by number.
        (
            [f"networkPolicy.links.egress[0].to[0].ipBlock.cidr={LINK_SOURCES}"],
            "networkPolicy.links.egress.0: ports is required",
        ),
        (["networkPolicy.links.egress[0].ports[0].port=https"], "links.egress.0.ports.0.port"),
        (["networkPolicy.links.egress[0].ports[0].port=70000"], "links.egress.0.ports.0.port"),
        (
            ["networkPolicy.links.egress[0].from[0].ipBlock.cidr=10.0.0.0/8"],
            "Additional property from",
        ),
        (["networkPolicy.links.ingress[0].ports[0].port=7000"], "Additional property ingress"),
        # The console: its own port, a host for its Ingress, a certificate in secret mode, and
        # no token, ever.
        (["console.httpPort=9100"], "console.httpPort (9100) is the console's metrics port too"),
        (["console.grpcPort=7000"], "Additional property grpcPort"),
        (["console.token=x"], "Additional property token"),
        (["console.enabled=maybe"], "console.enabled"),
        (["console.ingress.enabled=true"], "console.ingress.host"),
        (
            ["console.ingress.enabled=true", "console.ingress.host=Not_A_Host"],
            "console.ingress.host",
        ),
        (
            [*TLS_SECRET_MODE, "console.tls.enabled=true"],
            "console.tls.enabled with tls.mode=secret needs console.tls.existingSecret",
        ),
        (["console.tls.existingSecret=Not_A_Name"], "console.tls.existingSecret"),
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


def promtool_test_rules(tmp_path: Path, tests: list[dict[str, Any]]) -> None:
    """`promtool test rules` of files/alerts.yaml over the given tests (input series, and the
    alerts expected at given times, compared on their labels). The annotations are left out of
    the copy tested: promtool compares them whole, and `check rules` checks their templates."""
    rules = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    suite = tmp_path / "tests.yaml"
    suite.write_text(
        yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "30s", "tests": tests})
    )
    result = subprocess.run(
        [str(_tool(PROMTOOL)), "test", "rules", str(suite)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def link_series(metric: str, link: str, values: str, **labels: str) -> dict[str, str]:
    matchers = ",".join(f'{k}="{v}"' for k, v in {"link": link, "dataset": "ci", **labels}.items())
    return {"series": f"{metric}{{{matchers}}}", "values": values}


def link_alert(link: str) -> dict[str, Any]:
    return {"exp_labels": {"link": link, "dataset": "ci", "severity": "warning"}}


def test_link_alerts_fire_for_a_link_that_stays_behind_or_keeps_failing(tmp_path: Path) -> None:
    """Scraped every 30s. Link "eu" fails for 20 minutes, retrying: each attempt shows it
    "starting" at one scrape in four, which must not reset FlakehouseLinkFailing; its lag grows
    with the time, past 900s at 15m. Link "us" fails once and is caught up from the third
    scrape on: neither alert."""
    retrying = ["1", "1", "1", "0"] * 10
    state = "flakehouse_link_state"
    series = [
        link_series(state, "eu", " ".join(retrying), state="failing"),
        link_series(
            state, "eu", " ".join("0" if v == "1" else "1" for v in retrying), state="starting"
        ),
        link_series(state, "eu", "0x40", state="caught_up"),
        link_series("flakehouse_link_lag_seconds", "eu", "0+30x50"),
        link_series(state, "us", "1 1 0x38", state="failing"),
        link_series(state, "us", "0 0 1x38", state="caught_up"),
        link_series("flakehouse_link_lag_seconds", "us", "30 60 0x48"),
    ]
    failing, behind = "FlakehouseLinkFailing", "FlakehouseLinkBehind"
    checks = [
        # Failing at some point of every 2 minutes since 0s, for 10 minutes: firing from 10m.
        (failing, "9m30s", []),
        (failing, "11m", [link_alert("eu")]),
        (failing, "19m", [link_alert("eu")]),
        # Past 900s from 15m30s, for 5 minutes: firing from 20m30s.
        (behind, "20m", []),
        (behind, "21m", [link_alert("eu")]),
    ]
    promtool_test_rules(
        tmp_path,
        [
            {
                "interval": "30s",
                "input_series": series,
                "alert_rule_test": [
                    {"eval_time": at, "alertname": name, "exp_alerts": alerts}
                    for name, at, alerts in checks
                ],
            }
        ],
    )


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
    assert sorted(components["values"]) == sorted([*COMPONENTS, "console"])
    for component in components["values"]:
        service = find(manifests, "Service", f"fh-{component}")
        labels = service["metadata"]["labels"]
        assert selector["matchLabels"].items() <= labels.items()
        assert "metrics" in [p["name"] for p in service["spec"]["ports"]]
    assert not [m for m in rendered["default"] if m["kind"] in OPERATOR_KINDS]
    without = find(render(*MONITORING_ON, *NO_CONSOLE), "ServiceMonitor", "fh-monitoring")
    assert sorted(without["spec"]["selector"]["matchExpressions"][0]["values"]) == COMPONENTS


# -- workloads ------------------------------------------------------------------------------------


def test_one_workload_per_component_with_probes_resources_and_metrics(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    manifests = rendered["default"]
    seen = dict(containers(manifests))
    assert sorted(seen) == sorted(f"fh-{c}" for c in [*COMPONENTS, "console"])
    for name, container in seen.items():
        component = name.removeprefix("fh-")
        assert container["image"] == f"flakehouse/{component}:0.1.0"
        assert container["resources"]["requests"] and container["resources"]["limits"]
        assert {"name": "metrics", "containerPort": 9100, "protocol": "TCP"} in container["ports"]
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }
        env = env_of(container)
        # The console's HTTP port, the services' gRPC port.
        port = "8080" if component == "console" else "7000"
        assert env[f"FLAKEHOUSE_{component.upper()}_PORT"] == port
    kinds = {m["metadata"]["name"]: m["kind"] for m in manifests if "spec" in m}
    assert kinds["fh-storage"] == "StatefulSet" and kinds["fh-query"] == "Deployment"
    # One replication controller and one quota ledger at a time, also during upgrades.
    for name in ("fh-replication", "fh-quota"):
        assert find(manifests, "Deployment", name)["spec"]["strategy"] == {"type": "Recreate"}
    for name in ("fh-query", "fh-console"):
        rolling = find(manifests, "Deployment", name)["spec"]["strategy"]
        assert rolling["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    pods = [w["spec"]["template"]["spec"] for w in workloads(manifests)]
    assert all(pod["securityContext"] == pods[0]["securityContext"] for pod in pods)
    assert pods[0]["securityContext"]["runAsNonRoot"] is True


def test_probes_ask_the_plaintext_metrics_port_over_http(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """The gRPC port speaks TLS only, which the kubelet's gRPC probes cannot: readiness and
    liveness are HTTP on the metrics port, with the timings the gRPC probes had. The console's
    too, whose HTTP port may speak TLS."""
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
        serving = ports["http"] if name == "fh-console" else ports["grpc"]
        assert ports["metrics"] == int(env[prefix + "METRICS_PORT"]) != serving


def test_a_component_image_can_be_set_whole() -> None:
    images = dict(
        (name, c["image"])
        for name, c in containers(
            render("components.query.image=reg/q@sha256:1", "console.image=reg/c:2")
        )
    )
    assert images["fh-query"] == "reg/q@sha256:1"
    assert images["fh-console"] == "reg/c:2"
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


def storage_statefulset(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    (storage,) = [
        m
        for m in manifests
        if m["kind"] == "StatefulSet"
        and m["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "storage"
    ]
    return storage


@pytest.mark.parametrize("release", ["fh", "other"])
def test_replication_dials_storage_pods_at_the_names_they_advertise_and_the_certificate_covers(
    release: str,
) -> None:
    """Replication registers each storage pod at <pod>.<serviceName>.<ns>.svc (pod_address),
    overwriting what the node advertised: both must be the same name, under the StatefulSet's
    governing (headless) Service, and covered by the certificate, or TLS host checks fail."""
    manifests = render(release=release)
    storage = storage_statefulset(manifests)
    governing = storage["spec"]["serviceName"]
    headless = find(manifests, "Service", governing)
    assert headless["spec"]["clusterIP"] == "None"
    replication = find(manifests, "Deployment", f"{release}-replication")
    env = env_of(replication["spec"]["template"]["spec"]["containers"][0])
    assert env["FLAKEHOUSE_REPLICATION_STORAGE_SERVICE"] == governing

    (container,) = storage["spec"]["template"]["spec"]["containers"]
    advertised = env_of(container)["FLAKEHOUSE_STORAGE_ADVERTISED_ADDRESS"]
    cert = x509.load_pem_x509_certificate(pem(generated_secret(manifests), "tls.crt"))
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns_names = sans.get_values_for_type(x509.DNSName)
    for i in range(storage["spec"]["replicas"]):
        pod = f"{storage['metadata']['name']}-{i}"
        dialled = pod_address(
            pod,
            env["FLAKEHOUSE_REPLICATION_STORAGE_SERVICE"],
            "tests",
            int(env["FLAKEHOUSE_REPLICATION_STORAGE_GRPC_PORT"]),
        )
        assert dialled == advertised.replace("$(POD_NAME)", pod).replace(
            "$(POD_NAMESPACE)", "tests"
        )
        assert uncovered(dns_names, {dialled.rsplit(":", 1)[0]}) == []


# -- TLS ---------------------------------------------------------------------------------------


def workloads(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] in ("Deployment", "StatefulSet")]


def tls_volume(workload: dict[str, Any]) -> dict[str, Any]:
    spec = workload["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == TLS_DIR]
    assert mount.get("readOnly") is True
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    secret: dict[str, Any] = volume["secret"]
    return secret


def names_components_are_reached_by(
    manifests: list[dict[str, Any]], namespace: str = "tests"
) -> set[str]:
    """Read from the manifests: every Service selecting a pod that mounts the TLS Secret, in
    the forms a caller may use; every pod of a StatefulSet under its governing Service; the
    hosts of the addresses the services and the console are given (`$(POD_NAME)` and
    `$(POD_NAMESPACE)` filled in for each pod); and localhost, where port-forwards arrive. The
    console's own Service is not one: it has a certificate of its own."""
    names = {"localhost"}

    def qualified(name: str) -> list[str]:
        svc = f"{name}.{namespace}.svc"
        return [f"{name}.{namespace}", svc, f"{svc}.cluster.local"]

    mounting = [w for w in services(manifests) if tls_volume(w)]
    for service in (m for m in manifests if m["kind"] == "Service"):
        selector = service["spec"]["selector"].items()
        if any(selector <= w["spec"]["template"]["metadata"]["labels"].items() for w in mounting):
            names |= {service["metadata"]["name"], *qualified(service["metadata"]["name"])}
    callers = mounting + [w for w in workloads(manifests) if component_of(w) == "console"]
    for workload in callers:
        pods = [workload["metadata"]["name"]]
        if workload["kind"] == "StatefulSet":
            governing = workload["spec"]["serviceName"]
            pods = [
                f"{workload['metadata']['name']}-{i}" for i in range(workload["spec"]["replicas"])
            ]
            for pod in pods:
                names |= set(qualified(f"{pod}.{governing}"))
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        for key, value in env_of(container).items():
            if key.endswith("_ADDRESS") and isinstance(value, str):
                for pod in pods:
                    filled = value.replace("$(POD_NAME)", pod).replace(
                        "$(POD_NAMESPACE)", namespace
                    )
                    names.add(filled.rsplit(":", 1)[0])
    assert not [n for n in names if "$" in n], names
    return names


def name_matches(pattern: str, host: str) -> bool:
    """RFC 6125 as gRPC and OpenSSL apply it: the same name, or `*.` standing for one whole
    leftmost label with at least two labels after it."""
    pattern, host = pattern.lower(), host.lower()
    if not pattern.startswith("*."):
        return pattern == host
    label, _, rest = host.partition(".")
    return bool(label) and rest == pattern[2:] and "." in rest


def uncovered(patterns: list[str], hosts: set[str]) -> list[str]:
    return sorted(h for h in hosts if not any(name_matches(p, h) for p in patterns))


def test_the_name_matching_used_below_can_fail() -> None:
    assert name_matches("*.fh-storage.tests.svc", "fh-storage-0.fh-storage.tests.svc")
    assert not name_matches("*.fh-storage.tests.svc", "a.b.fh-storage.tests.svc")
    assert not name_matches("*.fh-storage", "fh-storage-0.fh-storage")
    assert not name_matches("fh-quota", "fh-quota.tests")
    hosts = names_components_are_reached_by(render())
    assert {"fh-quota", "fh-storage-2.fh-storage.tests.svc", "localhost"} <= hosts
    assert uncovered(["fh-quota"], hosts)


def generated_secret(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    """The services' generated TLS Secret (the tokens one renders beside it, and the
    console's)."""
    (secret,) = [
        m
        for m in manifests
        if m["kind"] == "Secret"
        and m["type"] == "kubernetes.io/tls"
        and m["metadata"]["labels"]["app.kubernetes.io/component"] == "tls"
    ]
    return secret


def secret_names(manifests: list[dict[str, Any]]) -> list[str]:
    return sorted(m["metadata"]["name"] for m in manifests if m["kind"] == "Secret")


def pem(secret: dict[str, Any], key: str) -> bytes:
    return base64.b64decode(secret["data"][key])


@pytest.mark.parametrize("variant", ["default", "scaled"])
def test_the_generated_certificate_is_signed_by_its_ca_for_every_name_components_use(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    manifests = rendered[variant]
    secret = generated_secret(manifests)
    assert secret["metadata"]["name"] == "fh-tls"
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert sorted(secret["data"]) == ["ca.crt", "tls.crt", "tls.key"]

    ca = x509.load_pem_x509_certificate(pem(secret, "ca.crt"))
    cert = x509.load_pem_x509_certificate(pem(secret, "tls.crt"))
    key = serialization.load_pem_private_key(pem(secret, "tls.key"), password=None)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    cert.verify_directly_issued_by(ca)  # raises unless ca signed it
    spki = (serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)
    assert ca.not_valid_after_utc - ca.not_valid_before_utc == timedelta(days=3650)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=825)
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usages

    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns_names = sans.get_values_for_type(x509.DNSName)
    hosts = names_components_are_reached_by(manifests)
    assert uncovered(dns_names, hosts) == []
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    if variant == "scaled":
        assert "fh-storage-3.fh-storage.tests.svc" in hosts


def test_every_component_mounts_the_tls_secret_and_is_told_its_three_files(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    manifests = rendered["default"]
    secret = generated_secret(manifests)
    certificates = {k: secret["data"][k] for k in ("ca.crt", "tls.crt")}
    checksum = hashlib.sha256(
        json.dumps(certificates, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    mounted = services(manifests)
    assert sorted(w["metadata"]["name"] for w in mounted) == [f"fh-{c}" for c in COMPONENTS]
    for workload in mounted:
        volume = tls_volume(workload)
        assert volume["secretName"] == secret["metadata"]["name"]
        # Owned by root, readable by the pod's group: fsGroup, which the process runs in.
        assert volume["defaultMode"] == 0o440
        pod = workload["spec"]["template"]
        security = pod["spec"]["securityContext"]
        assert security["fsGroup"] == security["runAsGroup"]
        # A new certificate changes the pod template, so every pod restarts with it.
        assert pod["metadata"]["annotations"]["checksum/tls"] == checksum
        (container,) = pod["spec"]["containers"]
        prefix = f"FLAKEHOUSE_{workload['metadata']['name'].removeprefix('fh-').upper()}_"
        env = env_of(container)
        files = {k: v for k, v in env.items() if "_TLS_" in k}
        assert files == {
            prefix + "TLS_CERT_FILE": f"{TLS_DIR}/tls.crt",
            prefix + "TLS_KEY_FILE": f"{TLS_DIR}/tls.key",
            prefix + "TLS_CA_FILE": f"{TLS_DIR}/ca.crt",
        }
        assert {f.removeprefix(TLS_DIR + "/") for f in files.values()} == set(secret["data"])


def test_pod_annotations_stay_beside_the_certificate_checksum() -> None:
    manifests = render("components.query.podAnnotations.team=search")
    query = find(manifests, "Deployment", "fh-query")["spec"]["template"]["metadata"]
    assert query["annotations"]["team"] == "search"
    assert "checksum/tls" in query["annotations"]


def test_secret_mode_mounts_the_named_secret_and_renders_none(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    manifests = rendered["tls-secret"]
    assert not [m for m in manifests if m["kind"] == "Certificate"]
    assert secret_names(manifests) == ["fh-tokens"]
    for workload in services(manifests):
        assert tls_volume(workload)["secretName"] == "flakehouse-certs"
        # The chart does not know the certificate, so nothing to restart the pods on.
        annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
        assert "checksum/tls" not in annotations


def test_cert_manager_mode_asks_for_the_same_certificate_and_generates_none(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    manifests = rendered["tls-cert-manager"]
    assert secret_names(manifests) == ["fh-tokens"]
    certificate = find_kind(manifests, "Certificate")
    assert certificate_errors(certificate) == []
    spec = certificate["spec"]
    assert spec["issuerRef"] == {
        "name": "cluster-ca",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }
    assert spec["privateKey"]["algorithm"] == "ECDSA"
    assert (spec["duration"], spec["renewBefore"]) == ("2160h", "720h")
    assert {"server auth", "client auth"} <= set(spec["usages"])
    assert spec["ipAddresses"] == ["127.0.0.1"]
    for workload in services(manifests):
        assert tls_volume(workload)["secretName"] == spec["secretName"] == "fh-tls"
    assert uncovered(spec["dnsNames"], names_components_are_reached_by(manifests)) == []
    # The same names as the generated certificate's.
    generated = x509.load_pem_x509_certificate(
        pem(generated_secret(rendered["default"]), "tls.crt")
    )
    sans = generated.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(spec["dnsNames"]) == sorted(sans.get_values_for_type(x509.DNSName))


def test_an_issuer_kind_defaults_to_issuer() -> None:
    certificate = find_kind(
        render("tls.mode=certManager", "tls.certManager.issuerRef.name=ca"), "Certificate"
    )
    assert certificate["spec"]["issuerRef"]["kind"] == "Issuer"


def test_no_key_in_values_defaults_nor_in_any_config_map(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    text = (CHART / "values.yaml").read_text()
    assert "PRIVATE KEY" not in text and "BEGIN" not in text
    tls = yaml.safe_load(text)["tls"]
    assert tls["mode"] == "generate" and tls["existingSecret"] == ""
    secret = generated_secret(rendered["default"])
    key_pem = pem(secret, "tls.key").decode()
    assert "PRIVATE KEY" in key_pem
    key_body = "".join(key_pem.strip().splitlines()[1:-1])
    for variant, manifests in rendered.items():
        for manifest in manifests:
            if manifest["kind"] == "Secret":
                continue
            dumped = json.dumps(manifest)
            assert "PRIVATE KEY" not in dumped, (variant, manifest["metadata"]["name"])
            assert "tls.key" not in dumped or manifest["kind"] != "ConfigMap"
            if variant == "default":
                assert key_body[:64] not in dumped
                assert secret["data"]["tls.key"][:64] not in dumped


# -- tokens --------------------------------------------------------------------------------------


def tokens_volume(workload: dict[str, Any]) -> dict[str, Any]:
    spec = workload["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == TOKENS_DIR]
    assert mount.get("readOnly") is True
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    secret: dict[str, Any] = volume["secret"]
    return secret


def token_files(workload: dict[str, Any]) -> dict[str, Any]:
    """Every *_TOKEN_FILE variable of the workload's container, whatever its prefix."""
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return {k: v for k, v in env_of(container).items() if k.endswith("_TOKEN_FILE")}


def prefix_of(workload: dict[str, Any]) -> str:
    return f"FLAKEHOUSE_{workload['metadata']['name'].removeprefix('fh-').upper()}_"


def tokens_secret(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    return find(manifests, "Secret", "fh-tokens")


def decoded(secret: dict[str, Any]) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


def test_the_generated_tokens_are_two_distinct_secrets_of_the_services_format(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    secret = tokens_secret(rendered["default"])
    assert secret["type"] == "Opaque"
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    tokens = decoded(secret)
    assert sorted(tokens) == ["admin.token", "service.token"]
    for key, token in tokens.items():
        assert TOKEN.fullmatch(token), key
        # The shape the services make themselves, read back as they read the file.
        assert token.startswith(SECRET_PREFIX) and len(token) == len(new_secret())
        (tmp_path / key).write_text(token)
        assert read_secret(tmp_path / key) == token
        # randAlphaNum: 43 of 62 symbols, 256 bits.
        assert token.removeprefix(SECRET_PREFIX).isalnum()
    assert tokens["admin.token"] != tokens["service.token"]
    # Random, not a constant of the chart: each render without a cluster makes new ones.
    again = decoded(tokens_secret(render()))
    assert not set(again.values()) & set(tokens.values())


def test_every_component_mounts_the_tokens_and_is_told_its_two_files(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    manifests = rendered["default"]
    secret = tokens_secret(manifests)
    checksum = hashlib.sha256(
        json.dumps(secret["data"], sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    mounted = services(manifests)
    assert sorted(w["metadata"]["name"] for w in mounted) == [f"fh-{c}" for c in COMPONENTS]
    for workload in mounted:
        volume = tokens_volume(workload)
        assert volume == {"secretName": "fh-tokens", "defaultMode": 0o440}
        # New tokens change the pod template, so every pod restarts with them.
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        assert annotations["checksum/tokens"] == checksum
        prefix = prefix_of(workload)
        assert token_files(workload) == {
            prefix + "SERVICE_TOKEN_FILE": f"{TOKENS_DIR}/service.token",
            prefix + "ADMIN_TOKEN_FILE": f"{TOKENS_DIR}/admin.token",
        }
        files = {f.removeprefix(TOKENS_DIR + "/") for f in token_files(workload).values()}
        assert files == set(secret["data"])


def test_existing_tokens_secret_is_mounted_and_none_rendered(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    manifests = rendered["tokens-secret"]
    assert secret_names(manifests) == ["fh-console-tls", "fh-tls"]
    for workload in services(manifests):
        assert tokens_volume(workload) == {"secretName": "flakehouse-tokens", "defaultMode": 0o440}
        # The chart does not know the tokens, so nothing to restart the pods on.
        assert "checksum/tokens" not in workload["spec"]["template"]["metadata"]["annotations"]
        prefix = prefix_of(workload)
        assert sorted(token_files(workload)) == [
            prefix + "ADMIN_TOKEN_FILE",
            prefix + "SERVICE_TOKEN_FILE",
        ]


@pytest.mark.parametrize("sets", [NO_ADMIN, [*NO_ADMIN, *TOKENS_SECRET_MODE]])
def test_without_the_bootstrap_admin_no_pod_is_told_of_or_sees_the_admin_token(
    sets: list[str],
) -> None:
    manifests = render(*sets)
    secret_name = "flakehouse-tokens" if TOKENS_SECRET_MODE[0] in sets else "fh-tokens"
    for workload in services(manifests):
        prefix = prefix_of(workload)
        assert token_files(workload) == {
            prefix + "SERVICE_TOKEN_FILE": f"{TOKENS_DIR}/service.token"
        }
        # Only service.token is projected, even from a Secret of the user's that has both.
        assert tokens_volume(workload) == {
            "secretName": secret_name,
            "defaultMode": 0o440,
            "items": [{"key": "service.token", "path": "service.token"}],
        }
    if secret_name == "fh-tokens":
        assert sorted(tokens_secret(manifests)["data"]) == ["service.token"]


def installed_tokens_chart(tmp_path: Path) -> Path:
    """A copy of the chart whose `lookup` of the tokens Secret answers .Values.installed, as a
    cluster holding that Secret would (`helm template` has no cluster to ask)."""
    copy = tmp_path / "flakehouse"
    shutil.copytree(CHART, copy)
    helpers = copy / "templates" / "_helpers.tpl"
    call = 'lookup "v1" "Secret" .Release.Namespace (include "flakehouse.tokensSecretName" .)'
    text = helpers.read_text()
    assert text.count(call) == 1
    helpers.write_text(text.replace(call, ".Values.installed"))
    (copy / "values.schema.json").unlink()  # closed: it would refuse `installed`
    return copy


def render_installed(
    tmp_path: Path, chart: Path, data: dict[str, str], *sets: str
) -> dict[str, str]:
    values = tmp_path / "installed.yaml"
    b64 = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
    values.write_text(yaml.safe_dump({"installed": {"data": b64}}))
    args = ["template", "fh", str(chart), "--namespace", "tests", "-f", str(values)]
    for value in sets:
        args += ["--set", value]
    manifests = [d for d in yaml.safe_load_all(helm(*args).stdout) if d]
    return decoded(tokens_secret(manifests))


def test_an_upgrade_keeps_installed_tokens_and_makes_only_a_missing_one(tmp_path: Path) -> None:
    chart = installed_tokens_chart(tmp_path)
    service, admin = new_secret(), new_secret()
    both = {"service.token": service, "admin.token": admin}
    assert render_installed(tmp_path, chart, both) == both
    # The admin key removed (to replace that token alone): a new one, the service token kept.
    remade = render_installed(tmp_path, chart, {"service.token": service})
    assert remade["service.token"] == service
    assert TOKEN.fullmatch(remade["admin.token"]) and remade["admin.token"] != admin
    # The bootstrap admin off: the Secret drops it.
    assert render_installed(tmp_path, chart, both, *NO_ADMIN) == {"service.token": service}


def test_every_service_follows_the_same_kafka_query_included(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """Query follows the token topic, and may be the service that creates it: it needs the
    same broker, prefix and topic durability as the others."""
    kafka = {}
    for workload in services(rendered["default"]):
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        env = env_of(container)
        prefix = prefix_of(workload)
        kafka[workload["metadata"]["name"]] = {
            name: env.get(prefix + name)
            for name in (
                "KAFKA_BOOTSTRAP",
                "TOPIC_PREFIX",
                "TOPIC_REPLICATION_FACTOR",
                "TOPIC_MIN_INSYNC_REPLICAS",
            )
        }
    assert kafka["fh-query"] == {
        "KAFKA_BOOTSTRAP": "kafka:9092",
        "TOPIC_PREFIX": "flakehouse",
        "TOPIC_REPLICATION_FACTOR": "3",
        "TOPIC_MIN_INSYNC_REPLICAS": "2",
    }
    assert all(settings == kafka["fh-query"] for settings in kafka.values()), kafka


def test_no_token_in_values_defaults_nor_in_any_manifest_but_its_secret(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    text = (CHART / "values.yaml").read_text()
    assert not TOKEN.search(text)
    assert yaml.safe_load(text)["tokens"] == {"existingSecret": "", "admin": True}
    tokens = decoded(tokens_secret(rendered["default"]))
    # The pattern finds a real token wherever it is, so its absence below means something.
    assert TOKEN.search(json.dumps({"x": f"Bearer {tokens['admin.token']}"}))
    for variant, manifests in rendered.items():
        for manifest in manifests:
            if manifest["kind"] == "Secret":
                continue
            dumped = json.dumps(manifest)
            assert not TOKEN.search(dumped), (variant, manifest["metadata"]["name"])
            if variant == "default":
                for token in tokens.values():
                    assert base64.b64encode(token.encode()).decode() not in dumped


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
        service_env = env_of(service)
        if name == "fh-console":
            # The console talks to query and ingest only.
            assert not [k for k in service_env if "KAFKA" in k or "TOPIC" in k], service_env
            continue
        if name == "fh-kafka":
            continue
        prefix = f"FLAKEHOUSE_{name.removeprefix('fh-').upper()}_"
        assert service_env[prefix + "KAFKA_BOOTSTRAP"] == "fh-kafka:9092"
        assert service_env[prefix + "TOPIC_REPLICATION_FACTOR"] == "3"
    assert not [m for m in rendered["default"] if m["metadata"]["name"].startswith("fh-kafka")]


def kafka_volume(workload: dict[str, Any]) -> dict[str, Any] | None:
    """The projected volume mounted read-only at KAFKA_DIR, or None when nothing is."""
    spec = workload["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    mounts = [m for m in container["volumeMounts"] if m["mountPath"] == KAFKA_DIR]
    if not mounts:
        return None
    (mount,) = mounts
    assert mount.get("readOnly") is True
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    projected: dict[str, Any] = volume["projected"]
    return projected


def kafka_env(workload: dict[str, Any]) -> dict[str, Any]:
    """The workload's KAFKA_* security variables, without its prefix."""
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    prefix = prefix_of(workload)
    return {
        name.removeprefix(prefix): value
        for name, value in env_of(container).items()
        if name.startswith(prefix + "KAFKA_") and name != prefix + "KAFKA_BOOTSTRAP"
    }


def test_every_component_is_told_the_kafka_security_and_mounts_its_files(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    mounted = services(rendered["kafka-sasl-ssl"])
    assert sorted(w["metadata"]["name"] for w in mounted) == [f"fh-{c}" for c in COMPONENTS]
    for workload in mounted:
        env = kafka_env(workload)
        assert env == {
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": "flakehouse",
            "KAFKA_SASL_PASSWORD_FILE": f"{KAFKA_DIR}/sasl-password",
            "KAFKA_CA_FILE": f"{KAFKA_DIR}/ca.crt",
            "KAFKA_CERT_FILE": f"{KAFKA_DIR}/client.crt",
            "KAFKA_KEY_FILE": f"{KAFKA_DIR}/client.key",
        }, workload["metadata"]["name"]
        volume = kafka_volume(workload)
        assert volume is not None
        assert volume["defaultMode"] == 0o440
        # Each file from the Secret and key the values name, at the path its variable gives.
        files = {
            f"{KAFKA_DIR}/{item['path']}": (source["secret"]["name"], item["key"])
            for source in volume["sources"]
            for item in source["secret"]["items"]
        }
        assert files == {
            env["KAFKA_SASL_PASSWORD_FILE"]: ("kafka-credentials", "scram-password"),
            env["KAFKA_CA_FILE"]: ("kafka-ca", "ca.crt"),
            env["KAFKA_CERT_FILE"]: ("kafka-client", "tls.crt"),
            env["KAFKA_KEY_FILE"]: ("kafka-client", "tls.key"),
        }
    for workload in services(rendered["default"]):
        assert kafka_env(workload) == {"KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}
        assert kafka_volume(workload) is None
    _, console = console_of(rendered["kafka-sasl-ssl"])
    assert not [k for k in env_of(console) if "KAFKA" in k]
    assert not [m for m in console["volumeMounts"] if m["mountPath"] == KAFKA_DIR]


SETTINGS = {
    "fh-ingest": IngestSettings,
    "fh-query": QuerySettings,
    "fh-quota": QuotaSettings,
    "fh-replication": ReplicationSettings,
    "fh-storage": StorageSettings,
}


@pytest.mark.parametrize("variant", ["default", "kafka-sasl-ssl", "links"])
def test_every_variable_the_chart_sets_is_a_setting_of_its_component(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    """pydantic-settings ignores a variable it has no field for: a misspelt name would leave
    the setting at its default (PLAINTEXT, no password) without a word."""
    for workload in services(rendered[variant]):
        name = workload["metadata"]["name"]
        fields = SETTINGS[name].model_fields
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        prefix = prefix_of(workload)
        for entry in container["env"]:
            variable = entry["name"]
            if variable in ("POD_NAME", "POD_NAMESPACE"):  # for storage's ADVERTISED_ADDRESS
                continue
            setting = variable.removeprefix(prefix).lower()
            assert variable.startswith(prefix) and setting in fields, (name, variable)


def test_sasl_without_tls_files_mounts_the_password_only() -> None:
    sets = [s for s in KAFKA_SASL_SSL if not s.startswith("kafka.tls.")]
    sets = [*sets, "kafka.securityProtocol=SASL_PLAINTEXT", "kafka.sasl.mechanism=PLAIN"]
    for workload in services(render(*sets)):
        env = kafka_env(workload)
        assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
        assert "KAFKA_CA_FILE" not in env and "KAFKA_CERT_FILE" not in env
        volume = kafka_volume(workload)
        assert volume is not None
        (source,) = volume["sources"]
        assert source["secret"]["items"] == [{"key": "scram-password", "path": "sasl-password"}]


def test_no_kafka_password_in_values_nor_in_any_env_value_or_config_map(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """The password reaches the pods only as a file from the user's Secret: no value holds it,
    no variable is filled from a Secret, and the chart makes no Secret for it."""
    sasl = yaml.safe_load((CHART / "values.yaml").read_text())["kafka"]["sasl"]
    assert sasl == {
        "mechanism": "",
        "username": "",
        "passwordSecret": {"name": "", "key": "password"},
    }
    manifests = rendered["kafka-sasl-ssl"]
    assert secret_names(manifests) == secret_names(rendered["default"])
    for name, container in containers(manifests):
        for entry in container["env"]:
            assert "secretKeyRef" not in entry.get("valueFrom", {}), (name, entry)
            if "PASSWORD" in entry["name"]:
                assert entry["name"].endswith("_KAFKA_SASL_PASSWORD_FILE"), (name, entry)
                assert entry["value"] == f"{KAFKA_DIR}/sasl-password"
    for manifest in manifests:
        if manifest["kind"] == "ConfigMap":
            dumped = json.dumps(manifest)
            assert "kafka-credentials" not in dumped and "scram-password" not in dumped


# -- network policies ----------------------------------------------------------------------------

# The flows of DESIGN.md §1, written once, independently of the chart: who calls whom on the
# gRPC port (storage copies segments from its peers; replication finds the storage pods through
# the Kubernetes API, and they call it; it calls quota, for its links' ingest leases and token
# use; the console calls query, and ingest for uploads from the browser), and the ports users
# reach.
CALLS = {
    "console": {"ingest", "query"},
    "ingest": {"quota"},
    "query": {"quota", "replication", "storage"},
    "quota": set(),
    "replication": {"quota"},
    "storage": {"quota", "replication", "storage"},
}
USER_FACING = {"ingest", "query", "quota", "replication"}
# Every service follows the token topic; the console talks to no Kafka.
KAFKA_CLIENTS = set(COMPONENTS)
GRPC, METRICS, HTTP = "7000/TCP", "9100/TCP", "8080/TCP"
DNS = {"53/UDP", "53/TCP"}
NAMESPACE_LABELS = {
    ns: {"kubernetes.io/metadata.name": ns}
    for ns in ("tests", "apps", "monitoring", "kube-system", "ingress-nginx")
}


def flakehouse_labels(release: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "flakehouse",
        "app.kubernetes.io/instance": release,
        "app.kubernetes.io/component": component,
    }


@dataclass(eq=False)
class Endpoint:
    """A pod (namespace and labels) or an address outside the cluster's pods (ip), and the
    ports it listens on ("7000/TCP")."""

    name: str
    ports: set[str]
    namespace: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    ip: str | None = None


# Everything around the release: pods of other workloads, in its namespace and elsewhere (one
# of another release of the chart, one in another namespace wearing our query's labels), the
# Prometheus and DNS pods, and addresses outside the pods: the API server, a managed Kafka, the
# internet.
STRANGERS = [
    Endpoint("neighbour", {"8080/TCP"}, "tests", {"app": "other"}),
    Endpoint("other-release", {GRPC, METRICS}, "tests", flakehouse_labels("other", "storage")),
    Endpoint("client", {"8080/TCP"}, "apps", {"app": "ci"}),
    Endpoint("impostor", {"8080/TCP"}, "apps", flakehouse_labels("fh", "query")),
    Endpoint("prometheus", {"9090/TCP"}, "monitoring", {"app.kubernetes.io/name": "prometheus"}),
    Endpoint(
        "ingress-controller", {"80/TCP"}, "ingress-nginx", {"app.kubernetes.io/name": "ingress"}
    ),
    Endpoint("kube-dns", DNS, "kube-system", {"k8s-app": "kube-dns"}),
    Endpoint("api-server", {"6443/TCP"}, ip="172.18.0.2"),
    Endpoint("managed-kafka", {"9092/TCP"}, ip="198.51.100.9"),
    Endpoint("internet", {"443/TCP"}, ip="203.0.113.7"),
    # Another Flakehouse cluster's ingest service, outside this cluster, on the gRPC port: a
    # source of this cluster's links, and the caller of ingest when its links pull from here.
    Endpoint("other-cluster", {GRPC}, ip="192.0.2.10"),
]
STRANGER_PODS = {s.name for s in STRANGERS if s.namespace}
EVERYONE = {s.name for s in STRANGERS}


def release_pods(manifests: list[dict[str, Any]]) -> list[Endpoint]:
    """One endpoint per workload of the release, with its pods' labels and ports: a flow from
    one to itself is between two of its pods."""
    pods = []
    for workload in workloads(manifests):
        template = workload["spec"]["template"]
        labels = template["metadata"]["labels"]
        ports = {
            f"{p['containerPort']}/{p.get('protocol', 'TCP')}"
            for c in template["spec"]["containers"]
            for p in c.get("ports", [])
        }
        pods.append(Endpoint(labels["app.kubernetes.io/component"], ports, "tests", labels))
    return pods


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        present = key in labels
        value_in = present and labels[key] in expression.get("values", [])
        ok = {
            "In": value_in,
            "NotIn": not value_in,
            "Exists": present,
            "DoesNotExist": not present,
        }[operator]
        if not ok:
            return False
    return True


def peer_matches(peer: dict[str, Any], policy_namespace: str, endpoint: Endpoint) -> bool:
    """NetworkPolicyPeer semantics. An ipBlock is taken to match addresses outside the pods
    only: whether it matches pod addresses is left to each network plugin."""
    if "ipBlock" in peer:
        if endpoint.ip is None:
            return False
        address = ipaddress.ip_address(endpoint.ip)
        block = peer["ipBlock"]
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(e) for e in block.get("except", [])
        )
    if endpoint.namespace is None:
        return False
    if "namespaceSelector" in peer:
        in_namespace = selects(peer["namespaceSelector"], NAMESPACE_LABELS[endpoint.namespace])
    else:
        in_namespace = endpoint.namespace == policy_namespace
    return in_namespace and selects(peer.get("podSelector", {}), endpoint.labels)


def port_matches(ports: list[dict[str, Any]] | None, port: str) -> bool:
    number, protocol = port.split("/")
    if not ports:
        return True
    for rule in ports:
        if rule.get("protocol", "TCP") != protocol:
            continue
        if "port" not in rule:
            return True
        assert isinstance(rule["port"], int), f"named port {rule['port']}: numbers only"
        if rule["port"] <= int(number) <= rule.get("endPort", rule["port"]):
            return True
    return False


def admits(
    policies: list[dict[str, Any]], pod: Endpoint, direction: str, peer: Endpoint, port: str
) -> bool:
    """Whether the policies selecting `pod` let `peer` in (Ingress, `port` being the pod's) or
    let the pod out to `peer` (Egress). Addresses outside the pods have no policy; a pod no
    policy isolates in that direction admits everything."""
    if pod.namespace is None:
        return True
    isolating = []
    for policy in policies:
        namespace = policy["metadata"].get("namespace", "tests")
        spec = policy["spec"]
        types = spec.get("policyTypes") or ["Ingress", *(["Egress"] if "egress" in spec else [])]
        if (
            namespace == pod.namespace
            and direction in types
            and selects(spec["podSelector"], pod.labels)
        ):
            isolating.append(policy)
    if not isolating:
        return True
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    for policy in isolating:
        namespace = policy["metadata"].get("namespace", "tests")
        for rule in policy["spec"].get(key) or []:
            peers = rule.get(peers_key)
            if (not peers or any(peer_matches(p, namespace, peer) for p in peers)) and (
                port_matches(rule.get("ports"), port)
            ):
                return True
    return False


Flow = tuple[str, str, str]


def reachable(manifests: list[dict[str, Any]]) -> set[Flow]:
    """Every (source, destination, port) the rendered NetworkPolicies let through, with the
    release's pods at one end at least: the source's egress and the destination's ingress."""
    policies = [m for m in manifests if m["kind"] == "NetworkPolicy"]
    ours = release_pods(manifests)
    flows = set()
    for source in ours + STRANGERS:
        for destination in ours + STRANGERS:
            if source not in ours and destination not in ours:
                continue
            for port in destination.ports:
                if admits(policies, source, "Egress", destination, port) and admits(
                    policies, destination, "Ingress", source, port
                ):
                    flows.add((source.name, destination.name, port))
    return flows


def expected_flows(
    *,
    kafka: bool,
    clients: set[str],
    prometheus: set[str],
    kafka_brokers: set[str],
    kubernetes_api: set[tuple[str, str]],
    console_users: set[str] | None = EVERYONE,
) -> set[Flow]:
    """The flow table: DESIGN.md §1's calls, clients on the user-facing gRPC ports, Prometheus
    on every metrics port, Kafka, DNS for every pod, the Kubernetes API for replication, and
    the console's users on its HTTP port (None: no console)."""
    calls = {
        c: callees for c, callees in CALLS.items() if console_users is not None or c in COMPONENTS
    }
    components = sorted(calls)
    flows = {(caller, callee, GRPC) for caller, callees in calls.items() for callee in callees}
    flows |= {(client, c, GRPC) for client in clients for c in USER_FACING}
    flows |= {(user, "console", HTTP) for user in console_users or ()}
    flows |= {(scraper, c, METRICS) for scraper in prometheus for c in components}
    pods = [*components, "kafka"] if kafka else components
    flows |= {(pod, "kube-dns", port) for pod in pods for port in DNS}
    if kafka:
        flows |= {(c, "kafka", "9092/TCP") for c in KAFKA_CLIENTS}
        flows |= {("kafka", "kafka", "9092/TCP"), ("kafka", "kafka", "9093/TCP")}
    else:
        flows |= {(c, broker, "9092/TCP") for c in KAFKA_CLIENTS for broker in kafka_brokers}
    flows |= {("replication", api, port) for api, port in kubernetes_api}
    return flows


def flow_difference(actual: set[Flow], expected: set[Flow]) -> dict[str, list[Flow]]:
    return {"unexpected": sorted(actual - expected), "missing": sorted(expected - actual)}


NO_DIFFERENCE: dict[str, list[Flow]] = {"unexpected": [], "missing": []}


@pytest.mark.parametrize("variant", ["default", "kafka", "no-console"])
def test_network_policies_let_through_exactly_the_flow_table(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    """Defaults: clients from every pod of every namespace (TLS and a token are still needed),
    Prometheus pods of any namespace, the Kubernetes API and an external Kafka at any address
    on their ports, the console's page from anywhere. So storage's gRPC port is open to query
    and storage only, never to another workload, another release or a pod elsewhere wearing
    our labels; the chart's Kafka to the services only; the metrics ports to Prometheus only;
    the console reaches query and ingest and nothing else of the release."""
    kafka = variant == "kafka"
    console = variant != "no-console"
    actual = reachable(rendered[variant])
    expected = expected_flows(
        kafka=kafka,
        clients=STRANGER_PODS,
        prometheus={"prometheus"},
        kafka_brokers={"managed-kafka"},
        kubernetes_api={("api-server", "6443/TCP"), ("internet", "443/TCP")},
        console_users=EVERYONE if console else None,
    )
    assert flow_difference(actual, expected) == NO_DIFFERENCE
    if console:
        assert {(d, p) for s, d, p in actual if s == "console"} == {
            ("ingest", GRPC),
            ("query", GRPC),
            *(("kube-dns", p) for p in DNS),
        }
        assert {s for s, d, p in actual if d == "console" and p == HTTP} == EVERYONE
    else:
        assert not [f for f in actual if "console" in f[:2]]
    # The same, read the other way for a few that matter.
    assert {s for s, d, p in actual if d == "storage" and p == GRPC} == {"query", "storage"}
    assert {(d, p) for s, d, p in actual if s == "ingest"} == {
        ("quota", GRPC),
        *(("kube-dns", p) for p in DNS),
        ("kafka", "9092/TCP") if kafka else ("managed-kafka", "9092/TCP"),
    }
    if kafka:
        assert {s for s, d, p in actual if d == "kafka"} == {*KAFKA_CLIENTS, "kafka"}


def test_narrowed_network_policy_values_narrow_the_flows(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    actual = reachable(rendered["network-narrowed"])
    expected = expected_flows(
        kafka=False,
        clients={"client", "impostor"},
        prometheus={"prometheus"},
        kafka_brokers={"managed-kafka"},
        kubernetes_api={("api-server", "6443/TCP")},
        console_users={"ingress-controller"},
    )
    assert flow_difference(actual, expected) == NO_DIFFERENCE


def test_without_clients_or_prometheus_only_the_components_reach_one_another() -> None:
    actual = reachable(render(set_json=("networkPolicy.clients=[]", "networkPolicy.prometheus=[]")))
    expected = expected_flows(
        kafka=False,
        clients=set(),
        prometheus=set(),
        kafka_brokers={"managed-kafka"},
        kubernetes_api={("api-server", "6443/TCP"), ("internet", "443/TCP")},
    )
    assert flow_difference(actual, expected) == NO_DIFFERENCE


def test_external_kafka_is_reached_on_every_port_of_the_bootstrap_servers() -> None:
    manifests = render(r"kafka.bootstrapServers=b-1.example:9096\,b-2.example:9094")
    policy = find(manifests, "NetworkPolicy", "fh-ingest")
    kafka_rules = [r for r in policy["spec"]["egress"] if "to" not in r]
    assert kafka_rules == [
        {"ports": [{"port": 9096, "protocol": "TCP"}, {"port": 9094, "protocol": "TCP"}]}
    ]
    own = render("networkPolicy.externalKafka.ports[0].port=19092")
    assert {"ports": [{"port": 19092}]} in find(own, "NetworkPolicy", "fh-ingest")["spec"]["egress"]


def test_extra_egress_is_given_to_every_component() -> None:
    manifests = render(
        "networkPolicy.extraEgress[0].to[0].ipBlock.cidr=192.0.2.0/24",
        "networkPolicy.extraEgress[0].ports[0].port=4317",
    )
    extra = {"to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}], "ports": [{"port": 4317}]}
    for component in CALLS:
        assert extra in find(manifests, "NetworkPolicy", f"fh-{component}")["spec"]["egress"]


def network_policies(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == "NetworkPolicy"}


def test_replication_is_told_where_quota_is_and_may_call_it(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """Replication's links take an ingest lease of their dataset per chunk, and it reports the
    use of tokens: it is told quota's Service on its gRPC port, as ingest, query and storage
    are, and its policy and quota's let the call through."""
    manifests = rendered["default"]
    told = {}
    for workload in services(manifests):
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        told[workload["metadata"]["name"]] = env_of(container).get(
            prefix_of(workload) + "QUOTA_ADDRESS"
        )
    assert told == {
        "fh-ingest": "fh-quota:7000",
        "fh-query": "fh-quota:7000",
        "fh-quota": None,
        "fh-replication": "fh-quota:7000",
        "fh-storage": "fh-quota:7000",
    }
    host, port = told["fh-replication"].rsplit(":", 1)
    ports = find(manifests, "Service", host)["spec"]["ports"]
    assert {"name": "grpc", "port": int(port)}.items() <= ports[0].items()
    assert ("replication", "quota", GRPC) in reachable(manifests)


def test_link_egress_is_opened_only_by_the_links_values(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """By default replication reaches no other cluster's ingest on its gRPC port; with
    networkPolicy.links.egress it reaches those sources, on those ports, and nothing more:
    replication's policy alone changes, by that one rule."""
    default, links = rendered["default"], rendered["links"]
    assert not [f for f in reachable(default) if f[1] == "other-cluster"]
    expected = expected_flows(
        kafka=False,
        clients=STRANGER_PODS,
        prometheus={"prometheus"},
        kafka_brokers={"managed-kafka"},
        kubernetes_api={("api-server", "6443/TCP"), ("internet", "443/TCP")},
    )
    actual = reachable(links)
    assert flow_difference(actual, expected | {("replication", "other-cluster", GRPC)}) == (
        NO_DIFFERENCE
    )
    before, after = network_policies(default), network_policies(links)
    assert sorted(after) == sorted(before)
    assert [name for name in sorted(after) if after[name] != before[name]] == ["fh-replication"]
    old_rules = before["fh-replication"]["spec"]["egress"]
    added = [r for r in after["fh-replication"]["spec"]["egress"] if r not in old_rules]
    assert added == [
        {"to": [{"ipBlock": {"cidr": LINK_SOURCES}}], "ports": [{"port": 7000, "protocol": "TCP"}]}
    ]
    # Without `to`: any address on the rule's ports, still for replication alone.
    anywhere = network_policies(render("networkPolicy.links.egress[0].ports[0].port=7443"))
    for name, policy in anywhere.items():
        rules = policy["spec"].get("egress", [])
        assert ({"ports": [{"port": 7443}]} in rules) == (name == "fh-replication"), name


def test_other_clusters_links_reach_ingest_only_once_clients_admit_them(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """Another cluster's links pull from this one's ingest gRPC port from outside the cluster:
    the default clients (every pod of every namespace) do not admit them; their addresses added
    to networkPolicy.clients do, on the user-facing ports as for any client."""
    assert not [
        f for f in reachable(rendered["default"]) if f[0] == "other-cluster" and f[2] == GRPC
    ]
    clients = [{"namespaceSelector": {}}, {"ipBlock": {"cidr": LINK_SOURCES}}]
    admitted = reachable(render(set_json=(f"networkPolicy.clients={json.dumps(clients)}",)))
    assert {d for s, d, p in admitted if s == "other-cluster" and p == GRPC} == USER_FACING


def test_link_settings_given_in_env_reach_replication_and_ingest(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """The links' deadlines and ingest's change streams have no values of their own, like
    every tuning setting: `env` carries them (their names are checked as settings above)."""
    manifests = rendered["links"]
    env = {name: env_of(container) for name, container in containers(manifests)}
    assert env["fh-replication"]["FLAKEHOUSE_REPLICATION_LINK_SOURCE_TIMEOUT_S"] == "20"
    assert env["fh-replication"]["FLAKEHOUSE_REPLICATION_LINK_APPEND_TIMEOUT_S"] == "45"
    assert env["fh-ingest"]["FLAKEHOUSE_INGEST_MAX_CHANGE_STREAMS"] == "32"
    settings = ReplicationSettings(link_source_timeout_s="20", link_append_timeout_s="45")
    assert (settings.link_source_timeout_s, settings.link_append_timeout_s) == (20.0, 45.0)
    assert IngestSettings(max_change_streams="32").max_change_streams == 32


def test_every_address_a_component_is_given_is_a_flow_of_the_table(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """A component told of another's address (REPLICATION_ADDRESS, QUOTA_ADDRESS, …) calls
    it: a new one without its flow in the table (and in the chart's) fails here."""
    for name, container in containers(rendered["default"]):
        component = name.removeprefix("fh-")
        prefix = f"FLAKEHOUSE_{component.upper()}_"
        told = {
            key.removeprefix(prefix).removesuffix("_ADDRESS").lower()
            for key in env_of(container)
            if key.endswith("_ADDRESS") and key != prefix + "ADVERTISED_ADDRESS"
        }
        assert told <= CALLS[component], component


def test_the_default_deny_shuts_a_pod_no_component_policy_opens(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """Without storage's own policy, storage is shut both ways; without any policy, the flow
    check above would see everything reachable (so it can fail)."""
    manifests = rendered["default"]
    without_storage = [
        m
        for m in manifests
        if (m["kind"], m["metadata"]["name"]) != ("NetworkPolicy", "fh-storage")
    ]
    assert not [f for f in reachable(without_storage) if "storage" in f[:2]]
    open_flows = reachable([m for m in manifests if m["kind"] != "NetworkPolicy"])
    assert ("neighbour", "storage", GRPC) in open_flows
    assert ("ingest", "internet", "443/TCP") in open_flows


def test_network_policies_can_be_turned_off() -> None:
    assert not [m for m in render("networkPolicy.enabled=false") if m["kind"] == "NetworkPolicy"]


def test_network_policies_select_the_release_and_components_by_their_pods_labels(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    manifests = rendered["kafka"]
    policies = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "NetworkPolicy"}
    assert sorted(policies) == sorted(["fh-default-deny", "fh-kafka", *(f"fh-{c}" for c in CALLS)])
    for policy in policies.values():
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    deny = policies["fh-default-deny"]["spec"]
    assert "ingress" not in deny and "egress" not in deny
    for pod in release_pods(manifests):
        assert selects(deny["podSelector"], pod.labels)
        own = policies[f"fh-{pod.name}"]["spec"]["podSelector"]
        assert [p.name for p in release_pods(manifests) if selects(own, p.labels)] == [pod.name]


# -- the console ---------------------------------------------------------------------------------


def console_tls_sources(manifests: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """(Secret, keys) of each source of the console's projected volume at TLS_DIR, each key
    mounted under its own name."""
    deployment, container = console_of(manifests)
    spec = deployment["spec"]["template"]["spec"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == TLS_DIR]
    assert mount.get("readOnly") is True
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    # Readable by the pod's group only, like the services' TLS files.
    assert volume["projected"]["defaultMode"] == 0o440
    sources = []
    for source in volume["projected"]["sources"]:
        items = source["secret"]["items"]
        assert all(item["key"] == item["path"] for item in items)
        sources.append((source["secret"]["name"], [item["key"] for item in items]))
    return sources


def console_dns_names(host: str | None = None) -> list[str]:
    names = ["fh-console", "fh-console.tests", "fh-console.tests.svc"]
    names += ["fh-console.tests.svc.cluster.local", *([host] if host else []), "localhost"]
    return names


def test_the_console_is_told_its_settings_and_where_query_and_ingest_are(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    manifests = rendered["default"]
    _, container = console_of(manifests)
    env = env_of(container)
    assert env == {
        "FLAKEHOUSE_CONSOLE_HOST": "0.0.0.0",
        "FLAKEHOUSE_CONSOLE_PORT": "8080",
        "FLAKEHOUSE_CONSOLE_METRICS_HOST": "0.0.0.0",
        "FLAKEHOUSE_CONSOLE_METRICS_PORT": "9100",
        "FLAKEHOUSE_CONSOLE_LOG_LEVEL": "info",
        "FLAKEHOUSE_CONSOLE_QUERY_ADDRESS": "fh-query:7000",
        "FLAKEHOUSE_CONSOLE_INGEST_ADDRESS": "fh-ingest:7000",
        "FLAKEHOUSE_CONSOLE_TLS_CA_FILE": f"{TLS_DIR}/ca.crt",
        "FLAKEHOUSE_CONSOLE_COOKIE_SECURE": "true",
    }
    # The addresses are the Services of query and ingest on their gRPC port.
    for component in ("query", "ingest"):
        host, port = env[f"FLAKEHOUSE_CONSOLE_{component.upper()}_ADDRESS"].rsplit(":", 1)
        service = find(manifests, "Service", host)
        assert {"name": "grpc", "port": int(port)}.items() <= service["spec"]["ports"][0].items()
    # Its metrics port is every component's.
    metrics = {
        name: env_of(c)[f"FLAKEHOUSE_{name.removeprefix('fh-').upper()}_METRICS_PORT"]
        for name, c in containers(manifests)
    }
    assert set(metrics.values()) == {"9100"}, metrics
    service = find(manifests, "Service", "fh-console")
    assert service["spec"]["selector"].items() <= (
        find(manifests, "Deployment", "fh-console")["spec"]["template"]["metadata"][
            "labels"
        ].items()
    )
    assert service["spec"]["ports"] == [
        {
            "name": "http",
            "port": 8080,
            "targetPort": "http",
            "protocol": "TCP",
            "appProtocol": "http",
        },
        {"name": "metrics", "port": 9100, "targetPort": "metrics", "protocol": "TCP"},
    ]
    assert {"name": "http", "containerPort": 8080, "protocol": "TCP"} in container["ports"]


def test_console_values_reach_its_settings() -> None:
    sets = ["console.httpPort=8443", "console.cookieSecure=false", "console.logLevel=debug"]
    _, container = console_of(render(*sets, "console.env.QUERY_TIMEOUT_S=120"))
    env = env_of(container)
    assert env["FLAKEHOUSE_CONSOLE_PORT"] == "8443"
    assert {"name": "http", "containerPort": 8443, "protocol": "TCP"} in container["ports"]
    assert env["FLAKEHOUSE_CONSOLE_COOKIE_SECURE"] == "false"
    assert env["FLAKEHOUSE_CONSOLE_LOG_LEVEL"] == "debug"
    assert env["FLAKEHOUSE_CONSOLE_QUERY_TIMEOUT_S"] == "120"


@pytest.mark.parametrize("variant", ["default", "console-exposed", "console-cert-manager"])
def test_every_variable_the_chart_sets_for_the_console_is_one_of_its_settings(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    _, container = console_of(rendered[variant])
    for entry in container["env"]:
        variable = entry["name"]
        assert variable.startswith("FLAKEHOUSE_CONSOLE_"), variable
        assert variable.removeprefix("FLAKEHOUSE_CONSOLE_").lower() in CONSOLE_SETTINGS, variable
        # Plain values: nothing the console is given comes from a Secret.
        assert set(entry) == {"name", "value"}, entry


def test_the_console_settings_named_here_are_the_console_packages() -> None:
    """CONSOLE_SETTINGS, against the console's own settings once its package is installed
    (pydantic-settings ignores a variable it has no field for)."""
    module = pytest.importorskip("flakehouse.console.settings")
    assert CONSOLE_SETTINGS - set(module.ConsoleSettings.model_fields) == set()


@pytest.mark.parametrize("variant", ["default", "console-exposed", "tokens-secret", "no-admin"])
def test_the_console_mounts_the_cluster_ca_alone_and_no_token(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    """It calls the services with the signed-in user's token (DESIGN.md §10): no token of
    its own, and none of the services' Secrets but the CA, never their key."""
    manifests = rendered[variant]
    deployment, container = console_of(manifests)
    pod = deployment["spec"]["template"]
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert sorted(m["mountPath"] for m in container["volumeMounts"]) == [TLS_DIR, "/tmp"]
    sources = console_tls_sources(manifests)
    assert sources[0] == ("fh-tls", ["ca.crt"])
    assert not [name for name, _ in sources if "token" in name]
    assert not [key for key in env_of(container) if "TOKEN" in key]
    assert "checksum/tokens" not in pod["metadata"].get("annotations", {})
    if variant != "console-exposed":
        assert sources == [("fh-tls", ["ca.crt"])]
        assert "FLAKEHOUSE_CONSOLE_TLS_CERT_FILE" not in env_of(container)
    # A new CA restarts it, as it does the services.
    ca = {"ca.crt": generated_secret(manifests)["data"]["ca.crt"]}
    if variant == "console-exposed":
        ca["console.crt"] = find(manifests, "Secret", "fh-console-tls")["data"]["tls.crt"]
    checksum = hashlib.sha256(json.dumps(ca, sort_keys=True, separators=(",", ":")).encode())
    assert pod["metadata"]["annotations"]["checksum/tls"] == checksum.hexdigest()


def test_the_console_serves_https_with_a_certificate_of_its_own_signed_by_the_cluster_ca(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    manifests = rendered["console-exposed"]
    services_secret = generated_secret(manifests)
    secret = find(manifests, "Secret", "fh-console-tls")
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert sorted(secret["data"]) == ["ca.crt", "tls.crt", "tls.key"]
    ca = x509.load_pem_x509_certificate(pem(services_secret, "ca.crt"))
    cert = x509.load_pem_x509_certificate(pem(secret, "tls.crt"))
    cert.verify_directly_issued_by(ca)  # raises unless the cluster CA signed it
    assert pem(secret, "ca.crt") == pem(services_secret, "ca.crt")
    key = serialization.load_pem_private_key(pem(secret, "tls.key"), password=None)
    spki = (serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)
    # Not the services' key: the console cannot pass for one of them.
    assert pem(secret, "tls.key") != pem(services_secret, "tls.key")
    assert (
        ExtendedKeyUsageOID.SERVER_AUTH
        in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    )
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(sans.get_values_for_type(x509.DNSName)) == sorted(console_dns_names(CONSOLE_HOST))
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    services_cert = x509.load_pem_x509_certificate(pem(services_secret, "tls.crt"))
    services_names = services_cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)
    assert uncovered(services_names, {"fh-console", "fh-console.tests.svc"}) == [
        "fh-console",
        "fh-console.tests.svc",
    ]

    sources = console_tls_sources(manifests)
    assert sources == [("fh-tls", ["ca.crt"]), ("fh-console-tls", ["tls.crt", "tls.key"])]
    _, container = console_of(manifests)
    files = {k: v for k, v in env_of(container).items() if "_TLS_" in k}
    assert files == {
        "FLAKEHOUSE_CONSOLE_TLS_CA_FILE": f"{TLS_DIR}/ca.crt",
        "FLAKEHOUSE_CONSOLE_TLS_CERT_FILE": f"{TLS_DIR}/tls.crt",
        "FLAKEHOUSE_CONSOLE_TLS_KEY_FILE": f"{TLS_DIR}/tls.key",
    }
    assert {f.removeprefix(TLS_DIR + "/") for f in files.values()} == {
        key for _, keys in sources for key in keys
    }
    (http,) = [
        p for p in find(manifests, "Service", "fh-console")["spec"]["ports"] if p["name"] == "http"
    ]
    assert http["appProtocol"] == "https"


def test_the_console_certificate_is_made_with_the_ca_even_while_it_serves_http(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """The CA's key is discarded once it has signed: the console's certificate is signed with
    the services', so turning console.tls on later needs no new CA."""
    secret = find(rendered["default"], "Secret", "fh-console-tls")
    ca = x509.load_pem_x509_certificate(pem(generated_secret(rendered["default"]), "ca.crt"))
    x509.load_pem_x509_certificate(pem(secret, "tls.crt")).verify_directly_issued_by(ca)
    for variant in ("no-console", "tls-secret", "tls-cert-manager", "console-secret"):
        assert "fh-console-tls" not in secret_names(rendered[variant]), variant


def test_cert_manager_mode_asks_for_the_consoles_certificate_apart(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    manifests = rendered["console-cert-manager"]
    certificates = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "Certificate"}
    assert sorted(certificates) == ["fh-console-tls", "fh-tls"]
    assert certificate_errors(certificates["fh-console-tls"]) == []
    console, services_spec = (certificates[n]["spec"] for n in ("fh-console-tls", "fh-tls"))
    assert console["secretName"] == "fh-console-tls"
    assert console["issuerRef"] == services_spec["issuerRef"]
    assert console["usages"] == ["digital signature", "server auth"]
    assert console["ipAddresses"] == ["127.0.0.1"]
    assert sorted(console["dnsNames"]) == sorted(console_dns_names())
    assert secret_names(manifests) == ["fh-tokens"]
    assert console_tls_sources(manifests) == [
        ("fh-tls", ["ca.crt"]),
        ("fh-console-tls", ["tls.crt", "tls.key"]),
    ]
    without = [m for m in rendered["tls-cert-manager"] if m["kind"] == "Certificate"]
    assert [c["metadata"]["name"] for c in without] == ["fh-tls"]


def test_secret_mode_mounts_the_consoles_secret_of_yours(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    manifests = rendered["console-secret"]
    assert secret_names(manifests) == ["fh-tokens"]
    assert not [m for m in manifests if m["kind"] == "Certificate"]
    assert console_tls_sources(manifests) == [
        ("flakehouse-certs", ["ca.crt"]),
        ("web", ["tls.crt", "tls.key"]),
    ]
    deployment, _ = console_of(manifests)
    assert "checksum/tls" not in deployment["spec"]["template"]["metadata"].get("annotations", {})


def installed_tls_chart(tmp_path: Path) -> Path:
    """A copy of the chart whose `lookup`s of the TLS Secrets answer .Values.installedTls and
    .Values.installedConsoleTls, as a cluster holding them would."""
    copy = tmp_path / "flakehouse"
    shutil.copytree(CHART, copy)
    helpers = copy / "templates" / "_helpers.tpl"
    text = helpers.read_text()
    for call, value in (
        ('lookup "v1" "Secret" .Release.Namespace $name', ".Values.installedTls"),
        (
            'lookup "v1" "Secret" .Release.Namespace (include "flakehouse.fullname" '
            '(dict "root" . "name" "console-tls"))',
            ".Values.installedConsoleTls",
        ),
    ):
        assert text.count(call) == 1, call
        text = text.replace(call, value)
    helpers.write_text(text)
    (copy / "values.schema.json").unlink()  # closed: it would refuse the installed values
    return copy


def render_installed_tls(
    tmp_path: Path,
    installed: dict[str, dict[str, Any]],
    *sets: str,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """`helm template` of installed_tls_chart, with the installed Secrets' data."""
    chart = installed_tls_chart(tmp_path)
    values = tmp_path / "installed.yaml"
    values.write_text(yaml.safe_dump({key: {"data": data} for key, data in installed.items()}))
    args = ["template", "fh", str(chart), "--namespace", "tests", "-f", str(values)]
    for value in sets:
        args += ["--set", value]
    return helm(*args, check=check)


def manifests_of(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def test_an_upgrade_keeps_the_consoles_certificate_or_says_why_it_cannot_have_one(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    before = rendered["console-exposed"]
    services_data = generated_secret(before)["data"]
    console_data = find(before, "Secret", "fh-console-tls")["data"]
    both = {"installedTls": services_data, "installedConsoleTls": console_data}

    kept = manifests_of(render_installed_tls(tmp_path / "both", both, *CONSOLE_EXPOSED))
    assert find(kept, "Secret", "fh-console-tls")["data"] == console_data
    assert generated_secret(kept)["data"] == services_data

    # A CA made before the console signed nothing for it: while it serves HTTP that is fine...
    services_only = {"installedTls": services_data}
    plain = manifests_of(render_installed_tls(tmp_path / "plain", services_only))
    assert "fh-console-tls" not in secret_names(plain)
    assert console_tls_sources(plain) == [("fh-tls", ["ca.crt"])]
    # ... and HTTPS is refused with what to do.
    refused = render_installed_tls(
        tmp_path / "refused", services_only, "console.tls.enabled=true", check=False
    )
    assert refused.returncode != 0
    assert (
        "console.tls.enabled: fh-console-tls has no certificate for the console" in refused.stderr
    )
    assert "Set console.tls.existingSecret, or delete the Secret fh-tls" in refused.stderr

    # The services' Secret deleted to rotate: a new CA, and the console's certificate is signed
    # again by it rather than kept from the old one.
    console_only = {"installedConsoleTls": console_data}
    rotated = manifests_of(
        render_installed_tls(tmp_path / "rotated", console_only, *CONSOLE_EXPOSED)
    )
    new_ca = x509.load_pem_x509_certificate(pem(generated_secret(rotated), "ca.crt"))
    new_console = find(rotated, "Secret", "fh-console-tls")
    assert new_console["data"]["tls.crt"] != console_data["tls.crt"]
    x509.load_pem_x509_certificate(pem(new_console, "tls.crt")).verify_directly_issued_by(new_ca)


def test_the_ingress_appears_only_when_enabled(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    for variant in ("default", "no-console", "console-cert-manager"):
        assert not [m for m in rendered[variant] if m["kind"] == "Ingress"], variant
    manifests = rendered["console-exposed"]
    ingress = find(manifests, "Ingress", "fh-console")
    assert ingress["metadata"]["annotations"] == {
        "nginx.ingress.kubernetes.io/backend-protocol": "HTTPS"
    }
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"hosts": [CONSOLE_HOST], "secretName": "flakehouse-web"}]
    (rule,) = spec["rules"]
    assert rule["host"] == CONSOLE_HOST
    (path,) = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/", "Prefix")
    backend = path["backend"]["service"]
    service = find(manifests, "Service", backend["name"])
    (port,) = [p for p in service["spec"]["ports"] if p["name"] == backend["port"]["name"]]
    assert port["targetPort"] == "http"
    # Without a Secret for its host, no TLS at the Ingress; no class: the cluster's default.
    plain = render("console.ingress.enabled=true", f"console.ingress.host={CONSOLE_HOST}")
    plain_spec = find(plain, "Ingress", "fh-console")["spec"]
    assert "tls" not in plain_spec and "ingressClassName" not in plain_spec


def test_several_console_pods_spread_over_nodes_and_keep_one_up(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    manifests = rendered["console-exposed"]
    deployment, _ = console_of(manifests)
    assert deployment["spec"]["replicas"] == 2
    (spread,) = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert spread["labelSelector"]["matchLabels"].items() <= labels.items()
    budget = find(manifests, "PodDisruptionBudget", "fh-console")
    assert budget["spec"]["maxUnavailable"] == 1
    single, _ = console_of(rendered["default"])
    assert "topologySpreadConstraints" not in single["spec"]["template"]["spec"]
    assert not [
        m
        for m in rendered["default"]
        if m["kind"] == "PodDisruptionBudget" and m["metadata"]["name"] == "fh-console"
    ]


def test_the_console_can_be_turned_off_whole(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    manifests = rendered["no-console"]

    def console_part(manifest: dict[str, Any]) -> bool:
        labels = manifest["metadata"].get("labels", {})
        return labels.get("app.kubernetes.io/component") == "console" or "console" in json.dumps(
            manifest.get("spec", {})
        )

    assert not [m["metadata"]["name"] for m in manifests if console_part(m)]
    names = {(m["kind"], m["metadata"]["name"]) for m in manifests}
    with_console = {(m["kind"], m["metadata"]["name"]) for m in rendered["default"]}
    assert names == {(kind, name) for kind, name in with_console if "console" not in name}


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


def notes(tmp_path: Path, *sets: str) -> str:
    """NOTES.txt as installed. `helm template` does not render it: in a copy of the chart, it
    becomes a named template that a ConfigMap includes."""
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
    args = ["template", "fh", str(copy), "--show-only", "templates/notes.yaml"]
    for value in sets:
        args += ["--set", value]
    text: str = yaml.safe_load(helm(*args).stdout)["data"]["notes"]
    return text


def test_notes_tell_how_to_port_forward_and_run_a_first_query(tmp_path: Path) -> None:
    shown = notes(tmp_path)
    assert "port-forward svc/fh-query 7002:7000" in shown
    assert 'flakehouse query --query 127.0.0.1:7002 "SELECT' in shown
    assert "storage      3 pod(s)" in shown
    assert "get secret fh-tls -o jsonpath='{.data.ca\\.crt}' | base64 -d > fh-ca.crt" in shown


def test_notes_tell_how_to_add_a_link_and_open_its_egress(tmp_path: Path) -> None:
    shown = notes(tmp_path)
    assert "flakehouse links add NAME --replication 127.0.0.1:7003" in shown
    assert "list them in networkPolicy.links.egress" in shown
    opened = notes(tmp_path / "links", *LINKS)
    assert "flakehouse links add NAME" in opened
    assert "networkPolicy.links.egress" not in opened
    assert "networkPolicy.links" not in notes(tmp_path / "off", "networkPolicy.enabled=false")


def test_notes_tell_how_to_reach_the_console(tmp_path: Path) -> None:
    shown = notes(tmp_path)
    assert "console      1 pod(s), HTTP fh-console:8080" in shown
    assert "port-forward svc/fh-console 8080:8080 &" in shown
    assert "http://localhost:8080/" in shown
    exposed = notes(tmp_path / "exposed", *CONSOLE_EXPOSED)
    assert f"https://{CONSOLE_HOST}/" in exposed
    assert "https://localhost:8080/" in exposed
    assert "signed by the cluster CA (fh-ca.crt above)" in exposed
    plain = notes(
        tmp_path / "plain", "console.ingress.enabled=true", f"console.ingress.host={CONSOLE_HOST}"
    )
    assert f"http://{CONSOLE_HOST}/" in plain
    assert "The session cookie is Secure" in plain
    assert "console" not in notes(tmp_path / "off", *NO_CONSOLE)


def test_notes_export_the_admin_token_before_the_first_command(tmp_path: Path) -> None:
    shown = notes(tmp_path)
    export = (
        "export FLAKEHOUSE_TOKEN=$(kubectl --namespace default get secret fh-tokens "
        "-o jsonpath='{.data.admin\\.token}' | base64 -d)"
    )
    assert export in shown
    assert "--name NAME --grant ROLE:DATASET" in shown
    commands = [
        line.strip() for line in shown.splitlines() if line.strip().startswith("flakehouse ")
    ]
    assert commands and all(shown.index(export) < shown.index(c) for c in commands)

    without_admin = notes(tmp_path / "no-admin", *NO_ADMIN)
    assert "admin\\.token" not in without_admin
    assert "tokens.admin=false" in without_admin
    assert "export FLAKEHOUSE_TOKEN=" in without_admin
