"""frcnn: Faster R-CNN, one stage at a time, every intermediate kept (the library behind the app).

    from frcnn import load_model, Tracer, Settings, load_image
    tracer = Tracer(load_model("default"))
    trace = tracer.run(load_image("photo.jpg").tensor, Settings().replace({"rpn.nms_thresh": 0.5}))
"""

from frcnn.errors import FrcnnError
from frcnn.models import MODEL_NAMES, Detector, load_model, pick_device
from frcnn.settings import Settings
from frcnn.trace import StageCache, Trace, Tracer

__all__ = ["MODEL_NAMES", "Detector", "FrcnnError", "Settings", "StageCache", "Trace", "Tracer", "load_model",
           "pick_device"]
