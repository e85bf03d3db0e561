"""Start-up of the `flakehouse` command, as whole processes the way a user or a CI job runs it:
`python -c pass` (the interpreter's floor), `flakehouse --help`, `flakehouse --version`, and a
`flakehouse query` of a small query against a small dataset in a local cluster (`flakehouse up`),
each run a few times unmeasured first, then timed; the median, and the fastest and slowest.

The commands read their bytecode from a private cache (PYTHONPYCACHEPREFIX), written by the
unmeasured runs: an installed package has its .pyc files, and without them (PYTHONDONTWRITEBYTECODE
over a venv that `uv pip install` left uncompiled) every start compiles grpc and protobuf again,
about 0.3 s more for a query on the 2-core development machine.

`python -m benchmarks startup [--runs N]`."""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.junitgen import report
from flakehouse.client import Client
from tests.localcluster import RunningCluster

WARMUP = 2
DATASET = "startup"
CASES = 500
SQL = f"SELECT status, count(*) FROM {DATASET} GROUP BY status ORDER BY status"


def flakehouse_command() -> list[str]:
    """The console script beside this interpreter, as installed; `python -m` when there is none
    (it costs a little more: runpy)."""
    script = Path(sys.executable).with_name("flakehouse")
    if script.exists():
        return [str(script)]
    found = shutil.which("flakehouse")
    return [found] if found else [sys.executable, "-m", "flakehouse.client.cli"]


def run_timed(
    command: list[str], env: dict[str, str], capture: bool = False
) -> tuple[float, float, str]:
    """Seconds of wall-clock and of CPU (user and system) of one run of `command`, and its
    output if `capture` (else discarded); fails if the command does. The CPU time hardly moves
    when other work shares the machine, the wall-clock time does."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        command,
        check=True,
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu, done.stdout or ""


def timed(command: list[str], runs: int, env: dict[str, str]) -> list[tuple[float, float]]:
    """(wall-clock, CPU) seconds of each of `runs` runs of `command` (run_timed), after WARMUP
    unmeasured runs (the page and bytecode caches)."""
    for _ in range(WARMUP):
        run_timed(command, env)
    return [run_timed(command, env)[:2] for _ in range(runs)]


def _print(label: str, times: list[tuple[float, float]]) -> None:
    walls = [wall * 1000 for wall, _ in times]
    cpu = statistics.median(cpu * 1000 for _, cpu in times)
    print(
        f"  {label:<34} median {statistics.median(walls):5.0f} ms (min {min(walls):4.0f},"
        f" max {max(walls):4.0f}), CPU {cpu:4.0f} ms; {len(times)} runs"
    )


def _load(cluster: RunningCluster) -> None:
    """DATASET gets one report of CASES testcases; returns once all of them are queryable."""
    cluster.wait_ready()
    deadline = time.monotonic() + 60
    with Client.from_cluster_file(cluster.cluster_path) as client:
        client.upload(report(0, CASES), dataset=DATASET, filename="startup.xml")
        while time.monotonic() < deadline:
            answer = client.query(f"SELECT count(*) FROM {DATASET}")
            if answer.rows and answer.rows[0][0] == CASES and not answer.partial:
                return
            time.sleep(0.1)
    raise TimeoutError(f"{CASES} events not queryable within 60 s")


def cached_bytecode(cache: Path) -> dict[str, str]:
    """The environment of the timed commands: bytecode read from and written to `cache`."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPYCACHEPREFIX": str(cache)}


def startup(runs: int) -> None:
    flakehouse = flakehouse_command()
    print(f"start-up ({' '.join(flakehouse)}): medians over {runs} runs, whole processes")
    with tempfile.TemporaryDirectory() as tmp:
        env = cached_bytecode(Path(tmp) / "pycache")
        _print("python -c pass", timed([sys.executable, "-c", "pass"], runs, env))
        _print("flakehouse --help", timed([*flakehouse, "--help"], runs, env))
        _print("flakehouse --version", timed([*flakehouse, "--version"], runs, env))
        cluster = RunningCluster(
            Path(tmp) / "cluster", storage_nodes=2, partitions=8, ephemeral=True
        )
        try:
            _load(cluster)
            query = [*flakehouse, "query", "--cluster", str(cluster.cluster_path), SQL]
            _print(f"flakehouse query ({CASES} events)", timed(query, runs, env))
            # The same query from a warm client: what of the process's time is the answer.
            with Client.from_cluster_file(cluster.cluster_path) as client:
                warm = []
                for _ in range(WARMUP + runs):
                    started, cpu = time.perf_counter(), time.process_time()
                    client.query(SQL)
                    warm.append((time.perf_counter() - started, time.process_time() - cpu))
            _print("  of which the answer (warm client)", warm[WARMUP:])
        finally:
            cluster.stop()
