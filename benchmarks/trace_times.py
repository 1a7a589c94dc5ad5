"""Per-stage times of a cold trace and of warm re-traces after one setting changes (median of several runs).

    python benchmarks/trace_times.py [--model default] [--size 512] [--repeat 5] [--json OUT]

A cold trace uses a fresh stage cache; a warm re-trace first traces with the model's defaults, then
changes one setting and traces again (what a slider does); stages taken from the cache count 0 ms. Peak
memory is the process's peak RSS on the CPU (run one model per process, as ``benchmarks/run.py`` does) or
CUDA's max allocated. Prints a table; never part of the test run.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import describe  # noqa: E402

from frcnn import StageCache, Tracer, load_model  # noqa: E402
from frcnn.data.dataset import scene_tensors  # noqa: E402
from frcnn.data.shapes import SceneConfig  # noqa: E402
from frcnn.trace import trace_stages  # noqa: E402

CHANGES = {
    "anchor size": {"anchors.sizes": (48.0, 96.0, 192.0, 384.0, 768.0)},
    "RPN NMS IoU": {"rpn.nms_thresh": 0.6},
    "post-NMS top-N": {"rpn.post_nms_top_n": 200},
    "RoI fg IoU": {"roi.fg_iou_thresh": 0.6},
    "score threshold": {"roi.score_thresh": 0.3},
}
# the same NMS change as the Proposals page traces it: without the RoI head (Tracer.run(head=False))
PAGE_CHANGES = {"NMS IoU, proposals page": {"rpn.nms_thresh": 0.6}}


def measure(model: str, size: int, repeat: int = 5, weights: str = "auto", device: str = "auto") -> dict:
    """Per-stage medians of a cold trace and of a re-trace after each change in :data:`CHANGES`, peak memory."""
    det = load_model(model, weights, device)
    image, boxes, labels = scene_tensors(2026, 0, SceneConfig(min_side=size, max_side=size))
    image, boxes, labels = image.to(det.device), boxes.to(det.device), labels.to(det.device)
    settings = det.defaults.replace({"input.min_size": size, "input.max_size": max(size, 1000)})
    sync = torch.cuda.synchronize if det.device.type == "cuda" else (lambda: None)
    if det.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    Tracer(det, StageCache()).run(image, settings, boxes, labels)  # warm-up
    cold, cold_wall = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        cold.append(Tracer(det, StageCache()).run(image, settings, boxes, labels))
        sync()
        cold_wall.append((time.perf_counter() - start) * 1000)
    traces = {"cold": cold}
    walls = {"cold": statistics.median(cold_wall)}
    reran_backbone = {}
    warm = StageCache()
    Tracer(det, warm).run(image, settings, boxes, labels)  # the state a slider move starts from
    for name, change, head in [*((n, c, True) for n, c in CHANGES.items()),
                               *((n, c, False) for n, c in PAGE_CHANGES.items())]:
        runs, wall = [], []
        for _ in range(repeat):
            tracer = Tracer(det, warm.copy())  # each run from the same warm state
            sync()
            start = time.perf_counter()
            runs.append(tracer.run(image, settings.replace(change), boxes, labels, head=head))
            sync()
            wall.append((time.perf_counter() - start) * 1000)
        traces[name] = runs
        walls[name] = statistics.median(wall)
        reran_backbone[name] = "backbone" not in runs[0].cached
    # every stage any trace ran, in pipeline order (an anchor change adds rpn_anchor_targets); 0 when cached
    stages = [s for s in trace_stages() if any(s in t.timings_ms for runs in traces.values() for t in runs)]
    table = {name: {s: statistics.median(t.timings_ms.get(s, 0.0) if s not in t.cached else 0.0 for t in runs)
                    for s in stages} for name, runs in traces.items()}
    peak = (torch.cuda.max_memory_allocated() / 2**20 if det.device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    device_name = describe(det.device)
    weights = det.weights.removeprefix(f"{ROOT}/")  # a shipped file by its path in the repository
    return {"model": model, "weights": weights, "size": size, "repeat": repeat, "device": device_name,
            "stages_ms": table, "wall_ms": walls,
            "speedup": {k: walls["cold"] / max(v, 1e-6) for k, v in walls.items()},
            "reran_backbone": reran_backbone, "peak_mb": round(peak, 1),
            "peak_kind": "CUDA max allocated" if det.device.type == "cuda" else "process peak RSS"}


def print_result(r: dict) -> None:
    table, walls = r["stages_ms"], r["wall_ms"]
    print(f"model {r['model']} ({r['weights']}), {r['size']}x{r['size']} scene, median of {r['repeat']}; "
          f"{r['device']}; peak {r['peak_mb']:.0f} MB ({r['peak_kind']})")
    print(f"{'stage (ms)':<16}" + "".join(f"{k:>16}" for k in table))
    for s in table["cold"]:
        print(f"{s:<16}" + "".join(f"{table[k][s]:>16.1f}" for k in table))
    print(f"{'wall (ms)':<16}" + "".join(f"{walls[k]:>16.1f}" for k in table))
    print(f"{'speed-up':<16}" + "".join(f"{r['speedup'][k]:>15.1f}x" for k in table))
    print(f"{'backbone rerun':<16}" + "".join(f"{'-' if k == 'cold' else str(r['reran_backbone'][k]):>16}"
                                             for k in table))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="default")
    p.add_argument("--weights", default="auto")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--json")
    args = p.parse_args()
    result = measure(args.model, args.size, args.repeat, args.weights, args.device)
    print_result(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
