"""One COCO reader, one set of cleaning rules: an image's annotation file (``load_annotations``), a dataset's boxes
for the anchor fit (``load_coco_dataset_boxes``) and a training folder (``CocoFolder``) give the same boxes for a
file with every kind of bad box, and refuse the same file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from frcnn import FrcnnError
from frcnn.data.annotations import load_annotations, load_coco_dataset_boxes
from frcnn.data.dataset import CocoFolder

W, H = 64, 48
BOXES = [  # (bbox [x, y, w, h], category, what the rules do with it)
    ([4, 4, 20, 10], 1, "kept"),
    ([10, 10, 0, 8], 2, "dropped: zero width"),
    ([10, 10, 8, 0], 1, "dropped: zero height"),
    ([30, 20, -5, 6], 2, "dropped: negative width"),
    ([70, 10, 5, 5], 1, "dropped: wholly outside the image"),
    ([-10, -10, 5, 5], 2, "dropped: wholly outside (above and left)"),
    ([50, 40, 30, 30], 2, "clipped to (50, 40, 64, 48)"),
    ([20.25, 5.5, 0.5, 0.5], 1, "kept: tiny but positive"),
]
CROWD = ([0, 0, 30, 30], 1)
EXPECTED = torch.tensor([[4, 4, 24, 14], [50, 40, 64, 48], [20.25, 5.5, 20.75, 6.0]])
EXPECTED_LABELS = [1, 2, 1]


def _document(extra: list[dict] | None = None) -> dict:
    anns = [{"id": i, "image_id": 1, "bbox": b, "category_id": c, "iscrowd": 0} for i, (b, c, _) in enumerate(BOXES)]
    anns.append({"id": len(anns), "image_id": 1, "bbox": CROWD[0], "category_id": CROWD[1], "iscrowd": 1})
    return {"images": [{"id": 1, "file_name": "a.png", "width": W, "height": H}], "annotations": anns + (extra or []),
            "categories": [{"id": 1, "name": "ring"}, {"id": 2, "name": "cross"}]}


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((H, W, 3), dtype=np.uint8)).save(tmp_path / "images" / "a.png")
    (tmp_path / "annotations.json").write_text(json.dumps(_document()))
    return tmp_path


def test_every_reader_gives_the_same_boxes(folder):
    ds = CocoFolder(folder)
    _, boxes, labels = ds[0]
    gt = load_annotations(folder / "annotations.json", (W, H), image_name="a.png", class_names=ds.class_names)
    dataset = load_coco_dataset_boxes(folder / "annotations.json")
    torch.testing.assert_close(boxes, EXPECTED)
    torch.testing.assert_close(gt.boxes, EXPECTED)
    torch.testing.assert_close(dataset.items[0][1], EXPECTED)
    assert labels.tolist() == gt.labels.tolist() == EXPECTED_LABELS
    assert gt.names == ("ring", "cross", "ring")
    report = set(gt.report)
    assert {"1 crowd region skipped", "3 boxes dropped: zero or negative width/height",
            "2 boxes dropped: wholly outside the image", "1 box clipped to the image"} <= report
    assert set(dataset.report) == report


def test_an_unknown_category_is_refused_by_every_reader(folder):
    bad = {"id": 99, "image_id": 1, "bbox": [1, 1, 5, 5], "category_id": 7, "iscrowd": 0}
    (folder / "annotations.json").write_text(json.dumps(_document([bad])))
    with pytest.raises(FrcnnError, match="category_id 7, which is not in 'categories'"):
        CocoFolder(folder)
    with pytest.raises(FrcnnError, match="category_id 7, which is not in 'categories'"):
        load_annotations(folder / "annotations.json", (W, H), image_name="a.png")
