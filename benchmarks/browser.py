"""A slider on every page, in headless chromium, from the key press to the page's last DOM change.

    python benchmarks/browser.py [--moves 10] [--pages start,anchors] [--json docs/browser_latency.json]

One streamlit server (its own PID, ended at the end), one chromium page (1400x1000). For each page: open it, wait
until it has settled, then press the arrow key on its main slider ``--moves`` times (alternating right and left,
after one warm-up move that is not counted) and time each move from the ``keydown`` (the page's clock) to the
page's last DOM mutation once the page has settled. Settled (the rules of ``benchmarks/load_test.py``): the
server's ``script_finished`` for this run has arrived over the websocket, no running indicator, no HTTP request in
flight, and for ``--quiet`` ms (300) no DOM mutation and no long task; the quiet window is not counted.

Also listed: each chart's figure JSON size, as the browser got it (the component's ``data-bytes``), and the
settled time to open each page in a fresh tab of a session whose model is already loaded.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from load_test import CHROMIUM, CHROMIUM_ARGS, OBSERVER_JS, QUIET_JS, finished_run, start_server, stop_server  # noqa: E402

# (name, URL path, the slider's label): one main slider per page
PAGES = [
    ("Start", "", "Promote detections scoring at least"),
    ("Backbone", "backbone", "Heatmap opacity"),
    ("Anchors", "anchors", "Stride (px between centres)"),
    ("Anchor targets", "anchor_targets", "Positive IoU"),
    ("RPN proposals", "proposals", "NMS IoU threshold"),
    ("RoI", "roi", "Foreground IoU"),
    ("Detections", "detections", "Score threshold"),
    ("Losses", "losses", "Positive IoU (RPN)"),
    ("Compare", "compare", "A: RPN NMS IoU"),
]
SIZES_JS = """() => Array.from(document.querySelectorAll('div.frcnn-chart')).map(d => [d.dataset.key,
    Number(d.dataset.bytes)])"""
ERRORS_JS = """() => Array.from(document.querySelectorAll(
    '[data-testid="stException"], [data-testid="stAlertContentError"]')).map(e => e.innerText.slice(0, 300))"""


class Tab:
    """One chromium page with the observer installed, counting the server's finished script runs."""

    def __init__(self, browser, quiet: float):
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.context.add_init_script(OBSERVER_JS)
        self.page = self.context.new_page()
        self.quiet = quiet
        self.finished = 0
        self.requests: set = set()
        self.net_at = time.perf_counter()
        self.page.on("websocket", self._on_websocket)
        self.page.on("request", self._on_request)
        self.page.on("requestfinished", self._on_done)
        self.page.on("requestfailed", self._on_done)

    def _on_request(self, request) -> None:
        if not request.url.startswith("ws"):
            self.requests.add(request)
            self.net_at = time.perf_counter()

    def _on_done(self, request) -> None:
        self.requests.discard(request)
        self.net_at = time.perf_counter()

    def _on_websocket(self, ws) -> None:
        if "_stcore/stream" in ws.url:
            ws.on("framereceived", self._on_frame)

    def _on_frame(self, payload) -> None:
        if finished_run(payload):
            self.finished += 1

    def settle(self, before: int, timeout: float = 180) -> None:
        deadline = time.perf_counter() + timeout
        while self.finished <= before:
            if time.perf_counter() > deadline:
                raise TimeoutError("no script_finished")
            self.page.wait_for_timeout(20)
        while True:
            left = (deadline - time.perf_counter()) * 1000
            if left <= 0:
                raise TimeoutError("the page did not settle")
            self.page.wait_for_function(QUIET_JS, arg=self.quiet, polling=50, timeout=left)
            if not self.requests and (time.perf_counter() - self.net_at) * 1000 >= self.quiet:
                return
            self.page.wait_for_timeout(50)

    def open(self, url: str) -> None:
        before = self.finished
        self.page.goto(url)
        self.settle(before)

    def errors(self) -> list[str]:
        return self.page.evaluate(ERRORS_JS)

    def thumb(self, label: str):
        box = self.page.locator("[data-testid='stMain'] [data-testid='stSlider']", has_text=label).first
        return box.get_by_role("slider").first

    def move(self, thumb, key: str) -> float:
        thumb.focus()
        before = self.finished
        thumb.press(key)
        self.settle(before, 120)
        key_at, last = self.page.evaluate("() => [window.__lt.key, window.__lt.last]")
        self.charts = self.page.evaluate(f"""() => Array.from(document.querySelectorAll('div.frcnn-chart'))
            .filter(d => Number(d.dataset.calledAt) > {key_at})
            .map(d => [d.dataset.key, Math.round(Number(d.dataset.calledAt) - {key_at}), Number(d.dataset.drawMs)])""")
        return last - key_at


