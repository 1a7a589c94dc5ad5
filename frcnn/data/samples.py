"""The sample catalogue: real photographs shipped with the package, then a few synthetic shape scenes.

Photos live in ``frcnn/data/samples/`` with one COCO ``annotations.json`` for all of them (hand-checked
boxes; COCO class names where COCO has the class, so torchvision's COCO models can be compared) and
``SOURCES.md`` giving each photo's origin, credit and licence (all public domain or CC0). They are read
with the same loaders as an uploaded file (:func:`~frcnn.data.load_image`,
:func:`~frcnn.data.load_annotations`).

Synthetic samples are :func:`~frcnn.data.shapes.make_scene` ``(SYNTHETIC_SEED, i)``, i = 0, 1, 2, 3: a
series that training (seeds 0 and 1) and evaluation (seed 2026) never use.

Names: G the number of ground-truth boxes; boxes are ``Tensor[G, 4]`` float32 (x1, y1, x2, y2) pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from frcnn.data.annotations import GroundTruth, _assign_labels, load_annotations
from frcnn.data.images import LoadedImage, load_image
from frcnn.data.shapes import CLASS_NAMES, make_scene
from frcnn.errors import FrcnnError

SYNTHETIC_SEED = 7  # never used for training (training uses seeds 0 and 1, evaluation 2026)
N_SYNTHETIC = 4  # synthetic samples: make_scene(SYNTHETIC_SEED, i) for i in range(N_SYNTHETIC)
SAMPLES_DIR = Path(__file__).with_name("samples")  # the photos, annotations.json and SOURCES.md
ANNOTATIONS_FILE = SAMPLES_DIR / "annotations.json"

# display name -> file in SAMPLES_DIR, in the order the app lists them
_PHOTOS: dict[str, str] = {
    "Astronaut (photo)": "astronaut.jpg",
    "Cat (photo)": "chelsea.png",
    "Coffee (photo)": "coffee.jpg",
    "Rocket (photo)": "rocket.jpg",
}
_SYNTHETIC_PREFIX = "Synthetic scene "  # + 1-based number: "Synthetic scene 1" is make_scene(SEED, 0)


@dataclass(frozen=True)
class Sample:
    """One entry of the catalogue; ``name`` is what the app shows and what :func:`load_sample` takes."""

    name: str  # e.g. "Astronaut (photo)", "Synthetic scene 1"
    kind: str  # "photo" or "synthetic"


def list_samples() -> list[Sample]:
    """Every sample: the photos first, then the synthetic scenes."""
    photos = [Sample(name, "photo") for name in _PHOTOS]
    synthetic = [Sample(f"{_SYNTHETIC_PREFIX}{i + 1}", "synthetic") for i in range(N_SYNTHETIC)]
    return photos + synthetic


def load_sample(name: str, class_names: Sequence[str] | None = None) -> tuple[LoadedImage, GroundTruth]:
    """The image and ground truth of the sample called ``name``.

    Args:
        name: a :attr:`Sample.name` from :func:`list_samples`.
        class_names: the model's classes (index 0 "__background__"), passed to
            :func:`~frcnn.data.load_annotations` to set labels. Without it a photo's labels are 1, 2, ...
            by sorted name and a synthetic scene's are its indices into :data:`~frcnn.data.shapes.CLASS_NAMES`.

    Returns:
        (image, ground truth): ``image.tensor`` ``Tensor[3, H, W]`` uint8 RGB; ``boxes`` ``Tensor[G, 4]``
        float32 (x1, y1, x2, y2), ``labels`` ``Tensor[G]`` int64, ``names`` the class names.

    Raises:
        FrcnnError: no sample has that name.
    """
    if name in _PHOTOS:
        return _load_photo(_PHOTOS[name], class_names)
    index = _synthetic_index(name)
    if index is None:
        known = ", ".join(s.name for s in list_samples())
        raise FrcnnError(f"no sample called {name!r} (samples: {known})")
    return _load_synthetic(index, class_names)


def _load_photo(file_name: str, class_names: Sequence[str] | None) -> tuple[LoadedImage, GroundTruth]:
    image = load_image(SAMPLES_DIR / file_name)
    gt = load_annotations(
        ANNOTATIONS_FILE, (image.width, image.height), image_name=file_name, fmt="coco", class_names=class_names
    )
    return image, gt


def _synthetic_index(name: str) -> int | None:
    """0-based scene index of "Synthetic scene k" (k = 1..N_SYNTHETIC), else None."""
    number = name.removeprefix(_SYNTHETIC_PREFIX)
    if number == name or not number.isdigit() or not 1 <= int(number) <= N_SYNTHETIC:
        return None
    return int(number) - 1


def _load_synthetic(index: int, class_names: Sequence[str] | None) -> tuple[LoadedImage, GroundTruth]:
    scene = make_scene(SYNTHETIC_SEED, index)
    tensor = torch.from_numpy(scene.image.copy()).permute(2, 0, 1).contiguous()  # (H, W, 3) -> (3, H, W)
    image = LoadedImage(tensor=tensor, name=f"synthetic_seed{SYNTHETIC_SEED}_{index}.png")
    names = [CLASS_NAMES[k] for k in scene.labels.tolist()]
    labels, report = _assign_labels(names, CLASS_NAMES if class_names is None else class_names)  # (G,)
    gt = GroundTruth(
        boxes=torch.from_numpy(scene.boxes.copy()),  # (G, 4) float32
        labels=torch.from_numpy(labels),
        names=tuple(names),
        report=tuple(report),
    )
    return image, gt
