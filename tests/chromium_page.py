"""Open a report page in headless Chromium (Debian's, driven by playwright; never
``playwright install``) and collect what the browser saw: console warnings and errors, page
errors, failed and all requests, every image's load state, the title and the h2 headings."""

from __future__ import annotations

from dataclasses import dataclass
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
