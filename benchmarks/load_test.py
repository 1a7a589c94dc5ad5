"""A class on one server: N sessions moving sliders on different pages of ONE streamlit server.

    python benchmarks/load_test.py [--sessions 30] [--browsers 7] [--seconds 300] [--json docs/load_test.json]

How it works:

- One real server (``streamlit run app.py`` on 127.0.0.1, a free port, ``FRCNN_OFFLINE=1``, no file watcher,
  as a served app runs); its PID is kept and only that PID is ended at the end (also on Ctrl-C, SIGTERM or an
  exception). Its RSS (with any child processes; psutil when installed, else ``/proc/<pid>/status`` VmRSS) and
  CPU are sampled every second, and so are chromium's (PSS, its processes together) and this process's CPU.
- A warm-up (not timed): one browser tab visits each page once, so the model is loaded and every page has
  traced once. Then N sessions start, spread over ``--ramp`` seconds in a shuffled order. Each stays on one
  page: Start, Backbone, Anchors, Anchor targets, RPN proposals, RoI, Detections in turn, one slider each. A
  session behaves like a student: move the slider one step, wait for the answer, think ``--think`` seconds
  (uniform, 2-8 s by default), move again, until ``--seconds`` have passed since the ramp began. The moves are
  a random walk of at most ``--walk`` steps either side of the start, so values vary between sessions and the
  stage cache does not answer every move.
- Two kinds of session. The first ``--browsers`` (7 by default, one per page) are browser contexts (own
  cookies, own websocket, so each its own streamlit session) in ONE headless chromium (Debian's, driven by
  Playwright): they focus the slider's thumb (role slider: an ``<input type="range">`` in streamlit 1.67) and
  press ArrowRight or ArrowLeft. The others speak streamlit's websocket protocol (``BackMsg`` /
  ``ForwardMsg`` from ``streamlit.proto``, with the ``websockets`` package): the ``rerun_script`` message a
  browser sends, with the page's slider states (one moved a step; a value the server sets wins, as in the
  browser), then the run's messages up to ``script_finished``. Why the mix: a browser page costs about 1.7 s
  of chromium CPU per move (the profile in benchmarks.md's notes), so 30 of them on 2 cores would time the
  browsers starving each other and the server, not the server; the protocol sessions load the server like
  30 students would and cost next to nothing.
- What is timed. Browser sessions, "settled page": from the key press (a ``keydown`` listener in the page,
  the page's clock) to the page's last DOM change (a MutationObserver on the whole document, same clock)
  once the page has settled. Settled means: the server has sent this session's ``script_finished`` (the
  websocket frames, read with ``streamlit.proto``; a run ended early for a rerun does not count), no running
  indicator (``stStatusWidgetRunningIcon``), no HTTP request in flight (a fresh page loads its script chunks
  and media while the DOM stands still), and for ``--quiet`` ms (300) no DOM mutation, no long task on the
  page's main thread (a busy thread mutates nothing until it is done) and no request started or ended. The
  quiet window is not part of the figure: it ends at the last mutation. Every session, "script finished":
  from the key press (or the rerun message sent) to ``script_finished`` received (Python's clock). Also: the
  time to open a page (the same rules, from ``goto`` or the first rerun message).
- The browser runs on the same 2 cores as the server, so the settled-page figures include chromium's
  rendering under that contention (its CPU share is recorded): worse than a class whose browsers run on
  their own machines.
- Errors, by kind: ``exception`` (a ``stException`` in the page, or an exception element in the protocol's
  messages, after a move or an open), ``error_box`` (an ``st.error``: ``stAlertContentError``, or an alert
  of format ERROR), ``timeout`` (not settled, or no ``script_finished``, within ``--settle-timeout`` s),
  ``disconnect`` (the session's websocket closed during the run), ``open_failed`` (a page that did not open
  or has no slider), ``server_traceback`` (a "Traceback" in the server's log, warm-up included, before it is
  ended), ``server_crash`` (the server exited), ``driver`` (anything else that ended a session early). A
  session counts the same error once per move it is seen on.

Writes ``--json`` (default ``docs/load_test.json``); when that is ``load_test.json`` in a folder holding
``benchmarks.json``, then re-renders that folder's ``benchmarks.md`` (``benchmarks/run.py --render``), which
has a "Load test" section from it. Bounded: at most 60 sessions, 15 of them browsers, at most 1800 s, and a
hard overall timeout (the run's length + the ramp + 10 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

try:  # the browser tests' chromium, its arguments and the free-port helper
    from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, _free_port
except ImportError:  # pytest missing: a copy of tests/e2e/conftest.py's constants
    import socket

    CHROMIUM = "/usr/bin/chromium"
    CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync"]

    def _free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

MAX_SESSIONS = 60
MAX_BROWSERS = 15  # about 250-400 MB and a share of 2 cores each
MAX_SECONDS = 1800
# (url path, page, slider label); a label not found falls back to the page's first slider in the main area
PAGES = [
    ("", "Start", "Promote detections scoring at least"),
    ("backbone", "Backbone", "Heatmap opacity"),
    ("anchors", "Anchors", "Stride (px between centres)"),
    ("anchor_targets", "Anchor targets", "Positive IoU"),
    ("proposals", "RPN proposals", "NMS IoU threshold"),
    ("roi", "RoI", "Foreground IoU"),
    ("detections", "Detections", "Score threshold"),
]
ERROR_KINDS = ("exception", "error_box", "timeout", "disconnect", "open_failed", "server_traceback", "server_crash",
               "driver")

# installed before the page's own scripts: the time of the last DOM mutation and of the last key press
# installed before the page's own scripts: the time of the last DOM mutation, of the end of the last long task
# (a busy main thread mutates nothing while it works, so quiet counts from the later of the two), of the key press
OBSERVER_JS = """(() => {
  const lt = window.__lt = {last: performance.now(), busy: 0, key: -1};
  new MutationObserver(() => { lt.last = performance.now(); }).observe(document,
      {subtree: true, childList: true, attributes: true, characterData: true});
  try {
    new PerformanceObserver(l => {
      for (const e of l.getEntries()) lt.busy = Math.max(lt.busy, e.startTime + e.duration);
    }).observe({type: 'longtask', buffered: true});
  } catch (e) {}
  document.addEventListener('keydown', () => { lt.key = performance.now(); }, true);
})()"""
QUIET_JS = """(q) => !document.querySelector('[data-testid="stStatusWidgetRunningIcon"]') &&
    performance.now() - Math.max(window.__lt.last, window.__lt.busy) >= q"""
ERRORS_JS = """() => ({
  exception: Array.from(document.querySelectorAll('[data-testid="stException"]')).map(e => e.innerText.slice(0, 300)),
  error_box: Array.from(document.querySelectorAll('[data-testid="stAlertContentError"]'))
                  .map(e => e.innerText.slice(0, 300))})"""
THUMB_JS = """(label) => {
  const boxes = Array.from(document.querySelectorAll('[data-testid="stMain"] [data-testid="stSlider"]'));
  const named = boxes.find(b => b.innerText.includes(label));
  const box = named || boxes[0];
  if (!box) return null;
  const thumb = box.querySelector('[role="slider"], input[type="range"]');
  if (!thumb) return null;
  thumb.setAttribute('data-load-test', '1');
  return named ? label : '(first slider) ' + box.innerText.split('\\n')[0];
}"""


# ------------------------------------------------------------------------------------------ process sampling
def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    return kids


def _tree(pid: int, kids: dict[int, list[int]]) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def _rss_cpu(pids: list[int], pss: bool = False) -> tuple[float, float]:
    """Summed RSS (MB; with ``pss``: proportional set size, so that memory shared between processes counts
    once) and CPU seconds (user + system) of ``pids``; vanished ones count 0."""
    try:
        import psutil

        rss = cpu = 0.0
        for p in pids:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(p)
                rss += (proc.memory_full_info().pss if pss else proc.memory_info().rss) / 2**20
                t = proc.cpu_times()
                cpu += t.user + t.system
        return rss, cpu
    except ImportError:
        pass
    tick = os.sysconf("SC_CLK_TCK")
    rss = cpu = 0.0
    for p in pids:
        try:
            name, field = ("smaps_rollup", "Pss:") if pss else ("status", "VmRSS:")
            for line in Path(f"/proc/{p}/{name}").read_text().splitlines():
                if line.startswith(field):
                    rss += int(line.split()[1]) / 1024
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            continue
    return rss, cpu


class Sampler(threading.Thread):
    """Every second: the server's RSS and CPU (its process and children), and those of the browser (every
    other descendant of this process)."""

    def __init__(self, server_pid: int):
        super().__init__(daemon=True)
        self.server_pid = server_pid
        self.samples: list[dict] = []
        self.stop = threading.Event()

    def sample(self) -> dict:
        kids = _children()
        server = _tree(self.server_pid, kids)
        others = [p for p in _tree(os.getpid(), kids) if p not in server and p != os.getpid()]
        s_rss, s_cpu = _rss_cpu(server)
        b_rss, b_cpu = _rss_cpu(others, pss=True)
        d_cpu = _rss_cpu([os.getpid()])[1]  # this process: the protocol sessions and the playwright client
        return {"t": time.monotonic(), "rss": s_rss, "cpu": s_cpu, "b_rss": b_rss, "b_cpu": b_cpu, "d_cpu": d_cpu,
                "load1": os.getloadavg()[0]}

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append(self.sample())
            self.stop.wait(1.0)

    def window(self, t0: float, t1: float) -> list[dict]:
        return [s for s in self.samples if t0 <= s["t"] <= t1]


def _cpu_pct(samples: list[dict], key: str) -> float | None:
    if len(samples) < 2 or samples[-1]["t"] <= samples[0]["t"]:
        return None
    return round(100 * (samples[-1][key] - samples[0][key]) / (samples[-1]["t"] - samples[0]["t"]), 1)


# ------------------------------------------------------------------------------------------------ server
def start_server(log_path: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    log = open(log_path, "wb")  # noqa: SIM115 - closed by the caller with the server
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
         "--browser.gatherUsageStats", "false", "--server.port", str(port), "--server.address", "127.0.0.1",
         "--server.fileWatcherType", "none"],  # served, not developed: no reruns when a file changes
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "FRCNN_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"streamlit did not answer /_stcore/health within 120 s; see {log_path}")


def stop_server(proc: subprocess.Popen) -> None:
    """End the server's own PID only: SIGTERM, then SIGKILL after 15 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# ----------------------------------------------------------------------------------------------- sessions
