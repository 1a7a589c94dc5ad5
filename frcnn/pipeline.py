"""The one pipeline: the stage table that tracing and training both follow.

``PIPELINE`` lists the stages in the order they run, each with its inputs (other stages, or "image" and "gt")
and its parameter record (:mod:`frcnn.stages.params`). Everything that needs the graph reads it from here: the
tracer's dependency table and cache keys (a stage's key is its inputs' keys and its record), the settings each
stage reads (``python -m frcnn keys``), and the box fields the tracer maps back to the original image's pixels.

:func:`training_pass` is one image through the same stage functions, as :func:`frcnn.train.train` runs them
(the train switch: minibatch sampling seeded per image, the training-time proposal counts): the resize of
:func:`~frcnn.stages.preprocess.preprocess`, the backbone's own level names, the anchors the tracer decodes,
and the box head's RoIs pooled at the size the head was trained on, with the settings' op and sampling ratio.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from frcnn.settings import Settings
from frcnn.stages.anchor_targets import anchor_targets
from frcnn.stages.anchors import Anchors, TrainedAnchors, rpn_anchors, settings_anchors
from frcnn.stages.backbone import run_backbone
from frcnn.stages.box_head import HeadPooling, head_pooling, pooled_box_head
from frcnn.stages.detections import Detections
from frcnn.stages.losses import Losses, four_losses
from frcnn.stages.params import (
    AnchorParams,
    AnchorTargetParams,
    DetectionParams,
    HeadPoolParams,
    NoParams,
    PoolParams,
    PreprocessParams,
    ProposalParams,
    RoITargetParams,
    StageParams,
)
from frcnn.stages.preprocess import Preprocessed, preprocess, to_network
from frcnn.stages.proposals import Proposals, propose
from frcnn.stages.roi_pooling import PooledRoIs, pooled_levels
from frcnn.stages.roi_targets import RoITargets, roi_targets
from frcnn.stages.rpn_head import run_rpn_head


@dataclass(frozen=True)
class Stage:
    name: str
    inputs: tuple[str, ...]  # stages (or "image", "gt") whose results it takes
    params: type[StageParams]  # its record: all it reads of the settings
    result: type | None = None  # the result's type, where it holds boxes
    box_fields: tuple[str, ...] = ()  # the result's fields in network-input pixels


PIPELINE: tuple[Stage, ...] = (
    Stage("preprocess", ("image",), PreprocessParams),
    Stage("backbone", ("preprocess",), NoParams),
    Stage("anchors", ("preprocess", "backbone"), AnchorParams, Anchors, ("boxes", "cell")),
    Stage("rpn_anchors", ("anchors",), NoParams),  # the anchors the trained head decodes
    Stage("rpn_head", ("backbone",), NoParams),
    Stage("anchor_targets", ("anchors", "gt"), AnchorTargetParams),
    Stage("rpn_anchor_targets", ("preprocess", "rpn_anchors", "gt"), AnchorTargetParams),  # for the RPN loss
    Stage("proposals", ("rpn_anchors", "rpn_head"), ProposalParams, Proposals, ("boxes", "pre_nms_boxes")),
    Stage("roi_targets", ("proposals", "gt"), RoITargetParams, RoITargets, ("boxes", "candidate_boxes")),
    Stage("roi_pooling", ("backbone", "proposals"), PoolParams, PooledRoIs, ("boxes",)),
    Stage("box_head", ("roi_pooling",), NoParams),  # pools as its input says, at the trained size
    Stage("detections", ("box_head",), DetectionParams, Detections, ("boxes",)),
    Stage("losses", ("rpn_anchor_targets", "rpn_head", "roi_targets"), HeadPoolParams),
)
STAGE_BY_NAME: dict[str, Stage] = {s.name: s for s in PIPELINE}


def stage_params(name: str, settings: Settings) -> StageParams:
    """The record stage ``name`` receives under ``settings``."""
    return STAGE_BY_NAME[name].params.from_settings(settings)


def stage_keys() -> dict[str, tuple[str, ...]]:
    """Stage -> the flat settings keys its record holds, in pipeline order."""
    return {s.name: s.params.flat_keys() for s in PIPELINE}


@dataclass(frozen=True)
class Trained:
    """What a trained module fixes for both paths: its anchors, the levels and size its box head pools."""

    anchors: TrainedAnchors
    pooled_names: tuple[str, ...]  # the box head's featmap_names
    pool_size: int  # the box head's input size S (S x S)
    num_classes: int  # background included

    @classmethod
    def of(cls, module: nn.Module) -> Trained:
        gen, heads = module.rpn.anchor_generator, module.roi_heads
        size = heads.box_roi_pool.output_size
        return cls(TrainedAnchors(tuple(tuple(float(s) for s in lvl) for lvl in gen.sizes),
                                  tuple(float(r) for r in gen.aspect_ratios[0])),
                   tuple(heads.box_roi_pool.featmap_names), int(size[0] if isinstance(size, (tuple, list)) else size),
                   int(heads.box_predictor.cls_score.out_features))


@dataclass(frozen=True)
class TrainingPass:
    """One image through the pipeline as training runs it (what the test compares a trace with)."""

    preprocess: Preprocessed
    anchors: Anchors  # what the RPN decoded, network-input pixels
    head_pooling: HeadPooling
    losses: Losses


def training_pass(module: nn.Module, image: Tensor, boxes: Tensor, labels: Tensor, settings: Settings,
                  min_size: int | None = None, seeds: tuple[int, int] | None = None,
                  training: bool = True) -> TrainingPass:
    """The four losses of one image (gradients flow into ``module``).

    Args: image (3, H, W) uint8, or float in [0, 1]; boxes (G, 4) in its pixels; labels (G,); ``min_size`` the
    shorter side (default the settings'); ``seeds`` the (anchor, RoI) minibatch seeds (default the settings');
    ``training`` takes the training-time proposal counts.
    """
    trained = Trained.of(module)
    pre_params = PreprocessParams.from_settings(settings)
    pre = preprocess(image, pre_params.replace(min_size=min_size or pre_params.min_size),
                     list(module.transform.image_mean), list(module.transform.image_std))
    gt = to_network(boxes.to(torch.float32), pre.scale)
    feats = run_backbone(module.backbone, pre.tensor)
    wanted = settings_anchors(AnchorParams.from_settings(settings), feats, pre.padded_size, pre.image_size,
                              trained.anchors)
    anchors, _, _ = rpn_anchors(wanted, feats, pre.image_size, trained.anchors)
    rpn = run_rpn_head(module.rpn.head, feats)
    a_params, r_params = AnchorTargetParams.from_settings(settings), RoITargetParams.from_settings(settings)
    if seeds is not None:
        a_params, r_params = a_params.replace(sample_seed=seeds[0]), r_params.replace(sample_seed=seeds[1])
    with torch.no_grad():  # the targets and proposals take no gradient (approximate joint training)
        a_targets = anchor_targets(anchors.boxes, anchors.inside, gt, a_params)
        props = propose(anchors.boxes, rpn.objectness, rpn.deltas, rpn.num_per_level, pre.image_size,
                        ProposalParams.from_settings(settings), training)
        r_targets = roi_targets(props.boxes, gt, labels, r_params)
    pool = HeadPoolParams.from_settings(settings)
    how = head_pooling(pool.pool, pool.sampling_ratio, trained.pool_size, pooled_levels(feats, trained.pooled_names))
    heads = module.roi_heads

    def head(rois: Tensor):
        return pooled_box_head(heads.box_head, heads.box_predictor, feats, rois, pre.image_size, how)

    losses = four_losses(rpn.objectness, rpn.deltas, a_targets, r_targets, head, trained.num_classes)
    return TrainingPass(pre, anchors, how, losses)
