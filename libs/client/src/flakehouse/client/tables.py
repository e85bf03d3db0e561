"""Aligned text tables as the CLI prints them: wide cells cut to fit the terminal (or to a length
when the output is not one), and shares shown as percentages."""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass
from typing import TextIO

ELLIPSIS = "…"
GAP = "  "
PIPED_CELL = 100
"""The widest cell when stdout is not a terminal: no screen to fit, but one 272-character test
name still should not make every row of a log 272 characters wide."""
MIN_COLUMN = 10
"""A column cut to fit a terminal keeps this many characters: past that, wrapping beats reading
ten columns of ellipses."""
ESCAPES = str.maketrans({"\n": "\\n", "\r": "\\r", "\t": "\\t"})


@dataclass(frozen=True)
class Fit:
    """How wide a table may be: `width`, the line width to fit in (a terminal's); `cell`, the
    widest a text cell may be. None: no bound. Numbers are never cut."""

    width: int | None = None
    cell: int | None = None


FULL = Fit()


def fit_for(full_width: bool, stream: TextIO | None = None) -> Fit:
    """The terminal's width when `stream` (stdout) is one, else cells of PIPED_CELL at most;
    no bound with --full-width."""
    stream = stream or sys.stdout
    if full_width:
        return FULL
    if stream.isatty():
        return Fit(width=shutil.get_terminal_size().columns)
    return Fit(cell=PIPED_CELL)


def add_full_width_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--full-width",
        action="store_true",
        help="tables: never cut a wide cell (by default they fit the terminal, or 100 "
        "characters a cell when not printing to one); JSON and CSV are never cut",
    )


def percent(share: float) -> str:
    """`0.266667` → `26.7%`: one decimal at most, and a share that is not 0 or 1 never shows as
    0 % or 100 % (a test that flakes once in 5,000 runs still flakes)."""
    text = f"{share * 100:.1f}".removesuffix(".0")
    if text == "0" and share > 0:
        return "<0.1%"
    if text == "100" and share < 1:
        return ">99.9%"
    return text + "%"


def cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + ELLIPSIS


def _widths(natural: list[int], cuttable: list[bool], fit: Fit) -> list[int]:
    widths = [
        min(w, fit.cell) if fit.cell is not None and c else w
        for w, c in zip(natural, cuttable, strict=True)
    ]
    if fit.width is None:
        return widths
    room = fit.width - len(GAP) * (len(widths) - 1)

    def total(cap: int) -> int:
        return sum(min(w, cap) if c else w for w, c in zip(widths, cuttable, strict=True))

    if total(max(widths, default=0)) <= room:
        return widths
    # The widest cap that fits, found by bisection: the widest columns give way first, and
    # the narrow ones keep all they have.
    low, high = MIN_COLUMN, max(widths)
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if total(middle) <= room else (low, middle - 1)
    return [min(w, low) if c else w for w, c in zip(widths, cuttable, strict=True)]


def format_table(
    header: list[str],
    rows: list[list[str]],
    right: list[bool] | None = None,
    fit: Fit = FULL,
) -> list[str]:
    """Lines of an aligned text table: the header, a rule, the rows. Columns flagged in `right`
    (numbers) are right-aligned and never cut; the others are cut with an ellipsis to `fit`.
    Line breaks and tabs inside cells show as `\\n`, `\\r`, `\\t`: a row stays one line."""
    flags = right or [False] * len(header)
    header = [h.translate(ESCAPES) for h in header]
    rows = [[v.translate(ESCAPES) for v in row] for row in rows]
    natural = [max([len(name), *(len(row[i]) for row in rows)]) for i, name in enumerate(header)]
    widths = _widths(natural, [not r for r in flags], fit)

    def line(values: list[str]) -> str:
        return GAP.join(
            cut(v, w).rjust(w) if r else cut(v, w).ljust(w)
            for v, w, r in zip(values, widths, flags, strict=True)
        ).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(row) for row in rows)]
