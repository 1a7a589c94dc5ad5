"""frcnn.data.picker without streamlit: which image is shown and under which key, whose ground truth it gets,
boxes drawn or typed cleaned by the annotation files' rules, and an annotation file refused over the budget."""

from __future__ import annotations

import json

import pytest
import torch

from frcnn import FrcnnError, budget
from frcnn.data import load_annotations, load_sample
from frcnn.data.images import LoadedImage
from frcnn.data.picker import (
    clean_user_truth,
    digest,
    drawn_truth,
    ground_truth_of,
    pick_image,
    read_ground_truth,
    sample_key,
    sample_names,
    upload_key,
)
from frcnn.settings import Settings


def _own(name: str = "mine.png") -> LoadedImage:
    return LoadedImage(torch.zeros(3, 20, 30, dtype=torch.uint8), name, ("converted from RGBA",))


def test_keys():
    assert digest(b"a") == "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8"
    assert upload_key(b"a") == "sha1:" + digest(b"a") != upload_key(b"b")
    assert sample_key("Cat (photo)") == "sample:Cat (photo)"


def test_samples_list_the_synthetic_scenes_first():
    names = sample_names()
    assert names[0] == "Synthetic scene 1" and "Cat (photo)" in names
    kinds = ["photo" in n for n in names]
    assert kinds == sorted(kinds)


def test_an_own_image_wins_and_the_sample_is_not_read():
    def never(name: str):
        raise AssertionError("the sample was read")

    picked = pick_image(_own(), "sha1:x", "Synthetic scene 1", never)
    assert picked.own and picked.key == "sha1:x" and picked.name == "mine.png"
    assert picked.notes == ("converted from RGBA",) and picked.sample_truth is None
    assert ground_truth_of(picked, None) == (None, None)


def test_a_sample_brings_its_own_ground_truth_unless_the_user_has_some():
    picked = pick_image(None, "", "Synthetic scene 1", load_sample)
    assert not picked.own and picked.key == sample_key("Synthetic scene 1")
    boxes, labels = ground_truth_of(picked, None)
    assert torch.equal(boxes, picked.sample_truth.boxes) and torch.equal(labels, picked.sample_truth.labels)
    mine = (torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.tensor([1]))
    assert ground_truth_of(picked, mine) == mine
    assert ground_truth_of(picked, (torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))) == (None, None)  # cleared


def test_typed_boxes_follow_the_annotation_files_rules():
    boxes = torch.tensor([[-5.0, 2.0, 40.0, 10.0], [float("nan"), 0, 1, 1], [5, 5, 3, 3], [50, 50, 60, 60]])
    kept, labels, report = clean_user_truth(boxes, torch.tensor([1, 2, 3, 4]), (30, 20))
    assert kept.tolist() == [[0.0, 2.0, 30.0, 10.0]] and labels.tolist() == [1]
    assert report == ["1 box clipped to the image", "1 box dropped: NaN or infinite coordinate",
                      "1 box dropped: zero or negative width/height", "1 box dropped: wholly outside the image"]
    doc = {"images": [{"id": 1, "file_name": "x.png", "width": 30, "height": 20}],
           "categories": [{"id": 1, "name": "a"}],
           "annotations": [{"image_id": 1, "category_id": 1, "bbox": [-5, 2, 45, 8]}]}
    assert load_annotations(json.dumps(doc).encode(), (30, 20), class_names=("__background__", "a")).boxes.tolist() \
        == kept.tolist()  # the same box from a file


def test_a_drawn_box_is_clipped_and_a_click_is_not_a_box():
    boxes, labels = drawn_truth((10, 5, 500, 15.5), 2, (100, 50))
    assert boxes.tolist() == [[10.0, 5.0, 100.0, 15.5]] and labels.tolist() == [2]
    assert len(drawn_truth((10, 10, 10.5, 10.5), 2, (100, 50))[0]) == 0
    assert len(drawn_truth((200, 10, 300, 20), 2, (100, 50))[0]) == 0  # wholly outside


def test_an_annotation_file_over_the_budget_is_refused(monkeypatch):
    from frcnn.models import load_model

    detector = load_model("default", "auto", "cpu")
    facts, image = budget.facts_of(detector), torch.zeros(3, 64, 64, dtype=torch.uint8)
    text = "\n".join("0 0.5 0.5 0.5 0.5" for _ in range(3)).encode()
    names = ("__background__", "a")
    parsed = read_ground_truth(text, "boxes.txt", image, "x.png", names, facts, Settings())
    assert len(parsed.boxes) == 3
    monkeypatch.setattr(budget, "fits", lambda *a, **k: False)
    monkeypatch.setattr(budget, "max_boxes", lambda *a, **k: 2)
    with pytest.raises(FrcnnError, match=r"boxes.txt: 3 boxes are over the work budget .*at most 2"):
        read_ground_truth(text, "boxes.txt", image, "x.png", names, facts, Settings())
