"""The ``signature`` of a failure message: the message without what changes from run to run, so
that ``GROUP BY signature`` gathers one failure across runs, machines and commits."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from flakehouse.events.model import Event

SIGNATURE: Final = "signature"
MESSAGE: Final = "message"
MAX_SIGNATURE_CHARS: Final = 200
# What signatures() remembers: many messages of one report are often the same (a skip reason, a
# service down), and the memory stays small (a few hundred thousand characters at most).
_REMEMBERED: Final = 1024
_REMEMBERED_CHARS: Final = 512

_SEGMENT: Final = r"[0-9A-Za-z_.~+@%$-]"
_HEX4: Final = "[0-9a-fA-F]{4}"

# A rule: (placeholder, what may not stand before its first character, what follows that).
# Every rule refuses to start after '>', the last character of every placeholder, except <n>:
# a token that only stood next to another one (`1/abc`, `5tmpab3x9k2q`) must not become one
# when a signature is normalised again. <n> keeps to the rule of the text (`a>5` is a number),
# which is the same both times: no placeholder ends in a digit, letter, '_' or '.'.
_Rule = tuple[str, str, str]
_UUID: Final[_Rule] = (
    "<uuid>",
    "0-9A-Za-z>",
    rf"[0-9a-fA-F]{{7}}-{_HEX4}-{_HEX4}-{_HEX4}-{_HEX4}[0-9a-fA-F]{{8}}(?![0-9A-Za-z])",
)
# A Windows path. Its drive can be any letter: see _compile.
_DRIVE: Final[_Rule] = ("<path>", r"0-9A-Za-z_.~:/\\>-", rf":[\\/]{_SEGMENT}*(?:[\\/]{_SEGMENT}*)*")

# The rules by the characters they start with, each group with what its second character must
# be (a quick way out for most words); within a group, in the order they are tried.
_GROUPS: Final[tuple[tuple[str, str, tuple[_Rule, ...]], ...]] = (
    (
        "0-9",
        "",
        (
            # Most numbers, at once: no other rule starts with digits followed by anything else.
            ("<n>", "0-9A-Za-z_.", r"[0-9]*(?![0-9A-Za-z_.:-])"),
            _UUID,
            # A date, with a time of day and a zone or not; a time of day with seconds.
            (
                "<time>",
                "0-9A-Za-z:.>",
                r"(?:[0-9]{3}-[0-9]{2}-[0-9]{2}"
                r"(?:[T ][0-9]{1,2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?)?"
                r"|[0-9]?:[0-9]{2}:[0-9]{2}(?:[.,][0-9]+)?)"
                r"(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?(?![0-9:])",
            ),
            ("<ip>", "0-9A-Za-z.>", r"[0-9]{0,2}(?:\.[0-9]{1,3}){3}(?::[0-9]{1,5})?(?!\.?[0-9])"),
            # Pointers and program counters are long; 0x1f3a is a number written in hex.
            ("<addr>", "0-9A-Za-z_>", r"(?<=0)[xX][0-9a-fA-F]{6,}(?![0-9A-Za-z_])"),
            ("<n>", "0-9A-Za-z_>", r"(?<=0)[xX][0-9a-fA-F]{1,5}(?![0-9A-Za-z_])"),
            # Git SHAs, digests, ids: 7 hex digits or more, of one case, with a digit and a letter.
            ("<hex>", "0-9A-Za-z>", r"(?=[0-9]*[a-f])[0-9a-f]{6,}(?![0-9A-Za-z])"),
            ("<hex>", "0-9A-Za-z>", r"(?=[0-9]*[A-F])[0-9A-F]{6,}(?![0-9A-Za-z])"),
            # Integers, decimals, versions, exponents; a unit may follow (`1532ms`).
            ("<n>", "0-9A-Za-z_.", r"[0-9]*(?:\.[0-9]+)*(?:[eE][+-]?[0-9]+)?"),
        ),
    ),
    (
        "a-f",
        "0-9a-fA-F:",
        (_UUID, ("<hex>", "0-9A-Za-z>", r"(?=[a-f]*[0-9])[0-9a-f]{6,}(?![0-9A-Za-z])"), _DRIVE),
    ),
    (
        "A-F",
        "0-9a-fA-F:",
        (_UUID, ("<hex>", "0-9A-Za-z>", r"(?=[A-F]*[0-9])[0-9A-F]{6,}(?![0-9A-Za-z])"), _DRIVE),
    ),
    # Python's tempfile (tmp and 8 of [a-z0-9_]) and mktemp(1) (tmp. and 10 letters or digits).
    # Not before '<': a name ending in '_' before a token (`tmp00x0x0x_2026-12-07`) is not
    # whole, and must not become one next to that token's placeholder on a second pass.
    (
        "t",
        "m:",
        (
            ("<tmp>", "0-9A-Za-z_>", r"mp(?:[a-z0-9_]{8}|\.[A-Za-z0-9]{10})(?![0-9A-Za-z_<])"),
            _DRIVE,
        ),
    ),
    ("g-su-zG-Z", ":", (_DRIVE,)),
    # IPv6 in brackets (two colons at least), with a port or not.
    (
        r"\[",
        "",
        (
            (
                "<ip>",
                "0-9A-Za-z.>",
                r"(?=[^\]]*:[^\]]*:)[0-9a-fA-F:.]+\](?::[0-9]{1,5})?(?!\.?[0-9])",
            ),
        ),
    ),
    # Java's Object.toString(): a class name, '@', Integer.toHexString(hashCode()).
    (
        "@",
        "",
        (("@<hex>", "", r"(?<=[0-9A-Za-z_$\]>]@)(?=[a-f]*[0-9])[0-9a-f]{1,8}(?![0-9A-Za-z_])"),),
    ),
    # A POSIX path, but not the path of a URL (after a host) nor a relative one.
    ("/", "", (("<path>", r"0-9A-Za-z_.~:/\\>-", rf"{_SEGMENT}+(?:[\\/]{_SEGMENT}*)*"),)),
)


def _compile(drives: bool) -> Callable[[str], str]:
    """The substitution of every rule in one pass. A match starts with a character that some
    rule starts with, consumed first, so that the regex engine skips in C the text that starts
    none, most of it. One look-behind then rejects the letters and digits inside words, where
    no rule starts (but the '@' of an identity hash, which follows a name), and the group of
    the character and its rules check the rest. A drive letter can be any letter and would
    make every word a candidate, so the drive rule is only in the pattern for text that has
    ``:\\`` or ``:/``."""
    placeholders = [""]
    groups = []
    start = ""
    for first, second, rules in _GROUPS:
        kept = [rule for rule in rules if drives or rule is not _DRIVE]
        if not kept:
            continue
        start += first
        alternatives = []
        for name, not_after, rest in kept:
            before = f"(?<![{not_after}].)" if not_after else ""
            # The empty group says which rule matched (Match.lastindex).
            alternatives.append(f"{before}{rest}()")
            placeholders.append(name)
        gate = f"(?=[{second}])" if second else ""
        groups.append(f"(?<=[{first}]){gate}(?:{'|'.join(alternatives)})")
    pattern = re.compile(
        f"[{start}](?<![0-9A-Za-z][^@])(?:{'|'.join(groups)})", re.ASCII | re.DOTALL
    )
    assert len(placeholders) == pattern.groups + 1
    table = tuple(placeholders)

    def placeholder(match: re.Match[str]) -> str:
        return table[match.lastindex or 0]

    sub = pattern.sub
    return lambda text: sub(placeholder, text)


_SUB: Final = _compile(drives=False)
_SUB_WITH_DRIVES: Final = _compile(drives=True)


def _normalise(text: str) -> str:
    if ":\\" in text or ":/" in text:
        return _SUB_WITH_DRIVES(text)
    return _SUB(text)


def signature(message: str) -> str:
    """The message normalised so that the same failure in different runs has the same
    signature. Whitespace runs become one space (leading and trailing ones go), then, in one
    pass from the left:

    - UUIDs → ``<uuid>``;
    - dates (``2026-12-07``), with a time of day and a zone or not (``2026-12-07T18:22:08Z``,
      ``2026-12-07 18:22:08.123+01:00``), and times with seconds (``18:22:08.123``) → ``<time>``;
    - IPv4 addresses and bracketed IPv6 ones, with their port if any → ``<ip>``;
    - ``0x`` literals of 6 hex digits or more (``at 0x7f3a2b1c4d50``) → ``<addr>``, shorter
      ones (``0x1f3a``) → ``<n>``;
    - a Java identity hash after a name (``Foo@6d06d69c``, ``[I@1b6d3586``) → ``@<hex>``;
    - runs of 7 hex digits or more, of one case, with a digit and a letter (git SHAs, digests,
      ids) → ``<hex>``;
    - temporary names of Python's tempfile (``tmpab3x9k2q``) and mktemp (``tmp.Xy12AbC9dE``)
      → ``<tmp>``;
    - absolute paths, POSIX or Windows (``/tmp/pytest-of-ci/pytest-12/test_a0/f.txt``,
      ``C:\\Temp\\x.txt``) → ``<path>``; not relative paths, nor the path of a URL;
    - numbers (``3``, ``2.5``, ``1e-05``, versions such as ``1.2.3``, the ``1532`` of
      ``1532ms``) → ``<n>``; a minus sign stays.

    Only whole tokens are replaced: digits inside a word stay (``int64``, ``test_a0``,
    ``v1.2``). A result longer than :data:`MAX_SIGNATURE_CHARS` is cut at its last space that
    fits. When its first word alone is longer, that word is cut and normalised again (the cut
    can complete a token that the rest of the word hid, the ``abc1234`` of ``abc1234z``), until
    it fits. So a signature is its own signature."""
    text = _normalised_head(message)
    if len(text) <= MAX_SIGNATURE_CHARS:
        return text
    space = text.rfind(" ", 0, MAX_SIGNATURE_CHARS + 1)
    if space > 0:
        # Normalised already: no rule matches across a space, nor sees the end of a word
        # differently from a space after it.
        return text[:space]
    while len(text) > MAX_SIGNATURE_CHARS:
        # Each round replaces a token of 2 characters or more, not a placeholder, or ends.
        text = _normalise(text[:MAX_SIGNATURE_CHARS])
    return text


def _normalised_head(message: str) -> str:
    """The message with its whitespace collapsed, normalised; or, for a long message, the start
    of that, long enough to decide the signature: a long message costs what its first few
    hundred characters cost."""
    end = 2 * MAX_SIGNATURE_CHARS
    while end < len(message):
        # The words before the last space of a piece of the message are whole. No match spans
        # a space but a date's with its time of day, which gives the same <time> as the date
        # alone: what comes before the space, normalised, starts the whole message normalised;
        # and when it is longer than a signature, the cut sees only it.
        text = " ".join(message[:end].split())
        space = text.rfind(" ")
        if space > 0:
            head = _normalise(text[:space])
            if len(head) > MAX_SIGNATURE_CHARS:
                return head
        end *= 4
    return _normalise(" ".join(message.split()))


def signatures() -> Callable[[str], str]:
    """:func:`signature`, remembering the signatures of recent short messages: one for each
    file parsed."""
    memory: dict[str, str] = {}

    def sign(message: str) -> str:
        value = memory.get(message)
        if value is None:
            value = signature(message)
            if len(message) <= _REMEMBERED_CHARS:
                if len(memory) >= _REMEMBERED:
                    memory.clear()
                memory[message] = value
        return value

    return sign


def add_signature(event: Event, sign: Callable[[str], str] = signature) -> None:
    """Gives ``event`` the signature of its ``message`` when that is a string that is not
    blank and the event has no ``signature`` of its own."""
    message = event.get(MESSAGE)
    if type(message) is str and SIGNATURE not in event:
        value = sign(message)
        if value:
            event[SIGNATURE] = value
