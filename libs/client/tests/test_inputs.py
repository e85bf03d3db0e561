"""Expansion of `flakehouse ingest` arguments into files."""

from __future__ import annotations

from pathlib import Path

from flakehouse.client.inputs import expand_inputs


def test_files_directories_and_globs_without_repeats(tmp_path: Path) -> None:
    (tmp_path / "reports" / "nested").mkdir(parents=True)
    a = tmp_path / "reports" / "a.xml"
    b = tmp_path / "reports" / "nested" / "b.JSONL"
    notes = tmp_path / "reports" / "notes.txt"
    for path in (a, b, notes):
        path.write_text("x")
    files, problems = expand_inputs(
        [str(a), str(tmp_path / "reports"), str(tmp_path / "**" / "*.xml")]
    )
    assert files == [a, b]
    assert problems == []


def test_arguments_that_name_nothing_are_reported(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    files, problems = expand_inputs(
        [str(tmp_path / "missing.xml"), str(tmp_path / "*.nothing"), str(tmp_path / "empty")]
    )
    assert files == []
    assert problems == [
        (str(tmp_path / "missing.xml"), "no such file or directory"),
        (str(tmp_path / "*.nothing"), "no file matches"),
        (str(tmp_path / "empty"), "no report files (*.xml, *.json, *.jsonl) in directory"),
    ]
