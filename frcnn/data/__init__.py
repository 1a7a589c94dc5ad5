"""Input data: images (any accepted file -> RGB uint8 tensor) and ground-truth annotation files."""

from frcnn.data.annotations import (
    ANNOTATION_FORMATS,
    MAX_BOXES,
    GroundTruth,
    detect_format,
    dump_annotations,
    load_annotations,
)
from frcnn.data.images import IMAGE_FORMATS, MAX_PIXELS, LoadedImage, image_to_numpy, load_image
from frcnn.data.samples import Sample, list_samples, load_sample

__all__ = [
    "ANNOTATION_FORMATS",
    "IMAGE_FORMATS",
    "MAX_BOXES",
    "MAX_PIXELS",
    "GroundTruth",
    "LoadedImage",
    "Sample",
    "detect_format",
    "dump_annotations",
    "image_to_numpy",
    "list_samples",
    "load_annotations",
    "load_image",
    "load_sample",
]
