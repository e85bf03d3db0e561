"""The token a cluster file names is sent only when it is that cluster's own private file."""

from __future__ import annotations

from pathlib import Path

import pytest

from flakehouse.client.cluster import cluster_token
from flakehouse.core.errors import FlakehouseError


def _token(path: Path, mode: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("fh_secret\n")
    path.chmod(mode)
    return path


def test_the_clusters_private_token_is_read(tmp_path: Path) -> None:
    token = _token(tmp_path / "secrets" / "admin.token", 0o600)
    assert cluster_token(tmp_path / "cluster.json", str(token)) == "fh_secret"


@pytest.mark.parametrize(
    ("where", "mode"),
    [("elsewhere/admin.token", 0o600), ("secrets/admin.token", 0o644), ("secrets/x", 0o640)],
)
def test_another_file_or_a_readable_one_is_refused(tmp_path: Path, where: str, mode: int) -> None:
    cluster = tmp_path / "checkout" / ".flakehouse" / "cluster.json"
    base = tmp_path if where.startswith("elsewhere") else cluster.parent
    token = _token(base / where, mode)
    with pytest.raises(FlakehouseError, match="not a private file of that cluster") as refused:
        cluster_token(cluster, str(token))
    assert "fh_secret" not in refused.value.message


def test_a_missing_token_file_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(FlakehouseError, match="No such file"):
        cluster_token(tmp_path / "cluster.json", str(tmp_path / "secrets" / "gone.token"))
