"""Models: the registry (build by name, load weights, pick the device) and checkpoints."""

from frcnn.models.checkpoint import read_weights_file, save_checkpoint
from frcnn.models.registry import MODEL_NAMES, REGISTRY, Detector, load_model, pick_device

__all__ = ["MODEL_NAMES", "REGISTRY", "Detector", "load_model", "pick_device", "read_weights_file",
           "save_checkpoint"]
