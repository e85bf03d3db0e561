"""Sizes, ages and limit numbers as people type and read them on the command line (`500MiB`,
`30d`), with 0 meaning unlimited; every parser raises ValueError naming the value and examples.

Sizes: a number, then optionally a unit (a space between is allowed). Decimal units are powers of
1000 (kB, MB, GB, TB, PB), binary ones powers of 1024 (KiB, MiB, GiB, TiB, PiB; Kubernetes' Ki,
Mi, Gi, Ti, Pi too). Units ignore case (`mib` = `MiB`; there are no bit units to confuse them
with). A bare number is bytes and must be whole; with a unit it may have a fraction and is
rounded to the nearest byte (`1.5GiB` = 1610612736). A bare `K`, `M` or `G` is refused: it is
unclear whether 1000 or 1024 is meant.

Ages: one or more whole numbers each followed by a unit, `w` (7 days), `d`, `h`, `m` (minutes)
or `s`, e.g. `30d`, `12h`, `1h30m`; lower case only, so that `M` (months?) is not read as
minutes. `0` alone is zero (unlimited)."""

from __future__ import annotations

import math
import re
from fractions import Fraction

SIZE_EXAMPLES = "e.g. 500MiB, 20GB, 1.5GiB, or bytes: 1048576; 0 for unlimited"
AGE_EXAMPLES = "e.g. 45s, 90m, 12h, 30d, 2w or 1d12h; 0 for unlimited"
MAX_UINT64 = 2**64 - 1
MAX_UINT32 = 2**32 - 1

SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "pb": 1000**5,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
    "pib": 1024**5,
    "ki": 1024,
    "mi": 1024**2,
    "gi": 1024**3,
    "ti": 1024**4,
    "pi": 1024**5,
}
AGE_UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
# Largest first: render_age writes the fewest parts; weeks are left out so that `14d` stays 14d.
RENDER_AGE_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
RENDER_SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")

_SIZE = re.compile(r"(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>[A-Za-z]*)")
_AGE_PART = re.compile(r"(\d+)([a-z])")


def parse_size(text: str) -> int:
    """Bytes from `500MiB`, `20GB`, `1.5GiB` or `1048576`."""
    value = text.strip()
    if value.startswith("-"):
        raise ValueError(f"size {text!r} is negative: {SIZE_EXAMPLES}")
    match = _SIZE.fullmatch(value)
    if not match:
        raise ValueError(f"{text!r} is not a size: {SIZE_EXAMPLES}")
    unit = match.group("unit")
    factor = SIZE_UNITS.get(unit.lower())
    if factor is None:
        raise ValueError(
            f"size {text!r} has an unknown unit {unit!r}: use B, kB, MB, GB, TB (powers of 1000)"
            f" or KiB, MiB, GiB, TiB (powers of 1024), {SIZE_EXAMPLES}"
        )
    amount = Fraction(match.group("number"))
    if not unit and amount.denominator != 1:
        raise ValueError(f"size {text!r} is a fraction of a byte: {SIZE_EXAMPLES}")
    size = round(amount * factor)
    if size > MAX_UINT64:
        raise ValueError(f"size {text!r} is larger than 16 EiB")
    return size


def parse_age(text: str) -> int:
    """Seconds from `30d`, `12h`, `90m`, `45s`, `2w`, `1d12h`, or `0`."""
    value = text.strip()
    if value == "0":
        return 0
    if value.startswith("-"):
        raise ValueError(f"age {text!r} is negative: {AGE_EXAMPLES}")
    if value.isdigit():
        raise ValueError(f"age {text!r} has no unit: {AGE_EXAMPLES}")
    parts = _AGE_PART.findall(value)
    if not value or "".join(n + u for n, u in parts) != value:
        raise ValueError(
            f"{text!r} is not an age: expected whole numbers each followed by w, d, h, m or s"
            " in lower case"
            f" ({AGE_EXAMPLES})"
        )
    unknown = sorted({u for _, u in parts if u not in AGE_UNITS})
    if unknown:
        raise ValueError(
            f"age {text!r} has an unknown unit {unknown[0]!r}: use w, d, h, m (minutes) or s"
            f" ({AGE_EXAMPLES})"
        )
    return sum(int(number) * AGE_UNITS[unit] for number, unit in parts)


def parse_rate(text: str) -> float:
    """A per-second limit, e.g. `500` or `12.5`; 0 for unlimited."""
    try:
        rate = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number: e.g. 500 or 12.5; 0 for unlimited") from None
    if not math.isfinite(rate) or rate < 0:
        raise ValueError(f"{text!r} must be a finite number >= 0 (0 for unlimited)")
    return rate


def parse_count(text: str) -> int:
    """A whole number limit, e.g. `4`; 0 for unlimited."""
    value = text.strip()
    if not value.isdigit():
        raise ValueError(f"{text!r} is not a whole number >= 0: e.g. 4; 0 for unlimited")
    count = int(value)
    if count > MAX_UINT32:
        raise ValueError(f"{text!r} is larger than {MAX_UINT32}")
    return count


def render_size(size: int | float) -> str:
    """`1.5 GiB`, `500 MiB`, `12 B`: binary units, three significant digits at most."""
    amount = float(size)
    for unit in RENDER_SIZE_UNITS:
        if abs(amount) < 1024 or unit == RENDER_SIZE_UNITS[-1]:
            break
        amount /= 1024
    if unit == "B":
        return f"{round(amount)} B"
    return f"{render_number(amount, 3)} {unit}"


def render_age(seconds: int) -> str:
    """`30d`, `12h`, `1h30m`, `0s`: exact, in the units parse_age reads back."""
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, length in RENDER_AGE_UNITS:
        count, seconds = divmod(seconds, length)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def render_number(value: float, digits: int = 3) -> str:
    """`12.5`, `100`, `1.23`, `1500000`: no exponent, trailing zeros dropped."""
    if value == int(value):
        return str(int(value))
    magnitude = math.floor(math.log10(abs(value))) + 1 if value else 1
    decimals = max(0, digits - magnitude)
    return f"{value:.{decimals}f}".rstrip("0").rstrip(".")
