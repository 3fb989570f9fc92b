"""Driving the dashboard in a real browser: the tests and ``make dashboard-screenshots``.

Chromium is Debian's (``/usr/bin/chromium``; ``CHROMIUM`` overrides), driven by
Playwright; Playwright's own browser download is not used. The flags keep a headless
Chromium from reaching for the network at start (no sync, no component updates).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

from beam_pipelines.ops.local_services import free_port

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
#: What every page's charts are drawn in: Vega-Lite (SVG) and deck.gl (a WebGL canvas).
VEGA = '[data-testid="stVegaLiteChart"]'
DECK = '[data-testid="stDeckGlJsonChart"]'
#: url path → the title in the navigation and what the page draws when it has data (the
#: first page is at ``/``).
PAGES = {"": ("Fleet health", (VEGA,)), "map": ("Map", (DECK,)),
         "alerts": ("Alerts", (VEGA,)), "web": ("Web traffic", (VEGA, DECK)),
         "pipeline": ("Pipeline health", (VEGA,)), "live": ("Live", (VEGA,))}


class Dashboard:
    """The dashboard's own command in a child process, on a free port."""

    def __init__(self, *args: str, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = args
        self.process = None

    def start(self, timeout: float = 60.0) -> Dashboard:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "beam_pipelines.dashboard", *self.args,
             "--port", str(self.port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the dashboard stopped: {self.process.stdout.read()}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.read() == b"ok":
                        return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"the dashboard did not answer within {timeout:.0f}s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def launch(playwright):
    if not os.path.exists(CHROMIUM):
        raise RuntimeError(f"no Chromium at {CHROMIUM}: apt-get install chromium "
                           "(or set CHROMIUM)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


#: How long a page may take to draw: a loaded machine (a test suite on two cores) has taken
#: more than 30 s for a chart.
WAIT_MS = 60_000


def settle(page, timeout_ms: int = WAIT_MS) -> None:
    """Wait until the script has finished and every chart has drawn."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout_ms)
    page.wait_for_function(
        """([vegaSelector, deckSelector]) => {
            const running = document.querySelector('[data-testid="stStatusWidget"]');
            const skeleton = document.querySelector('[data-testid="stSkeleton"]');
            const vega = [...document.querySelectorAll(vegaSelector)];
            const decks = [...document.querySelectorAll(deckSelector)];
            const drawn = vega.every(v => v.querySelector('svg .mark-group, canvas'))
                && decks.every(d => d.querySelector('canvas'));
            return !running && !skeleton && drawn;
        }""", arg=[VEGA, DECK], timeout=timeout_ms)
    page.wait_for_timeout(500)  # deck.gl draws a frame after its data arrives


def go_to(page, path: str) -> None:
    """Open a page the way a person does, by its link in the navigation, and wait until
    what it draws is there."""
    title, draws = PAGES[path]
    page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    page.wait_for_function(
        "t => [...document.querySelectorAll('h1')].some(h => h.innerText.trim() === t)",
        arg=title, timeout=WAIT_MS)
    for selector in draws:
        page.wait_for_selector(selector, timeout=WAIT_MS)
    settle(page)


def screenshots(url: str, out_dir: str, width: int = 1400, height: int = 2000) -> list[str]:
    """A PNG of every page into ``out_dir``; returns their paths."""
    from playwright.sync_api import sync_playwright

    os.makedirs(out_dir, exist_ok=True)
    written = []
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(url)
        settle(page)
        for path in PAGES:
            go_to(page, path)
            target = os.path.join(out_dir, f"{path or 'fleet'}.png")
            page.screenshot(path=target)
            written.append(target)
        browser.close()
    return written


def main(argv: list[str] | None = None,
         prog: str = "python -m beam_pipelines.dashboard.browser") -> int:
    import argparse

    from beam_pipelines.errors import CommandParser

    parser = CommandParser(prog=prog, description="Screenshots of every dashboard page.")
    parser.add_argument("--lakehouse", default="lakehouse", metavar="DIR")
    parser.add_argument("--output-dir", "-o", default="docs/screenshots", metavar="DIR",
                        help="where the PNGs go (default docs/screenshots)")
    parser.add_argument("--out", dest="output_dir", help=argparse.SUPPRESS)  # former name
    args = parser.parse_args(argv)
    with Dashboard("--lakehouse", args.lakehouse) as dashboard:
        for path in screenshots(dashboard.url, args.output_dir):
            print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
