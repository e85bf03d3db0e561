"""Expansion of `flakehouse ingest` arguments into files, and the calls that send them."""

from __future__ import annotations

from pathlib import Path

from flakehouse.client.inputs import (
    FILES_CALL_BYTES,
    FILES_PER_CALL,
    SMALL_FILE_BYTES,
    expand_inputs,
    upload_calls,
)


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


def _calls(sizes: list[int], parallel: int) -> list[tuple[list[int], bool]]:
    files = [(Path(str(i)), size) for i, size in enumerate(sizes)]
    calls = upload_calls(files, parallel)
    assert [p for call in calls for p in call.paths] == [p for p, _ in files]  # order kept
    return [([int(p.name) for p in call.paths], call.streamed) for call in calls]


def test_small_files_share_calls_enough_to_keep_every_call_busy() -> None:
    assert _calls([100] * 10, parallel=4) == [
        ([0, 1, 2], False),
        ([3, 4, 5], False),
        ([6, 7, 8], False),
        ([9], False),
    ]
    thousand = _calls([3000] * 1000, parallel=8)
    assert len(thousand) == 16 and {len(paths) for paths, _ in thousand} == {FILES_PER_CALL, 40}
    assert _calls([100], parallel=8) == [([0], False)]


def test_a_large_file_is_a_stream_of_its_own_and_a_call_stays_under_its_bytes() -> None:
    large = SMALL_FILE_BYTES + 1
    assert _calls([100, large, 100, 100], parallel=1) == [
        ([0], False),
        ([1], True),
        ([2, 3], False),
    ]
    assert _calls([SMALL_FILE_BYTES] * 20, parallel=1) == [
        (list(range(16)), False),  # 16 x 256 KiB = FILES_CALL_BYTES
        (list(range(16, 20)), False),
    ]
    assert 16 * SMALL_FILE_BYTES == FILES_CALL_BYTES
