"""Every page is the shared layout around its own content: one current link, its own script and
title, and every asset it names served by the console itself."""

from __future__ import annotations

import re

import pytest

from flakehouse.console.pages import PAGES, STATIC, Page, render


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_a_page_is_the_layout_around_its_content(page: Page) -> None:
    html = render(page)
    assert f"<title>{page.title} · Flakehouse</title>" in html
    assert re.findall(r'<a href="([^"]+)"[^>]*aria-current="page"', html) == [page.path]
    assert 'data-testid="token-input"' in html and 'data-testid="sign-in"' in html
    assert "$" not in html.split("<body>")[0], "a placeholder left in the head"
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', html):
        assert (STATIC / asset.removeprefix("/static/")).is_file(), asset
    assert not re.search(r'(?:src|href)="(?:https?:)?//', html), "nothing from another origin"
