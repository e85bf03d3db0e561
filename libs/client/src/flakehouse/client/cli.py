"""The `flakehouse` command: up, ingest, query, flaky, status, junit2json, and datasets, quota and
usage (datasets_cli) (DESIGN.md §9).

Exit codes: 0 success; 1 the cluster could not be reached or refused the request; 2 bad input
(an unparsable file, a bad query, bad arguments, a dataset that does not exist or conflicts);
3 a query answered partially (printed, but some partitions are missing: a script must not take
it for the whole answer), unless --allow-partial."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flakehouse.client import datasets_cli, links_cli, tokens_cli
from flakehouse.client.cienv import ci_labels
from flakehouse.client.clientargs import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_PARTIAL,
    add_client_options,
    add_credential_options,
    argument_type,
    client_from_args,
    token_for,
)
from flakehouse.client.cluster import DEFAULT_DIR, DEFAULT_PATH, ClusterFile
from flakehouse.client.flaky import DEFAULT_MIN_RUNS
from flakehouse.client.inputs import expand_inputs
from flakehouse.client.output import RENDERERS, describe_staleness
from flakehouse.client.times import query_zone
from flakehouse.core.errors import (
    AlreadyExists,
    FlakehouseError,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)

if TYPE_CHECKING:
    # What starts the CLI imports no gRPC or protobuf (--help, --version, a bad argument): the
    # commands that call a service import the client when they run.
    from flakehouse.client.client import QueryResult

# The query service's default MAX_TIMEOUT_MS; the margin leaves its answer time to arrive.
MAX_QUERY_DEADLINE_MS = 60_000
QUERY_DEADLINE_MARGIN_MS = 1_000


def _zone_name(name: str) -> str:
    """`name` once it names a time zone: a typo exits 2 before any call. The request carries the
    name, not the zone."""
    query_zone(name)
    return name


ZONE = argument_type(_zone_name, "time zone")
DISTRIBUTION = "flakehouse-client"


class _Version(argparse.Action):
    """`--version`: the installed distribution's version, looked up only when asked (the
    metadata machinery would cost every start of the CLI)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        kwargs.setdefault("help", "show the version and exit")
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"{parser.prog} {version(DISTRIBUTION)}")
        except PackageNotFoundError:
            print(f"{parser.prog}: unknown version ({DISTRIBUTION} is not installed)")
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    # Imported here rather than at the top: the CLI loads what a command needs when it runs.
    from flakehouse.client.clientargs import DATASET
    from flakehouse.client.helptext import help_of
    from flakehouse.client.tables import add_full_width_option

    parser = argparse.ArgumentParser(
        prog="flakehouse",
        description="Flakehouse: a store for test results.",
        **help_of("flakehouse"),
    )
    parser.add_argument("--version", action=_Version)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser(
        "up",
        help="run a local cluster in the foreground",
        description="Run a local cluster in the foreground: a broker, the services and the "
        "storage nodes, until Ctrl-C. It writes DIR/cluster.json, which the other commands read.",
        **help_of("up"),
    )
    up.add_argument("--data-dir", type=Path, default=DEFAULT_DIR, help="default: .flakehouse")
    up.add_argument("--port-base", type=int, default=7600, help="first port used (default 7600)")
    up.add_argument("--storage-nodes", type=int, default=2, help="default: 2")
    up.add_argument("--partitions", type=int, default=8, help="partitions of new datasets")
    up.add_argument(
        "--ephemeral",
        action="store_true",
        help="keep topics in memory: every start is empty and nothing survives a stop",
    )

    ingest = commands.add_parser(
        "ingest",
        help="upload JUnit XML or JSON lines files",
        description="Upload JUnit XML or JSON lines files into a dataset (created on first use).",
        **help_of("ingest"),
    )
    add_client_options(ingest, "ingest")
    ingest.add_argument("--dataset", required=True, type=DATASET, metavar="NAME")
    ingest.add_argument(
        "--label", action="append", default=[], metavar="K=V", help="add a field to every event"
    )
    ingest.add_argument(
        "--ci-env",
        action="store_true",
        help="add branch, commit, job, build... from GitHub Actions, GitLab CI, Jenkins or "
        "Buildkite variables (explicit --label wins)",
    )
    ingest.add_argument(
        "--format",
        choices=["junit", "json"],
        help="the files' format (default: from their content); for what the command prints, "
        "see --output",
    )
    ingest.add_argument(
        "--output",
        choices=["text", "json"],
        default="text",
        help="text: a line per file and a summary; json: one document at the end with every "
        "upload (id, events, offsets) and every rejection",
    )
    ingest.add_argument(
        "--parallel",
        type=int,
        default=8,
        metavar="N",
        help="uploads at once: a large file each, or up to 64 small ones (default 8)",
    )
    ingest.add_argument(
        "--offsets-file",
        type=Path,
        metavar="FILE",
        help="record the offsets written in this JSON file (merged with what it holds), for "
        "`flakehouse query --after` to see these uploads at once",
    )
    ingest.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="files, directories (searched for *.xml, *.json, *.jsonl) or glob patterns",
    )

    query = commands.add_parser(
        "query",
        help="run a SQL query",
        description="Run a SQL query, given as an argument, in a file (-f) or on stdin (-).",
        **help_of("query"),
    )
    add_client_options(query, "query")
    query.add_argument("--format", choices=sorted(RENDERERS), default="table")
    add_full_width_option(query)
    _partial_option(query)
    query.add_argument(
        "--raw-times",
        action="store_true",
        help="times as int microseconds since the epoch, not RFC 3339",
    )
    query.add_argument(
        "--tz",
        type=ZONE,
        default="",
        metavar="ZONE",
        help="the query's time zone, an IANA name (Europe/Paris): date_trunc and time_bucket "
        "follow its calendar, and times are shown with its offset (default: UTC)",
    )
    query.add_argument(
        "--after",
        type=Path,
        metavar="OFFSETS_FILE",
        help="answer only once the uploads recorded by `ingest --offsets-file` are applied",
    )
    query.add_argument(
        "-f",
        "--file",
        metavar="FILE",
        help="read the query from FILE ('-': from stdin) instead of the SQL argument",
    )
    query.add_argument("sql", nargs="?", metavar="SQL", help="the query; '-' reads it from stdin")

    flaky = commands.add_parser(
        "flaky",
        help="list flaky tests, worst first",
        description="Tests that failed where the same code also passed (on the same commit; "
        "without commit labels, in the same job), or that the runner marked flaky, ranked by "
        "flake rate: the share of their runs that were such flaky failures. Pass-to-fail flips "
        "across consecutive commits are a second signal. docs/queries.md ('Flaky tests') has "
        "the definitions and the queries this sends.",
        **help_of("flaky"),
    )
    add_client_options(flaky, "query")
    flaky.add_argument("--dataset", required=True, type=DATASET, metavar="NAME")
    flaky.add_argument(
        "--since", default="7d", help="window: 30m, 12h, 7d, 2w... or 'all' (default 7d)"
    )
    flaky.add_argument("--branch", help="only runs whose branch label is BRANCH")
    flaky.add_argument(
        "--min-runs",
        type=int,
        default=DEFAULT_MIN_RUNS,
        metavar="N",
        help=f"leave out tests with fewer than N runs (default {DEFAULT_MIN_RUNS})",
    )
    flaky.add_argument("--limit", type=int, default=50, help="tests listed (default 50; 0: all)")
    flaky.add_argument("--format", choices=sorted(RENDERERS), default="table")
    add_full_width_option(flaky)
    _partial_option(flaky)

    status = commands.add_parser(
        "status",
        help="storage nodes, partitions, replica states and lag",
        description="The storage nodes, and every partition with its replicas, their states "
        "and lag, as the replication controller sees them.",
        **help_of("status"),
    )
    status.add_argument(
        "--cluster",
        type=Path,
        default=DEFAULT_PATH,
        metavar="PATH",
        help=f"the cluster file naming the services' addresses (default {DEFAULT_PATH})",
    )
    status.add_argument(
        "--replication",
        metavar="HOST:PORT",
        help="the replication service's address (overrides --cluster)",
    )
    status.add_argument(
        "--ingest",
        metavar="HOST:PORT",
        help="the ingest service's address, which says the cluster's id (overrides --cluster; "
        "with --replication and without it, no id is shown)",
    )
    add_credential_options(status)
    status.add_argument(
        "--timeout", type=float, default=10.0, metavar="SECONDS", help="default: 10"
    )
    status.add_argument("--format", choices=["table", "json"], default="table")
    add_full_width_option(status)

    convert = commands.add_parser(
        "junit2json",
        help="convert JUnit XML to JSON lines locally",
        description="Convert JUnit XML files to JSON lines, one event per line, as ingest "
        "would store them; no cluster needed. A bad file prints only its error and exits 2.",
        **help_of("junit2json"),
    )
    convert.add_argument("files", nargs="+", type=Path, metavar="FILE")

    datasets_cli.register(commands)
    tokens_cli.register(commands)
    links_cli.register(commands)
    return parser


