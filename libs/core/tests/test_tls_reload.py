"""A service's certificate renewed in place takes effect at the next connection, with no
restart: the server re-reads its files when they change."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from flakehouse.client.pki import LocalPki
from flakehouse.core.tls import CertificateFiles, channel_credentials


async def _serving(address: str, ca_file: Path) -> bool:
    async with grpc.aio.secure_channel(address, channel_credentials(ca_file)) as channel:
        try:
            stub = health_pb2_grpc.HealthStub(channel)
            answer = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.aio.AioRpcError:
            return False
    return answer.status == health_pb2.HealthCheckResponse.SERVING


def _install(pki: LocalPki, cert: Path, key: Path, stamp: float) -> None:
    pair = pki.issue("ingest", ["127.0.0.1"])
    for source, target in ((pair.cert_file, cert), (pair.key_file, key)):
        shutil.copyfile(source, target)
        os.utime(target, (stamp, stamp))


async def test_a_certificate_replaced_in_place_serves_the_next_connection(tmp_path: Path) -> None:
    old, new = LocalPki(tmp_path / "old"), LocalPki(tmp_path / "new")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    _install(old, cert, key, 1_000_000)
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_secure_port("127.0.0.1:0", CertificateFiles(cert, key).server_credentials())
    await server.start()
    address = f"127.0.0.1:{port}"
    try:
        assert await _serving(address, old.ensure_ca())
        assert not await _serving(address, new.ensure_ca())
        _install(new, cert, key, 2_000_000)  # what cert-manager or `flakehouse up` does
        assert await _serving(address, new.ca_file)
        assert not await _serving(address, old.ca_file)
        key.write_text("half a key")  # a renewal caught mid-write keeps the last good pair
        os.utime(key, (3_000_000, 3_000_000))
        assert await _serving(address, new.ca_file)
    finally:
        await server.stop(None)
