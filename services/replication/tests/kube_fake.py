"""A fake Kubernetes API server for the replication service's kube tests: kmock's emulator,
extended with what a real one does and the code under test relies on, served on 127.0.0.1."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import aiohttp.test_utils
import attrs
import kmock
from kubernetes.aio import client

NS = "flake"
PODS = kmock.resource("", "v1", "pods")
NODES = kmock.resource("", "v1", "nodes")
LEASES = kmock.resource("coordination.k8s.io", "v1", "leases")
GONE = {
    "type": "ERROR",
    "object": {
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "reason": "Expired",
        "message": "too old resource version",
        "code": 410,
    },
}
EXPIRE = {"type": "EXPIRE"}  # internal to the fake: ends open watches with GONE
END = {"type": "END"}  # internal to the fake: ends open watches cleanly, as timeoutSeconds does


# --- The fake API server -------------------------------------------------------------------------


@attrs.mutable
class HistoryBus(kmock.Bus[Any]):
    """kmock's event bus, also keeping every event so that a watch can resume from a version."""

    history: list[tuple[int, dict[str, Any]]] = attrs.field(factory=list)

    async def put(self, *items: Any) -> None:
        for item in items:
            if not isinstance(item, dict):
                continue
            version = item.get("object", {}).get("metadata", {}).get("resourceVersion")
            if version is not None:
                self.history.append((int(version), item))
        await super().put(*items)


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Equality-based selectors only (`a=b,c!=d,e`), which is all the code under test uses."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.split("=", 1)
            if labels.get(key) != value.lstrip("="):
                return False
        elif term not in labels:
            return False
    return True


@attrs.define(kw_only=True)
class FakeApiServer(kmock.KubernetesEmulator):
    """kmock's KubernetesEmulator keeps objects and streams their events, but has no resource
    versions and ignores label selectors. This adds what a real API server does and the code
    under test relies on: a resourceVersion on every write, a 409 Conflict for a write that names
    a stale resourceVersion, label selectors on list and watch, watches resumed from a version
    (410 Gone once that version is compacted), and no event lost between a watch's start and its
    stream."""

    _rv: int = 0
    _compacted: int = 0
    expire_every_watch: bool = False
    _write_lock: asyncio.Lock = attrs.field(factory=asyncio.Lock)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._buses = collections.defaultdict(HistoryBus)

    async def _handle(self, request: kmock.Request) -> Any:
        writes = (kmock.action.CREATE, kmock.action.UPDATE, kmock.action.DELETE)
        if request.resource is None or request.action not in writes:
            return await super()._handle(request)
        async with self._write_lock:
            self._rv += 1
            version = str(self._rv)
            if request.action == kmock.action.CREATE:
                request.data.setdefault("metadata", {})["resourceVersion"] = version
            else:
                key = (request.resource, request.namespace, request.name)
                stored = self._objects[key] if key in self._objects else None  # noqa: SIM401 (no .get)
                if stored is not None and not stored.deleted:
                    current = stored.get("metadata", {}).get("resourceVersion")
                    if request.action == kmock.action.DELETE:
                        stored.patch({"metadata": {"resourceVersion": version}})
                    else:
                        wanted = (request.data.get("metadata") or {}).get("resourceVersion")
                        if wanted is not None and wanted != current:
                            raise kmock.KubernetesError(
                                status=409, reason="Conflict", message="the object was modified"
                            )
                        request.data.setdefault("metadata", {})["resourceVersion"] = version
            return await super()._handle(request)

    def _matching(self, request: kmock.Request, obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata", {})
        selector = request.params.get("labelSelector", "")
        return (request.namespace is None or meta.get("namespace") == request.namespace) and (
            selector_matches(selector, meta.get("labels") or {})
        )

    def _current(self, request: kmock.Request) -> list[dict[str, Any]]:
        return [
            obj.raw
            for (resource, _, _), obj in self._objects.items()
            if resource == request.resource and not obj.deleted and self._matching(request, obj.raw)
        ]

    async def _serve_list(self, request: kmock.Request) -> Any:
        async with self._write_lock:
            return {"metadata": {"resourceVersion": str(self._rv)}, "items": self._current(request)}

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[Any]:
        yield b""  # sends the headers
        since = request.params.get("resourceVersion", "")
        assert request.resource is not None
        bus = self._buses[request.resource]
        async with self._write_lock:
            mark = await bus.mark()
            if self.expire_every_watch:
                backlog = [GONE]
            elif since in ("", "0"):
                backlog = [{"type": "ADDED", "object": obj} for obj in self._current(request)]
            elif int(since) < self._compacted:
                backlog = [GONE]
            else:
                backlog = [event for version, event in bus.history if version > int(since)]
        try:
            for event in backlog:
                if event is GONE:
                    yield GONE
                    return
                if self._matching(request, event["object"]):
                    yield event
            async for event in bus.stream(since=mark):
                if event is EXPIRE:
                    yield GONE
                    return
                if event is END:
                    return
                if self._matching(request, event["object"]):
                    yield event
        finally:
            await bus.unmark(mark)

    async def expire_watches(self) -> None:
        """As after an etcd compaction: open watches end with 410 Gone, and so does any watch
        that resumes from a version before now."""
        async with self._write_lock:
            self._compacted = self._rv
            for bus in list(self._buses.values()):
                await bus.put(EXPIRE)

    async def end_watches(self) -> None:
        for bus in list(self._buses.values()):
            await bus.put(END)

    async def forget(self, resource: kmock.resource, namespace: str | None, name: str) -> None:
        """Deletes an object with no event, as if the event had been compacted away."""
        async with self._write_lock:
            self._rv += 1
            self._objects[resource, namespace, name].delete()

    def count(self, action: kmock.action, resource: kmock.resource, name: str | None = None) -> int:
        return sum(
            1
            for r in self
            if r.action == action and r.resource == resource and (name is None or r.name == name)
        )


class QuickStopServer(aiohttp.test_utils.RawTestServer):
    """aiohttp waits up to 60 s for open requests (here: watches) when a server stops."""

    async def _make_runner(self, debug: bool = True, **kwargs: Any) -> Any:
        runner = await super()._make_runner(debug=debug, **kwargs)
        runner._shutdown_timeout = 0.05
        return runner


class Endpoint:
    """One HTTP endpoint of the fake on 127.0.0.1 (a free port unless given). Stopping it cuts
    the clients that use it off the API server, as a network partition would."""

    def __init__(self, fake: FakeApiServer, port: int | None = None) -> None:
        self._server = kmock.Server(fake, host="127.0.0.1", port=port, server_cls=QuickStopServer)
        self.running = False
        self.port = 0

    async def __aenter__(self) -> Endpoint:
        await self._server.__aenter__()
        self.running = True
        self.port = self._server.port
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        if self.running:
            self.running = False
            await self._server.__aexit__(None, None, None)


def main_port(fake: FakeApiServer) -> int:
    return fake.servers[0].port


@contextlib.asynccontextmanager
async def api_client(port: int) -> AsyncIterator[client.ApiClient]:
    configuration = client.Configuration(host=f"http://127.0.0.1:{port}")
    async with client.ApiClient(configuration) as api:
        yield api


@contextlib.asynccontextmanager
async def running(coro: Awaitable[None]) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.ensure_future(coro)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def write(fake: FakeApiServer, method: str, path: str, body: Any = None) -> None:
    async with fake.request(method, path, json=body) as response:
        assert response.status < 300, await response.text()
