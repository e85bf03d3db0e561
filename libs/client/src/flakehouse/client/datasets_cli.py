"""`flakehouse datasets list|create|describe|delete`, `flakehouse quota get|set` and `flakehouse
usage` (DESIGN.md §9), through the ingest and quota services; what they print: dataset_views."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from flakehouse.client.clientargs import (
    DATASET,
    EXIT_OK,
    add_subcommand,
    argument_type,
    client_from_args,
)
from flakehouse.client.helptext import help_of
from flakehouse.client.tables import fit_for
from flakehouse.client.units import parse_age, parse_count, parse_rate, parse_size, render_age
from flakehouse.core.errors import InvalidArgument
from flakehouse.core.limit_rules import MIN_RETENTION_S, QUOTA_FIELDS, validate_quota

if TYPE_CHECKING:
    # Every CLI command registers these: the commands import gRPC and protobuf when they run.
    from flakehouse.client.client import Client
    from flakehouse.quota.v1 import quota_pb2

OPTIONS = {
    "events_per_second": "--events-per-second",
    "bytes_per_second": "--bytes-per-second",
    "max_stored_bytes": "--max-stored-bytes",
    "retention_seconds": "--retention",
    "max_concurrent_queries": "--max-concurrent-queries",
}
"""The option that sets each limit (its dest is the Quota field)."""


def parse_retention(text: str) -> int:
    """An age of at least a minute (what the services accept), or 0 to keep everything."""
    seconds = parse_age(text)
    if 0 < seconds < MIN_RETENTION_S:
        raise ValueError(
            f"retention {text!r} is shorter than {render_age(MIN_RETENTION_S)}, the least the "
            "cluster enforces (e.g. 90m, 12h, 30d); use 0 to keep everything"
        )
    return seconds


def parse_partitions(text: str) -> int:
    partitions = parse_count(text)
    if partitions < 1:
        raise ValueError(f"{text!r}: a dataset needs at least 1 partition")
    return partitions


SIZE = argument_type(parse_size, "size")
AGE = argument_type(parse_retention, "age")
RATE = argument_type(parse_rate, "rate")
COUNT = argument_type(parse_count, "count")
PARTITIONS = argument_type(parse_partitions, "partitions")


def _retention_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--retention",
        dest="retention_seconds",
        type=AGE,
        metavar="AGE",
        help="answer and keep only events younger than this: 30d, 12h, 90m, 2w... (0: forever)",
    )


def _stored_bytes_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-stored-bytes",
        dest="max_stored_bytes",
        type=SIZE,
        metavar="SIZE",
        help="past this logical size the oldest events go: 500MiB, 20GB, or bytes (0: unlimited)",
    )


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds the `datasets`, `quota` and `usage` commands; each sets `run` to its function."""
    datasets = commands.add_parser(
        "datasets",
        help="create, list, describe and delete datasets",
        description="Create, list, describe and delete datasets.",
        **help_of("datasets"),
    )
    group = datasets.add_subparsers(dest="action", required=True, metavar="ACTION")
    add_subcommand(
        group, "datasets list", cmd_datasets_list, "list the datasets", ("ingest",), table=True
    )
    create = add_subcommand(
        group,
        "datasets create",
        cmd_datasets_create,
        "create a dataset with its limits",
        ("ingest",),
    )
    create.add_argument("name", metavar="NAME", type=DATASET)
    create.add_argument(
        "--partitions",
        type=PARTITIONS,
        metavar="P",
        help="default: the cluster's; cannot change later",
    )
    _retention_option(create)
    _stored_bytes_option(create)
    describe = add_subcommand(
        group,
        "datasets describe",
        cmd_datasets_describe,
        "show a dataset, its limits and its usage",
        ("ingest", "quota"),
    )
    describe.add_argument("name", metavar="NAME", type=DATASET)
    delete = add_subcommand(
        group,
        "datasets delete",
        cmd_datasets_delete,
        "delete a dataset with its data and limits",
        ("ingest",),
    )
    delete.add_argument("name", metavar="NAME", type=DATASET)
    delete.add_argument("--yes", action="store_true", help="confirm: nothing can bring it back")

    quota = commands.add_parser(
        "quota",
        help="show or change a dataset's limits",
        description="Show or change a dataset's limits.",
        **help_of("quota"),
    )
    group = quota.add_subparsers(dest="action", required=True, metavar="ACTION")
    get = add_subcommand(group, "quota get", cmd_quota_get, "show a dataset's limits", ("quota",))
    get.add_argument("name", metavar="NAME", type=DATASET)
    set_ = add_subcommand(
        group,
        "quota set",
        cmd_quota_set,
        "change some of a dataset's limits (0: unlimited)",
        ("quota",),
    )
    set_.add_argument("name", metavar="NAME", type=DATASET)
    set_.add_argument(
        "--events-per-second",
        type=RATE,
        metavar="N",
        help="ingest events per second (0: unlimited)",
    )
    set_.add_argument(
        "--bytes-per-second",
        type=SIZE,
        metavar="N",
        help="ingest bytes per second: 1048576, 10MiB... (0: unlimited)",
    )
    _stored_bytes_option(set_)
    _retention_option(set_)
    set_.add_argument(
        "--max-concurrent-queries",
        type=COUNT,
        metavar="N",
        help="queries running at once on the dataset, across the cluster (0: unlimited)",
    )

    usage = add_subcommand(
        commands,
        "usage",
        cmd_usage,
        "what datasets store and ingest, against their limits",
        ("quota",),
        table=True,
    )
    usage.add_argument(
        "name", nargs="?", metavar="NAME", type=DATASET, help="default: every dataset"
    )


