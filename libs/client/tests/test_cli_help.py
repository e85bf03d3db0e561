"""`flakehouse … --help`: every command shows examples and where its docs are, and offers only
the options that do something for it."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from flakehouse.client import cli

ROOT = Path(__file__).resolve().parents[3]


def commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every command, as its words and its parser, groups (`datasets`) included."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*path, name))


ALL = list(commands(cli._parser()))
LEAVES = [
    (words, parser)
    for words, parser in ALL
    if not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)
]


def help_of(words: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> str:
    assert cli.main([*words, "--help"]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("words", [words for words, _ in ALL], ids=" ".join)
def test_every_help_has_examples_and_docs_that_exist(
    words: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    text = help_of(words, capsys)
    examples = text.split("\nexamples:\n", 1)[1]
    example_lines = [line for line in examples.splitlines() if line.startswith("  flakehouse ")]
    assert example_lines, text
    if words:  # the examples are of this command
        assert all(line.split()[1 : 1 + len(words)] == list(words) for line in example_lines[:1])
    documents = re.findall(r"[\w/.-]+\.md", examples)
    assert documents, text
    for document in documents:
        assert (ROOT / document).is_file(), document


def test_each_example_parses(capsys: pytest.CaptureFixture[str]) -> None:
    """The examples are commands this CLI takes: a renamed option would leave a wrong one."""
    parser = cli._parser()
    for words, _ in ALL:
        text = help_of(words, capsys)
        for line in text.split("\nexamples:\n", 1)[1].splitlines():
            if not line.startswith("  flakehouse "):
                continue
            command = line.split("#")[0].split("|")[0].split(">")[0].split("&&")[0]
            argv = [a.strip("\"'") for a in re.findall(r"\"[^\"]*\"|'[^']*'|\S+", command)][1:]
            parser.parse_args(argv)  # exits 2 (SystemExit) on an option that does not exist


CALLS = {
    "ingest": {"ingest"},
    "query": {"query"},
    "flaky": {"query"},
    "status": {"replication", "ingest"},
    "datasets list": {"ingest"},
    "datasets create": {"ingest"},
    "datasets describe": {"ingest", "quota"},
    "datasets delete": {"ingest"},
    "quota get": {"quota"},
    "quota set": {"quota"},
    "usage": {"quota"},
    "tokens create": {"quota"},
    "tokens list": {"quota"},
    "tokens revoke": {"quota"},
    "links add": {"replication"},
    "links list": {"replication"},
    "links remove": {"replication"},
    "up": set(),
    "junit2json": set(),
}
"""The services each command calls: the address options it should offer."""
TABLES = {"query", "flaky", "status", "datasets list", "usage", "tokens list", "links list"}


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {o for action in parser._actions for o in action.option_strings}


@pytest.mark.parametrize("words", [words for words, _ in LEAVES], ids=" ".join)
def test_options_that_do_nothing_are_not_offered(words: tuple[str, ...]) -> None:
    parser = dict(LEAVES)[words]
    offered = options(parser)
    services = {"ingest", "query", "quota", "replication"}
    assert {o[2:] for o in offered} & services == CALLS[" ".join(words)]
    assert ("--full-width" in offered) == (" ".join(words) in TABLES)
    if CALLS[" ".join(words)]:
        assert {"--cluster", "--timeout", "--ca", "--token"} <= offered


def test_an_address_option_a_command_does_not_use_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["query", "--ingest", "127.0.0.1:1", "SELECT 1 FROM ci"]) == 2
    assert "unrecognized arguments: --ingest" in capsys.readouterr().err
