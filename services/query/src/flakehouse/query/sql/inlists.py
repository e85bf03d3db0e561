"""Long IN lists of plain literals in WHERE, read without sqlglot: a script's 100,000 names took
seconds to tokenize and parse one token at a time, and are read here by regular expressions.

`lift` puts one string literal of the same length (same lines too, so every position in the
parsed tree is the original's) in place of a long list's values, and `claim` hands the values
to the In node sqlglot then parses there. When sqlglot puts no such node where a list was
lifted (the list was inside something this module's small scanner does not know, or where the
filter translation does not read it), the caller parses the original SQL instead: a lifted list
never changes what a query means.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from sqlglot import exp

from flakehouse.common.v1 import events_pb2
from flakehouse.events.values import INT64_MAX
from flakehouse.query.sql.errors import QueryError
from flakehouse.query.sql.syntax import is_field

LONG_LIST = 100
"""Values an IN list needs for it to be lifted; shorter lists are parsed as written."""

# Quotes doubled inside, no other escape in our dialect; possessive (*+) as the tokenizer reads
# it: `'it''s` is one unclosed string, not 'it' and then another.
_STRING = r"'[^']*+(?:''[^']*+)*+'"
# ASCII digits only: `\d` would take ٣ (and int() read it as 3), which sqlglot refuses.
_NUMBER = r"-?[0-9]+(?:\.[0-9]+)?"  # sqlglot reads `-5` as minus, then the literal 5
# What the scanner steps over (strings, quoted names, comments, each to its end or to the end
# of the SQL when unclosed), and the start of an IN list.
_SCAN = re.compile(
    rf"""{_STRING}|'.*|"[^"]*+(?:""[^"]*+)*+"?|`[^`]*`?|--[^\n]*|/\*.*?(?:\*/|\Z)|\bIN\s*\(""",
    re.IGNORECASE | re.DOTALL,
)
_LITERAL = rf"{_STRING}|{_NUMBER}"
_LIST = re.compile(rf"\s*(?:{_LITERAL})(?:\s*,\s*(?:{_LITERAL}))*\s*\)")
_VALUE = re.compile(rf"'([^']*+(?:''[^']*+)*+)'|({_NUMBER})")
_BLANKS = re.compile(r"\s*")
_LIFTED = "flakehouse_lifted"
"""The key of a claimed In node's `meta` holding its values."""


@dataclass(frozen=True)
class LiftedValues:
    """The values of a lifted IN list: where they are in the SQL, and the text of each as
    (string content with quotes doubled, "") or ("", number)."""

    sql: str
    start: int
    end: int
    texts: list[tuple[str, str]]

    def add_values(self, values: RepeatedCompositeFieldContainer[events_pb2.Value]) -> None:
        """Add the values to `values`, read as `syntax.literal_value` reads those literals (in
        place: a list of messages copied in would take twice as long)."""
        add = values.add
        for string, number in self.texts:
            if number:
                add().CopyFrom(self._number(number))
            else:
                add(string_value=string.replace("''", "'"))

    def _number(self, text: str) -> events_pb2.Value:
        negative = text[0] == "-"
        digits = text[1:] if negative else text
        value: int | float
        try:
            value = int(digits)
        except ValueError:  # a decimal, or more digits than int() reads
            value = float(digits)
        if isinstance(value, float):
            return events_pb2.Value(float_value=-value if negative else value)
        if value > INT64_MAX:
            # Where syntax.literal_value says it: at the digits, the literal sqlglot makes. The
            # first value so written is the one: an earlier one would have been refused.
            found = next(v for v in _VALUE.finditer(self.sql, self.start, self.end) if v[2] == text)
            raise QueryError(f"integer {digits} does not fit in 64 bits", found.start() + negative)
        return events_pb2.Value(int_value=-value if negative else value)

    def nodes(self) -> list[exp.Expr]:
        """The values as the literal nodes sqlglot would have made, positioned: for the reading
        of `timestamp IN (…)`, which takes times and their errors from nodes."""
        return [_node(found) for found in _VALUE.finditer(self.sql, self.start, self.end)]


def _node(found: re.Match[str]) -> exp.Expr:
    string, number = found.groups()
    if number is None:
        literal = exp.Literal(this=string.replace("''", "'"), is_string=True)
        literal.meta.update(start=found.start(), end=found.end() - 1)
        return literal
    negative = number[0] == "-"
    literal = exp.Literal(this=number[1:] if negative else number, is_string=False)
    literal.meta.update(start=found.start() + negative, end=found.end() - 1)
    return exp.Neg(this=literal) if negative else literal


def lift(sql: str) -> tuple[str, dict[int, LiftedValues]]:
    """`sql` with each long IN list's values replaced by one string literal as long, and the
    values, by the offset where they start."""
    pieces: list[str] = []
    lifted: dict[int, LiftedValues] = {}
    copied = at = 0
    while found := _SCAN.search(sql, at):
        at = found.end()
        if found.group()[0] in "'\"`-/":
            continue
        listed = _LIST.match(sql, at)
        if listed is None:
            continue
        start = _BLANKS.match(sql, at).end()  # type: ignore[union-attr]
        end = listed.end() - 1  # the closing parenthesis
        texts = _VALUE.findall(sql, start, end)
        if len(texts) < LONG_LIST:
            continue
        lifted[start] = LiftedValues(sql, start, end, texts)
        # Trailing blanks inside the parentheses belong to the placeholder: it ends at `)`.
        pieces += [sql[copied:start], "'", _blank(sql[start + 1 : end - 1]), "'"]
        copied = at = end
    if not lifted:
        return sql, {}
    pieces.append(sql[copied:])
    return "".join(pieces), lifted


def _blank(text: str) -> str:
    """Spaces in place of `text`, keeping its line breaks: sqlglot reports errors by line."""
    return "\n".join(" " * len(line) for line in text.split("\n"))


def claim(select: exp.Select, lifted: dict[int, LiftedValues]) -> bool:
    """Hand each lifted list to the IN whose placeholder stands where its values were; False
    when one has no such IN where the filter translation reads it (a field IN a list under
    AND, OR, NOT and parentheses of WHERE): the list was in a string, a comment, another clause
    or an expression, and the caller parses the original SQL."""
    where = select.args.get("where")
    if where is None:
        return False
    unclaimed = dict(lifted)
    for node in where.find_all(exp.In):
        if len(node.expressions) != 1 or not is_field(node.this):
            continue
        placeholder = node.expressions[0]
        start = placeholder.meta.get("start") if isinstance(placeholder, exp.Literal) else None
        if start in unclaimed and _in_filter(node, where):
            node.meta[_LIFTED] = unclaimed.pop(start)
    return not unclaimed


def _in_filter(node: exp.Expr, where: exp.Expr) -> bool:
    parent = node.parent
    while parent is not None and parent is not where:
        if not isinstance(parent, exp.And | exp.Or | exp.Not | exp.Paren):
            return False
        parent = parent.parent
    return parent is where


def lifted_values(node: exp.In) -> LiftedValues | None:
    """The values `claim` gave this IN in place of its placeholder, if any."""
    found = node.meta.get(_LIFTED) if node.meta else None
    return found if isinstance(found, LiftedValues) else None
