"""load_annotations / dump_annotations: hand-checkable files in each format, fixes, errors, round trips."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from frcnn.data import (
    ANNOTATION_FORMATS,
    MAX_BOXES,
    GroundTruth,
    detect_format,
    dump_annotations,
    load_annotations,
)
from frcnn.errors import FrcnnError

SIZE = (100, 80)  # (W, H)
CLASSES = ("__background__", "cat", "dog", "person")

COCO = {
    "images": [{"id": 7, "file_name": "a.png", "width": 100, "height": 80}],
    "annotations": [
        {"id": 1, "image_id": 7, "category_id": 1, "bbox": [10, 20, 30, 40]},
        {"id": 2, "image_id": 7, "category_id": 3, "bbox": [0.5, 0, 5, 5.25]},
    ],
    "categories": [{"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}],
}

VOC = """<annotation>
  <filename>a.png</filename>
  <size><width>100</width><height>80</height><depth>3</depth></size>
  <object>
    <name>dog</name>
    <difficult>0</difficult>
    <bndbox><xmin>11</xmin><ymin>21</ymin><xmax>40</xmax><ymax>60</ymax></bndbox>
  </object>
  <object>
    <name> cat </name>
    <bndbox><xmin>1</xmin><ymin>1</ymin><xmax>100</xmax><ymax>80</ymax></bndbox>
  </object>
