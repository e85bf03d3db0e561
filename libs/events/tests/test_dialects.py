"""One realistic report per test tool (tests/dialects/*.xml, each saying at its top which tool and
version it imitates and where its shape comes from), and the exact events schema v1 makes of it."""

from __future__ import annotations

import codecs
import collections
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flakehouse.events.junit import parse_junit_all
from flakehouse.events.model import Event

DIALECTS = Path(__file__).resolve().parent / "dialects"
UPLOAD = 1_700_000_000_123_456
# What jest and Playwright put between describe titles (U+203A, single right angle quote).
ARROW = "\u203a"


def us(*args: int, tz: timedelta = timedelta(0)) -> int:
    """Microseconds of a wall-clock time in a given UTC offset, computed independently of the
    code under test."""
    moment = datetime(*args, tzinfo=UTC) - tz  # type: ignore[misc]
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def load(name: str) -> list[Event]:
    with (DIALECTS / name).open("rb") as source:
        return parse_junit_all(source, filename=name, upload_time_us=UPLOAD)


def statuses(events: list[Event]) -> dict[str, int]:
    return dict(collections.Counter(str(e["status"]) for e in events))


def by_name(events: list[Event]) -> dict[str, Event]:
    named = {str(e["name"]): e for e in events}
    assert len(named) == len(events), "names are not unique in this fixture"
    return named


def props(event: Event) -> dict[str, object]:
    return {k: v for k, v in event.items() if k.startswith("prop.")}


def test_every_fixture_is_tested_and_says_where_it_comes_from() -> None:
    fixtures = sorted(p.name for p in DIALECTS.glob("*.xml"))
    tested = {name.removeprefix("test_").replace("_", " ") for name in globals()}
    for fixture in fixtures:
        assert fixture.removesuffix(".xml").replace("_", " ") in tested, fixture
        raw = (DIALECTS / fixture).read_bytes()
        for bom, encoding in ((codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF8, "utf-8-sig")):
            if raw.startswith(bom):
                text = raw.decode(encoding)
                break
        else:
            text = raw.decode("utf-8")
        head = text[:1000]
        assert "<!-- Imitates " in head and "Shape from " in head, fixture


def test_surefire() -> None:
    events = load("surefire.xml")
    assert statuses(events) == {"passed": 4, "failed": 1, "error": 1, "skipped": 1}
    suite = "com.acme.billing.InvoiceServiceTest"
    assert all(e["suite"] == suite and e["classname"] == suite for e in events)
    cases = by_name(events)
    classpath = str(cases["createsInvoice"]["prop.java.class.path"])
    # Surefire writes no timestamp: the upload's time. Blank properties (user.variant, and
    # line.separator, whose value is a newline) are dropped.
    assert cases["createsInvoice"] == {
        "timestamp": UPLOAD,
        "suite": suite,
        "classname": suite,
        "name": "createsInvoice",
        "status": "passed",
        "duration": 0.412,
        "retries": 0,
        "flaky": False,
        "prop.java.runtime.name": "OpenJDK Runtime Environment",
        "prop.java.vm.version": "17.0.9+9",
        "prop.surefire.rerunFailingTestsCount": "2",
        "prop.user.timezone": "Etc/UTC",
        "prop.java.class.path": classpath,
        "prop.os.name": "Linux",
    }
    assert classpath.endswith("junit-jupiter-api-5.10.1.jar")
    # Passed on the third run: two flaky elements, whose stack and output describe the earlier
    # runs and are not copied to the case; the case's own system-out is.
    flaky = cases["sendsEmail"]
    assert (flaky["status"], flaky["retries"], flaky["flaky"]) == ("passed", 2, True)
    assert flaky["stdout"] == "12:01:04.870 [main] INFO  c.a.b.MailGateway - sent invoice 4711"
    assert "message" not in flaky and "stack" not in flaky and "stderr" not in flaky
    # Failed every rerun: the reruns count, the case is not flaky.
    failed = cases["rejectsNegativeAmount"]
    assert (failed["status"], failed["retries"], failed["flaky"]) == ("failed", 2, False)
    assert failed["message"] == (
        "Expected IllegalArgumentException to be thrown, but nothing was thrown."
    )
    assert failed["type"] == "org.opentest4j.AssertionFailedError"
    assert str(failed["stack"]).startswith("org.opentest4j.AssertionFailedError: Expected")
    assert str(failed["stack"]).endswith("(InvoiceServiceTest.java:102)")
    assert failed["stdout"] == "first attempt output"
    error = cases["loadsLegacyInvoices"]
    assert error["status"] == "error" and error["duration"] == 2.184
    assert error["message"] == 'Table "LEGACY_INVOICE" not found'
    assert error["type"] == "org.h2.jdbc.JdbcSQLSyntaxErrorException"
    skipped = cases["exportsToSap"]
    assert skipped["status"] == "skipped" and skipped["duration"] == 0.0
    assert skipped["message"] == (
        "public void com.acme.billing.InvoiceServiceTest.exportsToSap() is @Disabled"
    )
    assert "type" not in skipped and "stack" not in skipped


