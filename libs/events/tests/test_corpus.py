"""Every file of the shared JUnit corpus: JUnit reports parse, the deliberately foreign ones are
rejected with a clear reason, and case counts agree with a second tool (EnricoMi's
publish-unit-test-result-action) except where schema v1 deliberately counts differently."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest

from flakehouse.events.errors import EventError
from flakehouse.events.junit import parse_junit_all
from flakehouse.events.model import FIELD_NAME, SCHEMA_V1_FIELDS, STATUSES, Event

# Vendored in the repository (tests/corpus, with its licenses) so CI never depends on a sibling
# directory; a missing corpus fails the collection instead of skipping silently.
CORPUS = Path(__file__).resolve().parents[3] / "tests" / "corpus"
UPLOAD_TIME = 1_700_000_000_000_000
assert CORPUS.is_dir(), f"JUnit corpus missing at {CORPUS}"

# Files that are not JUnit on purpose, and the words their rejection must contain.
NOT_JUNIT = {
    "dorny/dotnet-nunit.xml": ["root element is <test-run>", "NUnit"],
    "dorny/external/nunit-sample.xml": ["root element is <test-run>", "NUnit"],
    "enricomi/non-junit.xml": ["root element is <suites>", "not a JUnit XML report"],
    # Cut off in the middle of an element: expat reports the end of the file.
    "enricomi/pytest/corrupt-xml.xml": ["malformed XML", "no element found"],
}

# Where schema v1 counts differently from the second opinion, on purpose.
DIFFERENT_ON_PURPOSE = {
    # Its "runs" count every result element of a case (a case with skipped+failure+error is
    # three runs, which makes runs_succ -2); schema v1 gives each case one status, error >
    # failure > skipped, which is what its per-test "tests" counts say too.
    "enricomi/junit.multiresult.xml": "tests",
    # Its "runs" count status="disabled" cases as successes; schema v1 makes them skipped, as
    # its per-test "tests" counts do.
    "enricomi/tst/disabled.xml": "tests",
    # No testcase at all: it makes up counts from the suite's tests/failures/skipped attributes;
    # schema v1 is one event per <testcase>, so none.
    "enricomi/no-cases-but-tests.xml": "none",
}


def corpus_files() -> list[str]:
    if not CORPUS.is_dir():
        return []
    return sorted(str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*.xml"))


def parse(relative: str) -> list[Event]:
    with (CORPUS / relative).open("rb") as source:
        return parse_junit_all(source, filename=relative, upload_time_us=UPLOAD_TIME)


def test_the_corpus_is_all_there() -> None:
    files = corpus_files()
    assert len(files) >= 50
    assert set(NOT_JUNIT) <= set(files)
    assert set(DIFFERENT_ON_PURPOSE) <= set(files)


@pytest.mark.parametrize("relative", corpus_files())
def test_corpus_file(relative: str) -> None:
    if relative in NOT_JUNIT:
        with pytest.raises(EventError) as caught:
            parse(relative)
        err = caught.value
        assert err.filename == relative
        assert err.line is not None and err.line >= 1
        assert str(err).startswith(f"{relative}:{err.line}: ")
        for words in NOT_JUNIT[relative]:
            assert words in err.reason
        return
    events = parse(relative)
    for event in events:
        check_event(event)


def check_event(event: Event) -> None:
    assert type(event["timestamp"]) is int
    assert event["status"] in STATUSES
    assert type(event["retries"]) is int and event["retries"] >= 0
    assert type(event["flaky"]) is bool
    for name, value in event.items():
        assert FIELD_NAME.fullmatch(name), name
        assert name in SCHEMA_V1_FIELDS or name.startswith("prop."), name
        assert type(value) in (str, int, float, bool), (name, value)
        if isinstance(value, str):
            assert value.strip(), f"{name} is blank: blank values must be absent"


def enricomi_cases() -> list[str]:
    if not CORPUS.is_dir():
        return []
    results = sorted((CORPUS / "enricomi").rglob("*.results.json"))
    return [str(p.relative_to(CORPUS)).removesuffix(".results.json") + ".xml" for p in results]


@pytest.mark.parametrize("relative", enricomi_cases())
def test_counts_agree_with_enricomi(relative: str) -> None:
    results = CORPUS / (relative.removesuffix(".xml") + ".results.json")
    stats = json.loads(results.read_text())["stats"]
    if relative in NOT_JUNIT:
        # They reject it too, with an error and no counts.
        assert stats["errors"] and stats["tests"] == 0
        with pytest.raises(EventError):
            parse(relative)
        return
    basis = DIFFERENT_ON_PURPOSE.get(relative, "runs")
    if basis == "none":
        expected: dict[str, int] = {}
        assert stats["tests"] > 0  # they really do invent cases here
    else:
        expected = {
            "passed": stats[f"{basis}_succ"],
            "failed": stats[f"{basis}_fail"],
            "error": stats[f"{basis}_error"],
            "skipped": stats[f"{basis}_skip"],
        }
        expected = {status: n for status, n in expected.items() if n}
    got = collections.Counter(event["status"] for event in parse(relative))
    assert dict(got) == expected


def test_declared_totals_of_large_reports() -> None:
    # The root's own tests/failures/skipped attributes are a third opinion for these two.
    pulsar = collections.Counter(
        e["status"] for e in parse("dorny/external/java/pulsar-test-report.xml")
    )
    assert sum(pulsar.values()) == 808
    assert pulsar["failed"] == 1 and pulsar["skipped"] == 14 and pulsar["error"] == 0
    jest = collections.Counter(
        e["status"] for e in parse("dorny/external/jest/jest-test-results.xml")
    )
    assert sum(jest.values()) == 4239
    assert jest["failed"] == 2 and jest["error"] == 0


def test_corpus_details() -> None:
    # Suite-level system-out/err (bazel) stays with the suite, not with its cases.
    (bazel,) = parse("enricomi/bazel/suite-logs.xml")
    assert bazel["status"] == "error" and bazel["message"] == "exited with error code 1"
    assert "stdout" not in bazel and "stderr" not in bazel and "stack" not in bazel
    # Empty system-out/err elements give no field.
    (empty,) = parse("enricomi/empty-system-out-err.xml")
    assert "stdout" not in empty and "stderr" not in empty
    # jest writes classname="": blank means absent.
    assert all("classname" not in e for e in parse("enricomi/jest/jest-junit.xml"))
    # Entities in attributes and text are decoded.
    names = {e["name"] for e in parse("enricomi/with-xml-entities.xml")}
    assert 'Test with "quotes" in the test name' in names
    assert "Test with < and > in the test name" in names
    # Characters outside the BMP survive.
    (first, *_) = parse("enricomi/unsupported-unicode.xml")
    assert first["name"] == "test 1 헴䜝헱홐㣇㿷䔭𒍺𡓿𠄉㦓"
    # Properties of the root <testsuites> reach every case (xunit.xml keeps them there).
    xunit = parse("enricomi/xunit/xunit.xml")
    assert all(e["prop.result"] == "Success" for e in xunit)
    # A testcase with only @class (and @classname) and a suite chain with @file.
    php = parse("dorny/external/phpunit/phpcheckstyle-phpunit.xml")
    assert php[0]["classname"] == "CommentsTest" and php[0]["line"] == 12
    assert php[0]["suite"] == "CommentsTest"
