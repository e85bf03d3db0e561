"""What every client command of the CLI shares: its exit codes, the options that find the cluster
(`--cluster` or explicit addresses, `--timeout`), and the Client they make."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from flakehouse.client.cluster import DEFAULT_PATH, TOKEN_ENV, ClusterFile, cluster_token
from flakehouse.client.helptext import help_of
from flakehouse.client.tables import add_full_width_option
from flakehouse.core.errors import FlakehouseError

if TYPE_CHECKING:
    from flakehouse.client.client import Client

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_PARTIAL = 0, 1, 2, 3
ADDRESSED = ("ingest", "query", "quota", "replication")
"""Services a client command may be pointed at with `--<service> host:port`."""
T = TypeVar("T")
Command = Callable[[argparse.Namespace], int]


def add_client_options(
    parser: argparse.ArgumentParser, *services: str, ca_flag: str = "--ca"
) -> None:
    """`--cluster`, `--timeout`, and an address option for each of the `services` the command
    calls (those only: an option that changes nothing is not offered). `ca_flag`: the option
    naming the cluster's CA, for a command whose --ca means another cluster's."""
    parser.add_argument(
        "--cluster",
        type=Path,
        default=DEFAULT_PATH,
        metavar="PATH",
        help=f"the cluster file naming the services' addresses (default {DEFAULT_PATH})",
    )
    for service in services:
        assert service in ADDRESSED, service
        parser.add_argument(
            f"--{service}",
            metavar="HOST:PORT",
            help=f"the {service} service's address (overrides --cluster)",
        )
    add_credential_options(parser, ca_flag)
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long each call may take (default 60); an upload has no deadline, only this "
        "long without progress",
    )


def add_credential_options(parser: argparse.ArgumentParser, ca_flag: str = "--ca") -> None:
    parser.add_argument(
        ca_flag,
        dest="ca",
        type=Path,
        metavar="FILE",
        help="the cluster CA (PEM) to verify the services against (default: the cluster file's "
        "ca_file, else FLAKEHOUSE_CA_FILE, else the system's roots)",
    )
    parser.add_argument(
        "--token",
        metavar="TOKEN",
        help="the bearer token to call with (default: FLAKEHOUSE_TOKEN, else the token file the "
        "cluster file names); prefer the variable: a command line is visible to other users",
    )


def token_for(args: argparse.Namespace, cluster: ClusterFile | None) -> str | None:
    """--token, else FLAKEHOUSE_TOKEN, else the token_file of the cluster file read."""
    token = getattr(args, "token", None) or os.environ.get(TOKEN_ENV)
    if token or cluster is None or not cluster.token_file:
        return token or None
    return cluster_token(args.cluster, cluster.token_file)


def add_subcommand(
    group: argparse._SubParsersAction[argparse.ArgumentParser],
    command: str,
    run: Command,
    help: str,
    services: tuple[str, ...],
    *,
    table: bool = False,
    ca_flag: str = "--ca",
) -> argparse.ArgumentParser:
    """`command` ("datasets list"), which calls `services`; `table`: it prints a table (and so
    takes --full-width)."""
    parser = group.add_parser(
        command.split()[-1],
        help=help,
        description=help[:1].upper() + help[1:] + ".",
        **help_of(command),
    )
    add_client_options(parser, *services, ca_flag=ca_flag)
    parser.add_argument("--format", choices=["table", "json"], default="table")
    if table:
        add_full_width_option(parser)
    parser.set_defaults(run=run)
    return parser


def client_from_args(args: argparse.Namespace, *needs: str) -> Client:
    """A Client with the explicit addresses, and the cluster file's for the rest; the cluster
    file is read only when a service in `needs` has no explicit address. The CA follows the
    addresses: --ca, else the cluster file's when it was read, else FLAKEHOUSE_CA_FILE (the
    Client's own default), else the system's roots."""
    from flakehouse.client.client import Client  # gRPC: only for the commands that call

    addresses = {service: getattr(args, service, None) for service in ADDRESSED}
    ca_file: str | Path | None = args.ca
    cluster: ClusterFile | None = None
    if any(not addresses[service] for service in needs):
        try:
            cluster = ClusterFile.read(args.cluster)
        except FileNotFoundError:
            options = " / ".join(f"--{service}" for service in needs)
            raise FlakehouseError(
                f"no cluster file at {args.cluster}: start one with `flakehouse up`, "
                f"or pass --cluster / {options}"
            ) from None
        ca_file = ca_file or cluster.ca_file
        for service in ADDRESSED:
            if not addresses[service] and service in cluster.services:
                addresses[service] = cluster.address(service)
        missing = [service for service in needs if not addresses[service]]
        if missing:
            raise FlakehouseError(
                f"{args.cluster} names no {missing[0]} service: pass --{missing[0]} host:port"
            )
    return Client(
        ingest=addresses["ingest"],
        query=addresses["query"],
        quota=addresses["quota"],
        replication=addresses["replication"],
        timeout_s=args.timeout,
        ca_file=ca_file or None,
        token=token_for(args, cluster),
    )


def argument_type(parse: Callable[[str], T], name: str) -> Callable[[str], T]:
    """`parse` as an argparse `type=`: its ValueError message becomes the usage error (exit 2),
    which argparse would otherwise replace with a generic "invalid value"."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = name
    return convert


def _dataset_name(text: str) -> str:
    # Imported here: building the parser should not load the event model.
    from flakehouse.events.model import validate_dataset_name

    return validate_dataset_name(text)


DATASET = argument_type(_dataset_name, "dataset name")
"""A dataset name, checked as the services check it: a bad one exits 2 before any call (before
any upload: otherwise every file of an ingest would be refused for it, one by one)."""