def test_failsafe() -> None:
    events = load("failsafe.xml")
    assert statuses(events) == {"passed": 3, "failed": 1}
    cases = by_name(events)
    # Surefire/Failsafe 2.x wrote times with a thousands separator.
    assert cases["placesOrderEndToEnd"]["duration"] == 1204.117
    assert cases["listsOrders"]["duration"] == 19.006
    flaky = cases["cancelsOrder"]
    assert (flaky["status"], flaky["retries"], flaky["flaky"]) == ("passed", 2, True)
    assert flaky["duration"] == 61.09
    refund = cases["refundsOrder"]
    assert (refund["status"], refund["retries"], refund["flaky"]) == ("failed", 3, False)
    assert "duration" not in refund  # no time attribute at all
    assert refund["message"] == "expected:<200> but was:<503>"
    assert refund["type"] == "java.lang.AssertionError"
    assert str(refund["stack"]).startswith("java.lang.AssertionError: expected:<200> but was:<503>")
    assert all(e["prop.failsafe.rerunFailingTestsCount"] == "3" for e in events)
    assert all(e["prop.it.database.url"].startswith("jdbc:postgresql://") for e in events)  # type: ignore[union-attr]


def test_gradle() -> None:
    events = load("gradle.xml")
    assert statuses(events) == {"passed": 4, "failed": 1, "skipped": 1}
    # Gradle's timestamp has no zone: UTC.
    assert {e["timestamp"] for e in events} == {us(2024, 3, 12, 9, 14, 3)}
    assert {e["hostname"] for e in events} == {"fv-az1234-567"}
    assert {e["suite"] for e in events} == {"org.example.cart.CartControllerTest"}
    cases = by_name(events)
    assert cases["[1] quantity=0"]["duration"] == 0.012
    # mergeReruns: a test that passed on retry has a flakyFailure; one that never passed has
    # its failure and a rerunFailure.
    flaky = cases["checksOutWithCoupon()"]
    assert (flaky["status"], flaky["retries"], flaky["flaky"]) == ("passed", 1, True)
    assert flaky["stdout"] == (
        "2024-03-12T09:14:04.690Z  INFO 4711 --- [    Test worker] o.e.cart.CartController : "
        "checkout 10"
    )
    assert "stderr" not in flaky  # an empty CDATA is no output
    failed = cases["appliesTax()"]
    assert (failed["status"], failed["retries"], failed["flaky"]) == ("failed", 1, False)
    assert failed["message"] == (
        "org.opentest4j.AssertionFailedError: expected: <19.99> but was: <21.99>"
    )
    assert failed["type"] == "org.opentest4j.AssertionFailedError"
    skipped = cases["exportsPdf()"]
    assert skipped["status"] == "skipped"
    assert skipped["message"] == "Assumption failed: assumption is not true"
    assert skipped["type"] == "org.opentest4j.TestAbortedException"
    # The suite's own system-out (Spring's banner) stays with the suite.
    assert all("stdout" not in e for e in events if e["name"] != "checksOutWithCoupon()")
    assert all(not props(e) for e in events)


