"""`flakehouse up`: the object store, the broker, the services and N storage nodes as local
processes.

Processes start in dependency order and each must be ready (SERVING on gRPC health, or listening
for the object store and the broker) before the next starts. A process that dies is restarted
(its log says so) and cluster.json is rewritten with its new pid; everything stops in reverse
order on SIGINT/SIGTERM. What a dead or stopped process left in its process group
(process_groups.py) is killed.

Durable (the default): the broker keeps its topics in the object store under DIR/broker and the
storage nodes their data under DIR/storage-N, so an `up` on an existing directory resumes where
the last one stopped, however it stopped. `--ephemeral`: the broker keeps topics in memory, so
each `up` starts empty; its storage nodes live under DIR/ephemeral, cleared at start.

Maintenance hold: while a file `DIR/hold/<name>` exists (e.g. `DIR/hold/storage-1`), that
process is not started, or not restarted once it exits; removing the file starts it. This is how
to keep a node down (to watch repair), wipe its data directory, or add a node later (start
with `--storage-nodes 4` and `storage-3` held)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from flakehouse.client import process_groups
from flakehouse.client.broker import (
    MEMORY_STORAGE,
    S3_STORAGE,
    object_store_command,
    tansu_command,
    tansu_s3_env,
)
from flakehouse.client.cluster import ClusterFile, Endpoint, StorageEndpoint
from flakehouse.core.errors import FailedPrecondition, Unavailable
from flakehouse.core.net import port_is_free, wait_for_port
from flakehouse.core.tls import channel_credentials

HOST = "127.0.0.1"
DEFAULT_PORT_BASE = 7600
METRICS_OFFSET = 100
RESTART_BACKOFF_S = 1.0
OFFSETS = {"ingest": 1, "query": 2, "replication": 3, "quota": 4, "objects": 5, "console": 6}
STORAGE_OFFSET = 10
# The broker's first start on a large object store reads every partition's objects.
BROKER_READY_TIMEOUT_S = 300.0


@dataclass
class ProcessSpec:
    name: str
    argv: list[str]
    port: int
    metrics_port: int  # 0: none
    env: dict[str, str]
    node_id: str = ""
    data_dir: str = ""
    # A gRPC service is ready when its health check says SERVING; the object store and the
    # broker when they listen.
    speaks_grpc: bool = True

    @property
    def grpc(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def metrics(self) -> str:
        return f"{HOST}:{self.metrics_port}"


@dataclass
class Supervised:
    spec: ProcessSpec
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None
    restarts: int = 0
    last_start: float = field(default=0.0)
    # Whether what the last process left in its group was killed (once per process).
    reaped: bool = False


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when `flakehouse up` dies, even by SIGKILL."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class LocalCluster:
    def __init__(
        self,
        data_dir: Path,
        *,
        port_base: int = DEFAULT_PORT_BASE,
        storage_nodes: int = 2,
        partitions: int = 8,
        ephemeral: bool = False,
        say: Callable[[str], None] = print,
    ) -> None:
        if storage_nodes < 1 or storage_nodes > METRICS_OFFSET - STORAGE_OFFSET:
            raise ValueError(f"--storage-nodes must be within 1..{METRICS_OFFSET - STORAGE_OFFSET}")
        self.data_dir = data_dir.resolve()
        self.port_base = port_base
        self.storage_nodes = storage_nodes
        self.partitions = partitions
        self.ephemeral = ephemeral
        self.say = say
        self.processes = [
            Supervised(spec, self.data_dir / "logs" / f"{spec.name}.log") for spec in self._plan()
        ]

    @property
    def cluster_path(self) -> Path:
        return self.data_dir / "cluster.json"

    @property
    def secrets_dir(self) -> Path:
        """The cluster CA, every service's certificate and the tokens (see pki.py): kept across
        starts, so clients keep trusting the cluster; certificates renewed near expiry."""
        return self.data_dir / "secrets"

    @property
    def ca_file(self) -> Path:
        return self.secrets_dir / "ca.pem"

    @property
    def admin_token_file(self) -> Path:
        return self.secrets_dir / "admin.token"

    @property
    def hold_dir(self) -> Path:
        return self.data_dir / "hold"

    @property
    def broker_dir(self) -> Path:
        """The object store's directory: every topic, record and offset of a durable cluster."""
        return self.data_dir / "broker"

    @property
    def storage_root(self) -> Path:
        return self.data_dir / "ephemeral" if self.ephemeral else self.data_dir

    @property
    def kafka(self) -> str:
        return f"{HOST}:{self.port_base}"

    def held(self, supervised: Supervised) -> bool:
        return (self.hold_dir / supervised.spec.name).exists()

    def _broker_specs(self) -> list[ProcessSpec]:
        if self.ephemeral:
            return [
                ProcessSpec(
                    "broker",
                    tansu_command(HOST, self.port_base, MEMORY_STORAGE),
                    self.port_base,
                    0,
                    {},
                    speaks_grpc=False,
                )
            ]
        objects_port = self.port_base + OFFSETS["objects"]
        try:
            objects_command = object_store_command(self.broker_dir, HOST, objects_port)
        except FileNotFoundError as exc:
            raise FailedPrecondition(str(exc)) from exc
        return [
            ProcessSpec(
                "objects",
                objects_command,
                objects_port,
                0,
                {},
                speaks_grpc=False,
            ),
            ProcessSpec(
                "broker",
                tansu_command(HOST, self.port_base, S3_STORAGE),
                self.port_base,
                0,
                tansu_s3_env(HOST, objects_port),
                speaks_grpc=False,
            ),
        ]

    def _plan(self) -> list[ProcessSpec]:
        base, kafka = self.port_base, self.kafka

        def spec(name: str, module: str, offset: int, extra: dict[str, str]) -> ProcessSpec:
            prefix = f"FLAKEHOUSE_{module.upper()}_"
            env = {
                "HOST": HOST,
                "TLS_CERT_FILE": str(self.secrets_dir / f"{name}.pem"),
                "TLS_KEY_FILE": str(self.secrets_dir / f"{name}.key"),
                "TLS_CA_FILE": str(self.ca_file),
                "SERVICE_TOKEN_FILE": str(self.secrets_dir / "service.token"),
                "ADMIN_TOKEN_FILE": str(self.admin_token_file),
                "PORT": str(base + offset),
                "METRICS_HOST": HOST,
                "METRICS_PORT": str(base + METRICS_OFFSET + offset),
                "KAFKA_BOOTSTRAP": kafka,
                **extra,
            }
            return ProcessSpec(
                name,
                [sys.executable, "-m", f"flakehouse.{module}"],
                base + offset,
                base + METRICS_OFFSET + offset,
                {prefix + key: value for key, value in env.items()},
                node_id=extra.get("NODE_ID", ""),
                data_dir=extra.get("DATA_DIR", ""),
            )

        replication = f"{HOST}:{base + OFFSETS['replication']}"
        quota = f"{HOST}:{base + OFFSETS['quota']}"
        specs = [
            *self._broker_specs(),
            spec("quota", "quota", OFFSETS["quota"], {}),
            # Quota: the ingest limits its links respect, and the use of tokens it reports.
            spec("replication", "replication", OFFSETS["replication"], {"QUOTA_ADDRESS": quota}),
        ]
        for i in range(self.storage_nodes):
            node = f"storage-{i}"
            specs.append(
                spec(
                    node,
                    "storage",
                    STORAGE_OFFSET + i,
                    {
                        "NODE_ID": node,
                        "DATA_DIR": str(self.storage_root / node),
                        "REPLICATION_ADDRESS": replication,
                        "QUOTA_ADDRESS": quota,
                    },
                )
            )
        specs.append(
            spec(
                "ingest",
                "ingest",
                OFFSETS["ingest"],
                {
                    "QUOTA_ADDRESS": quota,
                    "DEFAULT_PARTITIONS": str(self.partitions),
                    # In the data directory, so a resumable upload outlives an ingest restart.
                    "SPOOL_DIR": str(self.data_dir / "spool"),
                },
            )
        )
        specs.append(
            spec(
                "query",
                "query",
                OFFSETS["query"],
                {"REPLICATION_ADDRESS": replication, "QUOTA_ADDRESS": quota},
            )
        )
        specs.append(self._console_spec())
        return specs

    def _console_spec(self) -> ProcessSpec:
        """The console: plain HTTP on 127.0.0.1 (a browser would not trust the local CA), so
        its cookie cannot be Secure; it verifies query and ingest against the local CA and
        holds no token of its own."""
        base = self.port_base
        env = {
            "HOST": HOST,
            "PORT": str(base + OFFSETS["console"]),
            "METRICS_HOST": HOST,
            "METRICS_PORT": str(base + METRICS_OFFSET + OFFSETS["console"]),
            "QUERY_ADDRESS": f"{HOST}:{base + OFFSETS['query']}",
            "INGEST_ADDRESS": f"{HOST}:{base + OFFSETS['ingest']}",
            "TLS_CA_FILE": str(self.ca_file),
            "COOKIE_SECURE": "false",
        }
        return ProcessSpec(
            "console",
            [sys.executable, "-m", "flakehouse.console"],
            base + OFFSETS["console"],
            base + METRICS_OFFSET + OFFSETS["console"],
            {f"FLAKEHOUSE_CONSOLE_{key}": value for key, value in env.items()},
            speaks_grpc=False,
        )

    @property
    def console_url(self) -> str:
        return f"http://{HOST}:{self.port_base + OFFSETS['console']}/"

    # --- lifecycle --------------------------------------------------------------------------

    def start(self, timeout_s: float = 60.0) -> None:
        ports = [p for s in self.processes for p in (s.spec.port, s.spec.metrics_port) if p]
        busy = [p for p in ports if not port_is_free(HOST, p)]
        if busy:
            raise FailedPrecondition(
                f"ports already in use: {', '.join(map(str, busy))} "
                "(another cluster running? choose another --port-base)"
            )
        self._prepare_data()
        self._prepare_secrets()
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        try:
            for supervised in self.processes:
                if self.held(supervised):
                    self.say(f"{supervised.spec.name:<12} held: not started")
                    continue
                self._spawn(supervised)
                self._wait_ready(supervised, timeout_s)
                self.say(self._listening(supervised.spec))
        except BaseException:
            self.stop()
            raise
        self.write_cluster_file()
        self.say(f"{'tls':<12} CA {self.ca_file} (clients verify the services against it)")
        self.say(f"{'tokens':<12} admin {self.admin_token_file} (what clients send by default)")
        self.say(f"{'console':<12} open {self.console_url} and sign in with a token")

    def _prepare_data(self) -> None:
        """Ephemeral: empty storage directories (the broker starts empty). Durable: storage data
        whose broker data is gone (a first durable start after ephemeral runs of old, or a
        deleted broker directory) names offsets of topics that are no more, so it goes too."""
        storage_dirs = [Path(s.spec.data_dir) for s in self.processes if s.spec.data_dir]
        if self.ephemeral:
            for directory in storage_dirs:
                shutil.rmtree(directory, ignore_errors=True)
            return
        if self.broker_dir.is_dir():
            self.say(f"resuming from {self.data_dir}")
            return
        stale = [d for d in storage_dirs if d.exists()]
        for directory in stale:
            shutil.rmtree(directory)
        if stale:
            self.say(f"no broker data in {self.broker_dir}: cleared the storage directories")
        self.broker_dir.mkdir(parents=True)

    def _prepare_secrets(self) -> None:
        """The CA and a certificate per service, for the names clients use: 127.0.0.1 and
        localhost, reused as they are unless they near expiry; the services' own token and the
        first admin token, which cluster.json names for clients."""
        from flakehouse.client.pki import LocalPki  # cryptography: only for `up`

        pki = LocalPki(self.secrets_dir)
        pki.ensure_ca()
        pki.ensure_token("service")
        pki.ensure_token("admin")
        for supervised in self.processes:
            if supervised.spec.speaks_grpc:
                pki.issue(supervised.spec.name, [HOST, "localhost"])

    def _listening(self, spec: ProcessSpec) -> str:
        if spec.name == "objects":
            return f"{spec.name:<12} http {spec.grpc:<18} data {self.broker_dir}"
        if spec.name == "console":
            return f"{spec.name:<12} http {self.console_url:<18} metrics {spec.metrics}"
        if spec.name == "broker":
            storage = "in memory (--ephemeral)" if self.ephemeral else "durable"
            return f"{spec.name:<12} kafka {spec.grpc:<17} {storage}"
        return f"{spec.name:<12} grpc {spec.grpc:<18} metrics {spec.metrics}"

    def _spawn(self, supervised: Supervised) -> None:
        if supervised.log is None:
            supervised.log = open(supervised.log_path, "ab")  # noqa: SIM115
        supervised.process = subprocess.Popen(
            supervised.spec.argv,
            env={**os.environ, **supervised.spec.env},
            stdin=subprocess.DEVNULL,
            stdout=supervised.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches `up` only; it stops children in order
            preexec_fn=_die_with_parent,
        )
        supervised.last_start = time.monotonic()
        supervised.reaped = False

    def _wait_ready(self, supervised: Supervised, timeout_s: float) -> None:
        """Until the process is ready: SERVING on gRPC health for a service, listening for the
        object store and the broker; Unavailable, with its log's tail, if it exits or is not
        ready in time."""
        spec = supervised.spec
        if spec.name == "broker":
            timeout_s = max(timeout_s, BROKER_READY_TIMEOUT_S)
        deadline = time.monotonic() + timeout_s
        with contextlib.ExitStack() as stack:
            ready: Callable[[], bool]
            if spec.speaks_grpc:
                credentials = channel_credentials(self.ca_file)
                channel = stack.enter_context(grpc.secure_channel(spec.grpc, credentials))
                stub = health_pb2_grpc.HealthStub(channel)
                ready, waiting = (lambda: _serving(stub)), "not SERVING"
            else:
                ready, waiting = (lambda: wait_for_port(HOST, spec.port, 0.5)), "not listening"
            while not ready():
                process = supervised.process
                if process is not None and process.poll() is not None:
                    raise Unavailable(
                        f"{spec.name} exited with {process.returncode}:\n"
                        + _tail(supervised.log_path)
                    )
                if time.monotonic() > deadline:
                    raise Unavailable(
                        f"{spec.name} {waiting} after {timeout_s:.0f}s:\n"
                        + _tail(supervised.log_path)
                    )
                time.sleep(0.1)

    def _reap(self, supervised: Supervised) -> None:
        """Kills what a service that exited left behind in its process group (a killed ingest's
        forkserver and parse workers), so that nothing outlives it."""
        process = supervised.process
        if process is None:
            return
        left = process_groups.kill_group(process.pid)
        if left:
            process_groups.wait_group_gone(process.pid, 5.0)
            self.say(f"{supervised.spec.name}: killed {left} leftover process(es)")

    def supervise(self) -> None:
        """Restarts processes that died; call it periodically."""
        for supervised in self.processes:
            process = supervised.process
            if process is not None and process.poll() is None:
                continue
            if process is not None and process.returncode is not None and not supervised.reaped:
                self._reap(supervised)
                supervised.reaped = True
            if self.held(supervised):
                if process is not None:
                    self.say(f"{supervised.spec.name} exited with {process.returncode}; held")
                    supervised.process = None
                    self.write_cluster_file()
                continue
            if process is None:
                self.say(f"{supervised.spec.name} released from hold; starting")
            elif time.monotonic() - supervised.last_start < RESTART_BACKOFF_S:
                continue
            else:
                supervised.restarts += 1
                self.say(f"{supervised.spec.name} exited with {process.returncode}; restarting")
            self._spawn(supervised)
            self.write_cluster_file()

    def stop(self, timeout_s: float = 15.0) -> None:
        """Reverse order: query and ingest first, then storage, replication, quota, the broker
        and the object store. Each service stops its own children; whatever is left in its
        process group then is killed."""
        for supervised in reversed(self.processes):
            process = supervised.process
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    self.say(f"{supervised.spec.name} did not stop in {timeout_s:.0f}s; killing")
                    process.kill()
                    process.wait()
            self._reap(supervised)
            if supervised.log is not None:
                supervised.log.close()
                supervised.log = None
        if self.ephemeral:
            shutil.rmtree(self.storage_root, ignore_errors=True)
        self.cluster_path.unlink(missing_ok=True)

    def write_cluster_file(self) -> None:
        services: dict[str, Endpoint] = {}
        storage: list[StorageEndpoint] = []
        for supervised in self.processes:
            spec, pid = supervised.spec, supervised.process.pid if supervised.process else 0
            if not spec.speaks_grpc:
                continue
            if spec.node_id:
                storage.append(
                    StorageEndpoint(spec.grpc, spec.metrics, pid, spec.node_id, spec.data_dir)
                )
            else:
                services[spec.name] = Endpoint(spec.grpc, spec.metrics, pid)
        ClusterFile(
            self.kafka,
            services,
            storage,
            str(self.data_dir),
            durable=not self.ephemeral,
            processes={s.spec.name: s.process.pid if s.process else 0 for s in self.processes},
            ca_file=str(self.ca_file),
            token_file=str(self.admin_token_file),
            console_url=self.console_url,
            console_metrics=f"{HOST}:{self.port_base + METRICS_OFFSET + OFFSETS['console']}",
        ).write(self.cluster_path)


def _serving(stub: health_pb2_grpc.HealthStub) -> bool:
    try:
        status = stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
    except grpc.RpcError:
        return False
    return bool(status == health_pb2.HealthCheckResponse.SERVING)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def run_until_signalled(cluster: LocalCluster) -> None:
    """Runs the cluster in the foreground until SIGINT or SIGTERM."""
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        cluster.start()
        cluster.say(f"cluster file: {cluster.cluster_path}")
        cluster.say("ready; press Ctrl-C to stop")
        while not stopping:
            cluster.supervise()
            time.sleep(0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        cluster.say("stopping")
        cluster.stop()
        cluster.say("stopped")
