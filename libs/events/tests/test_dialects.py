"""One realistic report per test tool (dialects/*.xml, each saying at its top which tool and
version it imitates and where its shape comes from), each tested in a test_dialects_*.py module."""

from __future__ import annotations

import ast
import codecs
from pathlib import Path

from libs.events.tests.dialect_reports import DIALECTS


def dialect_tests() -> set[str]:
    """The functions of the dialect test modules (test_dialects*.py, beside this one)."""
    return {
        node.name
        for path in Path(__file__).resolve().parent.glob("test_dialects*.py")
        for node in ast.parse(path.read_text(encoding="utf-8")).body
        if isinstance(node, ast.FunctionDef)
    }


def test_every_fixture_is_tested_and_says_where_it_comes_from() -> None:
    fixtures = sorted(p.name for p in DIALECTS.glob("*.xml"))
    tested = {name.removeprefix("test_").replace("_", " ") for name in dialect_tests()}
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