def cmd_up(args: argparse.Namespace) -> int:
    from flakehouse.client.local import LocalCluster, run_until_signalled

    cluster = LocalCluster(
        args.data_dir,
        port_base=args.port_base,
        storage_nodes=args.storage_nodes,
        partitions=args.partitions,
        ephemeral=args.ephemeral,
        say=lambda message: print(message, flush=True),
    )
    run_until_signalled(cluster)
    return EXIT_OK


def cmd_ingest(args: argparse.Namespace) -> int:
    from flakehouse.client.client import offsets_of
    from flakehouse.client.ingest_report import IngestReport
    from flakehouse.client.ingest_run import IngestRun
    from flakehouse.events.model import parse_label

    labels = ci_labels(os.environ) if args.ci_env else {}
    try:
        labels.update(parse_label(label) for label in args.label)  # explicit labels win
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None
    if args.parallel < 1:
        raise InvalidArgument("--parallel must be 1 or more")
    files, problems = expand_inputs(args.files)
    report = IngestReport(args.dataset)
    for argument, reason in problems:
        print(report.refused(argument, reason), file=sys.stderr)
    started = time.monotonic()
    with client_from_args(args, "ingest") as client:
        run = IngestRun(
            client, report, labels=labels, format=args.format, print_lines=args.output == "text"
        )
        run.upload(files, args.parallel)
    if args.offsets_file is not None and report.uploads:
        uploaded = [result for _, result in report.uploads]
        offsets = offsets_of(uploaded, into=read_offsets(args.offsets_file))
        args.offsets_file.write_text(json.dumps(offsets, sort_keys=True) + "\n")
    elapsed = time.monotonic() - started
    if args.output == "json":
        print(report.to_json(elapsed))
    else:
        print(report.summary(elapsed))
    rejections = report.rejections()
    if rejections:
        print(rejections, file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from flakehouse.client.client import Client
    from flakehouse.client.status import render_status_json, render_status_table

    address, ingest, ca_file = args.replication, args.ingest, args.ca
    cluster = None
    if not address:
        try:
            cluster = ClusterFile.read(args.cluster)
        except FileNotFoundError:
            raise FlakehouseError(
                f"no cluster file at {args.cluster}: start one with `flakehouse up`, "
                "or pass --cluster / --replication"
            ) from None
        address, ca_file = cluster.address("replication"), ca_file or cluster.ca_file or None
        ingest = ingest or cluster.address("ingest")
    token = token_for(args, cluster)
    with Client(
        replication=address, ingest=ingest, timeout_s=args.timeout, ca_file=ca_file, token=token
    ) as client:
        response = client.status()
        cluster_id = client.cluster_id() if ingest else None
        links = client.list_links().links
    if args.format == "json":
        print(render_status_json(response, cluster_id, links))
    else:
        from flakehouse.client.tables import fit_for

        print(render_status_table(response, fit_for(args.full_width), cluster_id, links))
    return EXIT_OK


def _partial_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-partial",
        action="store_true",
        help=f"exit 0 for a partial answer too (default: exit {EXIT_PARTIAL})",
    )


