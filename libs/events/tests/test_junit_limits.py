"""Untrusted JUnit input: entity attacks, external references, and every size bound."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.hostile import LazyReport, huge_text, many_cases
from flakehouse.events.errors import EventError
from flakehouse.events.junit import parse_junit, parse_junit_all
from flakehouse.events.model import Event, Limits

UPLOAD = 1_700_000_000_000_000

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<testsuite><testcase name="&lol9;"><failure>&lol9;</failure></testcase></testsuite>
"""


def parse(data: bytes, limits: Limits = Limits()) -> list[Event]:  # noqa: B008
    return parse_junit_all(
        io.BytesIO(data), filename="evil.xml", upload_time_us=UPLOAD, limits=limits
    )


def rejected(data: bytes, limits: Limits = Limits()) -> EventError:  # noqa: B008
    with pytest.raises(EventError) as caught:
        parse(data, limits)
    assert caught.value.filename == "evil.xml"
    return caught.value


@pytest.mark.timeout(10)
def test_billion_laughs_is_rejected_at_the_doctype() -> None:
    err = rejected(BILLION_LAUGHS)
    # Rejected on the declaration itself (line 2), so no entity is ever defined or expanded.
    assert err.line == 2
    assert "DTD" in err.reason
    assert "lol" not in str(err)


def test_xxe_file_is_rejected_without_leaking(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    data = f"""<?xml version="1.0"?>
<!DOCTYPE testsuite [<!ENTITY xxe SYSTEM "file://{secret}">]>
<testsuite><testcase name="&xxe;"><failure>&xxe;</failure></testcase></testsuite>""".encode()
    source = io.BytesIO(data)
    stream = parse_junit(source, filename="evil.xml", upload_time_us=UPLOAD)
    with pytest.raises(EventError) as caught:
        list(stream)
    err = caught.value
    assert "DTD" in err.reason
    assert "TOP-SECRET" not in str(err) and str(secret) not in str(err)
    assert err.__cause__ is None and err.__suppress_context__


def test_external_dtd_is_rejected_without_fetching() -> None:
    # A port nobody listens on: a fetch attempt would raise a connection error instead.
    data = (
        b'<?xml version="1.0"?>\n<!DOCTYPE testsuite SYSTEM "http://127.0.0.1:9/x.dtd">\n'
        b"<testsuite/>"
    )
    err = rejected(data)
    assert "DTD" in err.reason and "127.0.0.1" not in str(err)


def test_parameter_entities_are_rejected() -> None:
    data = b'<!DOCTYPE r [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p">%p;]><testsuite/>'
    assert "DTD" in rejected(data).reason


def test_undefined_entity_without_a_dtd_is_malformed() -> None:
    err = rejected(b'<testsuite>\n<testcase name="&xxe;"/></testsuite>')
    assert err.line == 2 and "malformed XML" in err.reason and "undefined entity" in err.reason


def test_depth_limit() -> None:
    deep = b"<testsuite><testcase>" + b"<x>" * 100 + b"</x>" * 100 + b"</testcase></testsuite>"
    err = rejected(deep)
    assert "deeper than 64" in err.reason and err.line == 1
    # The bound is the Limits object's: the same file parses with room to spare.
    assert len(parse(deep, Limits(max_depth=200))) == 1


def test_depth_limit_counts_suites() -> None:
    nested = b"<testsuite>" * 6 + b"<testcase/>" + b"</testsuite>" * 6
    assert "deeper than 5" in rejected(nested, Limits(max_depth=5)).reason
    assert len(parse(nested, Limits(max_depth=7))) == 1


def test_file_size_limit() -> None:
    data = b"<testsuite>" + b'<testcase name="t"/>' * 1000 + b"</testsuite>"
    err = rejected(data, Limits(max_file_bytes=len(data) - 1))
    assert f"larger than {len(data) - 1} bytes" in err.reason
    assert len(parse(data, Limits(max_file_bytes=len(data)))) == 1000


def test_text_truncation() -> None:
    limits = Limits(max_text_chars=1000, max_message_chars=100, max_attribute_chars=200)
    out = "o" * 50_000
    data = (
        f'<testsuite><testcase name="{"n" * 500}"><error message="{"m" * 300}">{"s" * 5000}'
        f"</error><system-out>{out}</system-out><system-err>short</system-err>"
        "</testcase></testsuite>"
    ).encode()
    (event,) = parse(data, limits)
    stack, stdout, message, name = (str(event[k]) for k in ("stack", "stdout", "message", "name"))
    assert len(stack) <= 1000 and stack.startswith("s" * 900)
    assert stack.endswith("… [truncated, 5000 chars]")
    assert len(stdout) <= 1000 and stdout.endswith("… [truncated, 50000 chars]")
    assert len(message) <= 100 and message.endswith("… [truncated, 300 chars]")
    assert len(name) <= 200 and name.endswith("… [truncated, 500 chars]")
    assert event["stderr"] == "short"


def test_text_at_the_limit_is_untouched() -> None:
    limits = Limits(max_text_chars=1000)
    data = f"<testsuite><testcase><failure>  {'s' * 1000}  \n</failure></testcase></testsuite>"
    (event,) = parse(data.encode(), limits)
    assert event["stack"] == "s" * 1000


def test_truncation_counts_text_split_across_reads() -> None:
    # Longer than the parser's read size, so expat hands the text over in several pieces.
    limits = Limits(max_text_chars=100)
    data = f"<testsuite><testcase><system-out>{'x' * 300_000}</system-out></testcase></testsuite>"
    (event,) = parse(data.encode(), limits)
    assert str(event["stdout"]).endswith("[truncated, 300000 chars]")


def test_fields_per_event_limit() -> None:
    props = "".join(f'<property name="p{i}" value="v"/>' for i in range(300))
    data = f"<testsuite>\n<properties>{props}</properties>\n<testcase/></testsuite>".encode()
    err = rejected(data)
    assert "more than the limit of 256" in err.reason and err.line == 3
    (event,) = parse(data, Limits(max_fields_per_event=400))
    assert len(event) == 300 + 4  # timestamp, status, retries, flaky


def test_large_attribute_values_are_truncated_not_rejected() -> None:
    # Surefire puts the whole classpath in a property; a long one must not sink the report.
    classpath = ":".join(f"/repo/lib/jar{i}.jar" for i in range(10_000))
    data = (
        f'<testsuite><properties><property name="java.class.path" value="{classpath}"/>'
        "</properties><testcase/></testsuite>"
    ).encode()
    (event,) = parse(data)
    value = str(event["prop.java.class.path"])
    assert len(value) == Limits().max_attribute_chars
    assert value.endswith(f"[truncated, {len(classpath)} chars]")


def streamed(parts: Iterator[bytes], limits: Limits) -> list[Event]:
    """The events of a report produced while it is read. Their peak memory, bounded by the
    limits and not by the report: benchmarks/parsing.py."""
    source = LazyReport(parts)
    return list(parse_junit(source, filename="big.xml", upload_time_us=UPLOAD, limits=limits))


def test_20_mb_of_text_in_one_element_streams_to_one_event_cut_to_the_limit() -> None:
    (event,) = streamed(huge_text(), Limits(max_text_chars=1000))
    assert len(str(event["stdout"])) == 1000


def test_many_cases_stream_out_one_event_each() -> None:
    events = streamed(many_cases(), Limits())
    assert len(events) == 30_000 and events[-1]["name"] == "t29999"
