"""Reports from Windows agents (the .NET JUnit logger, Pester): byte order marks, CR LF, UTF-16,
code pages, and the exact events schema v1 makes of them."""

from __future__ import annotations

import codecs
import io

import pytest

from flakehouse.events.junit import parse_junit_all
from libs.events.tests.dialect_reports import DIALECTS, UPLOAD, by_name, load, props, statuses, us


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