def answered(args: argparse.Namespace, result: QueryResult, shares: tuple[str, ...] = ()) -> int:
    """Prints an answer (the columns named in `shares` as percentages in a table); a partial one
    also says so on stderr and exits EXIT_PARTIAL, unless --allow-partial: a script checking the
    exit code never takes it for the whole answer."""
    if args.format == "table":
        from flakehouse.client.output import render_table
        from flakehouse.client.tables import fit_for

        print(render_table(result, fit=fit_for(args.full_width), shares=shares))
    else:
        print(RENDERERS[args.format](result))
    if result.stale:
        print(f"note: {describe_staleness(result.freshness)}", file=sys.stderr)
    if result.truncated:
        print(
            f"note: only the first {len(result.rows)} rows are shown (the default LIMIT); more"
            " matched: add LIMIT n (up to 100000), an ORDER BY, or a narrower WHERE",
            file=sys.stderr,
        )
    if not result.partial or args.allow_partial:
        return EXIT_OK
    missing = len(result.missing_partitions)
    print(
        f"error: partial answer: {missing} partition{'s' if missing != 1 else ''} missing "
        f"(listed in the answer); --allow-partial accepts it",
        file=sys.stderr,
    )
    return EXIT_PARTIAL


def cmd_query(args: argparse.Namespace) -> int:
    sql = query_text(args)
    with client_from_args(args, "query") as client:
        after = read_offsets(args.after) if args.after else None
        result = client.query(
            sql,
            timeout_ms=query_deadline_ms(args.timeout),
            after=after,
            raw_times=args.raw_times,
            time_zone=args.tz,
        )
    return answered(args, result)


