"""The stages of Faster R-CNN, one module each, in pipeline order (pure functions over tensors).

Each stage function receives its own parameter record (:mod:`frcnn.stages.params`), never the whole settings;
the table that orders them with their inputs, for tracing and training alike, is :data:`frcnn.pipeline.PIPELINE`
(``STAGES`` below are the paper's stages the pages show; the table adds the tracer's ``rpn_anchors`` and
``rpn_anchor_targets``)."""

STAGES = (
    "preprocess",
    "backbone",
    "anchors",
    "rpn_head",
    "anchor_targets",
    "proposals",
    "roi_targets",
    "roi_pooling",
    "box_head",
    "detections",
    "losses",
)
