"""Open a report page in headless Chromium (Debian's, driven by playwright; never
``playwright install``) and collect what the browser saw: console warnings and errors, page
errors, failed and all requests, every image's load state, the title and the h2 headings."""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@dataclass
class Rendered:
    problems: list[str]
    requests: list[str]
    images: list[list]  # [src, complete, naturalWidth, naturalHeight]
    title: str
    headings: list[str]


def render(page_path: Path) -> Rendered:
    """Load ``page_path``; skips the test when playwright or Chromium is missing."""
    pw = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (scripts/test.sh installs it)")
    problems: list[str] = []
    requests: list[str] = []
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_path.as_uri(), wait_until="load")
            images = page.evaluate(
                "Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, "
                "i.naturalWidth, i.naturalHeight])")
            title = page.title()
            headings = page.evaluate(
                "Array.from(document.querySelectorAll('h2')).map(h => h.textContent)")
        finally:
            browser.close()
    return Rendered(problems, requests, images, title, headings)


class PageParser(HTMLParser):
    """What a report page holds, read without a browser: image sources, link targets,
    element ids, table cells, and anything that would load from elsewhere (``external``:
    link/iframe tags, scripts from a file (the page's one inline script is allowed) and
    any http(s) or protocol-relative attribute value)."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.ids: list[str] = []
        self.cells: list[str] = []
        self.external: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a["src"])
        if tag == "a" and "href" in a:
            self.links.append(a["href"])
        if "id" in a:
            self.ids.append(a["id"])
        if tag in ("link", "iframe") or (tag == "script" and "src" in a):
            self.external.append(tag)
        for v in a.values():
            if v and re.match(r"(https?:)?//", v):
                self.external.append(v)
        if tag in ("td", "th"):
            self._cell = []

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append("".join(self._cell).strip())
            self._cell = None


def parse(index: Path) -> PageParser:
    p = PageParser()
    p.feed(index.read_text(encoding="utf-8"))
    return p
