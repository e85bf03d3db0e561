"""Generates the Grafana dashboards the Helm chart ships (charts/flakehouse/dashboards) with
Grafana's Foundation SDK, so panels are reviewed as code and every query is tested
(tests/test_monitoring.py). `python scripts/dashboards.py` writes them; `--check` fails when the
checked-in files differ from what this script generates.

Every metric used here is one the services export; the services do not register the
prometheus_client process collector, so there are no process_* (CPU, memory) panels."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from dashboard_cluster import cluster_overview
from dashboard_storage import storage_node
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.encoder import JSONEncoder

OUT_DIR = Path(__file__).resolve().parent.parent / "charts" / "flakehouse" / "dashboards"

DASHBOARDS: dict[str, Callable[[], db.Dashboard]] = {
    "cluster-overview.json": cluster_overview,
    "storage-node.json": storage_node,
}


# --- output -----------------------------------------------------------------------------------


def render(builder: db.Dashboard) -> str:
    """Stable JSON: panels numbered in order, keys sorted, so a diff shows only real changes."""
    model = builder.build()
    for number, panel in enumerate(model.panels or [], start=1):
        panel.id_val = number
    return json.dumps(model, cls=JSONEncoder, sort_keys=True, indent=2) + "\n"


def generate() -> dict[str, str]:
    return {name: render(make()) for name, make in DASHBOARDS.items()}


def stale(out_dir: Path) -> list[str]:
    """Files in out_dir that differ from what generate() makes, are missing, or are left over."""
    expected = generate()
    present = {path.name for path in out_dir.glob("*.json")}
    differing = [
        name
        for name, text in expected.items()
        if not (out_dir / name).is_file() or (out_dir / name).read_text() != text
    ]
    return sorted({*differing, *(present - expected.keys())})


def write(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in generate().items():
        (out_dir / name).write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the files differ from the generated ones"
    )
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="directory of the JSON files")
    args = parser.parse_args(argv)
    if not args.check:
        write(args.out)
        return 0
    outdated = stale(args.out)
    for name in outdated:
        print(f"{args.out / name}: not what this script generates", file=sys.stderr)
    if outdated:
        print("run: .venv/bin/python scripts/dashboards.py", file=sys.stderr)
    return 1 if outdated else 0


if __name__ == "__main__":
    sys.exit(main())
