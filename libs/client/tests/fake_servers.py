"""A real gRPC server on a free loopback port for the fakes the CLI tests talk to."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import grpc

from tests import credentials

Register = Callable[[Any, grpc.Server], None]


@contextmanager
def serving(servicer: Any, *registers: Register, workers: int = 4) -> Iterator[str]:
    """Serves `servicer` under each `add_…Servicer_to_server` given; its address."""
    server = grpc.server(ThreadPoolExecutor(workers))
    for register in registers:
        register(servicer, server)
    port = server.add_secure_port("127.0.0.1:0", credentials.server_credentials())
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None)
