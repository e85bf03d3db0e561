"""Reports from Python, JavaScript and PHP test tools (pytest, Jest, Mocha, Cypress, Playwright,
PHPUnit) and the exact events schema v1 makes of them."""

from __future__ import annotations

from datetime import timedelta

from libs.events.tests.dialect_reports import ARROW, UPLOAD, by_name, load, props, statuses, us


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