def test_ant() -> None:
    events = load("ant.xml")
    assert statuses(events) == {"passed": 4, "failed": 1, "error": 1, "skipped": 1}
    assert [e["suite"] for e in events] == ["StringUtilsTest"] * 5 + ["DateUtilsTest"] * 2
    assert {e["hostname"] for e in events} == {"build-07"}
    cases = by_name(events)
    assert cases["testSplit"]["timestamp"] == us(2015, 3, 4, 10, 11, 12)
    assert cases["testParse"]["timestamp"] == us(2015, 3, 4, 10, 11, 13)
    assert cases["testParse"]["classname"] == "org.example.util.DateUtilsTest"
    assert cases["testSplit"]["message"] == "expected:<[3]> but was:<[2]>"
    assert cases["testSplit"]["type"] == "junit.framework.AssertionFailedError"
    npe = cases["testReverse"]
    assert npe["status"] == "error" and "message" not in npe
    assert npe["type"] == "java.lang.NullPointerException"
    assert str(npe["stack"]).startswith("java.lang.NullPointerException\n\tat org.example")
    assert cases["testUnicode"]["message"] == "not on this JVM"
    # Each suite has its own properties.
    assert set(props(cases["testJoin"])) == {
        "prop.ant.version",
        "prop.java.vendor",
        "prop.basedir",
        "prop.ant.project.name",
    }
    assert props(cases["testFormat"]) == {
        "prop.ant.version": "Apache Ant(TM) version 1.10.14 compiled on August 16 2023"
    }
    assert all("stdout" not in e for e in events)


def test_pytest_xunit1() -> None:
    events = load("pytest_xunit1.xml")
    assert statuses(events) == {"passed": 3, "failed": 1, "error": 1, "skipped": 2}
    assert {e["timestamp"] for e in events} == {us(2023, 6, 14, 8, 21, 45, 103877)}
    assert {e["suite"] for e in events} == {"pytest"}
    assert {e["hostname"] for e in events} == {"ci-runner-3"}
    cases = by_name(events)
    created = cases["test_create_user"]
    assert created == {
        "timestamp": us(2023, 6, 14, 8, 21, 45, 103877),
        "suite": "pytest",
        "classname": "tests.test_api.TestUsers",
        "name": "test_create_user",
        "file": "tests/test_api.py",
        "line": 17,
        "status": "passed",
        "duration": 0.231,
        "retries": 0,
        "flaky": False,
        "hostname": "ci-runner-3",
        "prop.db_queries": "3",
        "prop.ticket": "API-1203",
    }
    guest = cases["test_delete_user[guest]"]
    assert guest["status"] == "failed" and guest["line"] == 41
    assert guest["message"] == (
        "AssertionError: assert 403 == 204\n +  where 403 = <Response [403]>.status_code"
    )
    assert "type" not in guest
    assert str(guest["stack"]).endswith("tests/test_api.py:45: AssertionError")
    setup = cases["test_backup"]
    assert setup["status"] == "error"
    assert setup["message"] == (
        'failed on setup with "ConnectionRefusedError: [Errno 111] Connection refused"'
    )
    assert (cases["test_replication"]["type"], cases["test_replication"]["message"]) == (
        "pytest.skip",
        "needs two nodes",
    )
    xfail = cases["test_vacuum"]
    assert (xfail["status"], xfail["type"], xfail["message"]) == (
        "skipped",
        "pytest.xfail",
        "known bug #88",
    )
    assert str(xfail["stdout"]).endswith("WARNING  db:db.py:77 vacuum took 0.9s")
    # record_property goes to one case only.
    assert not props(cases["test_migrations"])


def test_pytest_xunit2() -> None:
    events = load("pytest_xunit2.xml")
    assert statuses(events) == {"passed": 3, "failed": 1, "skipped": 1}
    # pytest >= 8 writes the local offset.
    assert {e["timestamp"] for e in events} == {
        us(2024, 5, 21, 16, 2, 11, 482310, tz=timedelta(hours=2))
    }
    assert all("file" not in e and "line" not in e for e in events)
    assert all(props(e) == {"prop.python": "3.12.3", "prop.ARCH": "x86_64"} for e in events)
    cases = by_name(events)
    latin = cases["test_parses_body[latin-1]"]
    assert latin["status"] == "failed"
    assert str(latin["message"]).startswith("UnicodeDecodeError: 'utf-8' codec can't decode")
    assert 'assert parse(SAMPLE.encode(encoding)).body == "café"' in str(latin["stack"])
    assert latin["stdout"] == "parsing 412 bytes"
    assert latin["stderr"] == "DeprecationWarning: codecs.open() is deprecated"
    assert cases["test_streaming"]["duration"] == 0.710
    assert cases["test_windows_paths"]["message"] == "Windows only"


