"""The error every sketch decoder raises for bytes it will not read."""

from __future__ import annotations


class SketchFormatError(ValueError):
    """Bytes that are not a sketch state of this format version (truncated, corrupt, or built
    with other parameters)."""