def query_text(args: argparse.Namespace) -> str:
    """The SQL of `flakehouse query`: its argument, or the file of -f, or stdin for `-`."""
    if args.file is not None and args.sql is not None:
        raise InvalidArgument("give the query once: as the SQL argument or with -f FILE")
    if args.file is None and args.sql is None:
        raise InvalidArgument(
            "no query: give it as the SQL argument, with -f FILE, or on stdin (-)"
        )
    if args.file is None and args.sql != "-":
        return str(args.sql)
    source = args.file if args.file is not None else "-"
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidArgument(f"{source}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InvalidArgument(f"{source}: not UTF-8 text") from None
    if not text.strip():
        raise InvalidArgument(f"{'stdin' if source == '-' else source}: no SQL in it")
    return text


def read_offsets(path: Path) -> dict[str, dict[int, int]]:
    """The offsets file of `ingest --offsets-file`: {dataset: {partition: offset}}."""
    try:
        raw = json.loads(path.read_text())
        return {str(d): {int(p): int(o) for p, o in parts.items()} for d, parts in raw.items()}
    except FileNotFoundError:
        return {}
    except (ValueError, AttributeError, TypeError) as exc:
        raise InvalidArgument(f"{path}: not an offsets file ({exc})") from None


FLAKY_TOO_BIG = (
    "the report groups the window's runs by test, commit (or build and job), status and flaky "
    "mark: narrow it with --since (e.g. --since 1d) or --branch, or raise the query service's "
    'MAX_GROUPS and MAX_ANSWER_ROWS (docs/queries.md, "Flaky tests")'
)


def cmd_flaky(args: argparse.Namespace) -> int:
    from flakehouse.client.flaky import flaky_tests, since_interval

    since = None if args.since == "all" else args.since
    try:
        if since is not None:
            since_interval(since)
        if args.limit < 0:
            raise ValueError("--limit must be 0 or more")
        if args.min_runs < 1:
            raise ValueError("--min-runs must be 1 or more")
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None
    with client_from_args(args, "query") as client:
        try:
            result = flaky_tests(
                client,
                args.dataset,
                since,
                args.limit or None,
                branch=args.branch,
                min_runs=args.min_runs,
                timeout_ms=query_deadline_ms(args.timeout),
            )
        except ResourceExhausted as exc:
            if exc.retry_after_ms is not None:
                raise  # a quota's rate or slots, retried until the client gave up: not a limit
            # The query service's advice (a WHERE, fewer GROUP BY keys) is about SQL that the
            # command writes itself: keep what happened, and say what to change here instead.
            happened = exc.message.split("; ", 1)[0]
            raise ResourceExhausted(f"{happened}; {FLAKY_TOO_BIG}") from None
    return answered(args, result, shares=("flake_rate",))


def query_deadline_ms(timeout_s: float) -> int:
    """The server-side deadline of a query for a call that waits timeout_s: a little shorter,
    so that when storage nodes hang the query service's partial answer (with its missing
    partitions) still reaches us instead of our own deadline expiring first."""
    return max(1, min(MAX_QUERY_DEADLINE_MS, int(timeout_s * 1000) - QUERY_DEADLINE_MARGIN_MS))


def cmd_junit2json(args: argparse.Namespace) -> int:
    from flakehouse.events.batch import event_to_json
    from flakehouse.events.errors import EventError
    from flakehouse.events.junit import parse_junit

    status = EXIT_OK
    now_us = time.time_ns() // 1000
    out = sys.stdout
    for path in args.files:
        try:
            with path.open("rb") as source:
                # Whole file first: a bad file prints nothing but its error.
                lines = [
                    event_to_json(event)
                    for event in parse_junit(source, filename=str(path), upload_time_us=now_us)
                ]
        except EventError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = EXIT_BAD_INPUT
            continue
        except OSError as exc:
            print(f"error: {path}: {exc.strerror or exc}", file=sys.stderr)
            status = EXIT_BAD_INPUT
            continue
        for line in lines:
            out.write(line + "\n")
    out.flush()
    return status


COMMANDS = {
    "up": cmd_up,
    "ingest": cmd_ingest,
    "query": cmd_query,
    "flaky": cmd_flaky,
    "status": cmd_status,
    "junit2json": cmd_junit2json,
}


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or bad usage (2), as a return value
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    run = getattr(args, "run", None) or COMMANDS[args.command]
    if args.command != "up":
        # gRPC's own log lines (a failed TLS handshake is three of them) would come before the
        # one error line the command prints; set GRPC_VERBOSITY to see them.
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    try:
        return int(run(args))
    except FlakehouseError as exc:
        from flakehouse.client.errortext import one_line

        print(f"error: {one_line(exc, args)}", file=sys.stderr)
        bad_input = isinstance(exc, InvalidArgument | NotFound | AlreadyExists)
        return EXIT_BAD_INPUT if bad_input else EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
