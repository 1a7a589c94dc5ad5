"""The one sweep engine: one setting takes several values, each value is traced over a set of items and a measure
is summed over them. The Losses page, the Compare page and the CLI's ``--sweep`` all go through it.

- :func:`sweep_settings`: the settings of each value (``base`` with ``key`` set to it), refused values kept apart;
- :func:`sweep`: the engine: trace every item at every value, sum ``measure``'s counts, ``finish`` them into metrics;
- :func:`proposal_recall_sweep`: the share of ground-truth boxes covered (IoU >= 0.5) by the proposals, for
  each ``rpn.post_nms_top_n`` (or any RPN setting);
- :func:`detection_sweep`: precision and recall of the detections (a detection is a true positive when it
  takes an unmatched ground-truth box of its class at IoU >= 0.5, best score first), for each value of
  ``roi.score_thresh``, ``roi.nms_thresh`` or any setting;
- :func:`loss_sweep`: the four loss terms of one image for each value (a refused value is a point with its reason).

:data:`SWEEPS` is the one table of the sweeps the app offers, each with its values and what it measures.

Every value is a real re-trace through the shared :class:`~frcnn.trace.Tracer`, so its cache does the work:
a score-threshold value re-runs only the detections; the backbone runs once per image.
Items: a list of (image (3, H, W) uint8, boxes (G, 4) (x1, y1, x2, y2), labels (G,)) in the image's pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from torch import Tensor

from frcnn.analysis.losses import TERMS, loss_values
from frcnn.analysis.matching import match_detections
from frcnn.analysis.proposals import first_hits
from frcnn.errors import FrcnnError
from frcnn.settings import Settings
from frcnn.trace import Trace, Tracer

Item = tuple[Tensor, Tensor, Tensor]
T = TypeVar("T")
Measure = Literal["losses", "recall", "detections"]

MAX_LOSS_SWEEP_VALUES = 6  # values in one loss sweep (each a trace of the page's image), so it stays quick


@dataclass(frozen=True)
class SweepSpec:
    key: str  # the setting swept
    values: tuple[Any, ...]  # the values offered
    measure: Measure  # what each value is scored by


# the sweeps the app offers, by name: the Losses page's (named by their key) and the Compare page's
SWEEPS: dict[str, SweepSpec] = {
    "rpn.fg_iou_thresh": SweepSpec("rpn.fg_iou_thresh", (0.4, 0.5, 0.6, 0.7, 0.8, 0.9), "losses"),
    "rpn.batch_size_per_image": SweepSpec("rpn.batch_size_per_image", (32, 64, 128, 256, 512), "losses"),
    "rpn.positive_fraction": SweepSpec("rpn.positive_fraction", (0.1, 0.25, 0.5, 0.75, 1.0), "losses"),
    "roi.fg_iou_thresh": SweepSpec("roi.fg_iou_thresh", (0.5, 0.6, 0.7, 0.8, 0.9), "losses"),
    "roi.batch_size_per_image": SweepSpec("roi.batch_size_per_image", (16, 32, 64, 128, 256, 512), "losses"),
    "rpn.post_nms_top_n": SweepSpec("rpn.post_nms_top_n", (50, 100, 300, 1000, 2000), "losses"),
    "proposal recall vs post-NMS top-N": SweepSpec("rpn.post_nms_top_n", (10, 25, 50, 100, 200, 300, 500, 1000),
                                                   "recall"),
    "detections vs score threshold": SweepSpec("roi.score_thresh", (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9),
                                               "detections"),
    "detections vs NMS IoU (per class)": SweepSpec("roi.nms_thresh", (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
                                                   "detections"),
    "detections vs RPN NMS IoU": SweepSpec("rpn.nms_thresh", (0.4, 0.5, 0.6, 0.7, 0.8, 0.9), "detections"),
}


def sweeps_of(measure: Measure) -> dict[str, SweepSpec]:
    """The sweeps of :data:`SWEEPS` that ``measure`` scores, by name."""
    return {name: s for name, s in SWEEPS.items() if s.measure == measure}


@dataclass(frozen=True)
class Sweep:
    key: str
    values: list[Any]
    metrics: dict[str, list[float | None]] = field(default_factory=dict)  # name -> one number per value
    images: int = 0
    boxes: int = 0
    errors: tuple[str | None, ...] = ()  # per value: why it was not traced (a refused settings combination)


@dataclass(frozen=True)
class SweepPoint:
    value: Any
    losses: dict[str, float | None]  # TERMS + "total"; all None when the value could not be traced
    error: str | None = None  # why the value was skipped (a refused settings combination)


def sweep_settings(base: Settings, key: str, values: Sequence[Any],
                   keep_refused: bool = False) -> list[Settings | FrcnnError]:
    """``base`` with ``key`` set to each value, in order. A value the settings refuse raises its
    :class:`FrcnnError`, or with ``keep_refused`` stands in the list as that error."""
    out: list[Settings | FrcnnError] = []
    for value in values:
        try:
            out.append(base.replace({key: value}))
        except FrcnnError as exc:
            if not keep_refused:
                raise
            out.append(exc)
    return out


def sweep(run: Callable[[Settings, T], Trace], items: Sequence[T], settings: Settings, key: str,
          values: Sequence[Any], measure: Callable[[Trace, T], dict[str, float | None]],
          finish: Callable[[dict[str, float | None]], dict[str, float | None]],
          progress: Callable[[float], None] | None = None, keep_refused: bool = False) -> Sweep:
    """For each value of ``key``: ``run`` every item, sum ``measure``'s counts, ``finish`` them into metrics.
    A refused value (with ``keep_refused``) is traced nowhere: its metrics are None and its error is kept."""
    rows: list[dict[str, float | None] | None] = []
    errors: list[str | None] = []
    total = max(1, len(values) * len(items))
    for v, s in enumerate(sweep_settings(settings, key, values, keep_refused)):
        if isinstance(s, FrcnnError):
            rows.append(None)
            errors.append(str(s))
            continue
        counts: dict[str, float | None] = {}
        for i, item in enumerate(items):
            for name, c in measure(run(s, item), item).items():
                counts[name] = _add(counts.get(name, 0.0), c)
            if progress:
                progress((v * len(items) + i + 1) / total)
        rows.append(finish(counts))
        errors.append(None)
    names = list(dict.fromkeys(n for row in rows if row for n in row))
    metrics = {n: [None if row is None else row[n] for row in rows] for n in names}
    return Sweep(key, list(values), metrics, len(items), errors=tuple(errors))


def _add(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a + b


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def _traced(tracer: Tracer) -> Callable[[Settings, Item], Trace]:
    return lambda s, item: tracer.run(item[0], s, item[1], item[2])


def _with_boxes(result: Sweep, items: Sequence[Item]) -> Sweep:
    return Sweep(result.key, result.values, result.metrics, result.images, sum(len(b) for _, b, _ in items),
                 result.errors)


def proposal_recall_sweep(tracer: Tracer, items: Sequence[Item], settings: Settings, values: Sequence[Any],
                          key: str = "rpn.post_nms_top_n", iou: float = 0.5,
                          progress: Callable[[float], None] | None = None) -> Sweep:
    """Recall of the ground truth by the proposals (IoU >= ``iou``) for each value of ``key``."""
    if key == "rpn.post_nms_top_n":  # keep pre-NMS top-N at least as large, as the validator asks
        settings = settings.replace({"rpn.pre_nms_top_n": max(settings.rpn.pre_nms_top_n, *values)})

    def measure(trace: Trace, item: Item) -> dict[str, float]:
        boxes = item[1]
        hits = first_hits(trace.proposals.boxes, boxes, iou) < len(trace.proposals.boxes)
        return {"found": float(hits.sum()), "gt": float(len(boxes)), "proposals": float(len(trace.proposals.boxes))}

    def finish(c: dict[str, float]) -> dict[str, float | None]:
        return {"recall": _ratio(c["found"], c["gt"]), "proposals per image": c["proposals"] / max(1, len(items))}

    return _with_boxes(sweep(_traced(tracer), items, settings, key, values, measure, finish, progress), items)


def detection_sweep(tracer: Tracer, items: Sequence[Item], settings: Settings, key: str, values: Sequence[Any],
                    iou: float = 0.5, progress: Callable[[float], None] | None = None) -> Sweep:
    """Precision and recall of the detections (IoU >= ``iou``, right class) for each value of ``key``."""

    def measure(trace: Trace, item: Item) -> dict[str, float]:
        d, boxes = trace.detections, item[1]
        m = match_detections(d.boxes, d.scores, d.labels, boxes, item[2], iou)
        tp = float(m.true_positive.sum())
        return {"tp": tp, "fp": float(len(d.boxes)) - tp, "gt": float(len(boxes))}

    def finish(c: dict[str, float]) -> dict[str, float | None]:
        return {"precision": _ratio(c["tp"], c["tp"] + c["fp"]), "recall": _ratio(c["tp"], c["gt"]),
                "detections per image": (c["tp"] + c["fp"]) / max(1, len(items))}

    return _with_boxes(sweep(_traced(tracer), items, settings, key, values, measure, finish, progress), items)


PLOTTED: dict[str, tuple[str, ...]] = {"recall": ("recall",), "detections": ("precision", "recall")}  # per measure


def run_sweep(tracer: Tracer, items: Sequence[Item], settings: Settings, spec: SweepSpec,
              values: Sequence[Any] | None = None, progress: Callable[[float], None] | None = None) -> Sweep:
    """The sweep ``spec`` of :data:`SWEEPS` (a "recall" or "detections" one) over ``items``, at its own values or
    ``values``; :data:`PLOTTED` names the metrics its figure draws."""
    values = list(spec.values if values is None else values)
    if spec.measure == "recall":
        return proposal_recall_sweep(tracer, items, settings, values, spec.key, progress=progress)
    if spec.measure == "detections":
        return detection_sweep(tracer, items, settings, spec.key, values, progress=progress)
    raise FrcnnError(f"{spec.key}: a loss sweep traces one image: use loss_sweep")


def loss_sweep(run: Callable[[Settings], Trace], base: Settings, key: str, values: Sequence[Any]) -> list[SweepPoint]:
    """Trace ``base`` with ``key`` set to each of ``values`` (at most :data:`MAX_LOSS_SWEEP_VALUES`) through ``run``
    (the shared tracer, so cached stages are reused) and collect the loss terms. A value the settings refuse
    (e.g. a foreground IoU below the background one) becomes a point with ``error`` set."""
    if len(values) > MAX_LOSS_SWEEP_VALUES:
        raise FrcnnError(f"a sweep takes at most {MAX_LOSS_SWEEP_VALUES} values, got {len(values)}")
    result = sweep(lambda s, _: run(s), (None,), base, key, values,
                   lambda trace, _: loss_values(trace.losses), lambda terms: terms, keep_refused=True)
    names = (*TERMS, "total")
    return [SweepPoint(value, {n: result.metrics[n][i] if n in result.metrics else None for n in names},
                       result.errors[i]) for i, value in enumerate(result.values)]
