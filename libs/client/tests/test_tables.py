"""Tables that fit a terminal (flakehouse.client.tables): wide cells cut with an ellipsis, numbers
never; and shares as percentages."""

from __future__ import annotations

import io

import pytest

from flakehouse.client.client import QueryResult
from flakehouse.client.output import render_csv, render_json, render_table
from flakehouse.client.tables import (
    FULL,
    MIN_COLUMN,
    PIPED_CELL,
    Fit,
    fit_for,
    format_table,
    percent,
)

LONG = "test_" + "x" * 267  # the 272-character test name of issue 16
HEADER = ["name", "runs", "signal"]
ROWS = [[LONG, "12345678901234", "commits"], ["short", "7", "jobs"]]
RIGHT = [False, True, False]


def test_a_long_cell_is_cut_to_the_terminal_width() -> None:
    lines = format_table(HEADER, ROWS, RIGHT, Fit(width=80))
    assert max(len(line) for line in lines) == 80
    name, runs, signal = lines[2].split()
    assert name.endswith("…") and LONG.startswith(name[:-1])
    assert runs == "12345678901234" and signal == "commits"  # the others keep all they have
    assert lines[3].split() == ["short", "7", "jobs"]


def test_narrow_columns_keep_their_width_and_the_widest_give_way_first() -> None:
    header = ["a", "b", "c"]
    rows = [["x" * 60, "y" * 30, "z" * 5]]
    [_, _, row] = format_table(header, rows, fit=Fit(width=60))
    a, b, c = row.split()
    # 60 - 2 gaps of 2 - 5 = 51 for a and b: each cut to 25 at most (the widest cap that fits).
    assert (len(a), len(b), c) == (25, 25, "zzzzz")
    assert a == "x" * 24 + "…" and b == "y" * 24 + "…"


def test_a_terminal_too_narrow_for_every_column_still_keeps_some_of_each() -> None:
    rows = [["a" * 40, "b" * 40, "c" * 40]]
    [_, _, row] = format_table(["a", "b", "c"], rows, fit=Fit(width=20))
    assert [len(cell) for cell in row.split()] == [MIN_COLUMN] * 3


def test_numbers_are_never_cut() -> None:
    rows = [["1" * 50, "name"]]
    [_, _, row] = format_table(["n", "name"], rows, [True, False], Fit(width=20, cell=10))
    assert row.split()[0] == "1" * 50


def test_without_a_terminal_cells_are_cut_at_a_length_and_the_table_is_not_squeezed() -> None:
    lines = format_table(HEADER, ROWS, RIGHT, Fit(cell=PIPED_CELL))
    assert len(lines[2].split()[0]) == PIPED_CELL
    assert max(len(line) for line in lines) == PIPED_CELL + 2 + 14 + 2 + 7


def test_full_width_cuts_nothing() -> None:
    lines = format_table(HEADER, ROWS, RIGHT, FULL)
    assert lines[2].split()[0] == LONG


def test_a_line_break_in_a_cell_does_not_break_the_row() -> None:
    lines = format_table(["message"], [["expected 1\n  got 2\tand\r"]])
    assert lines[2] == "expected 1\\n  got 2\\tand\\r"


class Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_the_fit_is_the_terminals_width_or_a_cell_length_when_piped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "91")
    assert fit_for(False, Stream(tty=True)) == Fit(width=91)
    assert fit_for(False, Stream(tty=False)) == Fit(cell=PIPED_CELL)
    assert fit_for(True, Stream(tty=True)) == FULL


@pytest.mark.parametrize(
    ("share", "shown"),
    [
        (0, "0%"),
        (0.266667, "26.7%"),
        (0.5, "50%"),
        (1, "100%"),
        (0.0002, "<0.1%"),  # flakes once in 5,000 runs: not 0 %
        (0.9996, ">99.9%"),
        (0.75, "75%"),
    ],
)
def test_percent(share: float, shown: str) -> None:
    assert percent(share) == shown


def test_only_tables_cut_and_only_named_columns_are_percentages() -> None:
    result = QueryResult(
        columns=["name", "flake_rate", "failure_rate"],
        types=["string", "float", "float"],
        rows=[[LONG, 0.333333, 0.25]],
        partial=False,
    )
    table = render_table(result, fit=Fit(width=60), shares=("flake_rate",))
    row = table.splitlines()[2].split()
    assert row[0].endswith("…") and row[1:] == ["33.3%", "0.25"]  # a SQL column: not guessed
    assert LONG in render_csv(result) and "0.333333" in render_csv(result)
    assert LONG in render_json(result) and "0.333333" in render_json(result)
