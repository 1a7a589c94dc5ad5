"""Every benchmark in one run: prints the tables, writes them as JSON and as ``docs/benchmarks.md``.

    python benchmarks/run.py [--quick] [--browser] [--repeat 5] [--out docs] [--note "..."]
    python benchmarks/run.py --render [--note "..."]   # rewrite benchmarks.md from benchmarks.json, measuring nothing

1. trace: per-stage times of a cold trace, and peak memory, of the default model (512 px), torchvision's
   resnet50-FPN-v2 and MobileNetV3-FPN architectures (800 px) and the paper's vgg16 (800 px); each model in
   its own process, so its peak RSS is its own;
2. cached re-trace: a re-trace after one setting of each kind changes, against the cold trace, with the
   issue's targets checked (score threshold >= 10x and RPN NMS >= 2x on the default model, RPN NMS >= 20x on
   vgg16 at 800 px; no post-backbone change re-runs the backbone);
3. the tutorial baseline (``benchmarks/tutorial.py``): anchors, IoU, NMS and RoI pooling written the
   tutorial way against the project's stages, with the answers compared;
4. with ``--browser``: ``benchmarks/browser.py``, a main slider on every page in headless chromium, from the
   key press to the page's last DOM change (median of ``--moves``, 10), each figure's JSON size, and the time to
   open each page in a new session;
5. the same trace tables on CUDA when a GPU is there;
6. a "Load test" section from ``load_test.json`` in the same folder, when there is one (written by
   ``benchmarks/load_test.py``, run on its own: 30 sessions on one server for 5 minutes).

Every figure is a median of ``--repeat`` runs after a warm-up; ratios come from the same run. Offline, the
COCO models run with random weights: the times are the same (the architecture is what costs).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tutorial  # noqa: E402
from machine import describe  # noqa: E402

MODELS = [("default", 512), ("mobilenet_v3_fpn", 800), ("resnet50_fpn_v2", 800), ("vgg16", 800)]
QUICK = [("default", 512), ("vgg16", 800)]
TARGETS = [  # (model, change, at least this speed-up)
    ("default", "score threshold", 10.0),
    ("default", "RPN NMS IoU", 2.0),
    ("vgg16", "RPN NMS IoU", 20.0),  # the full re-trace: bound by the box head on the new RoIs
    ("vgg16", "NMS IoU, proposals page", 20.0),  # what the NMS slider's page traces (no RoI head)
]
TUTORIAL_TARGETS = {"anchors": 100.0, "NMS": 5.0, "IoU": 1.0, "RoI pooling": 1.0}


def _trace(model: str, size: int, repeat: int, device: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        cmd = [sys.executable, str(ROOT / "benchmarks" / "trace_times.py"), "--model", model, "--size", str(size),
               "--repeat", str(repeat), "--device", device, "--json", str(out)]
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        return json.loads(out.read_text())


def _browser(moves: int = 10) -> dict | None:
    """``benchmarks/browser.py``: a slider on every page, key press to the page's last DOM change, and each
    figure's JSON size."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "browser.json"
        done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "browser.py"), "--moves", str(moves),
                               "--json", str(out)], cwd=ROOT, capture_output=True, text=True)
        print(done.stdout[-4000:])
        if done.returncode != 0 or not out.exists():
            print(f"browser benchmark failed:\n{done.stderr[-3000:]}")
            return None
        return json.loads(out.read_text())


BROWSER_TARGET_MS = 500.0
FIGURE_BUDGET_BYTES = 1_000_000


def _browser_targets(browser: dict) -> list[dict]:
    rows = [{"what": f"browser: {page}, {v['slider']}", "target": f"< {BROWSER_TARGET_MS:g} ms",
             "measured": f"{v['median_ms']:.0f} ms", "met": v["median_ms"] < BROWSER_TARGET_MS}
            for page, v in browser["moves"].items()]
    sizes = [(f"{page}: {key}", n) for page, figs in browser["figure_bytes"].items() for key, n in figs.items()]
    if sizes:
        name, most = max(sizes, key=lambda x: x[1])
        rows.append({"what": "browser: the largest figure JSON (of every page's figures)",
                     "target": f"< {FIGURE_BUDGET_BYTES / 1e6:g} MB", "measured": f"{most / 1e3:.0f} KB ({name})",
                     "met": most < FIGURE_BUDGET_BYTES})
    slowest = max(browser["open_ms"].items(), key=lambda x: x[1], default=None)
    if slowest:
        rows.append({"what": "browser: a new session opens any page (model loaded), the slowest",
                     "target": "< 5000 ms", "measured": f"{slowest[1]:,} ms ({slowest[0]})", "met": slowest[1] < 5000})
    return rows


