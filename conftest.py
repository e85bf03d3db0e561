"""Fixtures shared by every test directory (the real Kafka-protocol broker), and the check that
tests which start processes say so with their markers, so `make test-fast` can leave them out."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from flakehouse.client.broker import EmbeddedBroker

# Audit events (PEP 578) raised whenever this process starts another one.
SPAWN_EVENTS = frozenset(
    {"subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn", "os.exec", "os.system"}
)


def pytest_configure(config: pytest.Config) -> None:
    """TLS for the whole session before any test builds a service's settings (see
    tests/credentials.py); the directory goes with the session."""
    import atexit
    import shutil
    import tempfile

    from tests import credentials

    directory = Path(tempfile.mkdtemp(prefix="flakehouse-tls-"))
    atexit.register(shutil.rmtree, directory, True)
    credentials.install(directory / "pki")


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One tansu broker on a free loopback port for the whole session; tests isolate themselves
    with their own topic prefix."""
    log = Path(tmp_path_factory.mktemp("broker")) / "tansu.log"
    with EmbeddedBroker(log_path=log) as running:
        yield running


@pytest.fixture
def topic_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


class SpawnWatch:
    """Records what the running test (its setup included) starts as a process."""

    def __init__(self) -> None:
        self.spawned: list[str] = []
        self.watching = False

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        # An audit hook must never raise: the exception would abort the spawn itself.
        if self.watching and event in SPAWN_EVENTS:
            command = args[1] if event == "subprocess.Popen" and len(args) > 1 else args
            self.spawned.append(f"{event} {command!r}"[:200])


_watch = SpawnWatch()
sys.addaudithook(_watch)  # audit hooks cannot be removed; it only records while watching


def missing_markers(item: pytest.Item, spawned: list[str]) -> list[str]:
    """The markers a test lacks: `broker` and `processes` when it uses the broker fixture,
    `processes` when it started a process (the broker fixture may already run for another)."""
    needed = set()
    if "broker" in getattr(item, "fixturenames", ()):
        needed |= {"broker", "processes"}
    if spawned:
        needed.add("processes")
    return sorted(name for name in needed if item.get_closest_marker(name) is None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    _watch.spawned.clear()
    _watch.watching = True
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    try:
        result = yield
    finally:
        _watch.watching = False
    missing = missing_markers(item, _watch.spawned)
    if missing:
        started = "; ".join(_watch.spawned[:3]) or "the broker fixture"
        pytest.fail(
            f"this test starts processes ({started}) but lacks "
            + ", ".join(f"@pytest.mark.{name}" for name in missing)
            + " (a module-level `pytestmark` is simplest): `make test-fast` would run it",
            pytrace=False,
        )
    return result


# --- a bounded exit ------------------------------------------------------------------------------
# Twice in December 2026 (CI and a local run), pytest printed "2420 passed" and then never exited:
# something left in this process (a thread, an executor, gRPC's own shutdown) kept the interpreter
# from finishing, and CI ran into its 90-minute limit. Runs with a failure exited, so did every
# smaller run, and a listing of the threads alive at the end named none that could block. Until
# the cause is found, the end of the session is bounded: if the interpreter is still here
# EXIT_GRACE_S after pytest finished, every thread's stack goes to stderr (what the next person
# needs to find the cause) and the process exits with pytest's own status.
EXIT_GRACE_S = 60.0


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    import faulthandler
    import os
    import threading
    import time

    def exit_if_stuck() -> None:
        time.sleep(EXIT_GRACE_S)
        sys.stderr.write(
            f"\nconftest: the interpreter did not exit {EXIT_GRACE_S:g}s after the session "
            "ended; the threads still running:\n"
        )
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(int(exitstatus))

    threading.Thread(target=exit_if_stuck, name="exit-watchdog", daemon=True).start()
