"""Hostile and huge JUnit reports, some produced while they are read: the inputs of the
untrusted-input tests (libs/events/tests) and of `python -m benchmarks parsing`, which times
and measures what the tests check the answers of."""

from __future__ import annotations

import io
from collections.abc import Iterator


class LazyReport(io.RawIOBase):
    """A report produced while it is read: a test or benchmark holds none of it."""

    def __init__(self, parts: Iterator[bytes], endless: bytes = b"") -> None:
        self._parts = parts
        self._endless = endless
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        want = size if size is not None and size >= 0 else 1 << 20
        while len(self._buffer) < want:
            part = next(self._parts, None) or self._endless
            if not part:
                break
            self._buffer += part
        data, self._buffer = self._buffer[:want], self._buffer[want:]
        return data


def huge_text() -> Iterator[bytes]:
    yield b"<testsuite><testcase><system-out>"
    for _ in range(400):
        yield b"y" * 50_000  # 20 MB of output in one element
    yield b"</system-out></testcase></testsuite>"


def many_cases() -> Iterator[bytes]:
    yield b"<testsuites><testsuite name='s'>"
    for i in range(30_000):
        yield b'<testcase classname="c" name="t%d" time="0.1"><failure>x</failure></testcase>' % i
    yield b"</testsuite></testsuites>"


def billion_laughs() -> bytes:
    entities = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
    ]
    return (
        '<?xml version="1.0"?>\n<!DOCTYPE testsuite [\n'
        + "\n".join(entities)
        + '\n]>\n<testsuite name="&lol9;"><testcase name="&lol9;"><failure>&lol9;</failure>'
        "</testcase></testsuite>\n"
    ).encode()


def one_big_entity() -> bytes:
    refs = "&big;" * 20_000  # 4 GB of text if it were expanded
    return (
        f'<?xml version="1.0"?>\n<!DOCTYPE testsuite [<!ENTITY big "{"A" * 200_000}">]>\n'
        f'<testsuite><testcase name="{refs}"><system-out>{refs}</system-out></testcase>'
        "</testsuite>"
    ).encode()


def huge_attribute(mib: int) -> bytes:
    return b'<testsuite>\n<testcase name="' + b"x" * (mib << 20) + b'"/></testsuite>'
