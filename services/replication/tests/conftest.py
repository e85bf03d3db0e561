"""The fake Kubernetes API server (kube_fake.py) as a fixture for the kube tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.replication.tests.kube_fake import Endpoint, FakeApiServer


@pytest.fixture
async def fake() -> AsyncIterator[FakeApiServer]:
    """The fake API server with one endpoint, which the tests also use to write objects."""
    async with FakeApiServer() as server, Endpoint(server):
        server.resources["v1/pods"] = {}
        server.resources["v1/nodes"] = {}
        server.resources["coordination.k8s.io/v1/leases"] = {}
        yield server
