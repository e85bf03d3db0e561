"""JUnit XML to events, schema v1: the mapping of each field, on small hand-written reports."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest

from flakehouse.events.errors import EventError
from flakehouse.events.junit import parse_junit, parse_junit_all
from flakehouse.events.model import Event, Limits

UPLOAD = 1_700_000_000_123_456


def us(*args: int, tz: timedelta = timedelta(0)) -> int:
    """Microseconds of a wall-clock time in a given offset, computed independently of the code
    under test."""
    moment = datetime(*args, tzinfo=UTC) - tz  # type: ignore[misc]
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def parse(xml: str | bytes, **kwargs: object) -> list[Event]:
    data = xml.encode() if isinstance(xml, str) else xml
    return parse_junit_all(io.BytesIO(data), filename="t.xml", upload_time_us=UPLOAD, **kwargs)  # type: ignore[arg-type]


def one(xml: str | bytes, **kwargs: object) -> Event:
    (event,) = parse(xml, **kwargs)
    return event


def rejected(xml: str | bytes, **kwargs: object) -> EventError:
    with pytest.raises(EventError) as caught:
        parse(xml, **kwargs)
    assert caught.value.filename == "t.xml"
    return caught.value


def test_minimal_case_has_exactly_the_schema_fields() -> None:
    event = one('<testsuite name="S"><testcase classname="C" name="n" time="0.5"/></testsuite>')
    assert event == {
        "timestamp": UPLOAD,
        "suite": "S",
        "classname": "C",
        "name": "n",
        "status": "passed",
        "duration": 0.5,
        "retries": 0,
        "flaky": False,
    }


def test_nested_suites_use_the_innermost_name() -> None:
    events = parse(
        """<testsuites name="run">
          <testsuite name="outer">
            <testsuite name="inner"><testcase name="a"/></testsuite>
            <testcase name="b"/>
            <testsuite><testcase name="c"/></testsuite>
          </testsuite>
          <testcase name="d"/>
        </testsuites>"""
    )
    suites = {e["name"]: e.get("suite") for e in events}
    # An unnamed suite has no name to give; <testsuites> is never a suite.
    assert suites == {"a": "inner", "b": "outer", "c": None, "d": None}


def test_testsuite_root() -> None:
    events = parse('<testsuite name="only"><testcase name="x"/><testcase name="y"/></testsuite>')
    assert [(e["suite"], e["name"]) for e in events] == [("only", "x"), ("only", "y")]


def test_classname_falls_back_to_class_and_file_to_the_suite() -> None:
    events = parse(
        """<testsuite file="outer.py">
          <testsuite file="inner.py">
            <testcase class="K" name="a"/>
            <testcase classname="C" class="K" file="own.py" line="7" name="b"/>
          </testsuite>
          <testsuite><testcase name="c"/></testsuite>
        </testsuite>"""
    )
    a, b, c = events
    assert a["classname"] == "K" and a["file"] == "inner.py" and "line" not in a
    assert b["classname"] == "C" and b["file"] == "own.py" and b["line"] == 7
    assert c["file"] == "outer.py"


@pytest.mark.parametrize(
    ("children", "attrs", "status"),
    [
        ("", "", "passed"),
        ("<failure/>", "", "failed"),
        ("<error/>", "", "error"),
        ("<skipped/>", "", "skipped"),
        ("", 'status="disabled"', "skipped"),
        ("", 'status="notrun"', "skipped"),
        ("", 'status="run"', "passed"),
        ("<skipped/><failure/>", "", "failed"),
        ("<failure/><error/><skipped/>", "", "error"),
        ("<failure/>", 'status="disabled"', "failed"),
    ],
)
def test_status(children: str, attrs: str, status: str) -> None:
    event = one(f'<testsuite><testcase name="t" {attrs}>{children}</testcase></testsuite>')
    assert event["status"] == status


def test_message_type_and_stack_come_from_the_deciding_element() -> None:
    event = one(
        """<testsuite><testcase name="t">
          <skipped message="skip msg" type="skip.type">skip text</skipped>
          <failure message="fail msg" type="AssertionError">
            at Foo.bar(Foo.java:1)
          </failure>
          <failure message="second failure">ignored</failure>
        </testcase></testsuite>"""
    )
    assert event["status"] == "failed"
    assert event["message"] == "fail msg"
    assert event["type"] == "AssertionError"
    assert event["stack"] == "at Foo.bar(Foo.java:1)"


def test_skipped_keeps_message_and_type_but_not_text_as_stack() -> None:
    event = one(
        '<testsuite><testcase name="t"><skipped message="why" type="pytest.skip">'
        "file.py:3: why</skipped></testcase></testsuite>"
    )
    assert event["message"] == "why" and event["type"] == "pytest.skip"
    assert "stack" not in event


def test_every_event_with_a_message_has_its_signature() -> None:
    events = parse(
        """<testsuite>
          <testcase name="a"><failure message="assert 1 == 2">trace 123</failure></testcase>
          <testcase name="b"><error message="timed out after 30s"/></testcase>
          <testcase name="c"><skipped message="needs /opt/cuda-12.1"/></testcase>
          <testcase name="d"><failure>no message, only text 42</failure></testcase>
          <testcase name="e"><skipped message="  "/></testcase>
          <testcase name="f"/>
        </testsuite>"""
    )
    assert [e.get("signature") for e in events] == [
        "assert <n> == <n>",
        "timed out after <n>s",
        "needs <path>",
        None,
        None,
        None,
    ]


def test_the_signature_is_of_the_deciding_message_as_truncated() -> None:
    event = one(
        '<testsuite><testcase name="t"><skipped message="skip 1"/>'
        f'<failure message="{"x" * 300} 12345"/></testcase></testsuite>',
        limits=Limits(max_message_chars=100),
    )
    marker = "… [truncated, 306 chars]"
    assert event["message"] == "x" * (100 - len(marker)) + marker
    assert event["signature"] == "x" * (100 - len(marker)) + "… [truncated, <n> chars]"


def test_the_signature_counts_toward_the_fields_limit() -> None:
    xml = '<testsuite><testcase name="t"><failure message="m"/></testcase></testsuite>'
    # timestamp, name, status, message, signature, retries, flaky
    assert len(one(xml, limits=Limits(max_fields_per_event=7))) == 7
    assert (
        "8 fields, more than the limit of 7"
        in rejected(xml, limits=Limits(max_fields_per_event=7), labels={"branch": "main"}).reason
    )


def test_stack_includes_cdata_and_text_after_comments() -> None:
    event = one(
        "<testsuite><testcase name='t'><error><![CDATA[a < b]]><!-- c -->\nline 2</error>"
        "</testcase></testsuite>"
    )
    assert event["stack"] == "a < b\nline 2"


def test_case_output_is_kept_and_suite_output_is_not() -> None:
    event = one(
        """<testsuite>
          <system-out>suite out</system-out>
          <testcase name="t">
            <system-out>
              case out
            </system-out>
            <system-err>case err</system-err>
          </testcase>
          <system-err>suite err</system-err>
        </testsuite>"""
    )
    assert event["stdout"] == "case out" and event["stderr"] == "case err"


def test_flaky_and_rerun_counting() -> None:
    events = parse(
        """<testsuite>
          <testcase name="flaky-passed">
            <flakyFailure message="boom" type="E"><stackTrace>trace</stackTrace>
              <system-out>rerun out</system-out></flakyFailure>
            <flakyError message="boom2"/>
          </testcase>
          <testcase name="failed-every-rerun">
            <failure message="final"/>
            <rerunFailure message="r1"/><rerunError message="r2"/>
          </testcase>
          <testcase name="failed-with-flaky"><failure/><flakyFailure/></testcase>
          <testcase name="passed-with-rerun-only"><rerunFailure/></testcase>
          <testcase name="skipped-with-flaky"><skipped/><flakyFailure/></testcase>
          <testcase name="plain"/>
        </testsuite>"""
    )
    got = {e["name"]: (e["status"], e["retries"], e["flaky"]) for e in events}
    assert got == {
        "flaky-passed": ("passed", 2, True),
        "failed-every-rerun": ("failed", 2, False),
        "failed-with-flaky": ("failed", 1, False),
        "passed-with-rerun-only": ("passed", 1, False),
        "skipped-with-flaky": ("skipped", 1, False),
        "plain": ("passed", 0, False),
    }
    flaky = events[0]
    # What is inside a flaky element describes the earlier attempt, not the case.
    assert "stdout" not in flaky and "message" not in flaky and "stack" not in flaky
    assert events[1]["message"] == "final"


def test_property_inheritance() -> None:
    events = parse(
        """<testsuites>
          <properties><property name="run" value="r"/><property name="a" value="root"/>
          </properties>
          <testsuite name="outer">
            <properties>
              <property name="a" value="outer"/><property name="b" value="outer"/>
            </properties>
            <testsuite name="inner">
              <properties><property name="b" value="inner"/><property name="c" value="inner"/>
              </properties>
              <testcase name="own">
                <properties><property name="c" value="case"/><property name="d" value="case"/>
                </properties>
              </testcase>
              <testcase name="sibling"/>
            </testsuite>
            <testcase name="in-outer"/>
          </testsuite>
        </testsuites>"""
    )
    props = {e["name"]: {k: v for k, v in e.items() if k.startswith("prop.")} for e in events}
    assert props["own"] == {
        "prop.run": "r",
        "prop.a": "outer",
        "prop.b": "inner",
        "prop.c": "case",
        "prop.d": "case",
    }
    assert props["sibling"] == {
        "prop.run": "r",
        "prop.a": "outer",
        "prop.b": "inner",
        "prop.c": "inner",
    }
    assert props["in-outer"] == {"prop.run": "r", "prop.a": "outer", "prop.b": "outer"}


def test_property_values_names_and_duplicates() -> None:
    event = one(
        """<testsuite><properties>
          <property name="text">
             line one
             line two
          </property>
          <property name="my prop!" value="sanitised"/>
          <property name="dup" value="first"/><property name="dup" value="second"/>
          <property value="no name"/>
          <property name="blank" value="  "/>
          <property name="%s" value="long"/>
        </properties><testcase name="t"/></testsuite>"""
        % ("n" * 200)
    )
    props = {k: v for k, v in event.items() if k.startswith("prop.")}
    assert props == {
        "prop.text": "line one\n             line two",
        "prop.my_prop_": "sanitised",
        "prop.dup": "second",
        "prop." + "n" * 123: "long",
    }


@pytest.mark.parametrize(
    ("time", "duration"),
    [
        ("1,234.5", 1234.5),
        ("12,345,678", 12345678.0),
        ("0,5", 0.5),
        ("0.001", 0.001),
        (" 3 ", 3.0),
        ("1e-3", 0.001),
    ],
)
def test_duration(time: str, duration: float) -> None:
    event = one(f'<testsuite><testcase name="t" time="{time}"/></testsuite>')
    assert event["duration"] == duration
    assert type(event["duration"]) is float


@pytest.mark.parametrize("time", ["", "   "])
def test_blank_duration_is_absent(time: str) -> None:
    assert "duration" not in one(f'<testsuite><testcase name="t" time="{time}"/></testsuite>')


@pytest.mark.parametrize("time", ["abc", "nan", "inf", "1.2.3", "1,2,3.4"])
def test_bad_duration_is_rejected_with_its_line(time: str) -> None:
    err = rejected(f'<testsuite>\n\n<testcase name="t" time="{time}"/></testsuite>')
    assert err.line == 3 and "time" in err.reason and time in err.reason


def test_bad_line_is_rejected() -> None:
    err = rejected('<testsuite><testcase name="t" line="twelve"/></testsuite>')
    assert err.line == 1 and "line" in err.reason


@pytest.mark.parametrize(
    ("suite_ts", "case_ts", "expected"),
    [
        ("2020-09-04T16:18:04.966371", None, us(2020, 9, 4, 16, 18, 4, 966371)),
        ("2020-09-04T16:18:04Z", None, us(2020, 9, 4, 16, 18, 4)),
        ("2020-09-04 16:18:04", None, us(2020, 9, 4, 16, 18, 4)),
        ("2021-03-07T10:36:56 UTC", None, us(2021, 3, 7, 10, 36, 56)),
        (
            "2025-11-15T11:51:49.548396-05:00",
            None,
            us(2025, 11, 15, 11, 51, 49, 548396, tz=timedelta(hours=-5)),
        ),
        ("2020-01-01T00:00:00+02:00", None, us(2020, 1, 1, tz=timedelta(hours=2))),
        ("Sat, 03 Dec 2022 23:10:07 GMT", None, us(2022, 12, 3, 23, 10, 7)),
        ("2020-01-01T00:00:00", "2021-06-01T12:00:00.5", us(2021, 6, 1, 12, 0, 0, 500000)),
        (None, None, UPLOAD),
        ("", "  ", UPLOAD),
    ],
)
def test_timestamps(suite_ts: str | None, case_ts: str | None, expected: int) -> None:
    suite = f' timestamp="{suite_ts}"' if suite_ts is not None else ""
    case = f' timestamp="{case_ts}"' if case_ts is not None else ""
    event = one(f'<testsuite{suite}><testcase name="t"{case}/></testsuite>')
    assert event["timestamp"] == expected


def test_timestamp_comes_from_the_nearest_suite_that_has_one() -> None:
    events = parse(
        """<testsuites timestamp="2019-01-01T00:00:00">
          <testsuite timestamp="2020-01-01T00:00:00">
            <testsuite><testcase name="inherits-outer"/></testsuite>
            <testsuite timestamp="2021-01-01T00:00:00"><testcase name="own-suite"/></testsuite>
          </testsuite>
          <testsuite><testcase name="root"/></testsuite>
        </testsuites>"""
    )
    got = {e["name"]: e["timestamp"] for e in events}
    assert got == {
        "inherits-outer": us(2020, 1, 1),
        "own-suite": us(2021, 1, 1),
        "root": us(2019, 1, 1),
    }


def test_bad_timestamp_is_rejected() -> None:
    err = rejected(
        '<testsuite>\n<testsuite timestamp="yesterday"><testcase/></testsuite></testsuite>'
    )
    assert err.line == 2 and "timestamp" in err.reason and "yesterday" in err.reason


def test_hostname_from_the_nearest_suite() -> None:
    events = parse(
        """<testsuites><testsuite hostname="outer">
          <testsuite hostname="inner"><testcase name="a"/></testsuite>
          <testsuite><testcase name="b"/></testsuite>
        </testsuite><testsuite><testcase name="c"/></testsuite></testsuites>"""
    )
    assert [e.get("hostname") for e in events] == ["inner", "outer", None]


def test_blank_attributes_are_absent() -> None:
    event = one(
        '<testsuite name="" hostname=" "><testcase classname="" name="" file="" line="">'
        '<failure message="" type=""/></testcase></testsuite>'
    )
    assert event == {
        "timestamp": UPLOAD,
        "status": "failed",
        "retries": 0,
        "flaky": False,
    }


def test_labels_are_added_to_every_event() -> None:
    events = parse(
        '<testsuite><testcase name="a"/><testcase name="b"/></testsuite>',
        labels={"branch": "main", "commit": "abc123"},
    )
    assert all(e["branch"] == "main" and e["commit"] == "abc123" for e in events)


def test_bad_labels_fail_before_parsing_starts() -> None:
    with pytest.raises(ValueError, match="status"):
        parse_junit(
            io.BytesIO(b"not even xml"), filename="x", upload_time_us=0, labels={"status": "x"}
        )


def test_iso_8859_1_declared_encoding() -> None:
    data = (
        '<?xml version="1.0" encoding="ISO-8859-1"?>\n'
        '<testsuite name="Müller"><testcase name="café ½"/></testsuite>'
    ).encode("iso-8859-1")
    assert b"\xfc" in data  # really Latin-1 bytes, not UTF-8
    event = one(data)
    assert event["suite"] == "Müller" and event["name"] == "café ½"


def test_windows_1252_declared_encoding() -> None:
    data = (
        '<?xml version="1.0" encoding="windows-1252"?>'
        '<testsuite><testcase name="€ quote ”"/></testsuite>'
    ).encode("cp1252")
    assert one(data)["name"] == "€ quote ”"


def test_utf8_bom() -> None:
    data = (
        b"\xef\xbb\xbf"
        + '<?xml version="1.0"?><testsuite><testcase name="é"/></testsuite>'.encode()
    )
    assert one(data)["name"] == "é"


def test_utf16_with_bom() -> None:
    data = '<?xml version="1.0" encoding="UTF-16"?><testsuite><testcase name="ü"/></testsuite>'
    encoded = data.encode("utf-16")  # with a BOM
    assert encoded[:2] in (b"\xff\xfe", b"\xfe\xff")
    assert one(encoded)["name"] == "ü"


def test_invalid_utf8_is_rejected_with_a_line() -> None:
    err = rejected(b'<testsuite>\n<testcase name="\xff\xfe"/></testsuite>')
    assert err.line == 2 and err.reason.startswith("malformed XML")


@pytest.mark.parametrize(
    ("root", "hint"),
    [
        ("test-run", "NUnit 3"),
        ("assemblies", "xUnit.net v2"),
        ("TestRun", "MSTest TRX"),
        ("html", None),
    ],
)
def test_other_roots_are_rejected_naming_the_root(root: str, hint: str | None) -> None:
    err = rejected(f'<?xml version="1.0"?>\n<{root}><testcase name="t"/></{root}>')
    assert err.line == 2
    assert f"root element is <{root}>" in err.reason
    if hint:
        assert hint in err.reason
    else:
        assert "looks like" not in err.reason


def test_malformed_xml_names_the_line() -> None:
    err = rejected('<testsuite>\n<testcase name="a"/>\n<testcase name="b">\n</testsuite>')
    assert err.line == 4 and "malformed XML" in err.reason and "mismatched tag" in err.reason
    assert str(err) == f"t.xml:4: {err.reason}"


def test_empty_file_is_rejected() -> None:
    err = rejected(b"")
    assert "no element found" in err.reason


def test_parse_junit_all_returns_nothing_from_a_file_broken_at_the_end() -> None:
    data = b'<testsuite><testcase name="a"/><testcase name="b"/><testcase name="c">'
    # The streaming form has already produced events when the error arrives...
    stream = parse_junit(io.BytesIO(data), filename="t.xml", upload_time_us=UPLOAD)
    got: list[Event] = []
    with pytest.raises(EventError):
        for event in stream:
            got.append(event)
    assert [e["name"] for e in got] == ["a", "b"]
    # ...the complete form raises before returning anything.
    with pytest.raises(EventError):
        parse_junit_all(io.BytesIO(data), filename="t.xml", upload_time_us=UPLOAD)


class CountingReader(io.BytesIO):
    """Remembers how many bytes the parser has asked for."""

    consumed = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.consumed += len(data)
        return data


def test_parsing_streams() -> None:
    cases = "".join(
        f'<testcase name="t{i}"><system-out>{"x" * 100}</system-out></testcase>'
        for i in range(20_000)
    )
    data = f"<testsuite>{cases}</testsuite>".encode()
    source = CountingReader(data)
    events = parse_junit(source, filename="t.xml", upload_time_us=UPLOAD)
    first = next(events)
    assert first["name"] == "t0"
    # The first event arrives after reading a small part of the file, not all of it.
    assert source.consumed < len(data) // 10
    assert sum(1 for _ in events) == 19_999


def test_testcase_outside_a_suite_structure_is_ignored() -> None:
    events = parse(
        """<testsuite>
          <testcase name="outer"><testcase name="nested"/></testcase>
          <properties><testcase name="in-properties"/></properties>
          <whatever><testcase name="in-unknown"/></whatever>
        </testsuite>"""
    )
    assert [e["name"] for e in events] == ["outer"]


def test_namespaced_elements_are_read_by_local_name() -> None:
    event = one(
        '<j:testsuite xmlns:j="urn:x" name="S"><j:testcase name="t"><j:failure/>'
        "</j:testcase></j:testsuite>"
    )
    assert event["suite"] == "S" and event["status"] == "failed"


def test_custom_limits_object() -> None:
    limits = Limits(max_message_chars=40)
    event = one(
        f'<testsuite><testcase><failure message="{"m" * 100}"/></testcase></testsuite>',
        limits=limits,
    )
    assert len(event["message"]) == 40  # type: ignore[arg-type]