def _browser_markdown(b: dict) -> list[str]:
    if "moves" not in b:  # an older run's shape: {slider: {median_ms}}
        return ["", "## Browser: slider to updated figure", "", "| slider | median (ms) |", "| --- | ---: |"] + [
            f"| {k} | {v['median_ms']:.0f} |" for k, v in b.items()]
    lines = ["", "## Browser: a slider on every page, key press to settled page", "",
             f"`python benchmarks/browser.py` (run by `run.py --browser`): one streamlit server, one headless chromium "
             "tab (1400x1000) on the same machine, the default model and sample. On each page, after one warm-up "
             f"move, {len(next(iter(b['moves'].values()))['all_ms']) if b['moves'] else 0} arrow-key presses on the "
             "slider, alternating right and left; each timed from the `keydown` to the page's last DOM mutation "
             "once the page has settled (the server's `script_finished` for the run received, no running indicator, "
             "no request in flight, then 300 ms with no mutation and no long task; the quiet window not counted).",
             "", "| page | slider | median (ms) | min | max |", "| --- | --- | ---: | ---: | ---: |"]
    for page, v in b["moves"].items():
        lines.append(f"| {page} | {v['slider']} | **{v['median_ms']:.0f}** | {min(v['all_ms']):.0f} | "
                     f"{max(v['all_ms']):.0f} |")
    lines += ["", "Each figure's JSON as the browser gets it (default settings):", "",
              "| page | figure | JSON (KB) |", "| --- | --- | ---: |"]
    for page, figs in b["figure_bytes"].items():
        lines += [f"| {page} | {key} | {n / 1e3:,.0f} |" for key, n in figs.items()]
    lines += ["", f"The first page after the server starts (PyTorch, the model, the first trace): "
                  f"{b['first_page_ms']:,} ms to settled. A new session, the model already loaded, opening each "
                  "page (from `goto` to settled): " + ", ".join(f"{k} {v:,} ms" for k, v in b["open_ms"].items())
              + "."]
    if b.get("errors"):
        lines += ["", "Errors seen: " + "; ".join(b["errors"][:10])]
    return lines


def _check_targets(traces: dict[str, dict]) -> list[dict]:
    rows = []
    for model, change, want in TARGETS:
        r = traces.get(model)
        if r is None:
            continue
        got = r["speedup"][change]
        rows.append({"what": f"{model}: {change} re-trace vs cold", "target": f">= {want:g}x",
                     "measured": f"{got:.1f}x", "met": got >= want})
    for model, r in traces.items():
        reran = [k for k, v in r["reran_backbone"].items() if v]
        rows.append({"what": f"{model}: no post-backbone change re-runs the backbone", "target": "none",
                     "measured": ", ".join(reran) or "none", "met": not reran})
    return rows


def _check_tutorial(rows: list[dict]) -> list[dict]:
    out = []
    for r in rows:
        key = next(k for k in TUTORIAL_TARGETS if r["step"].startswith(k))
        want = TUTORIAL_TARGETS[key]
        out.append({"what": f"tutorial baseline: {r['step']}", "target": f">= {want:g}x, same answer",
                    "measured": f"{r['speedup']:.1f}x, {'same' if r['same_answer'] else 'DIFFERENT'}",
                    "met": r["speedup"] >= want and r["same_answer"]})
    return out