def _direction(thumb) -> str:
    now, lo, hi = thumb.evaluate(
        "t => ['valuenow', 'valuemin', 'valuemax'].map(a => Number(t.getAttribute('aria-' + a)))")
    return "ArrowRight" if now < hi else "ArrowLeft"


def run(moves: int, pages: list[tuple[str, str, str]], quiet: float) -> dict:
    from playwright.sync_api import sync_playwright

    log = Path(tempfile.mkdtemp()) / "server.log"
    proc, url = start_server(log)
    out: dict = {"moves": {}, "figure_bytes": {}, "open_ms": {}, "first_page_ms": None, "errors": []}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            tab = Tab(browser, quiet)
            t0 = time.perf_counter()
            tab.open(url)  # the first page after the server starts: the model loads
            out["first_page_ms"] = round((time.perf_counter() - t0) * 1000)
            for name, path, label in pages:
                tab.open(f"{url}/{path}")
                out["figure_bytes"][name] = dict(tab.page.evaluate(SIZES_JS))
                thumb = tab.thumb(label)
                if thumb.count() == 0:
                    out["errors"].append(f"{name}: no slider {label!r}")
                    continue
                key = _direction(thumb)
                tab.move(thumb, key)  # warm-up: the first move of a page builds what the next ones reuse
                back = "ArrowLeft" if key == "ArrowRight" else "ArrowRight"
                times = [tab.move(thumb, back if i % 2 == 0 else key) for i in range(moves)]
                out["moves"][name] = {"slider": label, "median_ms": round(statistics.median(times), 1),
                                      "all_ms": [round(t, 1) for t in times]}
                out["errors"] += [f"{name}: {e}" for e in tab.errors()]
                print(f"{name:15s} {label:40s} median {statistics.median(times):6.0f} ms  "
                      f"(min {min(times):.0f}, max {max(times):.0f}); figures "
                      f"{', '.join(f'{k} {v / 1e3:.0f} KB' for k, v in out['figure_bytes'][name].items())}",
                      flush=True)
            tab.context.close()
            fresh = Tab(browser, quiet)  # a new session, the model already loaded: every page opened
            for name, path, _ in pages:
                before = fresh.finished
                t0 = time.perf_counter()
                fresh.page.goto(f"{url}/{path}")
                fresh.settle(before)
                out["open_ms"][name] = round((time.perf_counter() - t0) * 1000)
            fresh.context.close()
            browser.close()
    finally:
        stop_server(proc)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--moves", type=int, default=10)
    p.add_argument("--pages", default="", help="comma-separated page names (default: all)")
    p.add_argument("--quiet", type=float, default=300.0)
    p.add_argument("--json", default=str(ROOT / "docs" / "browser_latency.json"))
    args = p.parse_args()
    wanted = {w.strip().lower() for w in args.pages.split(",") if w.strip()}
    pages = [pg for pg in PAGES if not wanted or pg[0].lower() in wanted or pg[1] in wanted]
    result = run(args.moves, pages, args.quiet)
    Path(args.json).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v["median_ms"] for k, v in result["moves"].items()}))
    print("open (fresh tab, model loaded):", result["open_ms"], "first page:", result["first_page_ms"], "ms")
    if result["errors"]:
        print("errors:", *result["errors"], sep="\n  ")


if __name__ == "__main__":
    main()
