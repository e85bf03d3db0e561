"""Ingest benchmarks: one ingest process (2 parse workers) against the embedded broker.

- throughput: generated JUnit reports uploaded by concurrent clients; testcases per second
  until Kafka acknowledged every record, and the ingest process tree's peak memory. Then the
  same testcases as JSON lines (benchmarks/junitgen.py's json_lines), through a fresh ingest
  process.
- large: one very large report (200 MB by default) streamed in; time and peak memory.
- large_json: one JSON-lines file of a million events (about 370 MB), as issue 16 measured."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.junitgen import json_lines, report
from benchmarks.procs import peak_rss_mb
from flakehouse.client import Client
from flakehouse.client.broker import EmbeddedBroker
from flakehouse.core.errors import Unavailable
from flakehouse.core.net import free_port


class IngestProcess:
    def __init__(self, bootstrap: str, workdir: Path) -> None:
        self.port, self.metrics_port = free_port(), free_port()
        env = {
            **os.environ,
            "FLAKEHOUSE_INGEST_PORT": str(self.port),
            "FLAKEHOUSE_INGEST_METRICS_PORT": str(self.metrics_port),
            "FLAKEHOUSE_INGEST_KAFKA_BOOTSTRAP": bootstrap,
            "FLAKEHOUSE_INGEST_SPOOL_DIR": str(workdir),
            "FLAKEHOUSE_INGEST_LOG_LEVEL": "warning",
        }
        self.process = subprocess.Popen([sys.executable, "-m", "flakehouse.ingest"], env=env)
        self.client = Client(ingest=f"127.0.0.1:{self.port}", timeout_s=600)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.client.list_datasets()
                break
            except Unavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def produce_seconds(self) -> float:
        """Time spent producing to Kafka, summed over the uploads (from the service's metrics)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        for line in text.splitlines():
            if line.startswith("flakehouse_ingest_produce_duration_seconds_sum "):
                return float(line.split()[1])
        raise RuntimeError("no produce duration in the ingest metrics")

    def peak_mb(self) -> tuple[float, float]:
        """(the service process, the whole tree with its parse workers)."""
        peaks = peak_rss_mb(self.process.pid)
        return peaks.get(self.process.pid, 0.0), sum(peaks.values())

    def stop(self) -> None:
        self.client.close()
        self.process.terminate()
        self.process.wait(30)


def throughput(reports: int, cases: int, uploaders: int) -> None:
    for what, generate, suffix in [
        ("JUnit XML", report, "xml"),
        ("JSON lines", json_lines, "jsonl"),
    ]:
        payloads = [generate(seed, cases) for seed in range(reports)]
        _throughput(what, payloads, suffix, cases, uploaders)


def _throughput(what: str, payloads: list[bytes], suffix: str, cases: int, uploaders: int) -> None:
    total = len(payloads) * cases
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        ingest = IngestProcess(broker.bootstrap, Path(tmp))
        try:
            ingest.client.create_dataset("bench", 8)
            started = time.perf_counter()
            with ThreadPoolExecutor(uploaders) as pool:
                results = list(
                    pool.map(
                        lambda p: ingest.client.upload(p, dataset="bench", filename=f"r.{suffix}"),
                        payloads,
                    )
                )
            elapsed = time.perf_counter() - started
            assert sum(r.events for r in results) == total
            service, whole = ingest.peak_mb()
        finally:
            ingest.stop()
    size = sum(map(len, payloads)) / 1e6
    print(
        f"ingest throughput, {what}: {len(payloads)} reports x {cases} testcases ({size:.0f} MB), "
        f"{uploaders} concurrent uploads"
    )
    print(f"  into Kafka (acks=all)   {elapsed:7.2f} s   {total / elapsed:10.0f} testcases/s")
    print(f"  peak RSS                service {service:.0f} MB, with parse workers {whole:.0f} MB")


def large(megabytes: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        path = Path(tmp) / "large.xml"
        cases = 0
        with path.open("wb") as out:
            seed = 0
            while out.tell() < megabytes * 1_000_000:
                chunk = report(seed, 20_000)
                # One <testsuites> root: strip the inner roots' declarations and wrappers.
                body = chunk.split(b"<testsuites>", 1)[1].rsplit(b"</testsuites>", 1)[0]
                if seed == 0:
                    out.write(b'<?xml version="1.0" encoding="UTF-8"?>\n<testsuites>')
                out.write(body)
                cases += 20_000
                seed += 1
            out.write(b"</testsuites>\n")
        size = path.stat().st_size / 1e6
        elapsed, _, service, whole = _one_upload(broker, Path(tmp), path, cases)
    print(f"ingest large report: one {size:.0f} MB file, {cases} testcases")
    print(f"  into Kafka (acks=all)   {elapsed:7.2f} s   {cases / elapsed:10.0f} testcases/s")
    print(f"  peak RSS                service {service:.0f} MB, with parse workers {whole:.0f} MB")


def large_json(events: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        path = Path(tmp) / "large.jsonl"
        with path.open("wb") as out:
            for seed, start in enumerate(range(0, events, 20_000)):
                out.write(json_lines(seed, min(20_000, events - start)))
        size = path.stat().st_size / 1e6
        elapsed, produce, service, whole = _one_upload(broker, Path(tmp), path, events)
    print(f"ingest large JSON lines: one {size:.0f} MB file, {events} events")
    print(f"  into Kafka (acks=all)   {elapsed:7.2f} s   {events / elapsed:10.0f} events/s")
    print(f"  of which producing      {produce:7.2f} s (after the whole file is parsed)")
    print(f"  peak RSS                service {service:.0f} MB, with parse workers {whole:.0f} MB")


def _one_upload(
    broker: EmbeddedBroker, tmp: Path, path: Path, events: int
) -> tuple[float, float, float, float]:
    """One file through one ingest process into Kafka: seconds in all, seconds producing, and
    the peak RSS of the service and of it with its parse workers (MB)."""
    ingest = IngestProcess(broker.bootstrap, tmp)
    try:
        started = time.perf_counter()
        result = ingest.client.upload(path, dataset="large", filename=path.name)
        elapsed = time.perf_counter() - started
        assert result.events == events, (result.events, events)
        return elapsed, ingest.produce_seconds(), *ingest.peak_mb()
    finally:
        ingest.stop()