def test_jest() -> None:
    events = load("jest.xml")
    assert statuses(events) == {"passed": 4, "failed": 1, "skipped": 1, "error": 1}
    cases = by_name(events)
    tooltip = cases[f"Button {ARROW} when disabled shows a tooltip"]
    assert tooltip["suite"] == "src/components/Button.test.tsx"
    assert tooltip["classname"] == f"Button {ARROW} when disabled shows a tooltip"
    assert tooltip["timestamp"] == us(2024, 1, 9, 14, 3, 27)
    # jest-junit writes the failure as text only: no message or type.
    assert "message" not in tooltip and "type" not in tooltip
    assert str(tooltip["stack"]).startswith("Error: expect(element).toBeVisible()")
    assert cases["Button snapshot"]["status"] == "skipped"
    assert cases["Button snapshot"]["duration"] == 0.0
    assert cases["formatMoney formats EUR"]["timestamp"] == us(2024, 1, 9, 14, 3, 28)
    broken = cases["src/api/client.test.ts"]
    assert (broken["status"], broken["classname"]) == ("error", "Test suite failed to run")
    assert str(broken["stack"]).startswith("● Test suite failed to run")


def test_go_junit_report() -> None:
    events = load("go_junit_report.xml")
    assert statuses(events) == {"passed": 4, "failed": 1, "skipped": 1, "error": 2}
    assert {e["hostname"] for e in events} == {"ci-runner-12"}
    cart = [e for e in events if e["suite"] == "github.com/acme/shop/cart"]
    assert [e["name"] for e in cart] == [
        "TestAdd",
        "TestAdd/negative_quantity",
        "TestTotal",
        "TestCheckoutIntegration",
        "TestDiscount",
    ]
    assert all(e["timestamp"] == us(2024, 2, 2, 10, 20, 30) for e in cart)
    assert all(
        props(e)
        == {"prop.go.version": "go1.22.0 linux/amd64", "prop.coverage.statements.pct": "81.30"}
        for e in cart
    )
    total = cart[2]
    assert (total["status"], total["message"], total["duration"]) == ("failed", "Failed", 0.31)
    assert total["stack"] == (
        "cart_test.go:57: Total() = 41.99, want 42.00\n"
        "    cart_test.go:58: rounding mode: half-even"
    )
    assert (cart[3]["status"], cart[3]["message"]) == ("skipped", "Skipped")
    assert cart[4]["stdout"] == "cart_test.go:95: applying 10% discount"
    cases = by_name(events)
    panic = cases["Failure"]
    assert (panic["status"], panic["message"]) == ("error", "Runtime error")
    assert panic["classname"] == "github.com/acme/shop/payment"
    assert str(panic["stack"]).startswith("panic: runtime error: invalid memory address")
    assert panic["timestamp"] == us(2024, 2, 2, 10, 20, 31)
    build = cases["[build failed]"]
    assert (build["status"], build["message"]) == ("error", "Build error")
    assert build["stack"] == "search/index.go:14:2: undefined: bleve.NewIndexMapping"
    assert props(build) == {}


