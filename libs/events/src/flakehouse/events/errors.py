"""The one error every parser raises for input it rejects: it names the file, the line when known,
and the reason, so that a CLI can print it as is and a service can return it as INVALID_ARGUMENT."""

from __future__ import annotations

from typing import Any


class EventError(ValueError):
    """Input that cannot become events; ``str()`` is ``FILE:LINE: reason`` or ``FILE: reason``."""

    def __init__(self, filename: str, reason: str, line: int | None = None) -> None:
        self.filename = filename
        self.reason = reason
        self.line = line
        super().__init__(self._render())

    def _render(self) -> str:
        if self.line is None:
            return f"{self.filename}: {self.reason}"
        return f"{self.filename}:{self.line}: {self.reason}"

    def __str__(self) -> str:
        return self._render()

    # Parsing may run in a process pool: the default pickling would call
    # EventError(message) and lose (or fail on) the structured attributes.
    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.filename, self.reason, self.line))
