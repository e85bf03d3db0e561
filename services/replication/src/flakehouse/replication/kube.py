"""The Kubernetes API client the controller uses for storage membership and leader election:
in-cluster credentials when running in a pod, else the kubeconfig."""

from __future__ import annotations

import logging

from kubernetes.aio import client, config

log = logging.getLogger(__name__)


async def kube_api_client() -> client.ApiClient:
    """A new asyncio API client; the caller closes it (`await api.close()`).

    The `kubernetes` distribution ships an asyncio client (`kubernetes.aio`, aiohttp-based) next to
    the synchronous one: it is used so that watches and lease renewals run on the service's event
    loop and stop promptly on cancellation, with no threads.
    """
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        log.info("kubernetes: in-cluster service account")
    except config.ConfigException:
        await config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        log.info("kubernetes: kubeconfig, server %s", configuration.host)
    return client.ApiClient(configuration)
