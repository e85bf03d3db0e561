"""How a plan names its computed columns (`$0`, `$1`, …, QueryPlan.computed by position): the
query service writes these names and storage nodes read them, by this one rule."""

from __future__ import annotations

PREFIX = "$"
"""No event field starts with it, so a name that does is never a field's."""


def computed_name(index: int) -> str:
    """The name of computed column `index`."""
    return f"{PREFIX}{index}"


def is_computed(name: str) -> bool:
    """Whether `name` is meant as a computed column's rather than a field's; it may still be
    malformed (`$x`, `$01`), which `computed_index` tells."""
    return name.startswith(PREFIX)


def computed_index(name: str) -> int | None:
    """k for `$k`, written as computed_name writes it (ASCII digits, no sign, no leading zero);
    None for any other name, a field's or a malformed one."""
    digits = name[len(PREFIX) :]
    if not is_computed(name) or not (digits.isascii() and digits.isdigit()):
        return None
    if digits != "0" and digits.startswith("0"):
        return None
    return int(digits)
