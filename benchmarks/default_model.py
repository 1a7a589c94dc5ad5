"""The shipped default model's figures for its model card: COCO mAP on 200 held-out synthetic scenes (a seed
never used in training) and the time of a full trace of a 512-pixel image.

    python benchmarks/default_model.py [--weights auto] [--n 200] [--seed 2026] [--json OUT] [--card OUT.md]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine import describe  # noqa: E402

from frcnn import StageCache, Tracer, load_model  # noqa: E402
from frcnn.analysis.matching import match_detections  # noqa: E402
from frcnn.analysis.proposals import first_hits  # noqa: E402
from frcnn.data.dataset import ShapesScenes, scene_tensors  # noqa: E402
from frcnn.data.shapes import SceneConfig  # noqa: E402
from frcnn.evaluate import evaluate  # noqa: E402
from frcnn.models.checkpoint import read_weights_file  # noqa: E402
from frcnn.models.registry import DEFAULT_CHECKPOINT  # noqa: E402
from frcnn.train import reproduce_commands  # noqa: E402

SIZE_BINS = ((0, 32), (32, 64), (64, 128), (128, 256), (256, 10_000))  # sqrt(area) in px


def recall_by_size(det, dataset, score: float = 0.5) -> list[dict]:
    """Per object size: share of GT boxes with a proposal at IoU >= 0.5 (of the model's post-NMS top-N), and
    with a detection of the right class at IoU >= 0.5 and score >= ``score``: where the model misses."""
    tracer = Tracer(det, StageCache(max_entries=1))
    counts = {b: [0, 0, 0] for b in SIZE_BINS}
    for i in range(len(dataset)):
        image, boxes, labels = dataset[i]
        t = tracer.run(image)
        side = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).sqrt()
        proposed = first_hits(t.proposals.boxes, boxes, 0.5) < len(t.proposals.boxes)
        keep = t.detections.scores >= score
        found = ~match_detections(t.detections.boxes[keep], t.detections.scores[keep], t.detections.labels[keep],
                                  boxes, labels, 0.5).missed  # (G,) matched one to one, as on the Detections page
        for lo, hi in SIZE_BINS:
            m = (side >= lo) & (side < hi)
            c = counts[(lo, hi)]
            c[0] += int(m.sum())
            c[1] += int(proposed[m].sum())
            c[2] += int(found[m].sum())
    return [{"size": f"{lo}-{hi}" if hi < 10_000 else f"{lo}+", "objects": n,
             "proposal_recall": p / max(n, 1), "detection_recall": f / max(n, 1)}
            for (lo, hi), (n, p, f) in counts.items()]


def _commands(meta: dict) -> list[str]:
    commands = reproduce_commands(meta.get("runs") or [{"from_step": 0, "command": meta.get("command", "")}])
    if len(commands) == 1:
        return [f"- command: `{commands[0] or '(not recorded)'}`"]
    return ["- commands (one after the other; each resumes the checkpoint the last one left, and `--until` stops "
            "where the next took over with a shorter schedule):", *(f"  {i}. `{c}`" for i, c in enumerate(commands, 1))]


def model_card(det, state: dict, result: dict, sizes: list[dict], trace_ms: float, machine: str,
               n: int, seed: int) -> str:
    meta = state.get("meta", {})
    s = det.defaults
    evals = [r for r in meta.get("log", []) if "map_50" in r]
    hours = meta.get("train_seconds", 0) / 3600
    lines = [
        "# Model card: `default`", "",
        "The app's offline model (`frcnn/models/weights/default.pt`, loaded by `load_model(\"default\")` and the "
        "CLI with no argument). Written by `python benchmarks/default_model.py --card docs/model_card.md`.", "",
        "## What it is", "",
        "The paper's single-feature-map Faster R-CNN (Ren et al. 2015): an RPN and a Fast R-CNN head on one "
        "feature map, trained end to end by approximate joint training, with a light residual trunk trained from "
        f"scratch (stride {s.anchors.stride}, 128 channels; `frcnn/models/backbones.py`).", "",
        f"- classes: {', '.join(det.class_names[1:])}",
        f"- input: shorter side {s.input.min_size} px (longer at most {s.input.max_size})",
        *[f"- test-time default changed when shipped: {k} {v['trained']} in training, {v['shipped']} shipped "
          "(chosen on the 100 validation scenes of seed 1, never on the held-out ones)"
          for k, v in meta.get("test_time_settings", {}).items()],
        f"- anchors: sizes {', '.join(f'{v:g}' for v in s.anchors.sizes)} px x ratios "
        f"{', '.join(f'{v:g}' for v in s.anchors.ratios)} = {s.anchors.num_per_location} per location, "
        f"stride {s.anchors.stride}",
        f"- RPN: IoU {s.rpn.fg_iou_thresh:g} / {s.rpn.bg_iou_thresh:g}, {s.rpn.batch_size_per_image} anchors per "
        f"image, NMS {s.rpn.nms_thresh:g}, {s.rpn.pre_nms_top_n} -> {s.rpn.post_nms_top_n} proposals at test time",
        f"- RoI head: {s.roi.pool} {s.roi.output_size}x{s.roi.output_size}, fg IoU {s.roi.fg_iou_thresh:g}, "
        f"{s.roi.batch_size_per_image} RoIs per image, two fc layers of 256",
        "", "## Data", "",
        "Synthetic scenes (`frcnn/data/shapes.py`): five shape classes, 16 px to 80% of the image, aspect ratios "
        "1:3 to 3:1, occlusion, clutter, textured and noisy backgrounds, images 320-640 px a side. Training: "
        "scenes of seed 0 drawn on the fly; validation during training: 100 scenes of seed 1; evaluation below: "
        f"{n} scenes of seed {seed}, never used in training. Augmentation: horizontal flip, shorter side drawn "
        "from 448-576 px.", "",
        "## Training", "",
        *_commands(meta),
        *([f"- shipped with: `python training/ship_default.py training/{meta.get('source', 'RUN.pt')} "
           + " ".join(f"--set {k}={v['shipped']}" for k, v in meta["test_time_settings"].items()) + "`"]
          if meta.get("test_time_settings") else []),
        f"- steps: {meta.get('step')} of {meta.get('config', {}).get('steps')}, batch "
        f"{meta.get('config', {}).get('batch_size')}, AdamW lr {meta.get('config', {}).get('lr')} with warm-up and "
        "cosine decay",
        f"- training time: {hours:.1f} h on {meta.get('machine', '?')} (torch {meta.get('torch', '?')})",
    ]
    if evals:
        lines.append("- validation mAP@0.5 during training (100 scenes, seed 1): " +
                     ", ".join(f"{r['map_50']:.3f} at step {r['step']}" for r in evals))
    lines += ["", f"## Evaluation ({n} held-out scenes, seed {seed})", "",
              f"Measured by `python benchmarks/default_model.py` on {machine}.", "",
              "| metric | value |", "| --- | ---: |",
              f"| mAP@0.5 | {result['map_50']:.3f} |", f"| mAP@[.5:.95] | {result['map']:.3f} |",
              f"| mAP@0.75 | {result['map_75']:.3f} |"]
    lines += [f"| AP@[.5:.95] {name} | {ap:.3f} |" for name, ap in result["per_class"].items()]
    lines += ["", f"By object size (sqrt of the box area, px): recall of the {s.rpn.post_nms_top_n} proposals at IoU "
              "0.5, and of the "
              "detections with score >= 0.5 of the right class at IoU 0.5:", "",
              "| size | objects | proposal recall | detection recall |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {r['size']} | {r['objects']} | {r['proposal_recall']:.2f} | {r['detection_recall']:.2f} |"
              for r in sizes]
    lines += ["", f"A full trace (every stage, with ground truth) of a 512x512 image: {trace_ms:.0f} ms median on "
              f"{machine}.", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--weights", default="auto")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json")
    p.add_argument("--card", help="write the model card (markdown) here")
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
    machine = describe()
    print(f"default model ({det.weights}) on {args.n} held-out scenes (seed {args.seed}); {machine}")
    print(f"mAP@0.5 {result['map_50']:.4f}  mAP@[.5:.95] {result['map']:.4f}  mAP@0.75 {result['map_75']:.4f}")
    for name, ap in result["per_class"].items():
        print(f"  AP@[.5:.95] {name:<12} {ap:.4f}")
    print(f"full trace of a 512x512 image with ground truth: median {statistics.median(times) * 1000:.0f} ms "
          f"(min {min(times) * 1000:.0f} ms, {args.repeat} runs)")
    sizes = recall_by_size(det, ShapesScenes(args.n, args.seed))
    for r in sizes:
        print(f"  objects {r['size']:>8} px: {r['objects']:>4}, proposal recall {r['proposal_recall']:.2f}, "
              f"detection recall {r['detection_recall']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "eval": result, "by_size": sizes,
                                               "trace_ms": [t * 1000 for t in times]}, indent=1))
    if args.card:
        path = DEFAULT_CHECKPOINT if args.weights == "auto" else Path(args.weights)
        state = read_weights_file(path)
        card = model_card(det, state, result, sizes, statistics.median(times) * 1000, machine, args.n, args.seed)
        Path(args.card).write_text(card)
        print(f"wrote {args.card}")


if __name__ == "__main__":
    main()
