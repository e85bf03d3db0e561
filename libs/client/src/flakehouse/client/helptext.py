"""What `flakehouse COMMAND --help` shows after the options: examples, and where the docs say more
(paths in the Flakehouse repository)."""

from __future__ import annotations

import argparse
from typing import Any

FORMATTER = argparse.RawDescriptionHelpFormatter
"""Keeps the examples' lines as they are written."""

EPILOGS = {
    "flakehouse": """\
examples:
  flakehouse up                                   # a local cluster, in the foreground
  flakehouse ingest --dataset ci --label branch=main reports/*.xml
  flakehouse query "SELECT status, count(*) FROM ci GROUP BY status"
  flakehouse flaky --dataset ci --since 7d

`flakehouse COMMAND --help` shows each command's options and examples.
docs: README.md ("Five minutes with Flakehouse"), docs/queries.md, services/query/SQL.md""",
    "up": """\
examples:
  flakehouse up                                   # keeps its data in .flakehouse/
  flakehouse up --data-dir /tmp/fh --port-base 8600 --storage-nodes 3
  flakehouse up --ephemeral                       # empty at every start

docs: docs/operations.md ("The local cluster: where data lives and what survives"),
docs/configuration.md""",
    "ingest": """\
examples:
  flakehouse ingest --dataset ci --label branch=main build/test-results/
  flakehouse ingest --dataset ci --ci-env "reports/**/*.xml"
  flakehouse ingest --dataset ci --offsets-file offsets.json events.jsonl
  flakehouse ingest --dataset ci --output json reports/ | jq .events

A rejected file is printed once, with its reason, and writes nothing; the others go in, and
the command exits 2.
docs: README.md ("Five minutes with Flakehouse"), docs/architecture.md (the JUnit mapping),
docs/queries.md ("Read-your-writes")""",
    "query": """\
examples:
  flakehouse query "SELECT status, count(*) FROM ci GROUP BY status"
  flakehouse query --format csv -f slowest.sql > slowest.csv
  echo "DESCRIBE ci" | flakehouse query -
  flakehouse query --tz Europe/Paris -f failures_by_day.sql   # days of Paris

SQL: services/query/SQL.md; the command, freshness and exit codes: docs/queries.md""",
    "flaky": """\
examples:
  flakehouse flaky --dataset ci
  flakehouse flaky --dataset ci --branch main --since 30d --limit 0 --format csv > flaky.csv

flake_rate shows as a percentage in the table; --format json and csv give the share (0 to 1).
docs: docs/queries.md ("Flaky tests": the definitions and the SQL it sends)""",
    "status": """\
examples:
  flakehouse status
  flakehouse status --format json | jq .under_replicated

docs: docs/operations.md ("Every deployment", "Scale storage")""",
    "junit2json": """\
examples:
  flakehouse junit2json build/test-results/TEST-AuthTest.xml
  flakehouse junit2json report.xml > events.jsonl && flakehouse ingest --dataset ci events.jsonl

docs: docs/architecture.md (the data model and the JUnit mapping), libs/events/JUNIT.md""",
    "datasets": """\
examples:
  flakehouse datasets create nightly --partitions 8 --retention 90d
  flakehouse datasets list
  flakehouse datasets describe nightly
  flakehouse datasets delete nightly --yes

docs: docs/datasets.md""",
    "datasets list": """\
examples:
  flakehouse datasets list
  flakehouse datasets list --format json | jq -r '.datasets[].name'

docs: docs/datasets.md""",
    "datasets create": """\
examples:
  flakehouse datasets create nightly
  flakehouse datasets create nightly --partitions 16 --retention 90d --max-stored-bytes 20GiB

A name is 1 to 63 characters of a-z, 0-9, '_' and '-', starting with a letter or digit.
docs: docs/datasets.md ("The limits")""",
    "datasets describe": """\
examples:
  flakehouse datasets describe nightly
  flakehouse datasets describe nightly --format json | jq .usage.bytes

docs: docs/datasets.md ("The cutoff", "Seeing it")""",
    "datasets delete": """\
examples:
  flakehouse datasets delete nightly --yes

docs: docs/datasets.md""",
    "quota": """\
examples:
  flakehouse quota get nightly
  flakehouse quota set nightly --max-concurrent-queries 4 --events-per-second 5000

docs: docs/datasets.md ("The limits")""",
    "quota get": """\
examples:
  flakehouse quota get nightly
  flakehouse quota get nightly --format json | jq .limits.retention_seconds

docs: docs/datasets.md ("The limits")""",
    "quota set": """\
examples:
  flakehouse quota set nightly --retention 30d --max-stored-bytes 500MiB
  flakehouse quota set nightly --events-per-second 0        # 0: unlimited

docs: docs/datasets.md ("The limits", "The cutoff")""",
    "links": """\
examples:
  flakehouse links add from-eu --from ingest.eu.example.com:443 --dataset ci --token-file eu.token
  flakehouse links list
  flakehouse links remove from-eu

A link makes this cluster pull a dataset from another cluster, continuously; add one on each
side to replicate both ways.
docs: docs/cross-cluster.md""",
    "links add": """\
examples:
  flakehouse links add from-eu --from eu.example.com:443 --dataset ci --token-file eu.token
  flakehouse links add lab --from 10.0.0.7:7001 --dataset ci --token-file lab.token --ca lab.pem

--from is the other cluster's ingest service; --token-file a token of that cluster that may read
the dataset there; --ca the CA its certificate is verified against (default: the system's
roots). The dataset must exist here too (flakehouse datasets create). This cluster's own CA, if
needed, goes in --cluster-ca.
docs: docs/cross-cluster.md ("Adding a link")""",
    "links list": """\
examples:
  flakehouse links list
  flakehouse links list --format json | jq '.links[] | select(.state != "caught-up")'

docs: docs/cross-cluster.md ("Watching links")""",
    "links remove": """\
examples:
  flakehouse links remove from-eu

What the link pulled stays; adding it again pulls from the source's beginning (storage drops
what is already here).
docs: docs/cross-cluster.md""",
    "tokens": """\
examples:
  flakehouse tokens create --name ci-main --grant write:ci --grant read:ci
  flakehouse tokens list
  flakehouse tokens revoke ci-main

docs: docs/security.md""",
    "tokens create": """\
examples:
  flakehouse tokens create --name ci-main --grant write:ci
  flakehouse tokens create --name team-a --grant admin:team-a-* --grant read:*
  flakehouse tokens create --name ops --grant cluster-admin --format json | jq -r .token

ROLE is read, write (and read) or admin (and write: create and delete); DATASET a name, a
prefix ending in * or *. The secret is printed once: nobody can see it again.
docs: docs/security.md ("Tokens")""",
    "tokens list": """\
examples:
  flakehouse tokens list
  flakehouse tokens list --format json | jq -r '.tokens[].name'

docs: docs/security.md ("Tokens")""",
    "tokens revoke": """\
examples:
  flakehouse tokens revoke ci-main

Every service refuses the token within seconds.
docs: docs/security.md ("Rotating a token")""",
    "usage": """\
examples:
  flakehouse usage
  flakehouse usage nightly --format json | jq '.datasets[0].bytes'

Shares of a limit show as percentages in the table; --format json gives the numbers.
docs: docs/datasets.md ("Seeing it"), docs/operations.md ("Alerts")""",
}


def help_of(command: str) -> dict[str, Any]:
    """The `add_parser` arguments that give `command` (e.g. "quota set") its examples."""
    return {"epilog": EPILOGS[command], "formatter_class": FORMATTER}
