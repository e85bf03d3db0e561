"""The names of computed columns: written and read back by one rule on both sides of the wire."""

from __future__ import annotations

import pytest

from flakehouse.kernels.computed_names import computed_index, computed_name, is_computed


@pytest.mark.parametrize("index", [0, 1, 9, 10, 123, 2**40])
def test_a_name_reads_back_as_its_index(index: int) -> None:
    name = computed_name(index)
    assert is_computed(name)
    assert computed_index(name) == index


@pytest.mark.parametrize("name", ["duration", "timestamp", "", "0", "a$1", "prop.$1"])
def test_a_field_name_is_no_computed_column(name: str) -> None:
    assert not is_computed(name)
    assert computed_index(name) is None


# int(name[1:]) reads most of these as some k (an Arabic-Indic one, a superscript two, …), or
# fails on them; computed_name writes none of them.
@pytest.mark.parametrize(
    "name", ["$", "$01", "$00", "$-1", "$+1", "$ 1", "$1 ", "$1_000", "$\u0661", "$²", "$x", "$$1"]
)
def test_a_malformed_dollar_name_is_computed_but_names_no_column(name: str) -> None:
    assert is_computed(name)
    assert computed_index(name) is None
