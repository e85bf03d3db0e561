"""`flakehouse up`'s plan: which process learns which address."""

from __future__ import annotations

from pathlib import Path

from flakehouse.client.local import LocalCluster


def test_query_and_ingest_find_quota(tmp_path: Path) -> None:
    specs = {s.spec.name: s.spec for s in LocalCluster(tmp_path, port_base=7600).processes}
    quota = specs["quota"].grpc
    assert specs["query"].env["FLAKEHOUSE_QUERY_QUOTA_ADDRESS"] == quota
    assert specs["ingest"].env["FLAKEHOUSE_INGEST_QUOTA_ADDRESS"] == quota
    assert specs["storage-0"].env["FLAKEHOUSE_STORAGE_QUOTA_ADDRESS"] == quota
