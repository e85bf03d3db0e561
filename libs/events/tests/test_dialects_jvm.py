"""Reports from JVM test tools (Maven Surefire and Failsafe, Gradle, Ant, Kotest, ScalaTest) and
the exact events schema v1 makes of them."""

from __future__ import annotations

from libs.events.tests.dialect_reports import UPLOAD, by_name, load, props, statuses, us


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