def test_gotestsum() -> None:
    events = load("gotestsum.xml")
    assert statuses(events) == {"passed": 4, "failed": 2, "skipped": 1}
    # RFC 3339 with the runner's offset.
    assert {e["timestamp"] for e in events} == {us(2024, 10, 21, 9, 16, 20)}
    assert all(e["prop.go.version"] == "go1.23.2 darwin/arm64" for e in events)
    watch = [e for e in events if e["name"] == "TestWatch"]
    # --rerun-fails writes the failed run and the passing rerun as two cases of the same name;
    # schema v1 keeps both as they are (retries/flaky come only from Surefire-style elements).
    assert [(e["status"], e["retries"], e["flaky"]) for e in watch] == [
        ("failed", 0, False),
        ("passed", 0, False),
    ]
    assert watch[0]["message"] == "Failed" and "type" not in watch[0]  # type=""
    assert watch[0]["stack"] == (
        "=== RUN   TestWatch\n    store_test.go:88: timed out after 1.5s waiting for event\n"
        "--- FAIL: TestWatch (1.50s)"
    )
    assert (watch[0]["duration"], watch[1]["duration"]) == (1.5, 1.21)
    skipped = next(e for e in events if e["status"] == "skipped")
    # The skip message is the test's whole output, kept verbatim.
    assert skipped["message"] == (
        "=== RUN   TestSnapshot/empty\n    store_test.go:120: not supported on darwin\n"
        "--- SKIP: TestSnapshot/empty (0.00s)\n"
    )
    main = next(e for e in events if e["name"] == "TestMain")
    assert main["suite"] == "gotest.tools/example/cmd/storectl"
    assert "classname" not in main  # classname=""
    assert str(main["stack"]).startswith("flag provided but not defined: -test.paniconexit0")


def test_phpunit() -> None:
    events = load("phpunit.xml")
    assert statuses(events) == {"passed": 3, "failed": 1, "skipped": 2, "error": 1}
    path = "/srv/app/tests/Unit/PriceCalculatorTest.php"
    cases = by_name(events)
    assert cases["testNetPrice"] == {
        "timestamp": UPLOAD,
        "suite": "App\\Tests\\Unit\\PriceCalculatorTest",
        "classname": "App.Tests.Unit.PriceCalculatorTest",
        "name": "testNetPrice",
        "file": path,
        "line": 18,
        "status": "passed",
        "duration": 0.012004,
        "retries": 0,
        "flaky": False,
    }
    # Data-provider cases are in a suite of their own, nested in the class's suite.
    vat = [e for e in events if str(e["name"]).startswith("testVat")]
    assert len(vat) == 3
    assert {e["suite"] for e in vat} == {"App\\Tests\\Unit\\PriceCalculatorTest::testVat"}
    assert {(e["file"], e["line"]) for e in vat} == {(path, 31)}
    failed = cases["testVat with data set #2"]
    assert failed["status"] == "failed" and "message" not in failed
    assert failed["type"] == "PHPUnit\\Framework\\ExpectationFailedException"
    assert str(failed["stack"]).startswith(
        "App\\Tests\\Unit\\PriceCalculatorTest::testVat with data set #2\n"
        "Failed asserting that 119.0 is identical to 121.0."
    )
    assert cases['testVat with data set "germany"']["status"] == "passed"
    assert cases["testCurrencyConversion"]["status"] == "skipped"
    error = cases["testTransliterates"]
    assert (error["status"], error["type"], error["line"]) == ("error", "Error", 12)
    assert error["stdout"] == 'debug: slugging "Ærøskøbing"'
    assert error["file"] == "/srv/app/tests/Unit/SlugTest.php"


def test_ctest() -> None:
    events = load("ctest.xml")
    assert statuses(events) == {"passed": 2, "failed": 2, "skipped": 2}
    assert {e["suite"] for e in events} == {"Linux-c++"}
    assert {e["hostname"] for e in events} == {"buildbot-04"}
    # CTest writes local time without a zone: taken as UTC.
    assert {e["timestamp"] for e in events} == {us(2024, 4, 2, 17, 45, 9)}
    cases = by_name(events)
    unit = cases["unit_geometry"]
    assert unit["classname"] == "unit_geometry" and unit["duration"] == 0.0213457
    assert unit["prop.cmake_labels"] == "unit;fast"
    assert str(unit["stdout"]).startswith("[==========] Running 12 tests")
    assert "stdout" not in cases["unit_mesh"]  # <system-out/>
    timeout = cases["integration_solver"]
    assert (timeout["status"], timeout["message"], timeout["duration"]) == (
        "failed",
        "Timeout",
        10.0003,
    )
    assert timeout["prop.cmake_labels"] == "integration"
    assert cases["integration_io"]["message"] == "Exception: SegFault"
    notrun = cases["gpu_kernels"]
    assert (notrun["status"], notrun["message"]) == ("skipped", "Required Files Missing")
    # status="disabled" and nothing else: skipped, without a message.
    disabled = cases["legacy_fortran"]
    assert disabled["status"] == "skipped" and "message" not in disabled