class Run:
    """What every session shares: the clock, the stop flag, the figures."""

    def __init__(self, args):
        self.args = args
        self.stopping = False  # set at the end of the run (or on a crash): websocket closes are no disconnects
        self.errors = {k: 0 for k in ERROR_KINDS}
        self.examples: list[str] = []
        self.moves: list[dict] = []
        self.opens: list[dict] = []
        self.sliders: dict[str, str] = {}
        self.late_sliders = 0  # browser pages whose sliders were drawn after the page had settled (opens)

    def error(self, kind: str, session: int, page: str, text: str = "") -> None:
        self.errors[kind] += 1
        if len(self.examples) < 20:
            self.examples.append(f"{kind} (session {session}, {page}): {text[:300]}")
        print(f"  ERROR {kind} session {session} {page}: {text[:200]}", flush=True)


def _finished_early() -> int:
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    return ForwardMsg.DESCRIPTOR.fields_by_name["script_finished"].enum_type.values_by_name[
        "FINISHED_EARLY_FOR_RERUN"].number


class Student:
    """One simulated student on one page: open it, then move its slider, wait for the answer, think, again."""

    kind = ""

    def __init__(self, run: Run, index: int, path: str, page_name: str, label: str, rng: random.Random):
        self.run, self.index, self.path, self.page_name, self.label, self.rng = run, index, path, page_name, label, rng
        self.finished = 0  # script runs finished (not ended early for a rerun) seen on the websocket
        self.finished_at = 0.0
        self.changed = asyncio.Event()
        self.offset = 0  # steps away from the starting value
        self.closing = False  # its own connection is closing: the websocket's close is no disconnect

    def error(self, kind: str, text: str) -> None:
        self.run.error(kind, self.index, f"{self.page_name} ({self.kind})", text)

    def _script_finished(self) -> None:
        self.finished += 1
        self.finished_at = time.perf_counter()
        self.changed.set()

    def _closed(self, *_) -> None:
        if not (self.run.stopping or self.closing):
            self.error("disconnect", "the session's websocket closed")

    async def _wait_finished(self, before: int, timeout: float) -> bool:
        end = time.perf_counter() + timeout
        while self.finished <= before:
            left = end - time.perf_counter()
            if left <= 0 or self.run.stopping:
                return False
            self.changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 1.0))
        return True

    def _right(self, now, lo, hi) -> bool:
        """The next step of the random walk: right unless at the walk's or the slider's end."""
        right = self.rng.random() < 0.5
        if self.offset >= self.run.args.walk or (now is not None and now == hi):
            right = False
        elif self.offset <= -self.run.args.walk or (now is not None and now == lo):
            right = True
        self.offset += 1 if right else -1
        return right

    def _record(self, t0: float, settle_ms: float | None, what: str) -> None:
        self.run.moves.append({"page": self.page_name, "kind": self.kind, "session": self.index, "move": what,
                               "settle_ms": settle_ms, "finished_ms": (self.finished_at - t0) * 1000,
                               "t": time.monotonic() - (time.perf_counter() - t0)})  # when the move began

    @contextlib.asynccontextmanager
    async def connected(self):
        yield

    async def open(self) -> bool:
        raise NotImplementedError

    async def move(self) -> bool:
        raise NotImplementedError

    async def main(self, start_at: float, end_at: float) -> None:
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        try:
            async with self.connected():
                opened = False
                while not self.run.stopping and time.monotonic() < end_at:
                    if not opened:  # a page that did not open is counted, and tried again after a pause
                        opened = await self.open()
                        if not opened:
                            await asyncio.sleep(5)
                        continue
                    await asyncio.sleep(self.rng.uniform(*self.run.args.think))
                    if time.monotonic() >= end_at or self.run.stopping:
                        break
                    opened = await self.move()
                self.closing = True
        except Exception as exc:  # noqa: BLE001 - a failure of this session (the page went away, ...), counted
            if not self.run.stopping:
                self.error("driver", f"{type(exc).__name__}: {exc}")
        finally:
            self.closing = True


