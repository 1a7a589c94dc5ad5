"""The model registry: build a Faster R-CNN by name, load its weights, pick its device.

Every model is a torchvision ``FasterRCNN`` module (its backbone, RPN head, box head and predictor are
what the tracer runs); the tracer never uses the module's own thresholds and never writes to it, so one
loaded model is shared by every caller. A :class:`Detector` carries the module with what the tracer needs
to know about it: class names, the anchors it was trained with, its own default settings.

| name             | what                                                     | weights "auto"                  |
| ---------------- | -------------------------------------------------------- | ------------------------------- |
| default          | the paper's single-map model, light residual trunk        | frcnn/models/weights/default.pt |
| vgg16            | the paper's configuration: VGG-16 conv5_3, RoIPool, fc6/7 | ImageNet backbone (weights API) |
| resnet50_fpn_v2  | torchvision's fasterrcnn_resnet50_fpn_v2                  | COCO (weights API)              |
| mobilenet_v3_fpn | torchvision's fasterrcnn_mobilenet_v3_large_fpn           | COCO (weights API)              |

``weights``: "auto" (the best available; offline with nothing cached: random weights and a note that says
which file to put where), "pretrained" (the same, but an error instead of random weights), "random", or a
path to a checkpoint / state dict (read with ``torch.load(weights_only=True)``); for vgg16 the path may also be
torchvision's ImageNet VGG-16 file, loaded into the backbone and fc6/fc7 as "auto" does. The server's
weights folder (:mod:`frcnn.models.weights_folder`) lists such paths per model.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models import VGG16_Weights
from torchvision.models.detection import (
    FasterRCNN,
    FasterRCNN_MobileNet_V3_Large_FPN_Weights,
    FasterRCNN_ResNet50_FPN_V2_Weights,
    fasterrcnn_mobilenet_v3_large_fpn,
    fasterrcnn_resnet50_fpn_v2,
)
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign

from frcnn.errors import FrcnnError
from frcnn.models.backbones import light_backbone, vgg16_backbone, vgg16_fc_head
from frcnn.models.checkpoint import read_weights_file
from frcnn.models.download import Progress, fetch
from frcnn.settings import (
    PAPER,
    TORCHVISION_COCO,
    AnchorSettings,
    InputSettings,
    RPNSettings,
    Settings,
)

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_CHECKPOINT = WEIGHTS_DIR / "default.pt"
VOC_CLASSES = ("__background__", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
               "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep",
               "sofa", "train", "tvmonitor")
OFFLINE_ENV = "FRCNN_OFFLINE"  # set to 1 to never try a download


def _shape_classes() -> tuple[str, ...]:
    from frcnn.data.shapes import CLASS_NAMES

    return tuple(CLASS_NAMES)


DEFAULT_SETTINGS = Settings(
    input=InputSettings(min_size=512, max_size=1024),
    anchors=AnchorSettings(sizes=(16.0, 22.0, 32.0, 46.0, 64.0, 90.0, 128.0, 180.0, 256.0, 362.0),
                           ratios=(0.5, 1.0, 2.0), stride=8),
    rpn=RPNSettings(ignore_cross_boundary=False, pre_nms_top_n=6000, post_nms_top_n=1000, min_size=8.0,
                    pre_nms_top_n_train=2000, post_nms_top_n_train=512),
    roi=dataclasses.replace(PAPER.roi, pool="roi_align", bg_iou_thresh_lo=0.0),
)
"""The default model's settings: the paper's, except where the synthetic scenes (objects of 13..410 px at
the network's scale, sides up to 3:1) need otherwise:

- anchors about a factor sqrt(2) apart from 16 to 362 px (10 sizes x 3 ratios = 30 per location; even
  sizes, since torchvision rounds an anchor's corners to whole pixels around its centre) on a stride-8 map:
  87% of the scenes' boxes reach IoU 0.7 with some anchor (the paper's factor 2 reaches 47%), so objects of
  every size have positive anchors beyond their one low-quality match (``python -m frcnn anchors``);
- cross-boundary anchors kept in training (torchvision's choice: with the largest anchors on a 512-px image
  the paper's rule would leave the largest objects almost no anchor to learn from);
- 1000 proposals at test time (torchvision's number; the paper's 300 are spent on large objects' near
  duplicates before the small ones come);
- RoIAlign (a 16-px object covers two cells, which RoIPool would quantise away), and background RoIs drawn
  from IoU [0, 0.5) (torchvision and Detectron; the paper's [0.1, 0.5) never shows the head the clutter far
  from every object, which it then has to classify at test time).
"""


@dataclass(frozen=True, eq=False)
class Detector:
    """A loaded model. Shared and read-only: nothing here changes per request."""

    name: str
    module: FasterRCNN  # eval mode, on ``device``
    class_names: tuple[str, ...]  # index 0 is "__background__"
    defaults: Settings  # the settings it was trained with / its own test-time configuration
    device: torch.device
    weights: str  # where the weights came from, in words
    notes: tuple[str, ...] = ()
    key: str = field(default="")

    @property
    def trained_anchor_sizes(self) -> tuple[tuple[float, ...], ...]:
        return tuple(tuple(float(s) for s in lvl) for lvl in self.module.rpn.anchor_generator.sizes)

    @property
    def trained_anchor_ratios(self) -> tuple[float, ...]:
        return tuple(float(r) for r in self.module.rpn.anchor_generator.aspect_ratios[0])

    @property
    def pooled_feature_names(self) -> tuple[str, ...]:
        return tuple(self.module.roi_heads.box_roi_pool.featmap_names)

    @property
    def pool_output_size(self) -> int:
        size = self.module.roi_heads.box_roi_pool.output_size
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    @property
    def multi_level(self) -> bool:
        return len(self.module.rpn.anchor_generator.sizes) > 1

    @property
    def image_mean(self) -> list[float]:
        return list(self.module.transform.image_mean)

    @property
    def image_std(self) -> list[float]:
        return list(self.module.transform.image_std)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    build: Callable[[int], FasterRCNN]  # num_classes -> randomly initialised module
    class_names: Callable[[], tuple[str, ...]]
    defaults: Settings
    coco_weights: Any = None  # torchvision weights enum entry of the whole detector
    backbone_weights: Any = None  # ... or of its backbone


def _single_map_rcnn(backbone: nn.Module, box_head: nn.Module, representation: int, num_classes: int,
                     settings: Settings) -> FasterRCNN:
    anchors = AnchorGenerator((tuple(settings.anchors.sizes),), (tuple(settings.anchors.ratios),))
    return FasterRCNN(
        backbone, rpn_anchor_generator=anchors,
        box_roi_pool=MultiScaleRoIAlign(["0"], settings.roi.output_size, settings.roi.sampling_ratio),
        box_head=box_head, box_predictor=FastRCNNPredictor(representation, num_classes),
        min_size=settings.input.min_size, max_size=settings.input.max_size)


def build_default(num_classes: int, settings: Settings = DEFAULT_SETTINGS) -> FasterRCNN:
    """The light single-map model; ``settings`` fixes its anchors (k per location) and pooled size."""
    backbone = light_backbone()
    size = settings.roi.output_size
    representation = 256
    head = TwoMLPHead(backbone.out_channels * size * size, representation)
    return _single_map_rcnn(backbone, head, representation, num_classes, settings)


def build_vgg16(num_classes: int, settings: Settings = PAPER) -> FasterRCNN:
    """VGG-16 randomly initialised; ImageNet weights are loaded into it by ``load_model``."""
    backbone = vgg16_backbone()
    head, representation = vgg16_fc_head()
    return _single_map_rcnn(backbone, head, representation, num_classes, settings)


def settings_from_torchvision(module: FasterRCNN, base: Settings = TORCHVISION_COCO) -> Settings:
    """The Settings that reproduce a torchvision FasterRCNN's own test-time behaviour."""
    rpn, heads, gen = module.rpn, module.roi_heads, module.rpn.anchor_generator
    levels = [tuple(float(s) for s in lvl) for lvl in gen.sizes]
    sizes = levels[0] if all(lvl == levels[0] for lvl in levels) else tuple(s for lvl in levels for s in lvl)
    pool = heads.box_roi_pool
    return base.replace({
        "input.min_size": module.transform.min_size[-1], "input.max_size": module.transform.max_size,
        "anchors.sizes": sizes, "anchors.ratios": tuple(float(r) for r in gen.aspect_ratios[0]),
        "rpn.fg_iou_thresh": rpn.proposal_matcher.high_threshold,
        "rpn.bg_iou_thresh": rpn.proposal_matcher.low_threshold,
        "rpn.allow_low_quality_matches": rpn.proposal_matcher.allow_low_quality_matches,
        "rpn.ignore_cross_boundary": False,
        "rpn.batch_size_per_image": rpn.fg_bg_sampler.batch_size_per_image,
        "rpn.positive_fraction": rpn.fg_bg_sampler.positive_fraction,
        "rpn.pre_nms_top_n": rpn._pre_nms_top_n["testing"], "rpn.post_nms_top_n": rpn._post_nms_top_n["testing"],
        "rpn.nms_thresh": rpn.nms_thresh, "rpn.min_size": rpn.min_size, "rpn.score_thresh": rpn.score_thresh,
        "roi.fg_iou_thresh": heads.proposal_matcher.high_threshold,
        "roi.bg_iou_thresh_hi": heads.proposal_matcher.low_threshold, "roi.bg_iou_thresh_lo": 0.0,
        "roi.batch_size_per_image": heads.fg_bg_sampler.batch_size_per_image,
        "roi.positive_fraction": heads.fg_bg_sampler.positive_fraction,
        "roi.pool": "roi_align", "roi.output_size": pool.output_size[0], "roi.sampling_ratio": pool.sampling_ratio,
        "roi.score_thresh": heads.score_thresh, "roi.nms_thresh": heads.nms_thresh,
        "roi.detections_per_img": heads.detections_per_img,
    })


def _coco_builder(fn: Callable[..., FasterRCNN]) -> Callable[[int], FasterRCNN]:
    def build(num_classes: int) -> FasterRCNN:
        # weights_backbone=None as well: with it left out torchvision would download ImageNet weights
        return fn(weights=None, weights_backbone=None, num_classes=num_classes)

    return build


def _coco_names(weights: Any) -> Callable[[], tuple[str, ...]]:
    return lambda: tuple(weights.meta["categories"])


_MOBILENET = FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1
_RESNET = FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1
REGISTRY: dict[str, ModelSpec] = {
    "default": ModelSpec("default", "the paper's single-map Faster R-CNN, light residual trunk, synthetic shapes",
                         build_default, _shape_classes, DEFAULT_SETTINGS),
    "vgg16": ModelSpec("vgg16", "the paper's configuration: VGG-16 conv5_3, 9 anchors, RoIPool 7x7",
                       build_vgg16, lambda: VOC_CLASSES, PAPER, backbone_weights=VGG16_Weights.IMAGENET1K_V1),
    "resnet50_fpn_v2": ModelSpec("resnet50_fpn_v2", "torchvision's COCO Faster R-CNN, ResNet-50 FPN v2",
                                 _coco_builder(fasterrcnn_resnet50_fpn_v2), _coco_names(_RESNET),
                                 TORCHVISION_COCO, coco_weights=_RESNET),
    "mobilenet_v3_fpn": ModelSpec("mobilenet_v3_fpn", "torchvision's COCO Faster R-CNN, MobileNetV3-Large FPN",
                                  _coco_builder(fasterrcnn_mobilenet_v3_large_fpn), _coco_names(_MOBILENET),
                                  TORCHVISION_COCO, coco_weights=_MOBILENET),
}
MODEL_NAMES = tuple(REGISTRY)


def pick_device(device: str | torch.device | None = "auto") -> torch.device:
    """"auto" (or None): CUDA when available, else CPU; "cpu", "cuda", "cuda:1" as asked."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(str(device))
    except RuntimeError:
        raise FrcnnError(f"unknown device {device!r} (use auto, cpu or cuda)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FrcnnError("device cuda asked for, but no CUDA GPU is available here (use auto or cpu)")
    if dev.type not in ("cpu", "cuda"):
        raise FrcnnError(f"unsupported device {device!r} (use auto, cpu or cuda)")
    return dev


def load_model(name: str = "default", weights: str | os.PathLike | None = "auto",
               device: str | torch.device | None = "auto", progress: Progress | None = None) -> Detector:
    """Build model ``name``, load ``weights`` (see the module docstring), move it to ``device``, eval mode."""
    spec = REGISTRY.get(name)
    if spec is None:
        raise FrcnnError(f"unknown model {name!r} (choose one of: {', '.join(MODEL_NAMES)})")
    dev = pick_device(device)
    weights = "auto" if weights is None else weights
    if str(weights) in ("auto", "pretrained", "random"):
        module, class_names, defaults, described, notes = _load_named(spec, str(weights), progress)
    else:
        module, class_names, defaults, described, notes = _load_file(spec, Path(weights))
    if spec.coco_weights is not None:  # torchvision's detectors: their own test-time configuration
        defaults = settings_from_torchvision(module)
    module.eval().to(dev)
    for p in module.parameters():
        p.requires_grad_(False)
    key = f"{name}|{described}|{dev}"
    return Detector(name, module, class_names, defaults, dev, described, tuple(notes), key)


def _load_named(spec: ModelSpec, weights: str, progress: Progress | None = None
                ) -> tuple[FasterRCNN, tuple[str, ...], Settings, str, list[str]]:
    class_names = spec.class_names()
    if weights == "random":
        return _random_module(spec, len(class_names)), class_names, spec.defaults, "random", []
    if spec.name == "default":
        if DEFAULT_CHECKPOINT.is_file():
            return _load_file(spec, DEFAULT_CHECKPOINT)
        if weights == "pretrained":
            raise FrcnnError(f"default: no trained checkpoint at {DEFAULT_CHECKPOINT}")
        note = f"default: no trained checkpoint at {DEFAULT_CHECKPOINT}; random weights"
        return _random_module(spec, len(class_names)), class_names, spec.defaults, "random", [note]
    enum = spec.coco_weights or spec.backbone_weights
    try:
        state = _download(enum, progress)
    except FrcnnError as exc:
        if weights == "pretrained":
            raise
        return (_random_module(spec, len(class_names)), class_names, spec.defaults, "random",
                [f"{exc}; random weights"])
    if spec.coco_weights is not None:
        module = spec.build(len(class_names))
        _load_state(module, state, spec.name)
        return module, class_names, spec.defaults, f"{enum}", []
    module = _vgg_with_backbone_state(spec, class_names, state)
    return module, class_names, spec.defaults, f"backbone {enum}", ["box predictor randomly initialised"]


def _random_module(spec: ModelSpec, num_classes: int) -> FasterRCNN:
    """Seeded, so every process (a test, a benchmark, the app offline) gets the same "random" model."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return spec.build(num_classes)


def _vgg_with_backbone_state(spec: ModelSpec, class_names: tuple[str, ...], state: dict) -> FasterRCNN:
    module = _random_module(spec, len(class_names))  # the RPN and the box predictor stay random
    features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    module.backbone.load_state_dict({k: v for k, v in features.items() if int(k.split(".")[0]) < 30})
    fc = {"1.weight": state["classifier.0.weight"], "1.bias": state["classifier.0.bias"],
          "4.weight": state["classifier.3.weight"], "4.bias": state["classifier.3.bias"]}
    module.roi_heads.box_head.load_state_dict(fc)
    return module


def _download(enum: Any, progress: Progress | None = None) -> dict:
    """The state dict of a torchvision weights entry: from the hub cache, else downloaded (checked)."""
    filename = os.path.basename(enum.url)
    target = Path(torch.hub.get_dir()) / "checkpoints" / filename
    where = f"put {filename} in {target.parent}/ (from {enum.url}) or pass --weights PATH"
    if not target.is_file():
        if os.environ.get(OFFLINE_ENV) == "1":
            raise FrcnnError(f"offline ({OFFLINE_ENV}=1): {where}")
        try:
            fetch(enum.url, target, progress)
        except FrcnnError as exc:
            raise FrcnnError(f"{exc}: {where}") from None
    return read_weights_file(target)["state_dict"]


def _load_file(spec: ModelSpec, path: Path) -> tuple[FasterRCNN, tuple[str, ...], Settings, str, list[str]]:
    data = read_weights_file(path)
    if data["format"] is None and spec.backbone_weights is not None and _is_classifier_state(data["state_dict"]):
        class_names = spec.class_names()  # torchvision's ImageNet file (vgg16-397923af.pth): the backbone's
        try:
            module = _vgg_with_backbone_state(spec, class_names, data["state_dict"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise FrcnnError(f"{path}: does not fit {spec.name}'s backbone "
                             f"({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})") from None
        return (module, class_names, spec.defaults, f"backbone {path}", ["box predictor randomly initialised"])
    if data["format"] is None:  # a raw state dict for this architecture
        class_names = spec.class_names()
        num_classes = _num_classes_in(data["state_dict"]) or len(class_names)
        if num_classes != len(class_names):
            class_names = tuple(["__background__"] + [f"class{i}" for i in range(1, num_classes)])
        module = spec.build(num_classes)
        _load_state(module, data["state_dict"], spec.name, path)
        return module, class_names, spec.defaults, str(path), []
    if data["model"] != spec.name:
        raise FrcnnError(f"{path}: a checkpoint of model {data['model']!r}, not {spec.name!r}")
    class_names = tuple(data["class_names"])
    try:
        defaults = Settings.from_flat(data["settings"], spec.defaults)  # a key newer than the file: the model's
    except FrcnnError as exc:
        raise FrcnnError(f"{path}: its settings are invalid ({exc})") from None
    if spec.name == "default":
        module = build_default(len(class_names), defaults)
    elif spec.name == "vgg16":
        module = build_vgg16(len(class_names), defaults)
    else:
        module = spec.build(len(class_names))
    _load_state(module, data["state_dict"], spec.name, path)
    return module, class_names, defaults, str(path), []


def _is_classifier_state(state: dict) -> bool:
    """A torchvision classification network's state dict (``features.*``, ``classifier.*``), as its ImageNet
    weights enum publishes it, rather than a detector's."""
    return "features.0.weight" in state and "classifier.0.weight" in state and not any(
        k.startswith(("backbone.", "rpn.", "roi_heads.")) for k in state)


def _num_classes_in(state: dict) -> int | None:
    w = state.get("roi_heads.box_predictor.cls_score.weight")
    return int(w.shape[0]) if isinstance(w, torch.Tensor) else None


def _load_state(module: nn.Module, state: dict, name: str, path: Path | None = None) -> None:
    """Load strictly; name what differs (missing / unexpected keys, shapes) in one line."""
    where = f"{path}: " if path else ""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise FrcnnError(f"{where}not a {name} model: {len(missing)} missing keys (e.g. {missing[:2]}), "
                         f"{len(unexpected)} unexpected (e.g. {unexpected[:2]})")
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            what = _describe_shape_mismatch(k, tuple(state[k].shape), tuple(v.shape))
            raise FrcnnError(f"{where}does not fit {name}: {what}")
    module.load_state_dict(state)


def _describe_shape_mismatch(key: str, got: tuple, want: tuple) -> str:
    if key.startswith("rpn.head.cls_logits"):
        return f"{got[0]} anchors per location in the file, {want[0]} in the model"
    if key.startswith("roi_heads.box_predictor.cls_score"):
        return f"{got[0]} classes in the file, {want[0]} in the model"
    return f"{key} has shape {list(got)} in the file, {list(want)} in the model"
