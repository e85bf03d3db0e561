"""The storage benchmark's generated test events (benchmarks/storage.py): columns with a CI's
shape, the same for a seed, fed both to the SegmentStore and to DuckDB."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

START_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
DAYS = 30
SEED = 20260101

STRING_FIELDS = ("branch", "classname", "hostname", "message", "name", "prop.os", "status", "suite")


@dataclass
class Events:
    """Generated events as columns. Strings are int32 codes into a sorted dictionary (code -1:
    absent); `duration` is absent where NaN; `retries` where `has_retries` is false."""

    timestamps: npt.NDArray[np.int64]
    event_ids: npt.NDArray[np.uint64]
    codes: dict[str, npt.NDArray[np.int32]]
    dictionaries: dict[str, list[str]]
    duration: npt.NDArray[np.float64]
    retries: npt.NDArray[np.int64]
    has_retries: npt.NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.timestamps)


_VERBS = ["create", "delete", "update", "list", "login", "logout", "render", "parse", "retry"]
_NOUNS = ["user", "order", "invoice", "session", "cache", "timeout", "report", "token", "upload"]
_AREAS = ["payments", "search", "auth", "billing", "catalog", "checkout", "ui", "api", "infra"]


def _encode(strings: Sequence[str], picks: npt.NDArray[Any]) -> tuple[npt.NDArray[Any], list[str]]:
    """Codes into the sorted dictionary of `strings` for `picks` (indexes into `strings`)."""
    dictionary = sorted(set(strings))
    position = {s: i for i, s in enumerate(dictionary)}
    remap = np.array([position[s] for s in strings], dtype=np.int32)
    return remap[picks], dictionary


def generate(n: int, seed: int = SEED) -> Events:
    """Test events with a CI's shape: hundreds of suites, thousands of classes, tens of thousands
    of tests run with Zipf-like frequency, a few percent failures, errors and skips (more for
    flaky tests), lognormal durations, timestamps over 30 days in arrival order, and sparse
    fields: `prop.os` on ~30 % of rows, `retries` on ~3 %, `message` on failures and errors."""
    rng = np.random.default_rng(seed)
    n_suites, n_classes, n_tests = 300, 6_000, 40_000
    suites = [f"{_AREAS[i % len(_AREAS)]}-suite-{i:03d}" for i in range(n_suites)]
    class_suite = rng.integers(0, n_suites, n_classes)
    classes = [
        f"com.acme.{_AREAS[int(class_suite[i]) % len(_AREAS)]}.Module{i % 97}.Case{i}Test"
        for i in range(n_classes)
    ]
    test_class = rng.integers(0, n_classes, n_tests)
    tests = [
        f"test_{_VERBS[i % len(_VERBS)]}_{_NOUNS[(i // len(_VERBS)) % len(_NOUNS)]}_{i}"
        for i in range(n_tests)
    ]
    weights = 1.0 / np.arange(1, n_tests + 1) ** 0.6
    test = rng.choice(n_tests, size=n, p=weights / weights.sum())
    cls = test_class[test]

    flaky_test = rng.random(n_tests) < 0.05
    p_fail = np.where(flaky_test, 0.15, 0.015)[test]
    u = rng.random(n)
    status = np.zeros(n, dtype=np.int64)  # passed
    status[u < p_fail + 0.005] = 2  # error
    status[u < p_fail] = 1  # failed
    status[u > 0.985] = 3  # skipped
    status_codes, status_dict = _encode(["passed", "failed", "error", "skipped"], status)

    base = rng.lognormal(-2.5, 1.6, n_tests)
    duration = np.round(base[test] * rng.lognormal(0.0, 0.35, n), 3)
    duration[status == 3] = 0.0
    duration[rng.random(n) < 0.002] = np.nan  # time="" in the report: absent

    hosts = [f"ci-runner-{i:02d}" for i in range(64)]
    branches = ["main", *(f"feature/{_NOUNS[i % len(_NOUNS)]}-{i}" for i in range(200))]
    branch = np.where(rng.random(n) < 0.6, 0, rng.integers(1, len(branches), n))
    os_names = ["linux", "macos", "windows"]
    os_pick = rng.choice(3, size=n, p=[0.6, 0.15, 0.25])
    os_codes, os_dict = _encode(os_names, os_pick)
    os_codes[rng.random(n) >= 0.3] = -1

    messages = [
        f"AssertionError: expected {i % 50} but got {i // 50}" if i % 3 else f"Timeout after {i}s"
        for i in range(2_000)
    ]
    msg_codes, msg_dict = _encode(messages, rng.integers(0, len(messages), n))
    msg_codes[(status != 1) & (status != 2)] = -1

    has_retries = rng.random(n) < 0.03
    retries = np.where(has_retries, rng.integers(1, 4, n), 0)

    codes: dict[str, npt.NDArray[np.int32]] = {}
    dictionaries: dict[str, list[str]] = {}
    for field, (c, d) in {
        "suite": _encode(suites, class_suite[cls]),
        "classname": _encode(classes, cls),
        "name": _encode(tests, test),
        "status": (status_codes, status_dict),
        "hostname": _encode(hosts, rng.integers(0, len(hosts), n)),
        "branch": _encode(branches, branch),
        "prop.os": (os_codes, os_dict),
        "message": (msg_codes, msg_dict),
    }.items():
        codes[field], dictionaries[field] = c, d
    span = DAYS * 86_400 * 1_000_000
    return Events(
        timestamps=np.sort(rng.integers(START_US, START_US + span, n)),
        event_ids=rng.integers(0, 2**63, n, dtype=np.uint64),
        codes=codes,
        dictionaries=dictionaries,
        duration=duration,
        retries=retries.astype(np.int64),
        has_retries=has_retries,
    )
