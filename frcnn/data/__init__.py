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

__all__ = [
    "ANNOTATION_FORMATS",
    "IMAGE_FORMATS",
    "MAX_BOXES",
    "MAX_PIXELS",
    "GroundTruth",
    "LoadedImage",
    "detect_format",
    "dump_annotations",
    "image_to_numpy",
    "load_annotations",
    "load_image",
]