def test_bazel() -> None:
    (event,) = load("bazel.xml")
    target = "services/api/integration_test_shard_2/3"
    assert event == {
        "timestamp": UPLOAD,
        "suite": target,
        "name": target,
        "status": "error",
        "duration": 37.0,
        "message": "exited with error code 1",
        "retries": 0,
        "flaky": False,
    }


def test_bazel_gtest() -> None:
    events = load("bazel_gtest.xml")
    assert statuses(events) == {"passed": 2, "failed": 2, "skipped": 2}
    cases = {(e["classname"], e["name"]): e for e in events}
    push = cases[("RingBufferTest", "PushPop")]
    # googletest stamps every case (local time, no zone).
    assert push["timestamp"] == us(2024, 6, 3, 11, 22, 33, 105000)
    assert (push["file"], push["line"], push["suite"]) == (
        "core/ring_buffer_test.cc",
        14,
        "RingBufferTest",
    )
    wrap = cases[("RingBufferTest", "Wraparound")]
    assert wrap["status"] == "failed" and "type" not in wrap  # type=""
    assert wrap["message"] == (
        "core/ring_buffer_test.cc:35\nExpected equality of these values:\n  rb.size()\n"
        "    Which is: 7\n  8\n"
    )
    assert str(wrap["stack"]).endswith("Which is: 7\n  8")
    assert cases[("RingBufferTest", "DISABLED_Concurrent")]["status"] == "skipped"  # notrun
    assert cases[("RingBufferTest", "Capacity")]["prop.capacity"] == "1024"
    skipped = cases[("Codec/VarintTest", "RoundTrip/0")]
    assert skipped["status"] == "skipped"
    assert skipped["message"] == "core/varint_test.cc:22\nneeds 64-bit platform\n"
    # A failure followed by GTEST_SKIP: the failure decides.
    both = cases[("Codec/VarintTest", "RoundTrip/1")]
    assert both["status"] == "failed"
    assert str(both["message"]).startswith("core/varint_test.cc:25\nValue of: Decode")


def test_mocha() -> None:
    events = load("mocha.xml")
    assert statuses(events) == {"passed": 2, "failed": 2, "skipped": 1}
    assert all(e["prop.BUILD_ID"] == "4812" for e in events)
    assert all(e["file"] == "/home/ci/api/test/user.spec.js" for e in events)
    cases = by_name(events)
    dup = cases["UserService rejects duplicate emails"]
    assert (dup["suite"], dup["classname"]) == ("UserService", "rejects duplicate emails")
    assert dup["timestamp"] == us(2024, 2, 29, 23, 59, 58)
    assert (dup["message"], dup["type"]) == ("expected 201 to equal 409", "AssertionError")
    assert dup["stdout"] == "POST /users 201\nPOST /users 201"
    assert str(dup["stack"]).startswith("AssertionError: expected 201 to equal 409\n")
    timeout = cases["UserService password reset expires tokens"]
    assert timeout["suite"] == "UserService password reset"
    assert timeout["timestamp"] == us(2024, 3, 1)
    assert str(timeout["message"]).startswith("Timeout of 400ms exceeded.")
    assert timeout["stderr"] == "(node:4242) Warning: fake timers are not installed"
    assert cases["UserService password reset rate limits"]["status"] == "skipped"


def test_cypress() -> None:
    events = load("cypress.xml")
    assert statuses(events) == {"passed": 3, "failed": 1}
    assert [e["suite"] for e in events] == ["Checkout"] * 3 + ["Checkout guest"]
    # The spec file is on the empty "Root Suite", a sibling, not an enclosing suite: schema v1
    # does not guess it onto the cases.
    assert all("file" not in e for e in events)
    cases = by_name(events)
    failed = cases["Checkout pays with a saved card"]
    assert failed["classname"] == "pays with a saved card"
    assert failed["duration"] == 6.011
    assert failed["type"] == "AssertionError"
    assert str(failed["message"]).startswith("Timed out retrying after 4000ms")
    assert cases["Checkout guest asks for an email"]["timestamp"] == us(2024, 4, 18, 7, 31, 10)


