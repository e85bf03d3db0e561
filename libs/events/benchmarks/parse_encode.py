"""Throughput of the ingest hot path on one core: a file -> events (parse_junit or
parse_json_lines) -> columnar batches (encode_batches + SerializeToString), on the generated
reports of benchmarks/junitgen.py (as JUnit XML, or as JSON lines with ``--format json``).

From the repository root:

    taskset -c 0 .venv/bin/python libs/events/benchmarks/parse_encode.py [--format json]

Prints events per second of CPU time (median and best of --repeat runs) for parse alone (to a
list), encode alone (from that list), and the two streamed together as the ingest service runs
them.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root

from benchmarks.junitgen import json_lines, report
from flakehouse.events.batch import encode_batches
from flakehouse.events.jsonlines import parse_json_lines
from flakehouse.events.junit import parse_junit

PARSERS = {"junit": (report, parse_junit), "json": (json_lines, parse_json_lines)}


def timed(run: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(median, best) CPU seconds of ``repeat`` runs."""
    times = []
    for _ in range(repeat):
        started = time.process_time()
        run()
        times.append(time.process_time() - started)
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--format", choices=sorted(PARSERS), default="junit")
    parser.add_argument("--cases", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    generate, parse_file = PARSERS[args.format]
    data = generate(1, args.cases)

    def parse() -> list[dict[str, object]]:
        return list(parse_file(io.BytesIO(data), filename="r", upload_time_us=0))

    events = parse()
    assert len(events) == args.cases

    def encode() -> int:
        batches = encode_batches(events, dataset="bench", upload_id="u" * 32)
        return sum(len(batch.SerializeToString()) for batch in batches)

    def streamed() -> int:
        events = parse_file(io.BytesIO(data), filename="r", upload_time_us=0)
        batches = encode_batches(events, dataset="bench", upload_id="u" * 32)
        return sum(len(batch.SerializeToString()) for batch in batches)

    def rates(run: Callable[[], object]) -> str:
        median, best = timed(run, args.repeat)
        return f"{args.cases / median:,.0f}/s (best {args.cases / best:,.0f}/s)"

    print(
        f"{args.format}: {args.cases} events, {len(data) / 1e6:.1f} MB, "
        f"median of {args.repeat}: parse {rates(parse)}, encode {rates(encode)}, "
        f"parse+encode streamed {rates(streamed)}"
    )


if __name__ == "__main__":
    main()
