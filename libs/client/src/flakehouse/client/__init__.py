"""The Flakehouse Python client and the `flakehouse` CLI."""

from flakehouse.client.client import Client, QueryResult, UploadResult
from flakehouse.client.cluster import ClusterFile

__all__ = ["Client", "ClusterFile", "QueryResult", "UploadResult"]