def test_playwright() -> None:
    events = load("playwright.xml")
    assert statuses(events) == {"passed": 3, "failed": 1, "skipped": 1}
    assert {e["timestamp"] for e in events} == {us(2024, 7, 1, 12, 0, 0, 125000)}
    assert {e["suite"] for e in events} == {"auth/login.spec.ts"}
    assert {e["classname"] for e in events} == {"auth/login.spec.ts"}
    # One suite per project: the project is the hostname.
    chromium = {str(e["name"]): e for e in events if e["hostname"] == "chromium"}
    firefox = {str(e["name"]): e for e in events if e["hostname"] == "firefox"}
    assert len(chromium) == 3 and len(firefox) == 2
    ok = chromium[f"login {ARROW} accepts valid credentials"]
    assert props(ok) == {"prop.issue": "https://github.com/acme/web/issues/312"}
    assert ok["duration"] == 2.412
    locked = chromium[f"login {ARROW} locks the account after 5 attempts"]
    assert (locked["status"], locked["type"]) == ("failed", "FAILURE")
    assert locked["message"] == "login.spec.ts:41:7 locks the account after 5 attempts"
    assert "Timed out 5000ms waiting for expect(locator).toHaveText(expected)" in str(
        locked["stack"]
    )
    assert str(locked["stdout"]).startswith("attempt 5 submitted")
    assert str(locked["stdout"]).endswith(
        "[[ATTACHMENT|test-results/auth-login-locks-the-account-chromium/test-failed-1.png]]"
    )
    sso = chromium[f"login {ARROW} supports SSO"]
    assert sso["status"] == "skipped" and sso["prop.skip"] == "SSO sandbox is down"
    # An annotation without a description has an empty value: dropped like any blank property.
    assert props(firefox[f"login {ARROW} shows the password hint"]) == {}


def test_kotest() -> None:
    events = load("kotest.xml")
    # kotest writes ignored tests without a <skipped> child, so nothing in the file tells
    # "format -- keeps comments" from a pass (its suite's skipped="1" cannot say which).
    assert statuses(events) == {"passed": 3, "failed": 1, "error": 1}
    assert {e["timestamp"] for e in events} == {us(2024, 8, 19, 15, 42, 10)}
    assert {e["hostname"] for e in events} == {"mbp-anna"}
    cases = by_name(events)
    failed = cases["parse -- rejects a dangling comma"]
    assert failed["classname"] == "com.acme.kotlin.ParserSpec"
    assert "message" not in failed
    assert failed["type"] == "io.kotest.assertions.AssertionFailedError"
    assert failed["stack"] == "expected:<ParseError(line=1, col=9)> but was:<Success(value=[1, 2])>"
    oom = cases["parse -- handles 1 MiB strings"]
    assert (oom["status"], oom["type"], oom["stack"]) == (
        "error",
        "java.lang.OutOfMemoryError",
        "Java heap space",
    )
    assert cases["format -- keeps comments"]["status"] == "passed"


def test_scalatest() -> None:
    events = load("scalatest.xml")
    assert statuses(events) == {"passed": 2, "failed": 1, "skipped": 1}
    assert {e["timestamp"] for e in events} == {us(2023, 11, 2, 9, 0, 41)}
    assert all(
        props(e) == {"prop.java.vm.version": "21.0.1+12-LTS", "prop.scala.version": "2.13.12"}
        for e in events
    )
    cases = by_name(events)
    failed = cases["A Stack should report its size"]
    assert (failed["message"], failed["type"]) == (
        "2 did not equal 3",
        "org.scalatest.exceptions.TestFailedException",
    )
    assert str(failed["stack"]).endswith("(StackSpec.scala:27)")
    assert cases["A Stack should be thread safe"]["status"] == "skipped"
    assert all("stdout" not in e for e in events)


