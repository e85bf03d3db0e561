"""skaffold.yaml, checked without Skaffold: against a hand-written schema of the v4beta11 fields it
uses (the official schema is not reachable here), and against the repository it builds from."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "tests" / "schemas" / "skaffold-v4beta11.schema.json"
SERVICES = ("ingest", "storage", "replication", "quota", "query", "console")

Config = dict[str, Any]


@pytest.fixture(scope="module")
def config() -> Config:
    loaded: Config = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    return loaded


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _errors(validator: Draft202012Validator, config: Config) -> list[str]:
    return [
        f"/{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(config)
    ]


def test_skaffold_yaml_matches_the_schema(config: Config, validator: Draft202012Validator) -> None:
    assert _errors(validator, config) == []


def _set(path: str, value: object) -> Callable[[Config], None]:
    """A mutation that sets the value at a /-separated path (list indexes as numbers)."""

    def mutate(config: Config) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split("/")]
        node: Any = config
        for key in parents:
            node = node[key]
        node[last] = value

    return mutate


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(_set("bulid", {}), id="unknown top-level key"),
        pytest.param(_set("build/artifacts/0/docker/dockerFile", "x"), id="misspelt key"),
        pytest.param(_set("build/artifacts/0/docker", "services/ingest/Dockerfile"), id="type"),
        pytest.param(_set("build/tagPolicy/sha256", {}), id="two taggers"),
        pytest.param(
            _set("manifests/helm/releases/0/setValueTemplates/components.query.image", 1), id="int"
        ),
        pytest.param(_set("profiles/0/build/local/push", "no"), id="string for boolean"),
        pytest.param(_set("profiles/0/portForward/0/port", [7000]), id="list for port"),
        pytest.param(_set("apiVersion", "skaffold/v2beta28"), id="other version"),
    ],
)
def test_schema_rejects_a_broken_config(
    config: Config, validator: Draft202012Validator, mutate: Callable[[Config], None]
) -> None:
    """The schema is closed and typed, so the check above can fail."""
    broken = copy.deepcopy(config)
    mutate(broken)
    assert _errors(validator, broken)


def test_one_artifact_per_service_built_from_its_dockerfile(config: Config) -> None:
    artifacts = {a["image"]: a for a in config["build"]["artifacts"]}
    assert len(artifacts) == len(config["build"]["artifacts"]), "an image is listed twice"
    assert set(artifacts) == {f"flakehouse/{s}" for s in SERVICES}
    for service in SERVICES:
        artifact = artifacts[f"flakehouse/{service}"]
        # The Dockerfiles copy libs/ and the lock, so the context is the repository root.
        assert artifact.get("context", ".") == "."
        dockerfile = artifact["docker"]["dockerfile"]
        assert dockerfile == f"services/{service}/Dockerfile"
        assert (ROOT / dockerfile).is_file()


def test_helm_release_sets_the_chart_image_values(config: Config) -> None:
    (release,) = config["manifests"]["helm"]["releases"]
    chart = ROOT / release["chartPath"]
    assert (chart / "Chart.yaml").is_file()
    components = yaml.safe_load((chart / "values.yaml").read_text())["components"]
    schema = json.loads((chart / "values.schema.json").read_text())
    templates = release["setValueTemplates"]
    # Every component's image, from the artifact built for it: components.<name>.image, and
    # console.image for the console, which the chart's schema allows.
    values = {name: f"components.{name}.image" for name in components}
    values["console"] = "console.image"
    assert set(templates) == set(values.values())
    for name, value in values.items():
        properties = schema["properties"]
        for key in value.split(".")[:-1]:
            properties = properties[key]["properties"]
        assert "image" in properties
        # Skaffold names an artifact's template values after its image, "/" as "_".
        artifact = re.sub(r"[/.:-]", "_", f"flakehouse/{name}")
        assert templates[value] == f"{{{{ .IMAGE_FULLY_QUALIFIED_{artifact} }}}}"
    assert {a["image"] for a in config["build"]["artifacts"]} == {
        f"flakehouse/{name}" for name in values
    }


def test_dev_and_ci_profiles(config: Config) -> None:
    profiles = {p["name"]: p for p in config["profiles"]}
    assert set(profiles) == {"dev", "ci"}
    dev, ci = profiles["dev"], profiles["ci"]
    assert dev["build"]["local"]["push"] is False
    query, console = dev["portForward"]
    assert query["resourceType"] == console["resourceType"] == "service"
    assert query["resourceName"].endswith("-query")
    assert query["port"] == 7000  # the query service's gRPC port
    assert console["resourceName"].endswith("-console")
    chart_values = yaml.safe_load((ROOT / "charts/flakehouse/values.yaml").read_text())
    assert console["port"] == chart_values["console"]["httpPort"]
    assert "portForward" not in ci
    assert "gitCommit" in ci["build"]["tagPolicy"]
