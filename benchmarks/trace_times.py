"""Per-stage times of a cold trace and of warm re-traces after one setting changes (median of several runs).

    python benchmarks/trace_times.py [--model default] [--size 512] [--repeat 5] [--json OUT]

A cold trace uses a fresh stage cache; a warm re-trace first traces with the model's defaults, then
changes one setting and traces again (what a slider does). Prints a table; never part of the test run.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from frcnn import StageCache, Tracer, load_model  # noqa: E402
from frcnn.data.dataset import scene_tensors  # noqa: E402
from frcnn.data.shapes import SceneConfig  # noqa: E402

CHANGES = {
    "anchor size": {"anchors.sizes": (48.0, 96.0, 192.0, 384.0, 768.0)},
    "RPN NMS IoU": {"rpn.nms_thresh": 0.6},
    "post-NMS top-N": {"rpn.post_nms_top_n": 200},
    "RoI fg IoU": {"roi.fg_iou_thresh": 0.6},
    "score threshold": {"roi.score_thresh": 0.3},
}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="default")
    p.add_argument("--weights", default="auto")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--json")
    args = p.parse_args()
    det = load_model(args.model, args.weights, args.device)
    image, boxes, labels = scene_tensors(2026, 0, SceneConfig(min_side=args.size, max_side=args.size))
    settings = det.defaults.replace({"input.min_size": args.size, "input.max_size": max(args.size, 1000)})
    Tracer(det, StageCache()).run(image, settings, boxes, labels)  # warm-up
    cold = [Tracer(det, StageCache()).run(image, settings, boxes, labels) for _ in range(args.repeat)]
    stages = list(cold[0].timings_ms)
    table = {"cold": {s: statistics.median(t.timings_ms[s] for t in cold) for s in stages}}
    totals = {"cold": statistics.median(sum(t.timings_ms.values()) for t in cold)}
    walls = {}
    for name, change in CHANGES.items():
        runs, wall = [], []
        for _ in range(args.repeat):
            tracer = Tracer(det, StageCache())
            tracer.run(image, settings, boxes, labels)
            start = time.perf_counter()
            runs.append(tracer.run(image, settings.replace(change), boxes, labels))
            wall.append((time.perf_counter() - start) * 1000)
        table[name] = {s: statistics.median(t.timings_ms[s] for t in runs) for s in stages}
        totals[name] = statistics.median(sum(t.timings_ms.values()) for t in runs)
        walls[name] = statistics.median(wall)
        assert "backbone" in runs[0].cached or name == "anchor size" and "backbone" in runs[0].cached
    machine = f"{platform.machine()}, {torch.get_num_threads()} threads, {det.device}"
    print(f"model {args.model} ({det.weights}), {args.size}x{args.size} scene, median of {args.repeat}; {machine}")
    header = f"{'stage':<16}" + "".join(f"{k:>16}" for k in table)
    print(header)
    for s in stages:
        print(f"{s:<16}" + "".join(f"{table[k][s]:>16.1f}" for k in table))
    print(f"{'total (ms)':<16}" + "".join(f"{totals[k]:>16.1f}" for k in table))
    print(f"{'speed-up':<16}" + "".join(f"{totals['cold'] / max(totals[k], 1e-6):>15.1f}x" for k in table))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "model": args.model, "size": args.size,
                                               "stages_ms": table, "totals_ms": totals, "wall_ms": walls}, indent=1))


if __name__ == "__main__":
    main()
