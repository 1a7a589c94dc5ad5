"""Tests for the synthetic shape scenes: determinism, exact boxes, coverage, visibility, COCO output."""

import json
from itertools import combinations

import numpy as np
import pytest
from PIL import Image

from frcnn.data.shapes import (
    CLASS_NAMES,
    Scene,
    SceneConfig,
    _object_masks,
    _render,
    _visible_fractions,
    make_scene,
    write_coco_dataset,
)
from frcnn.errors import FrcnnError

N_SCENES = 200


@pytest.fixture(scope="module")
def rendered() -> list:
    """(scene, placed objects, owner map) for scenes 0..N_SCENES-1 of series 7."""
    return [_render(7, i, SceneConfig()) for i in range(N_SCENES)]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    area = lambda box: (box[2] - box[0]) * (box[3] - box[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def test_scene_types_and_shapes() -> None:
    scene = make_scene(0, 0)
    assert isinstance(scene, Scene)
    h, w, c = scene.image.shape
    assert c == 3 and scene.image.dtype == np.uint8
    assert 320 <= h <= 640 and 320 <= w <= 640
    assert scene.boxes.dtype == np.float32 and scene.boxes.shape == (len(scene.labels), 4)
    assert scene.labels.dtype == np.int64


def test_same_arguments_give_identical_bytes() -> None:
    for index in (0, 5):
        a, b = make_scene(3, index), make_scene(3, index)
        assert a.image.tobytes() == b.image.tobytes()
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.labels, b.labels)


def test_different_seed_or_index_gives_a_different_image() -> None:
    base = make_scene(3, 0).image
    for other in (make_scene(4, 0).image, make_scene(3, 1).image):
        assert base.shape != other.shape or not np.array_equal(base, other)


def test_boxes_are_tight_bounds_of_full_masks() -> None:
    for index in range(6):
        scene = make_scene(11, index)
        masks = _object_masks(11, index)
        assert masks.shape == (len(scene.labels), *scene.image.shape[:2])
        for box, mask in zip(scene.boxes, masks, strict=True):
            ys, xs = np.nonzero(mask)
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_boxes_inside_image_with_positive_size_and_valid_labels(rendered: list) -> None:
    config = SceneConfig()
    for scene, _, _ in rendered:
        h, w = scene.image.shape[:2]
        boxes = scene.boxes
        assert len(boxes) >= config.min_objects and len(boxes) <= config.max_objects
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
        assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        assert (boxes[:, 2] - boxes[:, 0] >= config.min_box - 1).all()  # a shape may miss one edge column
        assert (boxes[:, 3] - boxes[:, 1] >= config.min_box - 1).all()
        assert ((scene.labels >= 1) & (scene.labels <= len(CLASS_NAMES) - 1)).all()


def test_scenes_cover_sizes_aspects_classes_and_overlaps(rendered: list) -> None:
    boxes = np.concatenate([scene.boxes for scene, _, _ in rendered])
    labels = np.concatenate([scene.labels for scene, _, _ in rendered])
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    longer = np.maximum(widths, heights)
    aspect = widths / heights
    assert np.minimum(widths, heights).min() <= 20  # small objects
    assert longer.max() >= 0.7 * 640 * 0.8 and (longer >= 250).sum() >= 20  # large ones, and not rarely
    assert aspect.min() < 0.4 and aspect.max() > 2.5
    assert set(labels.tolist()) == set(range(1, len(CLASS_NAMES)))
    sizes = {scene.image.shape[:2] for scene, _, _ in rendered}
    assert len(sizes) > N_SCENES // 2 and any(h != w for h, w in sizes)
    overlapping = sum(
        any(_iou(a, b) > 0.1 for a, b in combinations(scene.boxes, 2)) for scene, _, _ in rendered
    )
    assert overlapping >= N_SCENES // 10


def test_every_object_stays_mostly_visible(rendered: list) -> None:
    for _, placed, owner in rendered:
        visible = np.bincount(owner[owner >= 0], minlength=len(placed))
        full = np.array([obj.mask.sum() for obj in placed])
        assert (visible >= 0.4 * full - 1e-9).all()
    fractions = _visible_fractions(7, 0)
    assert fractions.shape == (len(rendered[0][1]),) and (fractions >= 0.4).all()


def test_no_overlap_and_flat_background_when_options_are_off() -> None:
    config = SceneConfig(occlusion=False, clutter=False, texture=False)
    for index in range(5):
        scene = make_scene(2, index, config)
        masks = _object_masks(2, index, config)
        assert (masks.sum(0) <= 1).all()  # no pixel belongs to two objects
        background = scene.image[~masks.any(0)]
        assert (background == background[0]).all()


def test_bad_config_and_arguments_raise() -> None:
    with pytest.raises(FrcnnError):
        SceneConfig(min_side=500, max_side=400)
    with pytest.raises(FrcnnError):
        SceneConfig(min_objects=0)
    with pytest.raises(FrcnnError):
        SceneConfig(max_box_frac=1.5)
    with pytest.raises(FrcnnError):
        SceneConfig(max_aspect=0.5)
    with pytest.raises(FrcnnError):
        make_scene(-1, 0)
    with pytest.raises(FrcnnError):
        write_coco_dataset("unused", -1, 0)


def test_write_coco_dataset(tmp_path) -> None:
    config = SceneConfig(min_side=160, max_side=240, min_box=12)
    path = write_coco_dataset(tmp_path / "ds", 3, seed=5, config=config)
    assert path == tmp_path / "ds" / "annotations.json"
    coco = json.loads(path.read_text())
    assert [c["id"] for c in coco["categories"]] == list(range(1, len(CLASS_NAMES)))
    assert [c["name"] for c in coco["categories"]] == list(CLASS_NAMES[1:])
    assert len(coco["images"]) == 3 and len(list((tmp_path / "ds" / "images").iterdir())) == 3
    ann_ids = [a["id"] for a in coco["annotations"]]
    assert len(set(ann_ids)) == len(ann_ids) and min(ann_ids) >= 1
    for i, entry in enumerate(coco["images"]):
        scene = make_scene(5, i, config)
        assert entry["file_name"] == f"{i:06d}.png"
        pixels = np.asarray(Image.open(tmp_path / "ds" / "images" / entry["file_name"]).convert("RGB"))
        np.testing.assert_array_equal(pixels, scene.image)
        assert (entry["width"], entry["height"]) == (scene.image.shape[1], scene.image.shape[0])
        anns = [a for a in coco["annotations"] if a["image_id"] == entry["id"]]
        assert [a["category_id"] for a in anns] == scene.labels.tolist()
        for ann, box in zip(anns, scene.boxes.tolist(), strict=True):
            x, y, w, h = ann["bbox"]
            assert [x, y, x + w, y + h] == box and ann["iscrowd"] == 0 and ann["area"] == w * h
