"""`flakehouse tokens create|list|revoke` (DESIGN.md §9, §10), through the quota service, which
keeps the tokens. A secret is printed once, by create; list never shows one."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from flakehouse.client.clientargs import EXIT_OK, add_subcommand, client_from_args
from flakehouse.client.helptext import help_of
from flakehouse.client.tables import fit_for, format_table
from flakehouse.client.times import rfc3339_of_micros
from flakehouse.core.grants import Grant, Role

if TYPE_CHECKING:
    from flakehouse.auth.v1 import tokens_pb2


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tokens = commands.add_parser(
        "tokens",
        help="create, list and revoke tokens",
        description="Create, list and revoke the bearer tokens that callers authenticate with.",
        **help_of("tokens"),
    )
    group = tokens.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = add_subcommand(
        group, "tokens create", cmd_create, "create a token and print its secret once", ("quota",)
    )
    create.add_argument("--name", required=True, metavar="NAME")
    create.add_argument(
        "--grant",
        action="append",
        required=True,
        metavar="ROLE:DATASET",
        help="read, write or admin on a dataset, a prefix* or *; or cluster-admin (repeatable)",
    )
    add_subcommand(group, "tokens list", cmd_list, "list the tokens", ("quota",), table=True)
    revoke = add_subcommand(group, "tokens revoke", cmd_revoke, "revoke a token", ("quota",))
    revoke.add_argument("name", metavar="NAME")


def cmd_create(args: argparse.Namespace) -> int:
    with client_from_args(args, "quota") as client:
        info, secret = client.create_token(args.name, args.grant)
    if args.format == "json":
        print(json.dumps({"name": info.name, "token": secret, "grants": grants_of(info)}))
    else:
        print(f"token {info.name!r} grants {', '.join(grants_of(info))}; its secret, shown once:")
        print(secret)
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    with client_from_args(args, "quota") as client:
        tokens = client.list_tokens()
    if args.format == "json":
        print(json.dumps({"tokens": [_view(t) for t in tokens]}))
        return EXIT_OK
    rows = [
        [
            t.name,
            ", ".join(grants_of(t)),
            rfc3339_of_micros(t.created_us),
            rfc3339_of_micros(t.last_used_us) or "never",
        ]
        for t in tokens
    ]
    header = ["name", "grants", "created", "last used"]
    print("\n".join(format_table(header, rows, fit=fit_for(args.full_width))))
    return EXIT_OK


def cmd_revoke(args: argparse.Namespace) -> int:
    with client_from_args(args, "quota") as client:
        info = client.revoke_token(args.name)
    if args.format == "json":
        print(json.dumps(_view(info)))
    else:
        print(f"revoked token {info.name!r} ({', '.join(grants_of(info))})")
    return EXIT_OK


def grants_of(info: tokens_pb2.TokenInfo) -> list[str]:
    # The proto's Role numbers are the grants model's.
    grants = [str(Grant(Role(g.role), g.pattern)) for g in info.grants]
    return [*grants, "cluster-admin"] if info.cluster_admin else grants


def _view(info: tokens_pb2.TokenInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "grants": grants_of(info),
        "created": rfc3339_of_micros(info.created_us),
        "last_used": rfc3339_of_micros(info.last_used_us) or None,
    }
