"""Every report page type in headless Chromium at 1,400 px: no element wider than the
viewport, no console error or warning, no failed request, every image loaded. Pages:
training, inference prefill at the default sequence length, decode, a comparison of two
configs, a sweep and a trace-driven run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from chromium_page import CHROMIUM, CHROMIUM_ARGS

from nmsat.commands import main

pytestmark = pytest.mark.browser

WIDTH = 1400
SWEEP = Path(__file__).parent / "data" / "sweeps" / "small.toml"

# The elements wider than the viewport, or reaching past its right edge, and the page's
# own scroll width (a page that scrolls sideways has something too wide).
_LAYOUT_JS = """() => {
  const w = window.innerWidth;
  const wide = [];
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (r.width > w + 0.5 || r.right > w + 0.5) {
      wide.push(`${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}` +
                `${el.className ? '.' + String(el.className).split(' ')[0] : ''}` +
                ` ${Math.round(r.width)}px right ${Math.round(r.right)}px`);
    }
  }
  return {inner: w, scroll: document.documentElement.scrollWidth, wide: wide};
}"""


def check_page(index: Path) -> dict:
    pw = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (scripts/test.sh installs it)")
    problems: list[str] = []
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": 900})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
            page.goto(index.as_uri(), wait_until="load")
            images = page.evaluate(
                "Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, "
                "i.naturalWidth])")
            layout = page.evaluate(_LAYOUT_JS)
        finally:
            browser.close()
    return {"problems": problems, "images": images, **layout}


def _pages(root: Path) -> dict[str, Path]:
    """Build one page of each type under ``root`` (through the CLI, quietly)."""
    def run(*argv: str) -> None:
        assert main(["-q", *argv]) == 0, argv

    run("simulate", "mlp", "--config", "small", "--batch", "4", "--report", str(root / "train"))
    run("simulate", "gpt2_small", "--mode", "inference", "--batch", "1",
        "--report", str(root / "prefill"))  # prefill at the default sequence length (1,024)
    run("simulate", "gpt2_small", "--mode", "inference", "--phase", "decode", "--kv-len",
        "1024", "--batch", "1", "--report", str(root / "decode"))
    a, b = root / "a.json", root / "b.json"
    run("simulate", "cnn", "--config", "small", "--batch", "4", "--json", str(a))
    run("simulate", "cnn", "--config", "vcu1525", "--batch", "4", "--json", str(b))
    run("report", str(a), str(b), "-o", str(root / "compare"))
    store = root / "sweep.sqlite"
    # the sweep in its own process: a local Dask cluster whose dashboard port is taken by
    # another process leaks a socket (a ResourceWarning that pytest would report here)
    subprocess.run([sys.executable, "-m", "nmsat", "-q", "sweep", str(SWEEP), "-o", str(store),
                    "--workers", "1"], check=True, timeout=1200)
    run("sweep", "report", str(store), "-o", str(root / "sweep"))
    trace = root / "t.nmt"
    run("train", "--model", "mlp", "--method", "bdwp", "--nm", "2:8", "--epochs", "2",
        "--trace", str(trace))
    run("simulate", str(trace), "--config", "small", "--report", str(root / "trace"))
    return {k: root / k / "index.html"
            for k in ("train", "prefill", "decode", "compare", "sweep", "trace")}


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    pytest.importorskip("torch")  # the trace-driven page trains a model
    pytest.importorskip("distributed")  # the sweep page runs a sweep
    return _pages(tmp_path_factory.mktemp("pages"))


@pytest.mark.parametrize("kind", ["train", "prefill", "decode", "compare", "sweep", "trace"])
def test_page_fits_1400px_loads_every_image_and_logs_nothing(pages, kind):
    r = check_page(pages[kind])
    assert r["inner"] == WIDTH
    assert r["problems"] == []
    assert r["images"] and all(complete and width > 0 for _, complete, width in r["images"]), \
        [src for src, complete, width in r["images"] if not (complete and width > 0)]
    assert r["wide"] == [] and r["scroll"] <= WIDTH, (r["scroll"], r["wide"][:10])