def _markdown(result: dict, load_test: Path | None = None) -> str:
    lines = ["# Benchmarks", "",
             f"Measured by `python benchmarks/run.py{' --browser' if result.get('browser') else ''}` on "
             f"{result['date']}, on: {result['machine']}. Medians of {result['repeat']} runs after a warm-up; "
             "each ratio from the same run. Offline, the COCO architectures run with random weights (same cost).",
             "", "## Targets", "", "| what | target | measured | met |", "| --- | --- | --- | --- |"]
    for t in result["targets"]:
        lines.append(f"| {t['what']} | {t['target']} | {t['measured']} | {'yes' if t['met'] else '**no**'} |")
    for device, traces in result["traces"].items():
        for r in traces.values():
            stages = list(r["stages_ms"]["cold"])
            cols = list(r["stages_ms"])
            lines += ["", f"## Trace and re-trace: {r['model']} at {r['size']} px ({device}: {r['device']})", "",
                      f"Weights: {r['weights']}. Peak memory {r['peak_mb']:.0f} MB ({r['peak_kind']}). Stage times "
                      "in ms; a stage taken from the cache counts 0.", "",
                      "| stage | " + " | ".join(cols) + " |", "| --- |" + " ---: |" * len(cols)]
            for s in stages:
                lines.append(f"| {s} | " + " | ".join(f"{r['stages_ms'][c][s]:.1f}" for c in cols) + " |")
            lines.append("| **wall** | " + " | ".join(f"**{r['wall_ms'][c]:.1f}**" for c in cols) + " |")
            lines.append("| speed-up | " + " | ".join(f"{r['speedup'][c]:.1f}x" for c in cols) + " |")
    lines += ["", "## The tutorial baseline", "",
              "The straightforward tutorial code (`benchmarks/tutorial.py`) against the project's stage, at the "
              "tutorial's sizes (800x800 input, 50x50 map, 22,500 anchors, 6,000 -> 300 proposals from a real RPN "
              "output, 128 RoIs).", "",
              "| step | tutorial (ms) | project (ms) | speed-up | same answer | how |",
              "| --- | ---: | ---: | ---: | --- | --- |"]
    for r in result["tutorial"]:
        lines.append(f"| {r['step']} | {r['tutorial_ms']:.2f} | {r['project_ms']:.2f} | {r['speedup']:.1f}x | "
                     f"{'yes' if r['same_answer'] else 'no'} | {r['how']} |")
    if result.get("browser"):
        lines += _browser_markdown(result["browser"])
    if load_test is not None and load_test.exists():
        lines += _load_test_markdown(json.loads(load_test.read_text()))
    if result.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in result["notes"]]
    return "\n".join(lines) + "\n"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def _load_test_markdown(r: dict) -> list[str]:
    """The "Load test" section, from ``load_test.json`` (written by ``benchmarks/load_test.py``)."""
    s, f, e = r["settle_ms"], r["script_finished_ms"], r["errors"]
    think = f"{r['think_s'][0]:g}-{r['think_s'][1]:g}"
    bold = "**" if r["errors_total"] else ""
    lines = ["", f"## Load test: {r['sessions']} sessions for {r['seconds']:g} s"
                 + (" (a short trial, not the full test)" if r.get("trial") else ""), "",
             f"Measured by `{r['command']}` on {r['date']}, on: {r['machine']}. One streamlit server on 127.0.0.1 "
             f"(no file watcher), warmed up by one tab visiting every page once; then {r['sessions']} sessions start "
             f"over {r['ramp_s']:g} s, each on one page (Start, Backbone, Anchors, Anchor targets, RPN proposals, "
             "RoI, Detections in turn), moving one slider a step (a random walk within "
             f"{r['walk_steps']} steps of its start), waiting for the answer, thinking {think} s, and moving again. "
             f"{r['browser_sessions']} of them are browser contexts in one headless chromium, pressing the arrow "
             f"key on the slider's thumb; the other {r['protocol_sessions']} speak streamlit's websocket protocol "
             "(the rerun message a browser sends), because a chromium page per session (about 1.7 s of browser "
             "CPU a move, see the notes) would swamp 2 cores and time the browsers instead of the server.", "",
             "Timed: **settled page** (browser sessions): from the key press to the page's last DOM change once it "
             "has settled (the script run finished, no running indicator, no request in flight, and for "
             f"{r['quiet_ms']:g} ms no DOM mutation, long task or request; the quiet window is not counted). "
             "**Script finished** (every session): from the key press or the rerun message to the server's "
             "script-finished message at the client. Chromium shares the 2 cores with the server, so the settled "
             "page is slower than in a class whose browsers run on their own machines.", "",
             "| sessions | moves | errors | server RSS peak | RSS final | settled median | settled p95 | settled "
             "max | finished median | finished p95 |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
             f"| {r['sessions']} | {r['moves']} | {bold}{r['errors_total']}{bold} | {r['rss_mb']['peak']} MB | "
             f"{r['rss_mb']['final']} MB | {_ms(s['median'])} ms | {_ms(s['p95'])} ms | {_ms(s['max'])} ms | "
             f"{_ms(f['median'])} ms | {_ms(f['p95'])} ms |", "",
             "Errors by kind: " + ", ".join(f"{k} {v}" for k, v in e.items()) + f". Moves: {r['moves']} "
             f"({r['browser_moves']} in the browser), {r['moves_per_minute']:g} a minute. CPU during the run "
             f"(100% = one core): server {r['server_cpu_pct']}%, chromium {r['browser']['cpu_pct']}%, the "
             f"load test's own process {r['driver_cpu_pct']}%; mean 1-min load {r['load1_mean']}. Server RSS at "
             f"the start {r['rss_mb']['start']} MB; chromium's memory peak {r['browser']['pss_peak_mb']} MB (PSS). "
             f"Opening a page in a new browser context: median {_ms(r['open_ms']['median'])} ms, p95 "
             f"{_ms(r['open_ms']['p95'])} ms" + (f"; {r['opens_with_late_sliders']} of them drew their sliders "
                                                 "after the page had settled by these rules (waited for)"
                                                 if r.get("opens_with_late_sliders") else "") + ".", ""]
    if "settle_ms_steady" in r:
        ss, fs = r["settle_ms_steady"], r["script_finished_ms_steady"]
        lines += [f"Steady state, the moves begun after the last page had opened ({r['steady_from_s']:g} s into the "
                  f"run): settled page median {_ms(ss['median'])} ms, p95 {_ms(ss['p95'])} ms ({ss['n']} moves); "
                  f"script finished median {_ms(fs['median'])} ms, p95 {_ms(fs['p95'])} ms ({fs['n']} moves).", ""]
    lines += ["| page | sessions (browser) | slider | moves | settled median (ms) | settled p95 (ms) | "
              "finished median (ms) | finished p95 (ms) |", "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, p in r["per_page"].items():
        ps, pf = p["settle_ms"], p["script_finished_ms"]
        lines.append(f"| {name} | {p['sessions']} ({p['browser_sessions']}) | {p['slider'] or '-'} | {pf['n']} | "
                     f"{_ms(ps['median'])} | {_ms(ps['p95'])} | {_ms(pf['median'])} | {_ms(pf['p95'])} |")
    if r.get("error_examples"):
        lines += ["", "First errors:", ""] + [f"- `{x[:200]}`" for x in r["error_examples"][:10]]
    return lines


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="default and vgg16 only")
    p.add_argument("--browser", action="store_true", help="also time a slider on every page in headless chromium")
    p.add_argument("--moves", type=int, default=10, help="key presses per page with --browser (the median of them)")
    p.add_argument("--out", default=str(ROOT / "docs"), help="folder for benchmarks.json and benchmarks.md")
    p.add_argument("--note", action="append", default=[], help="a line for the Notes section (repeatable)")
    p.add_argument("--render", action="store_true",
                   help="measure nothing: rewrite benchmarks.md from the folder's benchmarks.json (with --note: "
                        "those notes in place of the stored ones)")
    args = p.parse_args()
    out = Path(args.out)
    if args.render:
        result = json.loads((out / "benchmarks.json").read_text())
        result["notes"] = args.note or result.get("notes", [])
        _write(out, result)
        return
    import torch
    from trace_times import print_result

    devices = ["cpu"] + ["cuda"] * torch.cuda.is_available()
    result = {"date": time.strftime("%Y-%m-%d"), "machine": describe(), "repeat": args.repeat, "traces": {},
              "notes": args.note}
    for device in devices:
        result["traces"][device] = {}
        for model, size in QUICK if args.quick else MODELS:
            r = _trace(model, size, args.repeat, device)
            result["traces"][device][model] = r
            print_result(r)
            print()
    rows = tutorial.compare(args.repeat)
    tutorial.print_table(rows)
    result["tutorial"] = rows
    result["targets"] = _check_targets(result["traces"]["cpu"]) + _check_tutorial(rows)
    if args.browser:
        result["browser"] = _browser(args.moves)
        if result["browser"]:
            result["targets"] += _browser_targets(result["browser"])
    print("\ntargets:")
    for t in result["targets"]:
        print(f"  {'met ' if t['met'] else 'MISS'}  {t['what']}: {t['measured']} (target {t['target']})")
    _write(out, result)


def _write(out: Path, result: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmarks.json").write_text(json.dumps(result, indent=1))
    (out / "benchmarks.md").write_text(_markdown(result, out / "load_test.json"))
    print(f"\nwrote {out / 'benchmarks.json'} and {out / 'benchmarks.md'}")


if __name__ == "__main__":
    main()
