"""`flakehouse links add|list|remove` (DESIGN.md §12): this cluster's links, which pull datasets
from other clusters, through the replication service that runs them."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flakehouse.client.clientargs import (
    EXIT_OK,
    add_subcommand,
    argument_type,
    client_from_args,
)
from flakehouse.client.helptext import help_of
from flakehouse.client.tables import Fit, fit_for, format_table
from flakehouse.client.times import rfc3339_of_micros
from flakehouse.core.errors import InvalidArgument

if TYPE_CHECKING:
    from flakehouse.replication.v1 import replication_pb2


def state_name(state: int) -> str:
    """LINK_STATE_CAUGHT_UP -> caught-up."""
    from flakehouse.replication.v1 import replication_pb2

    try:
        name = replication_pb2.LinkState.Name(state)  # type: ignore[arg-type]
    except ValueError:
        return "unknown"
    return name.removeprefix("LINK_STATE_").lower().replace("_", "-")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    links = commands.add_parser(
        "links",
        help="pull datasets from other clusters",
        description="Links: this cluster pulling datasets from other clusters, continuously.",
        **help_of("links"),
    )
    group = links.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = add_subcommand(
        group,
        "links add",
        cmd_add,
        "add a link that pulls a dataset from another cluster",
        ("replication",),
        ca_flag="--cluster-ca",
    )
    add.add_argument("name", metavar="NAME", type=argument_type(_link_name, "link name"))
    add.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="HOST:PORT",
        help="the other cluster's ingest service",
    )
    add.add_argument("--dataset", required=True, metavar="DATASET")
    add.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help="a token of the other cluster that may read the dataset there (one line)",
    )
    add.add_argument(
        "--ca",
        dest="source_ca",
        type=Path,
        metavar="FILE",
        help="the other cluster's CA (PEM); default: the system's roots",
    )
    add_subcommand(
        group,
        "links list",
        cmd_list,
        "list the links with their state and lag",
        ("replication",),
        table=True,
    )
    remove = add_subcommand(group, "links remove", cmd_remove, "remove a link", ("replication",))
    remove.add_argument("name", metavar="NAME")


def _link_name(text: str) -> str:
    from flakehouse.events.model import validate_dataset_name

    try:
        return validate_dataset_name(text)
    except ValueError:
        raise ValueError(
            f"invalid link name {text!r}: lowercase letters, digits, '-' and '_', at most 63"
        ) from None


def cmd_add(args: argparse.Namespace) -> int:
    token = _read(args.token_file, "token").decode().strip() if args.token_file else ""
    ca_pem = _read(args.source_ca, "CA") if args.source_ca else b""
    with client_from_args(args, "replication") as client:
        link = client.add_link(
            args.name, args.source, args.dataset, source_token=token, source_ca_pem=ca_pem
        )
    if args.format == "json":
        print(json.dumps(link_view(link)))
    else:
        print(
            f"link {link.name!r} pulls {link.dataset!r} from {link.source_address} "
            f"(cluster {link.source_cluster})"
        )
    return EXIT_OK


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidArgument(f"cannot read the {what} file {path}: {exc.strerror}") from None


def cmd_list(args: argparse.Namespace) -> int:
    with client_from_args(args, "replication") as client:
        response = client.list_links()
    if args.format == "json":
        print(
            json.dumps(
                {"cluster_id": response.cluster_id, "links": [link_view(x) for x in response.links]}
            )
        )
        return EXIT_OK
    print("\n".join(render_links(response.links, fit_for(args.full_width))))
    return EXIT_OK


def render_links(links: Iterable[replication_pb2.LinkStatus], fit: Fit) -> list[str]:
    """The links as a table (also a section of `flakehouse status`)."""
    rows = [
        [
            link.name,
            link.dataset,
            f"{link.source_address} ({link.source_cluster or '?'})",
            state_name(link.state),
            f"{link.lag_records} records (~{link.lag_events} events), {link.lag_seconds:.0f} s",
            f"{link.events_pulled}",
            _error_text(link),
        ]
        for link in links
    ]
    header = ["link", "dataset", "from", "state", "lag", "events pulled", "last error"]
    return format_table(header, rows, fit=fit) if rows else ["no links"]


def _error_text(link: replication_pb2.LinkStatus) -> str:
    if not link.last_error:
        return ""
    return f"{rfc3339_of_micros(link.last_error_us)}: {link.last_error}"


def cmd_remove(args: argparse.Namespace) -> int:
    with client_from_args(args, "replication") as client:
        client.remove_link(args.name)
    if args.format == "json":
        print(json.dumps({"removed": args.name}))
    else:
        print(f"removed link {args.name!r}; what it pulled stays")
    return EXIT_OK


def link_view(link: replication_pb2.LinkStatus) -> dict[str, Any]:
    return {
        "name": link.name,
        "id": link.id,
        "dataset": link.dataset,
        "source": link.source_address,
        "source_cluster": link.source_cluster or None,
        "token": link.has_token,
        "ca": link.has_ca,
        "created": rfc3339_of_micros(link.created_us),
        "state": state_name(link.state),
        "lag_records": link.lag_records,
        "lag_events": link.lag_events,
        "lag_seconds": round(link.lag_seconds, 3),
        "records_pulled": link.records_pulled,
        "events_pulled": link.events_pulled,
        "last_error": link.last_error or None,
        "last_error_at": rfc3339_of_micros(link.last_error_us) or None,
        "checkpoint": {str(p): o for p, o in sorted(link.next_offsets.items())},
    }
