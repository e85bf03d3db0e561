"""What the CLI prints for an error of the cluster: one line that says what to do, naming the
option that would change the outcome (`--timeout`, `--cluster`, `--query`...)."""

from __future__ import annotations

import argparse
import re

from flakehouse.core.errors import (
    DeadlineExceeded,
    FlakehouseError,
    ResourceExhausted,
    Unavailable,
)

# gRPC's own words when a channel found no server: nothing answered, so nothing the server said.
UNREACHABLE = re.compile(
    r"failed to connect to all addresses|errors resolving|DNS resolution failed"
    r"|connections to all backends failing|Connection refused",
    re.IGNORECASE,
)
ADDRESS = re.compile(r"(?:ipv4:|ipv6:|unix:|resolving )(\[?[\w.:-]+?\]?:\d+)")
RETRY_IN = re.compile(r";? ?retry in \d+ ?ms\.?$")
# gRPC's words when TLS failed: the same call would fail again, so it is not retried either.
TLS_FAILURES = {
    "CERTIFICATE_VERIFY_FAILED": "its certificate is not signed by the CA this command trusts: "
    "pass the cluster's CA with --ca FILE or FLAKEHOUSE_CA_FILE (a local cluster's cluster.json "
    "names it as ca_file)",
    "Hostname Verification": "its certificate does not name the host dialled: use an address "
    "the certificate carries (a local cluster's: 127.0.0.1 or localhost)",
    "WRONG_VERSION_NUMBER": "it does not speak TLS: is that a Flakehouse service?",
}
LOCATING = ("cluster", "ingest", "query", "quota", "replication")
"""The options that say where the cluster is, as the commands name them."""


def one_line(error: FlakehouseError, args: argparse.Namespace) -> str:
    """The line to print after `error: ` for `error`, raised by the command run with `args`."""
    if isinstance(error, DeadlineExceeded) and getattr(args, "timeout", None) is not None:
        timeout = float(args.timeout)
        return (
            f"no answer within {timeout:g} s: allow longer with --timeout SECONDS "
            f"(e.g. --timeout {max(2 * timeout, 120):g})"
        )
    message = "; ".join(line.strip() for line in error.message.splitlines() if line.strip())
    if isinstance(error, Unavailable) and (why := tls_failure(message)):
        found = ADDRESS.search(message)
        return f"cannot verify {found.group(1) if found else 'the cluster'}: {why}"
    if isinstance(error, Unavailable) and UNREACHABLE.search(message):
        return _unreachable(message, args)
    if isinstance(error, Unavailable):
        return (
            f"{_without_retry_in(message)}: the cluster cannot answer for now; try again in a "
            "moment (`flakehouse status` shows what is down)"
        )
    if isinstance(error, ResourceExhausted) and error.retry_after_ms is not None:
        return (
            f"{_without_retry_in(message)}: try again later, or raise the dataset's limit "
            "(`flakehouse quota set`)"
        )
    return message


def tls_failure(message: str) -> str | None:
    """What to do about a TLS failure that gRPC's message describes; None for another error."""
    for words, advice in TLS_FAILURES.items():
        if words in message:
            return advice
    return None


def _without_retry_in(message: str) -> str:
    """The client already waited as long as the server asked, as many times as it retries: the
    server's "retry in 200 ms" no longer tells the reader what to do."""
    return RETRY_IN.sub("", message)


def _unreachable(message: str, args: argparse.Namespace) -> str:
    found = ADDRESS.search(message)
    where = found.group(1) if found else "the cluster"
    reason = message.rsplit(": ", 1)[-1].strip(" ]").lower()
    options = " or ".join(f"--{name}" for name in LOCATING if hasattr(args, name))
    point = f", or point {options} at a running one" if options else ""
    return (
        f"cannot reach {where} ({reason}): is the cluster up? Start one with `flakehouse up`{point}"
    )
