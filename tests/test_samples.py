"""The sample catalogue: every sample loads, the shipped photos and their boxes are sound and credited."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights

from frcnn.data import GroundTruth, LoadedImage, Sample, list_samples, load_sample
from frcnn.data.samples import ANNOTATIONS_FILE, N_SYNTHETIC, SAMPLES_DIR, SYNTHETIC_SEED
from frcnn.data.shapes import CLASS_NAMES, make_scene
from frcnn.errors import FrcnnError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
COCO_NAMES = tuple(FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"])  # metadata only, no download
PHOTOS = [s.name for s in list_samples() if s.kind == "photo"]
SYNTHETIC = [s.name for s in list_samples() if s.kind == "synthetic"]


def _coco() -> dict:
    return json.loads(ANNOTATIONS_FILE.read_text())


def _image_files() -> list[str]:
    return sorted(p.name for p in SAMPLES_DIR.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def test_catalogue_lists_photos_first_then_four_synthetic_scenes():
    samples = list_samples()
    kinds = [s.kind for s in samples]
    assert kinds == ["photo"] * len(PHOTOS) + ["synthetic"] * N_SYNTHETIC
    assert N_SYNTHETIC == 4 and len(PHOTOS) >= 4
    assert len({s.name for s in samples}) == len(samples)
    assert all(isinstance(s, Sample) for s in samples)
    assert [f"Synthetic scene {i + 1}" for i in range(N_SYNTHETIC)] == SYNTHETIC


def test_synthetic_seed_is_kept_out_of_training_and_evaluation():
    assert SYNTHETIC_SEED not in (0, 1, 2026)


@pytest.mark.parametrize("name", [s.name for s in list_samples()])
def test_every_sample_loads(name):
    image, gt = load_sample(name)
    assert isinstance(image, LoadedImage) and isinstance(gt, GroundTruth)
    assert image.tensor.dtype == torch.uint8 and image.tensor.shape[0] == 3
    assert gt.boxes.dtype == torch.float32 and gt.labels.dtype == torch.int64
    assert len(gt) >= 1
    assert gt.report == ()  # nothing had to be clipped, dropped or renamed
    x1, y1, x2, y2 = gt.boxes.unbind(1)
    assert bool(((x1 >= 0) & (y1 >= 0) & (x2 <= image.width) & (y2 <= image.height)).all())
    assert bool(((x2 > x1) & (y2 > y1)).all())


@pytest.mark.parametrize("name", PHOTOS)
def test_photo_boxes_in_the_file_lie_inside_their_image(name):
    image, _ = load_sample(name)
    coco = _coco()
    entry = next(img for img in coco["images"] if img["file_name"] == image.name)
    assert (entry["width"], entry["height"]) == (image.width, image.height)
    anns = [a for a in coco["annotations"] if a["image_id"] == entry["id"]]
    assert anns, f"{image.name} has no boxes"
    for a in anns:
        x, y, w, h = a["bbox"]
        assert w > 0 and h > 0
        assert x >= 0 and y >= 0 and x + w <= image.width and y + h <= image.height


def test_annotations_file_is_coco_with_ids_from_one():
    coco = _coco()
    assert [img["id"] for img in coco["images"]] == list(range(1, len(coco["images"]) + 1))
    assert [a["id"] for a in coco["annotations"]] == list(range(1, len(coco["annotations"]) + 1))
    category_ids = {c["id"] for c in coco["categories"]}
    assert {a["category_id"] for a in coco["annotations"]} <= category_ids
    assert {a["image_id"] for a in coco["annotations"]} == {img["id"] for img in coco["images"]}


def test_coco_classes_use_coco_names_and_ids():
    """Names COCO has keep COCO's id, which is also the label of torchvision's COCO models."""
    used = {c["name"]: c["id"] for c in _coco()["categories"]}
    assert {"person", "cat", "cup"} <= set(used)
    for name, cid in used.items():
        if name in COCO_NAMES:
            assert COCO_NAMES[cid] == name
        else:
            assert cid > len(COCO_NAMES)


def test_class_names_are_passed_through_to_the_labels():
    _, gt = load_sample("Cat (photo)", class_names=COCO_NAMES)
    assert gt.names == ("cat",) and gt.labels.tolist() == [COCO_NAMES.index("cat")]
    _, gt = load_sample("Astronaut (photo)", class_names=COCO_NAMES)
    person = gt.names.index("person")
    assert gt.labels[person].item() == 1
    assert any("not known to the model" in line for line in gt.report)  # flag, helmet, shuttle model


def test_every_annotated_image_has_a_file_and_every_file_is_annotated():
    names = [img["file_name"] for img in _coco()["images"]]
    assert all((SAMPLES_DIR / n).is_file() for n in names)
    assert sorted(names) == _image_files()


def test_sources_names_every_image_file():
    sources = (SAMPLES_DIR / "SOURCES.md").read_text()
    for name in _image_files():
        assert f"`{name}`" in sources, f"{name} is not credited in SOURCES.md"
    assert sources.lower().count("licence") >= len(_image_files())


def test_sample_files_are_small():
    sizes = {p.name: p.stat().st_size for p in SAMPLES_DIR.iterdir() if p.is_file()}
    assert sum(sizes.values()) < 2_000_000
    assert all(sizes[n] < 300_000 for n in _image_files())


def test_photos_are_plain_rgb_images():
    for name in _image_files():
        with Image.open(SAMPLES_DIR / name) as img:
            assert img.mode == "RGB" and img.format in ("PNG", "JPEG")


@pytest.mark.parametrize("i", range(N_SYNTHETIC))
def test_synthetic_samples_equal_make_scene(i):
    scene = make_scene(SYNTHETIC_SEED, i)
    image, gt = load_sample(f"Synthetic scene {i + 1}")
    np.testing.assert_array_equal(image.tensor.permute(1, 2, 0).numpy(), scene.image)
    np.testing.assert_array_equal(gt.boxes.numpy(), scene.boxes)
    np.testing.assert_array_equal(gt.labels.numpy(), scene.labels)
    assert gt.names == tuple(CLASS_NAMES[k] for k in scene.labels.tolist())


def test_synthetic_labels_follow_given_class_names():
    _, gt = load_sample("Synthetic scene 1", class_names=("__background__", "ring"))
    ring = [n == "ring" for n in gt.names]
    assert all(label == 1 for label, is_ring in zip(gt.labels.tolist(), ring, strict=True) if is_ring)
    assert all(label >= 2 for label, is_ring in zip(gt.labels.tolist(), ring, strict=True) if not is_ring)


@pytest.mark.parametrize("name", ["", "astronaut", "Synthetic scene 0", "Synthetic scene 5", "Synthetic scene x"])
def test_unknown_name_is_refused(name):
    with pytest.raises(FrcnnError, match="no sample called"):
        load_sample(name)
