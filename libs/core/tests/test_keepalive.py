"""A long-lived stream (WatchPlacement, WatchLimits) notices a peer that stopped answering without
closing the connection (its machine died, a network partition): the keepalive pings of
CHANNEL_OPTIONS end it within about 15 s, so the watcher reconnects instead of keeping stale
state forever."""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from flakehouse.core.channel import CHANNEL_OPTIONS
from tests import credentials


class FreezingProxy:
    """Forwards TCP between a client and a server until frozen: then it keeps both connections
    open and passes nothing, like a peer whose machine is gone."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.frozen = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while not self.frozen.is_set():
            try:
                data = await asyncio.wait_for(reader.read(65536), 0.1)
            except TimeoutError:
                continue
            if not data:
                return
            writer.write(data)
            await writer.drain()
        await asyncio.sleep(3600)  # frozen: hold the connection, pass nothing

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


async def test_a_stream_to_a_peer_that_went_silent_fails_within_seconds() -> None:
    server = grpc.aio.server(options=CHANNEL_OPTIONS)
    servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_secure_port("127.0.0.1:0", credentials.server_credentials())
    await server.start()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    proxy = FreezingProxy(port)
    proxy_port = await proxy.start()
    try:
        async with grpc.aio.secure_channel(
            f"127.0.0.1:{proxy_port}", credentials.channel_credentials(), options=CHANNEL_OPTIONS
        ) as channel:
            stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
            first = await stream.read()
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            proxy.frozen.set()
            # Without keepalive the read would wait forever (the timeout fails the test); with
            # it, a ping after 10 s without traffic gets no answer within 5 s.
            try:
                async with asyncio.timeout(40):
                    await stream.read()
                raise AssertionError("the stream gave a message through a frozen connection")
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
    finally:
        await proxy.stop()
        await server.stop(None)