def finished_run(payload) -> bool:
    """Whether a websocket frame from the server is a script run's ``script_finished`` (not one ended early for
    a rerun)."""
    if not isinstance(payload, bytes) or len(payload) > 4096:  # script_finished is a few bytes
        return False
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    msg = ForwardMsg()
    try:
        msg.ParseFromString(payload)
    except Exception:  # noqa: BLE001 - not a ForwardMsg we can read: not ours to judge
        return False
    return msg.WhichOneof("type") == "script_finished" and msg.script_finished != _finished_early()


class BrowserStudent(Student):
    """A browser context (own cookies, own websocket) in the shared chromium: times the settled page."""

    kind = "browser"

    def __init__(self, *args, browser=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.browser = browser
        self.page = None
        self.requests: set = set()  # HTTP requests in flight (script chunks, media): a page waiting is not settled
        self.net_at = 0.0  # when the last one started or ended

    def _on_request(self, request) -> None:
        if not request.url.startswith("ws"):
            self.requests.add(request)
            self.net_at = time.perf_counter()

    def _on_request_done(self, request) -> None:
        self.requests.discard(request)
        self.net_at = time.perf_counter()

    def listen(self, page) -> None:
        page.on("websocket", self._on_websocket)
        page.on("request", self._on_request)
        page.on("requestfinished", self._on_request_done)
        page.on("requestfailed", self._on_request_done)

    def _on_websocket(self, ws) -> None:
        if "_stcore/stream" not in ws.url:
            return
        def frame(payload) -> None:
            if finished_run(payload):
                self._script_finished()

        ws.on("framereceived", frame)
        ws.on("close", self._closed)

    @contextlib.asynccontextmanager
    async def connected(self):
        context = await self.browser.new_context(viewport={"width": 1400, "height": 1000})
        try:
            await context.add_init_script(OBSERVER_JS)
            self.page = await context.new_page()
            self.listen(self.page)
            yield
        finally:
            self.closing = True
            with contextlib.suppress(Exception):
                await context.close()

    async def _settle(self, before: int, timeout: float) -> bool:
        """Wait for a finished script run after ``before``, then for a quiet page: no running indicator, no
        request in flight, no DOM mutation, long task or request for the quiet window."""
        start = time.perf_counter()
        if not await self._wait_finished(before, timeout):
            return False
        quiet = self.run.args.quiet
        while True:
            left = timeout - (time.perf_counter() - start)
            if left <= 0 or self.run.stopping:
                return False
            try:
                await self.page.wait_for_function(QUIET_JS, arg=quiet, polling=100, timeout=max(1.0, left) * 1000)
            except Exception:  # noqa: BLE001 - playwright's TimeoutError, or the page went away
                return False
            if not self.requests and (time.perf_counter() - self.net_at) * 1000 >= quiet:
                return True
            await asyncio.sleep(0.1)

    async def _check(self, what: str) -> None:
        found = await self.page.evaluate(ERRORS_JS)
        for kind in ("exception", "error_box"):
            for text in found[kind]:
                self.error(kind, f"{what}: {text}")

    async def open(self) -> bool:
        before = self.finished
        t0 = time.perf_counter()
        try:
            await self.page.goto(f"{self.run.url}/{self.path}", timeout=60_000)
        except Exception as exc:  # noqa: BLE001
            self.error("open_failed", str(exc))
            return False
        if not await self._settle(before, 180):
            self.error("open_failed", "no settled page within 180 s")
            return False
        opened_ms = (time.perf_counter() - t0) * 1000
        await self._check("open")
        found = await self.page.evaluate(THUMB_JS, self.label)
        if found is None:  # seen once on a busy machine: the page settled by these rules, its sliders drawn later
            with contextlib.suppress(Exception):
                await self.page.wait_for_selector("[data-testid='stMain'] [data-testid='stSlider']", timeout=30_000)
                self.run.late_sliders += 1
                print(f"  note: session {self.index} {self.page_name}: its sliders came after the page settled",
                      flush=True)
                await self._settle(self.finished - 1, 60)
                found = await self.page.evaluate(THUMB_JS, self.label)
                opened_ms = (time.perf_counter() - t0) * 1000
        if found is None:
            text = await self.page.evaluate(
                "() => (document.querySelector('[data-testid=\"stMain\"]') || document.body)"
                ".innerText.replace(/\\s+/g, ' ').slice(0, 200)")
            self.error("open_failed", f"no slider on the page; it shows: {text}")
            return False
        self.run.sliders.setdefault(self.page_name, found)
        self.run.opens.append({"page": self.page_name, "kind": self.kind, "ms": opened_ms, "t": time.monotonic()})
        return True

    async def move(self) -> bool:
        """One key press, timed; False when the page had to be reopened and did not open."""
        thumb = self.page.locator("[data-load-test='1']").first
        if await thumb.count() == 0:  # the slider was redrawn: mark it again
            await self.page.evaluate(THUMB_JS, self.label)
        now, lo, hi = await thumb.evaluate(  # streamlit's thumb is an <input type="range">: role slider implied
            "t => t.type === 'range' ? [t.value, t.min, t.max] : ['valuenow', 'valuemin', 'valuemax'].map("
            "a => t.getAttribute('aria-' + a))")
        key = "ArrowRight" if self._right(now, lo, hi) else "ArrowLeft"
        await thumb.focus()
        before = self.finished
        t0 = time.perf_counter()
        await thumb.press(key)
        if not await self._settle(before, self.run.args.settle_timeout):
            if self.run.stopping:
                return True
            self.error("timeout", f"{key}: no settled page within {self.run.args.settle_timeout:g} s")
            if not await self._settle(before, 120):  # let it finish before moving on; else reopen
                return await self.open()
            return True
        key_at, last = await self.page.evaluate("() => [window.__lt.key, window.__lt.last]")
        self._record(t0, last - key_at, key)
        await self._check(key)
        return True


class ProtocolStudent(Student):
    """A websocket client speaking streamlit's protocol (``BackMsg`` / ``ForwardMsg`` from ``streamlit.proto``), as
    the browser does: a ``rerun_script`` with the page's slider states, one of them a step moved, then the
    run's messages up to ``script_finished``. Times the server's answer, not a drawn page; costs the machine
    next to nothing, so that many sessions load the server without a browser each."""

    kind = "protocol"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ws = None
        self.query = ""
        self.page_hash = ""
        self.sliders: dict[str, object] = {}  # label -> Slider proto of the last finished run
        self._this_run: dict[str, object] = {}
        self.values: dict[str, list[float]] = {}  # widget id -> the value this client holds
        self.found: list[tuple[str, str]] = []  # (kind, text) of exceptions and st.error boxes this run

    @contextlib.asynccontextmanager
    async def connected(self):
        from websockets.asyncio.client import connect

        ws_url = self.run.url.replace("http://", "ws://") + "/_stcore/stream"
        async with connect(ws_url, subprotocols=["streamlit"], origin=self.run.url, max_size=None, proxy=None,
                           ping_interval=None, open_timeout=60) as ws:
            self.ws = ws
            reader = asyncio.create_task(self._read())
            try:
                yield
            finally:
                self.closing = True
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader

    async def _read(self) -> None:
        from streamlit.proto.Alert_pb2 import Alert
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
        from websockets.exceptions import ConnectionClosed

        early = _finished_early()
        try:
            async for data in self.ws:
                msg = ForwardMsg()
                msg.ParseFromString(data)
                kind = msg.WhichOneof("type")
                if kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                    el = msg.delta.new_element
                    what = el.WhichOneof("type")
                    if what == "slider":
                        self._this_run[el.slider.label] = el.slider
                    elif what == "exception":
                        self.found.append(("exception", f"{el.exception.type}: {el.exception.message}"))
                    elif what == "alert" and el.alert.format == Alert.ERROR:
                        self.found.append(("error_box", el.alert.body))
                elif kind == "navigation":
                    self.page_hash = msg.navigation.page_script_hash
                elif kind == "page_info_changed":
                    self.query = msg.page_info_changed.query_string
                elif kind == "script_finished" and msg.script_finished != early:
                    self.sliders = self._this_run
                    # as the browser does: a value the server sets wins; else the value this client holds (the
                    # moved one too); a slider new to it starts at its default
                    self.values = {sl.id: list(sl.value) if sl.set_value and len(sl.value) else
                                   self.values.get(sl.id, list(sl.default)) for sl in self.sliders.values()}
                    self._script_finished()
        except ConnectionClosed:
            pass
        self._closed()

    async def _rerun(self, first: bool = False) -> None:
        from streamlit.proto.BackMsg_pb2 import BackMsg

        back = BackMsg()
        state = back.rerun_script
        state.query_string = self.query
        if first:
            state.page_name = self.path
        else:
            state.page_script_hash = self.page_hash
        for wid, value in self.values.items():
            w = state.widget_states.widgets.add()
            w.id = wid
            w.double_array_value.data.extend(value)
        info = state.context_info
        info.timezone, info.locale, info.url = "UTC", "en-US", f"{self.run.url}/{self.path}"
        info.color_scheme = "light"
        self._this_run = {}
        self.found = []
        await self.ws.send(back.SerializeToString())

    def _check(self, what: str) -> None:
        for kind, text in self.found:
            self.error(kind, f"{what}: {text}")

    async def open(self) -> bool:
        before = self.finished
        t0 = time.perf_counter()
        self.values = {}
        await self._rerun(first=True)
        if not await self._wait_finished(before, 180):
            self.error("open_failed", "no script_finished within 180 s")
            return False
        self.run.opens.append({"page": self.page_name, "kind": self.kind, "ms": (time.perf_counter() - t0) * 1000,
                               "t": time.monotonic()})
        self._check("open")
        if not self.sliders:
            self.error("open_failed", "no slider on the page")
            return False
        slider, named = self._slider()
        self.run.sliders.setdefault(self.page_name, slider.label if named else f"(first slider) {slider.label}")
        return True

    def _slider(self):
        named = self.sliders.get(self.label) or next(
            (sl for label, sl in self.sliders.items() if label.startswith(self.label)), None)
        return named or next(iter(self.sliders.values())), named is not None

    async def move(self) -> bool:
        slider, _ = self._slider()
        now = self.values[slider.id][0]
        right = self._right(now, slider.min, slider.max)
        self.values[slider.id] = [round(min(slider.max, max(slider.min, now + (1 if right else -1) * slider.step)),
                                        10)]
        before = self.finished
        t0 = time.perf_counter()
        await self._rerun()
        what = f"{slider.label} {'+' if right else '-'}{slider.step:g}"
        if not await self._wait_finished(before, self.run.args.settle_timeout):
            if self.run.stopping:
                return True
            self.error("timeout", f"{what}: no script_finished within {self.run.args.settle_timeout:g} s")
            if not await self._wait_finished(before, 120):
                return await self.open()
            return True
        self._record(t0, None, what)
        self._check(what)
        return True


async def _warm_up(browser, run: Run) -> float:
    """One tab visits each page once (not timed in the figures): the model loads, each page traces once."""
    t0 = time.perf_counter()
    s = BrowserStudent(run, -1, "", "warm-up", "", random.Random(0), browser=browser)
    s.closing = True  # not part of the run: a reconnect here is not counted
    async with s.connected():
        for path, _, _ in PAGES:
            before = s.finished
            await s.page.goto(f"{run.url}/{path}", timeout=120_000)
            if not await s._settle(before, 300):
                raise RuntimeError(f"warm-up: /{path} did not settle within 300 s")
    return time.perf_counter() - t0


async def drive(run: Run, sampler: Sampler, server: subprocess.Popen) -> dict:
    from playwright.async_api import async_playwright

    args = run.args
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            warm = await _warm_up(browser, run)
            print(f"warm-up (every page once): {warm:.0f} s", flush=True)
            rng = random.Random(args.seed)
            t0 = time.monotonic()
            end_at = t0 + args.seconds
            sessions = [BrowserStudent(run, i, *PAGES[i % len(PAGES)], random.Random(rng.random()), browser=browser)
                        if i < args.browsers else
                        ProtocolStudent(run, i, *PAGES[i % len(PAGES)], random.Random(rng.random()))
                        for i in range(args.sessions)]
            step = args.ramp / max(1, args.sessions)
            slots = list(range(args.sessions))
            rng.shuffle(slots)  # browser and protocol sessions start mixed over the ramp

            async def watch() -> None:  # the server's exit ends the run; progress every 30 s
                last = time.monotonic()
                while not run.stopping:
                    if server.poll() is not None:
                        run.error("server_crash", -1, "server", f"streamlit exited with {server.returncode}")
                        run.stopping = True
                        return
                    if time.monotonic() - last >= 30:
                        last = time.monotonic()
                        recent = sampler.samples[-1] if sampler.samples else {"rss": 0}
                        print(f"  {last - t0:4.0f} s: {len(run.moves)} moves, {sum(run.errors.values())} errors, "
                              f"server RSS {recent['rss']:.0f} MB", flush=True)
                    await asyncio.sleep(1)

            watcher = asyncio.create_task(watch())
            await asyncio.gather(*(s.main(t0 + slots[i] * step, end_at) for i, s in enumerate(sessions)))
            t1 = time.monotonic()
            run.stopping = True
            await watcher
        finally:
            run.stopping = True
            with contextlib.suppress(Exception):
                await browser.close()
    return {"warm_up_s": round(warm, 1), "t0": t0, "t1": t1}


# ------------------------------------------------------------------------------------------------ figures
def _stats(values: list[float]) -> dict:
    if not values:
        return {"n": 0, "median": None, "p95": None, "max": None}
    v = sorted(values)
    return {"n": len(v), "median": round(statistics.median(v), 1), "p95": round(v[math.ceil(0.95 * len(v)) - 1], 1),
            "max": round(v[-1], 1)}


def summarize(run: Run, sampler: Sampler, timing: dict, log_text: str) -> dict:
    args = run.args
    from machine import describe

    run.errors["server_traceback"] += log_text.count("Traceback")
    if log_text.count("Traceback"):
        run.examples.append("server_traceback: " + log_text[log_text.index("Traceback"):][:300])
    during = sampler.window(timing["t0"], timing["t1"])
    browser_moves = [x for x in run.moves if x["kind"] == "browser"]
    # steady state: the moves begun after every session had opened its page (no page opening alongside)
    steady_from = max((o["t"] for o in run.opens), default=timing["t0"])
    steady = [x for x in run.moves if x["t"] >= steady_from]

    def finished(moves: list[dict], kind: str | None = None) -> dict:
        return _stats([x["finished_ms"] for x in moves if kind is None or x["kind"] == kind])

    per_page = {}
    for i, (_, name, _) in enumerate(PAGES):
        m = [x for x in run.moves if x["page"] == name]
        here = [j for j in range(args.sessions) if j % len(PAGES) == i]
        per_page[name] = {"sessions": len(here), "browser_sessions": sum(j < args.browsers for j in here),
                          "slider": run.sliders.get(name),
                          "settle_ms": _stats([x["settle_ms"] for x in m if x["kind"] == "browser"]),
                          "script_finished_ms": finished(m)}
    minutes = max(1e-9, (timing["t1"] - timing["t0"]) / 60)
    return {
        "date": time.strftime("%Y-%m-%d"), "machine": describe(),
        "command": "python benchmarks/load_test.py " + " ".join(sys.argv[1:]),
        "trial": args.sessions < 30 or args.seconds < 300,
        "sessions": args.sessions, "browser_sessions": min(args.browsers, args.sessions),
        "protocol_sessions": max(0, args.sessions - args.browsers), "seconds": args.seconds, "ramp_s": args.ramp,
        "think_s": list(args.think), "quiet_ms": args.quiet, "settle_timeout_s": args.settle_timeout,
        "walk_steps": args.walk, "warm_up_s": timing["warm_up_s"], "run_s": round(timing["t1"] - timing["t0"], 1),
        "moves": len(run.moves), "browser_moves": len(browser_moves),
        "moves_per_minute": round(len(run.moves) / minutes, 1),
        "errors": dict(run.errors), "errors_total": sum(run.errors.values()), "error_examples": run.examples,
        "rss_mb": {"start": round(during[0]["rss"]) if during else None,
                   "peak": round(max(s["rss"] for s in sampler.samples)) if sampler.samples else None,
                   "final": round(sampler.samples[-1]["rss"]) if sampler.samples else None},
        "server_cpu_pct": _cpu_pct(during, "cpu"),
        "browser": {"pss_peak_mb": round(max((s["b_rss"] for s in during), default=0)),
                    "cpu_pct": _cpu_pct(during, "b_cpu")},
        "driver_cpu_pct": _cpu_pct(during, "d_cpu"),
        "load1_mean": round(statistics.mean(s["load1"] for s in during), 2) if during else None,
        "settle_ms": _stats([x["settle_ms"] for x in browser_moves]),
        "script_finished_ms": finished(run.moves),
        "script_finished_ms_browser": finished(run.moves, "browser"),
        "script_finished_ms_protocol": finished(run.moves, "protocol"),
        "steady_from_s": round(steady_from - timing["t0"], 1),
        "settle_ms_steady": _stats([x["settle_ms"] for x in steady if x["kind"] == "browser"]),
        "script_finished_ms_steady": finished(steady),
        "open_ms": _stats([x["ms"] for x in run.opens if x["kind"] == "browser"]),
        "opens_with_late_sliders": run.late_sliders,
        "open_ms_protocol": _stats([x["ms"] for x in run.opens if x["kind"] == "protocol"]),
        "per_page": per_page,
    }


def _render(json_path: Path) -> None:
    folder = json_path.parent
    if json_path.name != "load_test.json" or not (folder / "benchmarks.json").exists():
        print(f"not rendered: benchmarks.md renders {folder / 'load_test.json'} next to a benchmarks.json")
        return
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--render", "--out", str(folder)],
                   check=True, cwd=ROOT)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sessions", type=int, default=30, help=f"sessions in all (at most {MAX_SESSIONS})")
    p.add_argument("--browsers", type=int, default=len(PAGES),
                   help="how many of them are browser contexts (one per page by default); the others speak "
                        "streamlit's websocket protocol")
    p.add_argument("--seconds", type=float, default=300, help=f"how long they move sliders (at most {MAX_SECONDS})")
    p.add_argument("--ramp", type=float, default=None, help="sessions start spread over this many seconds "
                                                            "(default: a fifth of --seconds, at most 60)")
    p.add_argument("--think", type=float, nargs=2, default=(2.0, 8.0), metavar=("MIN", "MAX"),
                   help="seconds between a settled page and the next move (uniform)")
    p.add_argument("--quiet", type=float, default=300, help="ms without a DOM mutation that count as settled")
    p.add_argument("--settle-timeout", type=float, default=30, help="s after a key press that count as a timeout")
    p.add_argument("--walk", type=int, default=3, help="a slider stays within this many steps of its start")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=str(ROOT / "docs" / "load_test.json"))
    args = p.parse_args()
    if not 1 <= args.sessions <= MAX_SESSIONS or not 10 <= args.seconds <= MAX_SECONDS:
        p.error(f"--sessions 1..{MAX_SESSIONS}, --seconds 10..{MAX_SECONDS}")
    if not 0 <= args.browsers <= MAX_BROWSERS:
        p.error(f"--browsers 0..{MAX_BROWSERS}")
    args.browsers = min(args.browsers, args.sessions)
    if not os.path.exists(CHROMIUM):
        p.error(f"{CHROMIUM} is missing (apt-get install chromium)")
    args.ramp = min(60.0, args.seconds / 5) if args.ramp is None else min(args.ramp, args.seconds)
    hard_limit = args.seconds + args.ramp + 600  # startup, warm-up, the last moves, closing

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    run = Run(args)
    log_path = Path(tempfile.mkstemp(prefix="load-test-streamlit-", suffix=".log")[1])
    server = None
    sampler = None
    try:
        server, run.url = start_server(log_path)
        print(f"streamlit PID {server.pid} at {run.url} (log {log_path}); {args.sessions} sessions for "
              f"{args.seconds:g} s", flush=True)
        sampler = Sampler(server.pid)
        sampler.start()
        timing = asyncio.run(asyncio.wait_for(drive(run, sampler, server), hard_limit))
        log_text = log_path.read_text(errors="replace")  # before the server is ended: its shutdown is not the run
        sampler.samples.append(sampler.sample())
    except KeyboardInterrupt:
        print("interrupted: nothing written", file=sys.stderr)
        raise SystemExit(130) from None
    except TimeoutError:
        print(f"stopped after the hard limit of {hard_limit:.0f} s: nothing written", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        if sampler is not None:
            sampler.stop.set()
        if server is not None:
            stop_server(server)
            print(f"streamlit PID {server.pid} ended (exit {server.returncode})", flush=True)
    result = summarize(run, sampler, timing, log_text)
    if result["errors"]["server_traceback"] or result["errors"]["server_crash"]:
        print(f"the server's log is kept: {log_path}")
    else:
        log_path.unlink(missing_ok=True)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    s = result["settle_ms"]
    f = result["script_finished_ms"]
    print(f"\n{result['moves']} moves by {args.sessions} sessions ({args.browsers} in the browser) in "
          f"{result['run_s']:.0f} s; errors {result['errors_total']} {result['errors']}\n"
          f"browser, key press -> settled page: median {s['median']} ms, p95 {s['p95']} ms, max {s['max']} ms\n"
          f"all, move -> script finished: median {f['median']} ms, p95 {f['p95']} ms, max {f['max']} ms\n"
          f"server RSS peak {result['rss_mb']['peak']} MB, final "
          f"{result['rss_mb']['final']} MB; server CPU {result['server_cpu_pct']}%, browser CPU "
          f"{result['browser']['cpu_pct']}%, this driver {result['driver_cpu_pct']}%\nwrote {out}")
    _render(out)


if __name__ == "__main__":
    main()
