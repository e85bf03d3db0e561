"""Generated JUnit XML reports with realistic shape: hundreds of suites, thousands of test names,
a few percent failures and skips, properties on some suites; and the same testcases as JSON
lines."""

from __future__ import annotations

import io
import json
import random
from xml.sax.saxutils import quoteattr

from flakehouse.events.junit import parse_junit
from flakehouse.events.timestamps import format_timestamp


def report(seed: int, cases: int, suites: int = 300, names: int = 20_000) -> bytes:
    rng = random.Random(seed)
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n<testsuites>']
    per_suite = max(1, cases // 10)
    written = 0
    while written < cases:
        suite = f"suite_{rng.randrange(suites)}"
        out.append(
            f'<testsuite name={quoteattr(suite)} timestamp="2026-11-{1 + seed % 20:02d}T10:00:00"'
            ' hostname="ci-runner-3">'
        )
        if rng.random() < 0.3:
            out.append(
                f'<properties><property name="os" value="linux-{rng.randrange(3)}"/></properties>'
            )
        for _ in range(min(per_suite, cases - written)):
            name = f"test_{rng.randrange(names)}"
            time_s = rng.lognormvariate(-3, 1.5)
            roll = rng.random()
            body = ""
            if roll < 0.03:
                body = (
                    '<failure message="assert 1 == 2" type="AssertionError">Traceback: x</failure>'
                )
            elif roll < 0.035:
                body = '<error message="boom" type="RuntimeError"/>'
            elif roll < 0.06:
                body = '<skipped message="not on linux"/>'
            out.append(
                f'<testcase classname="{suite}.Test{rng.randrange(50)}" name="{name}" '
                f'time="{time_s:.4f}">{body}</testcase>'
            )
            written += 1
        out.append("</testsuite>")
    out.append("</testsuites>\n")
    return "".join(out).encode()


def json_lines(seed: int, cases: int) -> bytes:
    """The testcases of ``report(seed, cases)`` as a tool would write them as JSON lines: the
    events of ``flakehouse junit2json`` with the fields CI tools add to each line (branch,
    commit, job, a pipeline id), spaced as ``json.dumps`` writes by default. About 370 bytes a
    line, like the 375 MB file of a million events that issue 16 measured."""
    rng = random.Random(seed)
    common = {
        "branch": "main",
        "commit": f"{rng.getrandbits(160):040x}",
        "job": "unit-tests (ubuntu-latest, 3.12)",
        "pipeline_id": rng.randrange(10**9),
    }
    lines = []
    for event in parse_junit(io.BytesIO(report(seed, cases)), filename="r.xml", upload_time_us=0):
        timestamp = format_timestamp(int(event.pop("timestamp")))
        lines.append(json.dumps({"timestamp": timestamp, **event, **common}))
    return ("\n".join(lines) + "\n").encode()
