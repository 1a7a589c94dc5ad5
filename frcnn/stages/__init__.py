"""The stages of Faster R-CNN, one module each, in pipeline order (pure functions over tensors)."""

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