def _limits(args: argparse.Namespace) -> dict[str, float]:
    """The limits given on the command line, checked as the cluster checks them."""
    from flakehouse.client.client import quota_of

    limits = {
        name: value for name in QUOTA_FIELDS if (value := getattr(args, name, None)) is not None
    }
    validate_quota(quota_of(**limits))
    return limits


def _print(args: argparse.Namespace, table: str, json_text: str) -> int:
    print(json_text if args.format == "json" else table)
    return EXIT_OK


def cmd_datasets_list(args: argparse.Namespace) -> int:
    from flakehouse.client import dataset_views as views

    with client_from_args(args, "ingest") as client:
        datasets = client.list_datasets()
    return _print(
        args,
        views.datasets_table(datasets, fit_for(args.full_width)),
        views.datasets_json(datasets),
    )


def cmd_datasets_create(args: argparse.Namespace) -> int:
    from flakehouse.client import dataset_views as views
    from flakehouse.client.client import quota_of

    limits = _limits(args)
    with client_from_args(args, "ingest") as client:
        response = client.create_dataset(args.name, args.partitions or 0, quota_of(**limits))
    return _print(args, views.created_table(response), views.created_json(response))


def dataset_usage(client: Client, name: str) -> quota_pb2.DatasetUsage:
    """The dataset's usage, or, when quota has no usage for it yet (nothing stored), none with
    the dataset's limits."""
    from flakehouse.quota.v1 import quota_pb2

    for usage in client.usage(name):
        if usage.dataset == name:
            return usage
    return quota_pb2.DatasetUsage(dataset=name, quota=client.get_quota(name))


def cmd_datasets_describe(args: argparse.Namespace) -> int:
    from flakehouse.client import dataset_views as views

    with client_from_args(args, "ingest", "quota") as client:
        dataset = client.get_dataset(args.name)
        usage = dataset_usage(client, args.name)
    return _print(args, views.describe_table(dataset, usage), views.describe_json(dataset, usage))


def cmd_datasets_delete(args: argparse.Namespace) -> int:
    from flakehouse.client import dataset_views as views

    if not args.yes:
        raise InvalidArgument(
            f"deleting dataset {args.name!r} removes its events from every replica for good; "
            "confirm with --yes"
        )
    with client_from_args(args, "ingest") as client:
        dataset = client.delete_dataset(args.name)
    return _print(args, views.deleted_table(dataset), views.deleted_json(dataset))


def cmd_quota_get(args: argparse.Namespace) -> int:
    from flakehouse.client import dataset_views as views

    with client_from_args(args, "quota") as client:
        quota = client.get_quota(args.name)
    return _print(args, views.quota_table(args.name, quota), views.quota_json(args.name, quota))


def cmd_quota_set(args: argparse.Namespace) -> int:
    from flakehouse.client import dataset_views as views

    changes = _limits(args)
    if not changes:
        raise InvalidArgument(
            f"quota set {args.name}: nothing to change; give one or more of "
            + ", ".join(OPTIONS[name] for name in QUOTA_FIELDS)
        )
    with client_from_args(args, "quota") as client:
        quota = client.set_quota(args.name, **changes)
    return _print(args, views.quota_table(args.name, quota), views.quota_json(args.name, quota))


def cmd_usage(args: argparse.Namespace) -> int:
    from flakehouse.client import dataset_views as views

    with client_from_args(args, "quota") as client:
        usages = [dataset_usage(client, args.name)] if args.name else client.usage()
    return _print(
        args, views.usage_table(usages, fit_for(args.full_width)), views.usage_json(usages)
    )