def test_dotnet_junit_logger() -> None:
    raw = (DIALECTS / "dotnet_junit_logger.xml").read_bytes()
    assert raw.startswith(codecs.BOM_UTF8) and b"\r\n" in raw
    events = load("dotnet_junit_logger.xml")
    assert statuses(events) == {"passed": 2, "failed": 2, "skipped": 1}
    # The logger's "2023-09-01T 23:56:54Z" (a blank after the T).
    assert {e["timestamp"] for e in events} == {us(2023, 9, 1, 23, 56, 54)}
    assert {e["hostname"] for e in events} == {"executor://xunit/VsTestRunner2/netcoreapp"}
    cases = by_name(events)
    assert cases["Billing.Tests.InvoiceTests.Total_IsSumOfLines(lines: 0)"]["duration"] == 1e-07
    vat = cases["Billing.Tests.InvoiceTests.Vat_IsRounded"]
    # Character references keep the CR LF in the attribute; the text's line ends are LF.
    assert vat["message"] == "Assert.Equal() Failure\r\nExpected: 19.00\r\nActual:   18.99"
    assert vat["type"] == "failure"
    assert vat["stack"] == (
        "at Billing.Tests.InvoiceTests.Vat_IsRounded() in "
        "C:\\agent\\_work\\1\\s\\Billing.Tests\\InvoiceTests.cs:line 40"
    )
    assert vat["file"] == (
        "C:\\agent\\_work\\1\\s\\Billing.Tests\\bin\\Release\\net8.0\\Billing.Tests.dll"
    )
    assert cases["Billing.Tests.ExportTests.Pdf_Renders"]["message"] == "Needs libgdiplus"


def test_pester() -> None:
    raw = (DIALECTS / "pester.xml").read_bytes()
    assert raw.startswith(codecs.BOM_UTF16_LE)
    events = load("pester.xml")
    # NotRun without a child element is skipped, like CTest's notrun.
    assert statuses(events) == {"passed": 1, "failed": 1, "skipped": 2}
    suite = "C:\\build\\Deploy\\tests\\Get-Größe.Tests.ps1"
    assert {e["suite"] for e in events} == {suite}
    assert {e["classname"] for e in events} == {suite}
    assert {e["hostname"] for e in events} == {"BUILD-AGENT-07"}
    assert props(events[0]) == {
        "prop.os-version": "10.0.20348",
        "prop.platform": "Microsoft Windows Server 2022 Datacenter",
        "prop.user": "svc-build",
        "prop.user-domain": "CORP",
        "prop.junit-version": "4",
    }
    cases = by_name(events)
    assert cases["Get-Größe.returns bytes for a file"]["status"] == "passed"
    failed = cases["Get-Größe.fails for a missing path"]
    assert failed["message"] == (
        "Expected an exception with message 'Pfad nicht gefunden' to be thrown, "
        "but no exception was thrown."
    )
    assert "Get-Größe.Tests.ps1:12" in str(failed["stack"])
    assert cases["Get-Größe.works on Linux"]["status"] == "skipped"


@pytest.mark.parametrize(
    ("encoding", "bom", "declared"),
    [
        ("utf-8", b"", "UTF-8"),
        ("utf-8", codecs.BOM_UTF8, "UTF-8"),
        ("utf-16-le", codecs.BOM_UTF16_LE, "UTF-16"),
        ("utf-16-be", codecs.BOM_UTF16_BE, "UTF-16"),
        ("iso-8859-1", b"", "ISO-8859-1"),
        ("cp1252", b"", "windows-1252"),
    ],
)
def test_the_same_report_in_other_encodings(encoding: str, bom: bytes, declared: str) -> None:
    # The Pester report as other writers on Windows agents save it: the events do not change.
    text = (DIALECTS / "pester.xml").read_bytes().decode("utf-16")
    text = text.replace('encoding="utf-16"', f'encoding="{declared}"', 1)
    data = bom + text.encode(encoding)
    if encoding in ("iso-8859-1", "cp1252"):
        assert "ö".encode(encoding) in data and "ö".encode() not in data
    events = parse_junit_all(io.BytesIO(data), filename="pester.xml", upload_time_us=UPLOAD)
    assert events == load("pester.xml")
