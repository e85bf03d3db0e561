"""Throughput of the ingest hot path on one core: JUnit XML -> events (parse_junit) -> columnar
batches (encode_batches + SerializeToString), on the generated reports of benchmarks/junitgen.py.

From the repository root:

    taskset -c 0 .venv/bin/python libs/events/benchmarks/parse_encode.py

Prints testcases per second of CPU time (best of --repeat runs) for parse alone (to a list),
encode alone (from that list), and the two streamed together as the ingest service runs them.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root

from benchmarks.junitgen import report
from flakehouse.events.batch import encode_batches
from flakehouse.events.junit import parse_junit


def best(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.process_time()
        run()
        times.append(time.process_time() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    data = report(1, args.cases)

    def parse() -> list[dict[str, object]]:
        return list(parse_junit(io.BytesIO(data), filename="r.xml", upload_time_us=0))

    events = parse()
    assert len(events) == args.cases

    def encode() -> int:
        batches = encode_batches(events, dataset="bench", upload_id="u" * 32)
        return sum(len(batch.SerializeToString()) for batch in batches)

    def streamed() -> int:
        events = parse_junit(io.BytesIO(data), filename="r.xml", upload_time_us=0)
        batches = encode_batches(events, dataset="bench", upload_id="u" * 32)
        return sum(len(batch.SerializeToString()) for batch in batches)

    cases = args.cases
    print(
        f"{cases} testcases, {len(data) / 1e6:.1f} MB, best of {args.repeat}: "
        f"parse {cases / best(parse, args.repeat):,.0f}/s, "
        f"encode {cases / best(encode, args.repeat):,.0f}/s, "
        f"parse+encode streamed {cases / best(streamed, args.repeat):,.0f}/s"
    )


if __name__ == "__main__":
    main()
