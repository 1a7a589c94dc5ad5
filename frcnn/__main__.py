"""The command line: ``python -m frcnn COMMAND ...``.

    python -m frcnn trace IMAGE [--gt ANN] [--model NAME] [--weights PATH] [--device auto|cpu|cuda]
                              [--set KEY=VALUE ...] [--sweep KEY=V1,V2,...] [--json OUT]
    python -m frcnn keys            every setting, its default and its stage
    python -m frcnn models          the registered models

A user mistake (missing or unreadable file, not an image, unknown model or key, bad value) exits with
status 2 and one line on stderr; never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from frcnn.errors import FrcnnError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, status 2 (argparse prints usage too)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parse_assignments(items: Sequence[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise FrcnnError(f"{flag} {item!r}: expected KEY=VALUE, e.g. rpn.nms_thresh=0.5")
        out[key.strip()] = value.strip()
    return out


def _sweep_values(text: str) -> list[str]:
    """"0.5,0.6,0.7" -> three values; tuple settings separate values with ';': "64,128;128,256"."""
    parts = text.split(";") if ";" in text else text.split(",")
    values = [p.strip() for p in parts if p.strip()]
    if not values:
        raise FrcnnError(f"--sweep: no values in {text!r}")
    return values


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
    names = trace.class_names
    for box, score, label in zip(trace.detections.boxes.tolist(), trace.detections.scores.tolist(),
                                 trace.detections.labels.tolist(), strict=True):
        lines.append(f"  {names[label]:<16} {score:.3f}  [{', '.join(f'{v:.1f}' for v in box)}]")
    if trace.losses is not None:
        lines.append("losses: " + ", ".join(f"{k} {v:.4f}" for k, v in trace.losses.as_dict().items()
                                            if v is not None))
    lines += [f"note: {n}" for n in trace.notes]
    return "\n".join(lines)


def cmd_trace(args: argparse.Namespace) -> int:
    from frcnn.data import load_annotations, load_image
    from frcnn.export import trace_to_dict
    from frcnn.models import load_model
    from frcnn.trace import Tracer

    image = load_image(args.image)
    overrides = _parse_assignments(args.set or [], "--set")
    sweep = _parse_assignments(args.sweep or [], "--sweep")
    if len(sweep) > 1:
        raise FrcnnError("--sweep: one key at a time")
    detector = load_model(args.model, args.weights, args.device)
    for note in detector.notes:
        print(f"note: {note}", file=sys.stderr)
    settings = detector.defaults.replace(overrides)
    runs = [settings]
    if sweep:
        (key, text), = sweep.items()
        runs = [settings.replace({key: v}) for v in _sweep_values(text)]
    gt_boxes = gt_labels = None
    if args.gt:
        gt = load_annotations(args.gt, (image.width, image.height), image_name=Path(args.image).name,
                              class_names=detector.class_names)
        for line in gt.report:
            print(f"note: {args.gt}: {line}", file=sys.stderr)
        gt_boxes, gt_labels = gt.boxes, gt.labels
    tracer = Tracer(detector)
    traces = [tracer.run(image.tensor, s, gt_boxes, gt_labels) for s in runs]
    if args.json:
        data = [trace_to_dict(t) for t in traces]
        _write_json(data if sweep else data[0], args.json)
    if not args.json or args.json != "-":
        for trace in traces:
            print(_summary(trace))
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from frcnn.settings import Settings, flat_keys
    from frcnn.trace import STAGE_SETTINGS

    stage_of = {k: stage for stage, keys in STAGE_SETTINGS.items() for k in keys}
    defaults = Settings()
    for key in flat_keys():
        print(f"{key:<32} {defaults.get(key)!s:<24} {stage_of.get(key, '')}")
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
    sub.add_parser("keys", help="list every setting").set_defaults(func=cmd_keys)
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


if __name__ == "__main__":
    sys.exit(main())
