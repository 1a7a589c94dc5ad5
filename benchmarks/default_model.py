"""The shipped default model's figures for its model card: COCO mAP on 200 held-out synthetic scenes (a seed
never used in training) and the time of a full trace of a 512-pixel image.

    python benchmarks/default_model.py [--weights auto] [--n 200] [--seed 2026] [--json OUT]
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
from frcnn.data.dataset import ShapesScenes, scene_tensors  # noqa: E402
from frcnn.data.shapes import SceneConfig  # noqa: E402
from frcnn.evaluate import evaluate  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--weights", default="auto")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json")
    args = p.parse_args()
    det = load_model("default", args.weights, "cpu")
    result = evaluate(det, ShapesScenes(args.n, args.seed), progress=False)
    image, boxes, labels = scene_tensors(args.seed, 10_000, SceneConfig(min_side=512, max_side=512))
    Tracer(det, StageCache()).run(image)  # warm-up
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        Tracer(det, StageCache()).run(image, None, boxes, labels)
        times.append(time.perf_counter() - start)
    machine = f"{platform.machine()} {platform.processor()}, {torch.get_num_threads()} threads (CPU)"
    print(f"default model ({det.weights}) on {args.n} held-out scenes (seed {args.seed}); {machine}")
    print(f"mAP@0.5 {result['map_50']:.4f}  mAP@[.5:.95] {result['map']:.4f}  mAP@0.75 {result['map_75']:.4f}")
    for name, ap in result["per_class"].items():
        print(f"  AP@[.5:.95] {name:<12} {ap:.4f}")
    print(f"full trace of a 512x512 image with ground truth: median {statistics.median(times) * 1000:.0f} ms "
          f"(min {min(times) * 1000:.0f} ms, {args.repeat} runs)")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "eval": result,
                                               "trace_ms": [t * 1000 for t in times]}, indent=1))


if __name__ == "__main__":
    main()