</annotation>
"""

YOLO = "0 0.25 0.5 0.3 0.5\n\n# a comment\n1 0.5 0.5 1 1\n"

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<annotation><object><name>&lol3;</name></object></annotation>
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _coco(**changes) -> str:
    doc = json.loads(json.dumps(COCO))
    doc.update(changes)
    return json.dumps(doc)


# ---- each format on a hand-written file ---------------------------------------------------------------


def test_coco_hand_written(tmp_path: Path) -> None:
    gt = load_annotations(_write(tmp_path, "ann.json", json.dumps(COCO)), SIZE, image_name="a.png")
    assert gt.boxes.dtype == torch.float32 and gt.labels.dtype == torch.int64
    assert gt.boxes.tolist() == [[10, 20, 40, 60], [0.5, 0, 5.5, 5.25]]
    assert gt.names == ("cat", "dog")
    assert gt.labels.tolist() == [1, 2]  # no class_names: 1, 2, ... by sorted name
    assert gt.report == () and len(gt) == 2


def test_voc_hand_written_is_one_based(tmp_path: Path) -> None:
    gt = load_annotations(_write(tmp_path, "a.xml", VOC), SIZE)
    assert gt.boxes.tolist() == [[10, 20, 40, 60], [0, 0, 100, 80]]
    assert gt.names == ("dog", "cat")
    assert gt.labels.tolist() == [2, 1]


def test_voc_written_for_another_image_is_reported() -> None:
    gt = load_annotations(VOC.encode(), SIZE, image_name="photos/other.png", fmt="voc")
    assert len(gt) == 2 and any("written for" in r and "'other.png'" in r for r in gt.report)
    same = load_annotations(VOC.encode(), SIZE, image_name="uploads/A.PNG", fmt="voc")  # its <filename> a.png
    assert not any("written for" in r for r in same.report)


def test_yolo_hand_written_with_and_without_class_names(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.txt", YOLO)
    gt = load_annotations(path, SIZE, class_names=CLASSES)
    assert gt.boxes.tolist() == [[10, 20, 40, 60], [0, 0, 100, 80]]
    assert gt.names == ("cat", "dog") and gt.labels.tolist() == [1, 2]
    assert gt.report == ()
    plain = load_annotations(path, SIZE)
    assert plain.names == ("class0", "class1") and plain.labels.tolist() == [1, 2]


def test_sources_bytes_and_file_objects() -> None:
    data = json.dumps(COCO).encode()
    assert len(load_annotations(data, SIZE)) == 2
    stream = io.BytesIO(VOC.encode())
    stream.name = "upload.xml"
    assert load_annotations(stream, SIZE).names == ("dog", "cat")


def test_labels_follow_class_names_and_report_unknown_classes() -> None:
    text = "0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\n5 0.5 0.5 0.2 0.2\n"
    gt = load_annotations(text.encode(), SIZE, fmt="yolo", class_names=CLASSES)
    assert gt.names == ("cat", "class7", "class5")
    # unknown names are numbered after the model's 4 classes, in sorted order: class5 -> 4, class7 -> 5
    assert gt.labels.tolist() == [1, 5, 4]
    assert gt.report == ("classes not known to the model: class5, class7",)


def test_background_name_is_not_a_known_class() -> None:
    doc = _coco(categories=[{"id": 1, "name": "__background__"}, {"id": 3, "name": "dog"}])
    gt = load_annotations(doc.encode(), SIZE, class_names=CLASSES)
    assert gt.labels.tolist() == [4, 2]
    assert "classes not known to the model: __background__" in gt.report


# ---- COCO image selection -------------------------------------------------------------------------------


def _three_images() -> str:
    images = [{"id": i, "file_name": f"dir/img{i}.png"} for i in (1, 2, 3)]
    anns = [{"image_id": i, "category_id": 1, "bbox": [i, i, 10, 10]} for i in (1, 2, 2, 3)]
    return json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "cat"}]})


def test_coco_picks_the_image_by_base_name(tmp_path: Path) -> None:
    path = _write(tmp_path, "annotations.json", _three_images())
    gt = load_annotations(path, SIZE, image_name="img2.png")
    assert gt.boxes.tolist() == [[2, 2, 12, 12], [2, 2, 12, 12]]
    assert len(load_annotations(path, SIZE, image_name="/elsewhere/img3.png")) == 1


def test_coco_no_matching_image(tmp_path: Path) -> None:
    path = _write(tmp_path, "annotations.json", _three_images())
    message = r"^annotations\.json: no image named 'x\.png' in it \(it has 3 images\)$"
    with pytest.raises(FrcnnError, match=message):
        load_annotations(path, SIZE, image_name="x.png")
    with pytest.raises(FrcnnError, match="it has 3 images; say which one"):
        load_annotations(path, SIZE)


def test_coco_single_image_is_taken_whatever_its_name() -> None:
    assert len(load_annotations(json.dumps(COCO).encode(), SIZE, image_name="other.jpg")) == 2


def test_coco_size_mismatch_is_reported() -> None:
    gt = load_annotations(json.dumps(COCO).encode(), (80, 100))
    assert "the file gives the image size as 100x80 but the image is 80x100" in gt.report


# ---- fixing: clip, drop, report ------------------------------------------------------------------------


def test_clipping_and_dropping_are_counted() -> None:
    bboxes = [
        [-5, 10, 20, 20],  # clipped: x1 -5 -> 0
        [90, 70, 50, 50],  # clipped: x2 140 -> 100, y2 120 -> 80
        [10, 10, 0, 5],  # zero width
        [10, 10, 5, -1],  # negative height
        [200, 10, 5, 5],  # wholly outside
        [float("nan"), 1, 2, 3],  # NaN
        [1, 1, float("inf"), 3],  # infinite
        [1, 2, 3, 4],  # fine
    ]
    anns = [{"image_id": 7, "category_id": 1, "bbox": b} for b in bboxes]
    gt = load_annotations(_coco(annotations=anns).encode(), SIZE)
    assert gt.boxes.tolist() == [[0, 10, 15, 30], [90, 70, 100, 80], [1, 2, 4, 6]]
    assert gt.report == (
        "2 boxes clipped to the image",
        "2 boxes dropped: NaN or infinite coordinate",
        "2 boxes dropped: zero or negative width/height",
        "1 box dropped: wholly outside the image",
    )
    assert len(gt.names) == len(gt.labels) == 3


def test_nan_box_dropped_in_voc_and_yolo() -> None:
    voc = VOC.replace("<xmin>11</xmin>", "<xmin>nan</xmin>")
    gt = load_annotations(voc.encode(), SIZE)
    assert gt.names == ("cat",) and gt.report == ("1 box dropped: NaN or infinite coordinate",)
    gt = load_annotations(b"0 nan 0.5 0.1 0.1\n0 0.5 0.5 0.1 0.1\n", SIZE)
    assert len(gt) == 1 and gt.report == ("1 box dropped: NaN or infinite coordinate",)


def test_huge_json_integer_is_dropped_not_crashing() -> None:
    text = _coco(annotations=[{"image_id": 7, "category_id": 1, "bbox": [1, 1, 10**400, 3]}])
    assert len(load_annotations(text.encode(), SIZE)) == 0


def test_no_boxes_is_fine() -> None:
    assert len(load_annotations(_coco(annotations=[]).encode(), SIZE)) == 0
    gt = load_annotations(b"\n  \n", SIZE, fmt="yolo")
    assert gt.boxes.shape == (0, 4) and gt.labels.shape == (0,)


# ---- refusals ------------------------------------------------------------------------------------------


def test_malformed_json_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "ann.json", '{\n "images": [],\n "annotations": [] "categories": []\n}')
    with pytest.raises(FrcnnError, match=r"^ann\.json: not valid JSON \(line 3: Expecting ',' delimiter\)$"):
        load_annotations(path, SIZE)


@pytest.mark.parametrize(
    ("annotation", "message"),
    [
        ({"image_id": 7, "category_id": 1}, "annotation 1 has no 'bbox'"),
        ({"image_id": 7, "category_id": 1, "bbox": "10 20 30 40"}, "annotation 1 has a 'bbox' that is not 4"),
        (
            {"image_id": 7, "category_id": 1, "bbox": [1, 2, 3]},
            "annotation 1 has a .bbox. that is not 4 numbers",
        ),
        (
            {"image_id": 7, "category_id": 1, "bbox": [1, 2, "3", 4]},
            "annotation 1 has a .bbox. that is not 4 numbers",
        ),
        (
            {"image_id": 7, "category_id": 1, "bbox": [1, 2, True, 4]},
            "annotation 1 has a .bbox. that is not 4 numbers",
        ),
        ({"image_id": 7, "bbox": [1, 2, 3, 4]}, "annotation 1 has no 'category_id'"),
        (
            {"image_id": 7, "category_id": "1", "bbox": [1, 2, 3, 4]},
            "annotation 1 has a 'category_id' that is not an integer",
        ),
        (
            {"image_id": 7, "category_id": 9, "bbox": [1, 2, 3, 4]},
            "annotation 1 has category_id 9, which is not in",
        ),
        ({"category_id": 1, "bbox": [1, 2, 3, 4]}, "annotation 1 has no 'image_id'"),
        ([1, 2, 3], "annotation 1 is not an object"),
    ],
)
def test_coco_missing_fields_and_wrong_types(tmp_path: Path, annotation, message: str) -> None:
    anns = [{"image_id": 7, "category_id": 1, "bbox": [1, 1, 2, 2]}, annotation]
    path = _write(tmp_path, "ann.json", _coco(annotations=anns))
    with pytest.raises(FrcnnError, match=f"^ann\\.json: {message}"):
        load_annotations(path, SIZE)


@pytest.mark.parametrize(
    "text",
    ['{"images": []}', '{"annotations": {}}', "[1, 2]", '{"annotations": [], "categories": [{"id": 1}]}'],
)
def test_coco_wrong_structure(text: str) -> None:
    with pytest.raises(FrcnnError):
        load_annotations(text.encode(), SIZE, fmt="coco")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<annotation><object>", r"not valid XML \(.*line 1"),
        ("<notvoc/>", r"not a Pascal VOC file \(root element <notvoc>"),
        ("<annotation><object><bndbox/></object></annotation>", "object 1 has no <name>"),
        ("<annotation><object><name>a</name></object></annotation>", "object 1 has no <bndbox>"),
        (VOC.replace("<ymax>60</ymax>", ""), "object 1 has no <ymax> in its <bndbox>"),
        (
            VOC.replace("<xmax>100</xmax>", "<xmax>wide</xmax>"),
            "object 2 has <xmax> 'wide', which is not a number",
        ),
        (BILLION_LAUGHS, "XML with a DTD or entities is refused"),
    ],
)
def test_voc_refusals(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(FrcnnError, match=f"^a\\.xml: {message}"):
        load_annotations(_write(tmp_path, "a.xml", text), SIZE)


def test_external_entity_is_refused() -> None:
    text = '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><annotation>&x;</annotation>'
    with pytest.raises(FrcnnError, match="refused"):
        load_annotations(text.encode(), SIZE)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0 0.5 0.5 0.1 0.1\n1 0.5 0.5 0.1\n", r"line 2 has 4 values, expected 5 \(class cx cy w h\)"),
        ("0 0.5 0.5 0.1 0.1 0.9\n", "line 1 has 6 values"),
        ("cat 0.5 0.5 0.1 0.1\n", "line 1 has class 'cat', which is not a number"),
        ("1.5 0.5 0.5 0.1 0.1\n", "line 1 has class '1.5', expected a whole number >= 0"),
        ("-1 0.5 0.5 0.1 0.1\n", "line 1 has class '-1', expected a whole number >= 0"),
        ("0 0.5 half 0.1 0.1\n", "line 1 has a value that is not a number"),
    ],
)
def test_yolo_refusals(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(FrcnnError, match=f"^a\\.txt: {message}"):
        load_annotations(_write(tmp_path, "a.txt", text), SIZE)


def test_too_many_boxes() -> None:
    text = "0 0.5 0.5 0.1 0.1\n" * (MAX_BOXES + 1)
    with pytest.raises(
        FrcnnError, match=f"{MAX_BOXES + 1} boxes for one image is over the limit of {MAX_BOXES}"
    ):
        load_annotations(text.encode(), SIZE)
    assert len(load_annotations(("0 0.5 0.5 0.1 0.1\n" * MAX_BOXES).encode(), SIZE)) == MAX_BOXES


def test_empty_missing_unknown_and_undetectable(tmp_path: Path) -> None:
    with pytest.raises(FrcnnError, match=r"^ann\.json: empty file \(0 bytes\)$"):
        load_annotations(_write(tmp_path, "ann.json", ""), SIZE)
    with pytest.raises(FrcnnError, match=r"nope\.json: no such file$"):
        load_annotations(tmp_path / "nope.json", SIZE)
    with pytest.raises(
        FrcnnError, match=r"^unknown annotation format 'csv' \(expected one of coco, voc, yolo\)$"
    ):
        load_annotations(b"{}", SIZE, fmt="csv")
    with pytest.raises(FrcnnError, match=r"^a\.csv: cannot tell the annotation format"):
        load_annotations(_write(tmp_path, "a.csv", "x,y,w,h\n1,2,3,4\n"), SIZE)
    with pytest.raises(FrcnnError, match="not UTF-8 text"):
        load_annotations(b'{"annotations": "\xff"}', SIZE)
    with pytest.raises(FrcnnError, match="image size must be positive"):
        load_annotations(YOLO.encode(), (0, 10))


def test_detect_format() -> None:
    assert detect_format('  {"annotations": []}', None) == "coco"
    assert detect_format("\ufeff<?xml version='1.0'?><annotation/>", "a.json") == "voc"
    assert detect_format("0 0.5 0.5 0.1 0.1\n", "labels.dat") == "yolo"
    assert detect_format("garbage", "x.JSON") == "coco"
    assert detect_format("", "x.txt") == "yolo"
    assert set(ANNOTATION_FORMATS) == {"coco", "voc", "yolo"}
    with pytest.raises(FrcnnError, match="cannot tell"):
        detect_format("garbage", None)


# ---- GroundTruth and dump ----------------------------------------------------------------------------


def test_ground_truth_empty_and_shape_check() -> None:
    empty = GroundTruth.empty()
    assert len(empty) == 0 and empty.boxes.shape == (0, 4) and empty.labels.dtype == torch.int64
    with pytest.raises(ValueError):
        GroundTruth(torch.zeros(2, 4), torch.zeros(1, dtype=torch.int64), ("a", "b"))
    for fmt in ANNOTATION_FORMATS:
        assert len(load_annotations(dump_annotations(empty, fmt, SIZE).encode() or b"\n", SIZE, fmt=fmt)) == 0


def test_dump_coco_and_voc_are_readable() -> None:
    gt = load_annotations(json.dumps(COCO).encode(), SIZE)
    doc = json.loads(dump_annotations(gt, "coco", SIZE, image_name="a.png"))
    assert doc["images"] == [{"id": 1, "file_name": "a.png", "width": 100, "height": 80}]
    assert [a["bbox"] for a in doc["annotations"]] == [[10, 20, 30, 40], [0.5, 0, 5, 5.25]]
    assert doc["categories"] == [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    voc = dump_annotations(gt, "voc", SIZE)
    assert "<xmin>11</xmin>" in voc and "<ymin>21</ymin>" in voc and "<xmax>40</xmax>" in voc
    assert dump_annotations(gt, "yolo", SIZE, class_names=CLASSES).splitlines()[0] == "0 0.25 0.5 0.3 0.5"


def test_dump_yolo_needs_class_numbers() -> None:
    gt = load_annotations(json.dumps(COCO).encode(), SIZE)
    with pytest.raises(FrcnnError, match="cannot write class 'cat' to YOLO"):
        dump_annotations(gt, "yolo", SIZE)
    with pytest.raises(FrcnnError, match="unknown annotation format"):
        dump_annotations(gt, "csv", SIZE)


def _assert_same(a: GroundTruth, b: GroundTruth, atol: float) -> None:
    assert a.names == b.names
    assert torch.equal(a.labels, b.labels)
    assert torch.allclose(a.boxes, b.boxes, atol=atol, rtol=0)


@pytest.mark.parametrize("fmt", ANNOTATION_FORMATS)
def test_round_trip_hand_written(fmt: str) -> None:
    gt = load_annotations(json.dumps(COCO).encode(), SIZE, class_names=CLASSES)
    back = load_annotations(
        dump_annotations(gt, fmt, SIZE, class_names=CLASSES).encode(), SIZE, class_names=CLASSES
    )
    _assert_same(gt, back, atol=0 if fmt != "yolo" else 1e-3)


# ---- properties --------------------------------------------------------------------------------------

_NAMES = st.sampled_from(CLASSES[1:])


@st.composite
def _valid_ground_truth(draw: st.DrawFn) -> tuple[GroundTruth, tuple[int, int]]:
    width, height = draw(st.integers(1, 4000)), draw(st.integers(1, 4000))
    n = draw(st.integers(0, 6))
    boxes, names = [], []
    for _ in range(n):
        xs = sorted(draw(st.lists(st.floats(0, width, width=32), min_size=2, max_size=2)))
        ys = sorted(draw(st.lists(st.floats(0, height, width=32), min_size=2, max_size=2)))
        if xs[1] - xs[0] < 0.01 or ys[1] - ys[0] < 0.01:
            continue
        boxes.append([xs[0], ys[0], xs[1], ys[1]])
        names.append(draw(_NAMES))
    labels = [CLASSES.index(n) for n in names]
    t = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    return GroundTruth(t, torch.tensor(labels, dtype=torch.int64), tuple(names)), (width, height)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(case=_valid_ground_truth(), fmt=st.sampled_from(ANNOTATION_FORMATS))
def test_dump_load_round_trips(case: tuple[GroundTruth, tuple[int, int]], fmt: str) -> None:
    gt, size = case
    text = dump_annotations(gt, fmt, size, class_names=CLASSES)
    back = load_annotations(text.encode(), size, fmt=fmt, class_names=CLASSES)
    _assert_same(gt, back, atol=1e-3 if fmt == "yolo" else 1e-4)


_ANY_FLOAT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-50, 200),
    st.sampled_from([0.0, -0.0, 100.0, 80.0, math.nan, math.inf]),
)


def _as_file(fmt: str, rows: list[list[float]]) -> bytes:
    if fmt == "coco":
        anns = [{"image_id": 7, "category_id": 1, "bbox": r} for r in rows]
        return _coco(annotations=anns).encode()
    if fmt == "voc":
        objs = "".join(
            f"<object><name>cat</name><bndbox><xmin>{a!r}</xmin><ymin>{b!r}</ymin>"
            f"<xmax>{c!r}</xmax><ymax>{d!r}</ymax></bndbox></object>"
            for a, b, c, d in rows
        )
        return f"<annotation>{objs}</annotation>".encode()
    return "".join(f"0 {a!r} {b!r} {c!r} {d!r}\n" for a, b, c, d in rows).encode()


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(st.lists(_ANY_FLOAT, min_size=4, max_size=4), max_size=8),
    fmt=st.sampled_from(ANNOTATION_FORMATS),
)
def test_any_boxes_give_boxes_inside_the_image_or_frcnn_error(rows: list[list[float]], fmt: str) -> None:
    try:
        gt = load_annotations(_as_file(fmt, rows), SIZE, fmt=fmt)
    except FrcnnError:
        return
    boxes = gt.boxes.numpy()
    assert boxes.shape == (len(gt), 4) and len(gt) <= len(rows)
    assert np.isfinite(boxes).all()
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= SIZE[0]).all() and (boxes[:, 3] <= SIZE[1]).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=200) | st.text(max_size=200).map(str.encode),
    fmt=st.sampled_from([None, *ANNOTATION_FORMATS]),
)
def test_any_bytes_give_ground_truth_or_frcnn_error(data: bytes, fmt: str | None) -> None:
    try:
        gt = load_annotations(data, SIZE, fmt=fmt)
    except FrcnnError:
        return
    assert isinstance(gt, GroundTruth)


def test_empty_yolo_file_means_no_objects(tmp_path: Path) -> None:
    assert len(load_annotations(_write(tmp_path, "a.txt", ""), SIZE)) == 0
    assert len(load_annotations(b"", SIZE, fmt="yolo")) == 0
    with pytest.raises(FrcnnError, match=r"^annotations: empty file \(0 bytes\)$"):
        load_annotations(b"", SIZE)


def _dataset_doc() -> dict:
    return {"images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 80},
                       {"id": "b", "file_name": "b.png", "width": 50, "height": 50}],
            "annotations": [{"id": 1, "image_id": 1, "bbox": [10, 20, 30, 40], "category_id": 1},
                            {"id": 2, "image_id": 1, "bbox": [90, 70, 30, 30], "category_id": 1},  # clipped
                            {"id": 3, "image_id": "b", "bbox": [1, 1, 0, 5], "category_id": 1},  # dropped
                            {"id": 4, "image_id": "b", "bbox": [0, 0, 50, 50], "category_id": 1, "iscrowd": 1},
                            {"id": 5, "image_id": 9, "bbox": [0, 0, 5, 5], "category_id": 1}],
            "categories": [{"id": 1, "name": "thing"}]}


def test_coco_dataset_boxes_from_json_and_zip() -> None:
    import zipfile

    from frcnn.data.annotations import load_coco_dataset_boxes

    data = json.dumps(_dataset_doc()).encode()
    got = load_coco_dataset_boxes(data, name="annotations.json")
    assert [size for size, _ in got.items] == [(80, 100), (50, 50)]
    assert got.items[0][1].tolist() == [[10, 20, 40, 60], [90, 70, 100, 80]] and len(got.items[1][1]) == 0
    assert got.num_boxes == 2
    assert set(got.report) == {"1 box clipped to the image", "1 box dropped: zero or negative width/height",
                               "1 annotation skipped: for an image not in 'images'", "1 crowd region skipped"}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("set/images/a.png", b"not read")
        z.writestr("set/annotations.json", data)
    from_zip = load_coco_dataset_boxes(buffer.getvalue(), name="set.zip")
    assert [b.tolist() for _, b in from_zip.items] == [b.tolist() for _, b in got.items]


@pytest.mark.parametrize(("data", "message"), [
    (b"PK\x03\x04 broken", "not a readable zip"),
    (b'{"images": []}', "not a COCO dataset"),
    (b'{"images": [{"id": 1, "width": 0, "height": 5}], "annotations": []}', "positive whole 'width'"),
    (b'{"images": [{"id": 1, "width": 9, "height": 5}], "annotations": [{"image_id": 1}]}', "has no 'bbox'"),
    (b"[1, 2", "not valid JSON"),
])
def test_coco_dataset_boxes_refusals(data: bytes, message: str) -> None:
    from frcnn.data.annotations import load_coco_dataset_boxes

    with pytest.raises(FrcnnError, match=message):
        load_coco_dataset_boxes(data, name="d.json")


def test_coco_dataset_zip_without_annotations() -> None:
    import zipfile

    from frcnn.data.annotations import load_coco_dataset_boxes

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("x.txt", b"hello")
    with pytest.raises(FrcnnError, match="no annotations.json in the zip"):
        load_coco_dataset_boxes(buffer.getvalue(), name="d.zip")
