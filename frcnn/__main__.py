"""The command line: ``python -m frcnn COMMAND ...``.

    python -m frcnn trace IMAGE [--gt ANN] [--model NAME] [--weights PATH] [--device auto|cpu|cuda]
                              [--set KEY=VALUE ...] [--sweep KEY=V1,V2,...] [--json OUT]
    python -m frcnn data shapes --out DIR --n N --seed S     synthetic scenes as a COCO folder
    python -m frcnn train --model default --data DIR|shapes:N:SEED --out CKPT [--steps ...] [--set KEY=VALUE]
    python -m frcnn eval --model default [--weights CKPT] --data DIR|shapes:N:SEED
    python -m frcnn keys            each stage, its inputs, and the settings (with defaults) its record holds
    python -m frcnn models          the registered models

A user mistake (missing or unreadable file, not an image, unknown model or key, bad value) exits with
status 2 and one line on stderr; never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from frcnn.errors import OUT_OF_MEMORY, FrcnnError, is_out_of_memory
from frcnn.settings import parse_assignments

MAX_SWEEP_VALUES = 100  # traces in one --sweep (each is written and dropped before the next)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, status 2 (argparse prints usage too)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _sweep_values(text: str) -> list[str]:
    """"0.5,0.6,0.7" -> three values; tuple settings separate values with ';': "64,128;128,256"."""
    parts = text.split(";") if ";" in text else text.split(",")
    values = [p.strip() for p in parts if p.strip()]
    if not values:
        raise FrcnnError(f"--sweep: no values in {text!r}")
    return values


def _download_progress():
    """A tqdm bar on stderr for a weights download (only drawn once bytes arrive)."""
    bar = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total or None, unit="B", unit_scale=True, desc="download", file=sys.stderr)
        bar.update(done - bar.n)

    return update


def _write_json(data: Any, out: str) -> None:
    text = json.dumps(data, separators=(",", ":"))
    if out == "-":
        sys.stdout.write(text + "\n")
        return
    try:
        Path(out).write_text(text)
    except OSError as exc:
        raise FrcnnError(f"{out}: cannot write ({exc.strerror})") from None


def _summary(trace: Any) -> str:
    counts = trace.counts()
    lines = [f"model {trace.model} ({trace.weights}) on {trace.device}; image {trace.image_size[1]}x"
             f"{trace.image_size[0]} -> input {trace.preprocess.image_size[1]}x{trace.preprocess.image_size[0]}",
             "counts: " + ", ".join(f"{k} {v}" for k, v in counts.items()),
             "times (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in trace.timings_ms.items())]
    from frcnn.analysis.naming import class_name

    for box, score, label in zip(trace.detections.boxes.tolist(), trace.detections.scores.tolist(),
                                 trace.detections.labels.tolist(), strict=True):
        name = class_name(trace.class_names, label)
        lines.append(f"  {name:<16} {score:.3f}  [{', '.join(f'{v:.1f}' for v in box)}]")
    if trace.losses is not None:
        lines.append("losses: " + ", ".join(f"{k} {v:.4f}" for k, v in trace.losses.as_dict().items()
                                            if v is not None))
    lines += [f"note: {n}" for n in trace.notes]
    return "\n".join(lines)


def cmd_trace(args: argparse.Namespace) -> int:
    from frcnn import budget
    from frcnn.data import load_annotations, load_image
    from frcnn.export import trace_to_dict
    from frcnn.models import load_model
    from frcnn.trace import Tracer

    image = load_image(args.image)
    overrides = parse_assignments(args.set or [], "--set")
    sweep = parse_assignments(args.sweep or [], "--sweep")
    if len(sweep) > 1:
        raise FrcnnError("--sweep: one key at a time")
    detector = load_model(args.model, args.weights, args.device, _download_progress())
    for note in detector.notes:
        print(f"note: {note}", file=sys.stderr)
    settings = detector.defaults.replace(overrides)
    runs = [settings]
    if sweep:
        (key, text), = sweep.items()
        values = _sweep_values(text)
        if len(values) > MAX_SWEEP_VALUES:
            raise FrcnnError(f"--sweep: {len(values)} values, at most {MAX_SWEEP_VALUES} in one run")
        from frcnn.analysis.sweeps import sweep_settings  # the one sweep engine's values (Losses, Compare, here)

        runs = sweep_settings(settings, key, values)
    gt_boxes = gt_labels = None
    if args.gt:
        gt = load_annotations(args.gt, (image.width, image.height), image_name=Path(args.image).name,
                              class_names=detector.class_names)
        for line in gt.report:
            print(f"note: {args.gt}: {line}", file=sys.stderr)
        gt_boxes, gt_labels = gt.boxes, gt.labels
    facts = budget.facts_of(detector)
    for s in runs:  # every run within the work budget before the first one starts
        budget.check(facts, s, (image.height, image.width), 0 if gt_boxes is None else len(gt_boxes))
    tracer = Tracer(detector)
    with _json_list(args.json, many=bool(sweep)) as write:
        for s in runs:  # one trace at a time: written, printed, dropped
            trace = tracer.run(image.tensor, s, gt_boxes, gt_labels)
            write(trace_to_dict(trace))
            if args.json != "-":
                print(_summary(trace))
    return 0


@contextlib.contextmanager
def _json_list(out: str | None, many: bool) -> Iterator[Any]:
    """``write(record)`` for each trace: to ``out`` ("-": stdout) as one JSON object, or a list when ``many``;
    records are written as they come, so a sweep holds one trace at a time. Without ``out``: nothing."""
    if not out:
        yield lambda record: None
        return
    try:
        stream = sys.stdout if out == "-" else open(out, "w")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise FrcnnError(f"{out}: cannot write ({exc.strerror})") from None
    count = 0

    def write(record: Any) -> None:
        nonlocal count
        stream.write(("[" if count == 0 else ",") if many else "")
        stream.write(json.dumps(record, separators=(",", ":")))
        count += 1

    try:
        yield write
        stream.write(("]" if count else "[]") if many else "")
        stream.write("\n" if out == "-" else "")
    finally:
        if stream is not sys.stdout:
            stream.close()


def cmd_data(args: argparse.Namespace) -> int:
    from frcnn.data.shapes import SceneConfig, write_coco_dataset

    if args.n <= 0:
        raise FrcnnError("--n must be positive")
    config = SceneConfig(min_side=args.min_side, max_side=args.max_side)
    path = write_coco_dataset(args.out, args.n, args.seed, config)
    print(f"wrote {args.n} scenes (seed {args.seed}) to {path.parent}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from frcnn.data.dataset import open_dataset
    from frcnn.models import REGISTRY
    from frcnn.train import TrainConfig, train

    dataset = open_dataset(args.data)
    held_out = open_dataset(args.eval_data) if args.eval_data else None
    settings = REGISTRY[args.model].defaults.replace(parse_assignments(args.set or [], "--set"))
    defaults = TrainConfig()
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         warmup=min(defaults.warmup, max(1, args.steps // 10)),
                         checkpoint_every=args.checkpoint_every, eval_every=args.eval_every if held_out else 0,
                         log_every=args.log_every)
    if min(config.steps, config.batch_size, config.checkpoint_every, config.log_every) <= 0 or not config.lr > 0:
        raise FrcnnError("--steps, --batch-size, --checkpoint-every, --log-every and --lr must be positive")
    if args.until is not None and args.until <= 0:
        raise FrcnnError("--until must be positive")
    with _stop_on_signals() as stopping:
        out = train(args.model, dataset, args.out, settings, config, args.device, resume=not args.restart,
                    progress=not args.quiet, evaluate_on=held_out, should_stop=stopping.is_set, until=args.until,
                    command=" ".join(["python -m frcnn", *(shlex.quote(a) for a in sys.argv[1:])]))
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one line from the first process
        print(f"checkpoint: {out}")
    return 0


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """While a training run is inside, SIGTERM or SIGINT (Ctrl-C) asks it to stop after its current step and
    write a resumable checkpoint, instead of losing the steps since the last one; the process's own handlers
    come back after it (``main`` may run inside another program)."""
    stopping = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda *_: stopping.set())
    try:
        yield stopping
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def cmd_anchors(args: argparse.Namespace) -> int:
    from frcnn.anchor_fit import dataset_items, fit_anchors, suggest_anchors
    from frcnn.data.dataset import open_dataset
    from frcnn.models import REGISTRY

    dataset = open_dataset(args.data)
    settings = REGISTRY[args.model].defaults.replace(parse_assignments(args.set or [], "--set"))
    if args.limit is not None and args.limit <= 0:
        raise FrcnnError("--limit must be positive")
    n = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    items = list(dataset_items(_Head(dataset, n)))
    fit = fit_anchors(items, settings)
    k_sizes = args.num_sizes or len(settings.anchors.sizes)
    k_ratios = args.num_ratios or len(settings.anchors.ratios)
    sizes, ratios = suggest_anchors(fit.shapes, k_sizes, k_ratios)
    suggested = fit_anchors(items, settings.replace({"anchors.sizes": sizes, "anchors.ratios": ratios}))
    report = {"data": str(args.data), "images": n, "input": [settings.input.min_size, settings.input.max_size],
              "current": fit.summary(), "suggested": suggested.summary()}
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"anchor fit on {n} images of {args.data}: {len(fit.best_iou)} boxes, input {settings.input.min_size}"
          f"/{settings.input.max_size} px, stride {settings.anchors.stride}")
    for name, r in (("current", report["current"]), ("suggested (k-means, 1 - IoU)", report["suggested"])):
        print(f"\n{name}: sizes {', '.join(f'{v:g}' for v in r['sizes'])}; ratios "
              f"{', '.join(f'{v:g}' for v in r['ratios'])}")
        print(f"  {'boxes':<20}{'n':>6}{'recall@0.5':>12}{'recall@0.7':>12}{'mean best IoU':>15}")
        rows = [{"size": "all", "boxes": r["boxes"], "recall@0.5": r["recall@0.5"], "recall@0.7": r["recall@0.7"],
                 "mean_iou": r["mean_iou"]}, *r["by_size"]]
        for row in rows:
            print(f"  {row['size']:<20}{row['boxes']:>6}{row['recall@0.5']:>12.3f}{row['recall@0.7']:>12.3f}"
                  f"{row['mean_iou']:>15.3f}")
    print(f"\nto try them: --set anchors.sizes={','.join(f'{v:g}' for v in sizes)} "
          f"--set anchors.ratios={','.join(f'{v:g}' for v in ratios)}")
    return 0


class _Head:
    """The first ``n`` items of a dataset."""

    def __init__(self, dataset, n: int) -> None:
        self.dataset, self.n = dataset, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return self.dataset[i]


def cmd_eval(args: argparse.Namespace) -> int:
    from frcnn.data.dataset import open_dataset
    from frcnn.evaluate import evaluate
    from frcnn.models import load_model

    dataset = open_dataset(args.data)
    detector = load_model(args.model, args.weights, args.device, _download_progress())
    for note in detector.notes:
        print(f"note: {note}", file=sys.stderr)
    known = tuple(getattr(dataset, "class_names", ()))
    if known and known != detector.class_names[:len(known)]:
        raise FrcnnError(f"{args.data}: its classes {list(known[1:])} are not the model's "
                         f"{list(detector.class_names[1:])}")
    settings = detector.defaults.replace(parse_assignments(args.set or [], "--set"))
    result = evaluate(detector, dataset, settings, limit=args.limit, progress=not args.quiet)
    print(f"images {result['images']}  mAP@0.5 {result['map_50']:.4f}  mAP@[.5:.95] {result['map']:.4f}  "
          f"mAP@0.75 {result['map_75']:.4f}")
    for name, ap in result["per_class"].items():
        print(f"  AP@[.5:.95] {name:<16} {ap:.4f}")
    if args.json:
        _write_json(result, args.json)
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from frcnn.pipeline import PIPELINE
    from frcnn.settings import Settings

    defaults = Settings()
    for stage in PIPELINE:  # the one table: stage, its inputs, its parameter record and the keys it holds
        print(f"{stage.name:<20} <- {', '.join(stage.inputs):<40} {stage.params.__name__}")
        for key in stage.params.flat_keys():
            print(f"    {key:<32} {defaults.get(key)!s}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from frcnn.models import REGISTRY

    for name, spec in REGISTRY.items():
        print(f"{name:<18} {spec.description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from frcnn.models import MODEL_NAMES

    parser = _Parser(prog="python -m frcnn", description="Faster R-CNN, one stage at a time.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    t = sub.add_parser("trace", help="trace one image through every stage")
    t.add_argument("image", help="PNG, JPEG, WebP, BMP or TIFF")
    t.add_argument("--gt", help="ground truth: COCO JSON, Pascal VOC XML or YOLO txt")
    t.add_argument("--model", default="default", choices=MODEL_NAMES)
    t.add_argument("--weights", default="auto", help="auto, pretrained, random, or a checkpoint file")
    t.add_argument("--device", default="auto", help="auto, cpu or cuda")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="change a setting (repeatable)")
    t.add_argument("--sweep", action="append", metavar="KEY=V1,V2,...", help="one trace per value")
    t.add_argument("--json", metavar="OUT", help="write the trace as JSON (- for stdout)")
    t.set_defaults(func=cmd_trace)
    d = sub.add_parser("data", help="write a synthetic dataset")
    d.add_argument("kind", choices=["shapes"])
    d.add_argument("--out", required=True)
    d.add_argument("--n", type=int, default=100)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--min-side", type=int, default=320)
    d.add_argument("--max-side", type=int, default=640)
    d.set_defaults(func=cmd_data)
    r = sub.add_parser("train", help="train a model end to end (approximate joint training)")
    r.add_argument("--model", default="default", choices=("default", "vgg16"))
    r.add_argument("--data", required=True, help="a COCO folder, or shapes:N:SEED")
    r.add_argument("--out", required=True, help="checkpoint file (resumed when it exists)")
    r.add_argument("--steps", type=int, default=6000)
    r.add_argument("--batch-size", type=int, default=4)
    r.add_argument("--lr", type=float, default=1e-3)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--checkpoint-every", type=int, default=200)
    r.add_argument("--log-every", type=int, default=10, help="steps between log records")
    r.add_argument("--eval-data", help="held-out data for mAP during training")
    r.add_argument("--eval-every", type=int, default=1000)
    r.add_argument("--device", default="auto")
    r.add_argument("--set", action="append", metavar="KEY=VALUE")
    r.add_argument("--until", type=int, metavar="STEP",
                   help="stop (resumably) after this step; the learning-rate schedule stays that of --steps")
    r.add_argument("--restart", action="store_true", help="start over even if --out exists")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_train)
    e = sub.add_parser("eval", help="COCO mAP of a model on a dataset")
    e.add_argument("--model", default="default", choices=MODEL_NAMES)
    e.add_argument("--weights", default="auto")
    e.add_argument("--data", required=True, help="a COCO folder, or shapes:N:SEED")
    e.add_argument("--limit", type=int)
    e.add_argument("--device", default="auto")
    e.add_argument("--set", action="append", metavar="KEY=VALUE")
    e.add_argument("--json", metavar="OUT")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=cmd_eval)
    a = sub.add_parser("anchors", help="how well the anchors fit a dataset, and k-means suggestions")
    a.add_argument("--data", required=True, help="a COCO folder, or shapes:N:SEED")
    a.add_argument("--model", default="default", choices=MODEL_NAMES, help="whose default settings to start from")
    a.add_argument("--set", action="append", metavar="KEY=VALUE", help="change a setting (repeatable)")
    a.add_argument("--limit", type=int, help="only the first N images")
    a.add_argument("--num-sizes", type=int, help="sizes to suggest (default: as many as now)")
    a.add_argument("--num-ratios", type=int, help="ratios to suggest (default: as many as now)")
    a.add_argument("--json", action="store_true", help="print the report as JSON")
    a.set_defaults(func=cmd_anchors)
    sub.add_parser("keys", help="list each stage, its inputs and the settings it reads").set_defaults(func=cmd_keys)
    sub.add_parser("models", help="list the models").set_defaults(func=cmd_models)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except FrcnnError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
    except (MemoryError, RuntimeError) as exc:  # torch's allocators raise RuntimeErrors
        if not is_out_of_memory(exc):
            raise
        print(f"{parser.prog}: error: {OUT_OF_MEMORY}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
