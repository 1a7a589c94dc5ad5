"""Lessons (frcnn/lesson.py, app_pages/_lesson.py): good and bad lesson files, the JSON round trip, the edits, the
built-in lesson's every step within the work budget on the default model and every number its captions quote
against the trace, and the app: a lesson link shows its step, Next and Previous move, the editor's edits."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from frcnn import FrcnnError, Tracer, budget, load_model
from frcnn.analysis.proposals import recall_at
from frcnn.analysis.roi import default_roi, roi_counts
from frcnn.data import list_samples, load_sample
from frcnn.lesson import (
    LESSONS_DIR,
    MAX_CAPTION_CHARS,
    MAX_LESSON_BYTES,
    MAX_STEPS,
    Lesson,
    Step,
    builtin_names,
    check_budget,
    deleted,
    inserted,
    lesson_to_json,
    load_builtin,
    moved,
    read_lesson,
    setting_text,
    step_settings,
    view_step,
    with_caption,
    with_title,
)
from frcnn.settings import PAPER, Settings
from frcnn.viz.detections import match_detections
from frcnn.viz.roi import roi_boxes, roi_descriptions

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")


def _app_pages() -> list[str]:
    """The page files of app.py's PAGES, read from its source (importing app.py would run the app)."""
    tree = ast.parse((ROOT / "app.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "PAGES" for t in node.targets):
            return [elt.elts[0].value for elt in node.value.elts]
    raise AssertionError("no PAGES in app.py")


PAGES = _app_pages()
GOOD_STEP = {"page": "anchors.py", "image": "Synthetic scene 1", "model": "default",
             "settings": {"anchors.stride": "16"}, "caption": "Anchors at stride 16."}


def _file(*steps: dict, **top) -> bytes:
    return json.dumps({"format": "frcnn-lesson", "version": 1, "title": "T", "steps": list(steps) or [GOOD_STEP],
                       **top}).encode()


def _refused(data: bytes, *words: str) -> str:
    with pytest.raises(FrcnnError) as info:
        read_lesson(data, PAGES, name="mine.json")
    message = str(info.value)
    assert message.startswith("mine.json: ") and "\n" not in message, message
    for word in words:
        assert word in message, message
    return message


# ------------------------------------------------------------------------------------------------ files
def test_pages_are_the_app_pages_files():
    assert set(PAGES) == {p.name for p in (ROOT / "app_pages").glob("[!_]*.py")}


def test_a_good_file_reads_into_steps_with_settings_as_a_url_carries_them():
    step = {**GOOD_STEP, "settings": {"anchors.sizes": [32, 64.5], "rpn.allow_low_quality_matches": False,
                                      "rpn.nms_thresh": 0.5, "rpn.post_nms_top_n": "400.0"},
            "highlight": "anchors_image"}
    lesson = read_lesson(_file(step, {"page": "backbone.py", "image": "Cat (photo)"}), PAGES)
    assert lesson.title == "T" and len(lesson) == 2
    first, second = lesson.steps
    # tree order (anchors, rpn), each value read by its key's type and written back as text
    assert first.settings == (("anchors.sizes", "32,64.5"), ("rpn.allow_low_quality_matches", "False"),
                              ("rpn.nms_thresh", "0.5"), ("rpn.post_nms_top_n", "400"))
    assert first.highlight == "anchors_image" and first.model == "default"
    assert second == Step("backbone.py", "Cat (photo)")  # model, settings, caption and highlight are optional
    s = step_settings(first, PAPER)
    assert s.anchors.sizes == (32.0, 64.5) and s.rpn.allow_low_quality_matches is False and s.rpn.nms_thresh == 0.5
    assert s.rpn.post_nms_top_n == 400 and s.diff(PAPER).keys() == {k for k, _ in first.settings}


def test_round_trip_through_json_is_exact():
    lesson = load_builtin("paper", PAGES)
    again = read_lesson(lesson_to_json(lesson).encode(), PAGES)
    assert again == lesson and again.id == lesson.id
    odd = Lesson("Ünïcode — title", (Step("roi.py", "Synthetic scene 2", None,
                                          (("rpn.nms_thresh", "0.1111111111111111"),), "λ = 10, *N*ₖ", "roi_chart"),))
    back = read_lesson(lesson_to_json(odd).encode("utf-8"), PAGES)
    assert back == odd
    assert step_settings(back.steps[0], PAPER).rpn.nms_thresh == 1 / 9 * 1.0  # no digit lost on the way


def test_setting_text_is_shortest_and_exact():
    assert setting_text((128.0, 256.0)) == "128,256" and setting_text(0.5) == "0.5" and setting_text(True) == "True"
    assert setting_text(1 / 9) == repr(1 / 9) and float(setting_text(1 / 3)) == 1 / 3
    assert setting_text(600) == "600" and setting_text("roi_align") == "roi_align"


BAD = [
    (b"{not json", ("not valid JSON", "line 1")),
    (b"\xff\xfe\x00", ("not UTF-8",)),
    (b"", ("empty file",)),
    (b"[1, 2]", ("not a lesson",)),
    (b'{"title": "x"}', ("not a lesson",)),
    (_file(steps=[]), ("non-empty list",)),
    (_file(format="other"), ("format 'other'",)),
    (_file(version=2), ("version 2",)),
    (_file(title=""), ("title",)),
    (_file(title="x" * 500), ("title is 500 characters",)),
    (_file(GOOD_STEP, author="me"), ("unknown field 'author'",)),
    (_file(steps=[GOOD_STEP] * (MAX_STEPS + 1)), (f"{MAX_STEPS + 1} steps",)),
    (_file(GOOD_STEP, "nope"), ("step 2", "expected an object")),
    (_file(GOOD_STEP, {**GOOD_STEP, "pgae": "x"}), ("step 2", "unknown field 'pgae'")),
    (_file({k: v for k, v in GOOD_STEP.items() if k != "image"}), ("step 1", "no image")),
    (_file(GOOD_STEP, {**GOOD_STEP, "page": "../app.py"}), ("step 2", "page '../app.py' is not one of the app's")),
    (_file({**GOOD_STEP, "image": "/etc/passwd"}), ("step 1", "image '/etc/passwd' is not a sample")),
    (_file({**GOOD_STEP, "model": "yolo"}), ("step 1", "model 'yolo' is not one of")),
    (_file({**GOOD_STEP, "settings": {"rpn.nms": "0.5"}}), ("step 1", "unknown setting 'rpn.nms'")),
    (_file({**GOOD_STEP, "settings": {"rpn.nms_thresh": "abc"}}), ("step 1", "rpn.nms_thresh: cannot read 'abc'")),
    (_file({**GOOD_STEP, "settings": {"rpn.nms_thresh": "nan"}}), ("step 1", "rpn.nms_thresh")),
    (_file({**GOOD_STEP, "settings": {"rpn.nms_thresh": {"a": 1}}}), ("step 1", "expected text, a number")),
    (_file({**GOOD_STEP, "settings": {"rpn.nms_thresh": "7"}}), ("step 1", "out of range")),
    (_file({**GOOD_STEP, "settings": "rpn.nms_thresh=0.5"}), ("step 1", "settings must be an object")),
    # valid alone, not with the default model's pre-NMS top-N of 6000
    (_file({**GOOD_STEP, "settings": {"rpn.post_nms_top_n": "7000"}}), ("step 1", "rpn.post_nms_top_n", "6000")),
    (_file({**GOOD_STEP, "caption": ["a"]}), ("step 1", "caption must be text")),
    (_file({**GOOD_STEP, "caption": "x" * (MAX_CAPTION_CHARS + 1)}), ("step 1", "over the limit")),
    (_file({**GOOD_STEP, "highlight": "x'] {} body {display:none"}), ("step 1", "not a figure's key")),
    (b'{"steps": [], "steps": []}', ("'steps' is given twice",)),
    (b" " * (MAX_LESSON_BYTES + 1), ("over the limit",)),
]


@pytest.mark.parametrize("data, words", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_a_bad_file_is_one_line_naming_the_file_and_step(data, words):
    _refused(data, *words)


def test_a_step_without_a_model_must_suit_every_model():
    """2,000 proposals after NMS suit the default model (6,000 before) but not the COCO models' 1,000 before."""
    settings = {"rpn.post_nms_top_n": "2000"}
    assert read_lesson(_file({**GOOD_STEP, "settings": settings}), PAGES).steps[0].model == "default"
    message = _refused(_file({**GOOD_STEP, "model": None, "settings": settings}), "step 1", "on the model")
    assert "resnet50_fpn_v2" in message or "mobilenet_v3_fpn" in message


def test_a_path_is_read_with_its_name_and_missing_files_are_refused(tmp_path):
    path = tmp_path / "class.json"
    path.write_bytes(_file())
    assert len(read_lesson(path, PAGES)) == 1
    with pytest.raises(FrcnnError, match="no such file"):
        read_lesson(tmp_path / "gone.json", PAGES)
    with pytest.raises(FrcnnError, match="no built-in lesson called 'nope'"):
        load_builtin("nope", PAGES)
    assert builtin_names() == sorted(p.stem for p in LESSONS_DIR.glob("*.json")) and "paper" in builtin_names()


# ------------------------------------------------------------------------------------------------ edits
def test_edits_insert_move_delete_caption_title():
    a, b, c = (Step("backbone.py", "Synthetic scene 1", caption=x) for x in "abc")
    lesson = Lesson("L", (a, b))
    assert inserted(lesson, 1, c).steps == (a, c, b) and inserted(lesson, 2, c).steps == (a, b, c)
    three = Lesson("L", (a, b, c))
    assert moved(three, 0, 1).steps == (b, a, c) and moved(three, 2, -1).steps == (a, c, b)
    assert moved(three, 0, -1).steps == (a, b, c) and moved(three, 2, 1).steps == (a, b, c)  # kept within
    assert deleted(three, 1).steps == (a, c)
    with pytest.raises(FrcnnError, match="at least one step"):
        deleted(Lesson("L", (a,)), 0)
    assert with_caption(three, 2, "  new  ").steps[2].caption == "new" and three.steps[2].caption == "c"
    with pytest.raises(FrcnnError, match="step 3: caption"):
        with_caption(three, 2, "x" * (MAX_CAPTION_CHARS + 1))
    assert with_title(three, "  A   title ").title == "A title"
    with pytest.raises(FrcnnError):
        with_title(three, "   ")
    with pytest.raises(FrcnnError, match=f"at most {MAX_STEPS}"):
        inserted(Lesson("L", (a,) * MAX_STEPS), 0, b)
    assert moved(three, 0, 1).id != three.id and Lesson("L", (a, b, c)).id == three.id  # the id is the content's


def test_view_step_keeps_what_differs_from_the_model_defaults():
    defaults = Settings()
    current = defaults.replace({"rpn.nms_thresh": 0.5, "anchors.sizes": (64.0, 128.0)})
    step = view_step("proposals.py", "Synthetic scene 3", "vgg16", current, defaults, "c")
    assert step.settings == (("anchors.sizes", "64,128"), ("rpn.nms_thresh", "0.5"))
    assert step_settings(step, defaults) == current
    assert view_step("proposals.py", "Synthetic scene 3", "vgg16", defaults, defaults).settings == ()


# ------------------------------------------------------------------------------------------------ built-in
@pytest.fixture(scope="module")
def default_model():
    return load_model("default", "auto", "cpu")


@pytest.fixture(scope="module")
def paper():
    return load_builtin("paper", PAGES)


def test_the_paper_lesson_walks_the_stages_in_order(paper):
    assert [s.page for s in paper.steps] == ["backbone.py", "anchors.py", "anchor_targets.py", "anchor_targets.py",
                                            "proposals.py", "proposals.py", "roi.py", "roi.py", "detections.py",
                                            "losses.py"]
    synthetic = {s.name for s in list_samples() if s.kind == "synthetic"}
    for step in paper.steps:
        assert step.image in synthetic and step.model == "default"
        sentences = re.findall(r"[^.!?]+[.!?](?=\s|$)", re.sub(r"^\*\*[^*]+\*\*\s*", "", step.caption))
        assert 2 <= len(sentences) <= 5, step.caption  # a caption a teacher reads aloud
    headings = [re.match(r"\*\*([^*]+)\.\*\*", s.caption).group(1) for s in paper.steps]
    assert headings == ["Backbone", "Anchors", "Anchor labels", "The minibatch", "Objectness", "Proposals and NMS",
                        "RoI sampling", "RoI pooling", "Detections", "Losses"]


def test_every_step_of_the_paper_lesson_applies_on_the_default_model_within_the_budget(default_model, paper):
    det = default_model
    facts = budget.facts_of(det)

    def image_of(name):
        image, gt = load_sample(name)
        return tuple(image.tensor.shape[-2:]), len(gt)

    check_budget(paper, det.name, det.defaults, facts, image_of, name="paper")  # raises on any step over it
    for step in paper.steps:
        s = step_settings(step, det.defaults)
        assert budget.fits(facts, s, image_of(step.image)[0], image_of(step.image)[1])
        assert dict(step.settings) == {k: setting_text(v) for k, (v, _) in s.diff(det.defaults).items()}
    over = Lesson("x", (paper.steps[0], Step("anchors.py", "Synthetic scene 1", "default", (("anchors.stride", "1"),))))
    with pytest.raises(FrcnnError, match=r"^over: step 2 \(anchors.py, Synthetic scene 1\): work budget"):
        check_budget(over, det.name, det.defaults, facts, image_of, name="over")
    other = Lesson("x", (Step("anchors.py", "Synthetic scene 1", "vgg16", (("anchors.stride", "1"),)),))
    check_budget(other, det.name, det.defaults, facts, image_of)  # another model's steps: checked when shown


def _traces(det, paper):
    tracer = Tracer(det)
    out = []
    for step in paper.steps:
        image, gt = load_sample(step.image, det.class_names)
        out.append(tracer.run(image.tensor, step_settings(step, det.defaults), gt.boxes, gt.labels))
    return out


def _says(caption: str, text: str) -> None:
    assert text in caption, f"{text!r} not in {caption!r}"


def test_the_numbers_the_captions_quote_are_the_traces(default_model, paper):
    """Each step's caption against the trace of that step's view (its image, model and settings)."""
    det, c = default_model, [s.caption for s in paper.steps]
    t = _traces(det, paper)
    from frcnn.analysis.anchors import anchor_counts, target_counts

    # 1 backbone: the resize, the map's cells and channels, the stride
    fmap = t[0].features.maps[0]
    _says(c[0], f"shorter side is {min(t[0].preprocess.image_size)} px")
    _says(c[0], f"{fmap.shape[-1]} × {fmap.shape[-2]} cells of {fmap.shape[1]} channels")
    _says(c[0], f"one cell every {t[0].features.strides[0]} input pixels")
    assert min(t[0].preprocess.image_size) == t[0].settings.input.min_size
    # 2 anchors
    a = anchor_counts(t[1])
    sizes = t[1].settings.anchors.sizes
    _says(c[1], f"{len(sizes)} sizes from {sizes[0]:g} to {sizes[-1]:g} px × {len(t[1].settings.anchors.ratios)} "
                f"ratios = {a['per_location']} anchors at each of the {a['grid'].replace('×', ' × ')} locations")
    _says(c[1], f"{a['total']:,} anchors, {a['inside']:,} of them wholly inside")
    assert a["total"] == fmap.shape[-1] * fmap.shape[-2] * int(a["per_location"])
    # 3 labels, 4 minibatch
    n = target_counts(t[2])
    _says(c[2], f"this image of {len(t[2].gt_boxes)} objects")
    _says(c[2], f"{n['positive']} positives, {n['negative']:,} negatives and {n['ignored']:,} ignored anchors")
    assert n["positive"] + n["negative"] + n["ignored"] == a["total"]  # cross-boundary anchors kept: all labelled
    m = target_counts(t[3])
    assert m["sampled_positive"] == m["positive"] < t[3].settings.rpn.batch_size_per_image // 2
    _says(c[3], f"all {m['positive']} positives are drawn and {m['sampled_negative']} negatives complete the "
                f"{m['sampled_positive'] + m['sampled_negative']}")
    _says(c[3], f"all {m['negative']:,} negatives")
    # 5 objectness: k anchors a location
    _says(c[4], f"among its {t[4].settings.anchors.num_per_location} anchors")
    assert t[4].settings.anchors.num_per_location == int(a["per_location"])
    # 6 proposals and NMS
    p = t[5].proposals.counts
    _says(c[5], f"{p['pre_nms_top_n']:,} boxes become {p['nms']:,} here")
    assert p["post_nms_top_n"] == 300 == len(t[5].proposals.boxes) and t[5].settings.rpn.nms_thresh == 0.7
    _says(c[5], f"this model's own default is {det.defaults.rpn.post_nms_top_n:,}")
    # 7 RoI sampling
    r = roi_counts(t[6])
    _says(c[6], f"here {r['foreground']} foreground and {r['background']} background RoIs are drawn from "
                f"{r['candidates']} candidates ({len(t[6].proposals.boxes)} proposals + {len(t[6].gt_boxes)} boxes), "
                f"of which {r['ignored']} are ignored")
    assert r["foreground"] == t[6].settings.roi.batch_size_per_image * t[6].settings.roi.positive_fraction
    assert det.defaults.roi.bg_iou_thresh_lo == 0 and t[6].settings.roi.bg_iou_thresh_lo == 0.1
    # 8 RoI pooling: the RoI the page picks first, its size in cells of the map
    pick = default_roi(t[7])
    box = roi_boxes(t[7])[pick]
    w, h = float(box[2] - box[0]), float(box[3] - box[1])
    _says(c[7], f"{round(w)} × {round(h)} px box on the cross")
    assert " cross " in roi_descriptions(t[7])[pick] and f"{round(w)}x{round(h)}" in roi_descriptions(t[7])[pick]
    scale = t[7].preprocess.scale  # (sy, sx): original -> network input
    assert w * scale[1] / 8 < 5 and h * scale[0] / 8 < 5  # fewer than 5 x 5 cells at stride 8
    assert det.defaults.roi.pool == "roi_align" and det.defaults.roi.output_size == 7
    # 9 detections
    d = t[8].detections
    _says(c[8], f"here {len(d.boxes)} detections")
    top = d.scores[:5]
    assert bool((top > 0.97).all()) and float(d.scores[5:].max()) <= 0.31
    drawn = d.scores >= 0.5
    match = match_detections(d.boxes[drawn], d.scores[drawn], d.labels[drawn], t[8].gt_boxes, t[8].gt_labels, 0.5)
    assert int(match.true_positive.sum()) == 5 == len(t[8].gt_boxes) == int(drawn.sum())  # 5 TP, no FP, no miss
    assert recall_at(d.boxes[:5], t[8].gt_boxes, (0.5,))[0.5] == 1.0  # the 5 best: one on each object
    # 10 losses
    _says(c[9], f"over the {t[9].settings.rpn.batch_size_per_image} sampled anchors")
    _says(c[9], f"log loss over the {len(det.class_names)} classes")
    from frcnn.stages.losses import SMOOTH_L1_BETA

    assert pytest.approx(1 / 9) == SMOOTH_L1_BETA
    assert torch.isfinite(t[9].losses.total)


# ------------------------------------------------------------------------------------------------ the app
def _app(query: dict) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    for k, v in query.items():
        at.query_params[k] = v
    return at.run()


def _caption_shown(at: AppTest, step: Step) -> bool:
    first = re.sub(r"\*\*[^*]+\*\*\s*", "", step.caption)[:40]
    return any(first in m.value.replace("\\", "") for m in at.markdown)


def test_a_lesson_link_shows_its_step_and_next_and_previous_move(paper):
    at = _app({"lesson": "paper", "step": "6"})
    assert not at.exception and not at.error
    assert [t.value for t in at.title] == ["RPN proposals"] and _caption_shown(at, paper.steps[5])
    assert at.session_state["settings"].rpn.post_nms_top_n == 300  # the step's setting
    assert any(m.value.startswith("**Step 6 of 10**") for m in at.markdown)
    keys = [json.loads(e.proto.json) for e in at.get("bidi_component") if e.proto.component_name == "frcnn_lesson_keys"]
    # what the key listener steps from, and the step's figure it brings on screen
    assert keys == [{"step": 6, "n": 10, "highlight": paper.steps[5].highlight}]
    assert dict(at.query_params).items() >= {"lesson": "paper", "step": "6", "rpn.post_nms_top_n": "300",
                                             "sample": "Synthetic scene 1", "model": "default"}.items()
    at.button(key="lesson_next").click().run()  # to another page, with the step's own settings only
    assert not at.exception
    assert [t.value for t in at.title] == ["RoI sampling & pooling"] and _caption_shown(at, paper.steps[6])
    s = at.session_state["settings"]
    assert s.rpn.post_nms_top_n == 1000 and s.roi.bg_iou_thresh_lo == 0.1
    assert at.query_params["step"] == "7" and "rpn.post_nms_top_n" not in at.query_params
    at.button(key="lesson_prev").click().run()
    assert [t.value for t in at.title] == ["RPN proposals"] and at.session_state["settings"].rpn.post_nms_top_n == 300
    at.selectbox(key="lesson_choice").set_value("").run()  # the lesson off: the view stays, the URL drops it
    assert "lesson" not in at.query_params and "step" not in at.query_params and not at.exception


def test_a_link_overrides_its_steps_view_and_a_moved_back_setting_stays_in_the_url():
    at = _app({"lesson": "paper", "step": "6", "rpn.post_nms_top_n": "500", "rpn.nms_thresh": "0.6"})
    s = at.session_state["settings"]
    assert (s.rpn.post_nms_top_n, s.rpn.nms_thresh) == (500, 0.6) and at.query_params["step"] == "6"
    at.slider(key="set:rpn.post_nms_top_n").set_value(1000).run()  # the model's default, but not the step's
    assert at.query_params["rpn.post_nms_top_n"] == "1000"
    again = _app(dict(at.query_params))
    assert again.session_state["settings"].rpn.post_nms_top_n == 1000  # the link reopens the view, not the step


def test_a_bad_lesson_link_is_a_message():
    at = _app({"lesson": "nope", "step": "2"})
    assert not at.exception and "not on this server" in " ".join(w.value for w in at.warning)
    for hostile in ("99", "²", "9" * 5000, "-1", "3.0"):
        at = _app({"lesson": "paper", "step": hostile})
        assert not at.exception and "step 1" in " ".join(w.value for w in at.warning)
        assert [t.value for t in at.title] == ["Backbone features"] and at.session_state["lesson_step"] == 1


def test_the_editor_adds_the_view_edits_moves_and_deletes(paper):
    at = _app({"lesson": "paper", "step": "2"})
    at.slider(key="set:anchors.stride").set_value(16).run()
    at.button(key="lesson_add").click().run()
    own = at.session_state["lesson_own"]
    assert len(own) == 11 and at.session_state["lesson_step"] == 3 and at.session_state["lesson_id"] == own.id
    assert own.steps[2] == Step("anchors.py", "Synthetic scene 1", "default", (("anchors.stride", "16"),))
    assert at.query_params["lesson"] == own.id and at.query_params["step"] == "3"
    at.text_area(key=f"lesson_caption:{own.id}:3").input("Stride **16**: a quarter of the anchors.").run()
    at.button(key="lesson_save").click().run()
    own = at.session_state["lesson_own"]
    assert own.steps[2].caption == "Stride **16**: a quarter of the anchors."
    assert any("a quarter of the anchors" in m.value for m in at.markdown)
    at.button(key="lesson_up").click().run()
    own = at.session_state["lesson_own"]
    assert [s.page for s in own.steps[:3]] == ["backbone.py", "anchors.py", "anchors.py"]
    assert own.steps[1].settings == (("anchors.stride", "16"),) and at.session_state["lesson_step"] == 2
    at.button(key="lesson_delete").click().run()
    own = at.session_state["lesson_own"]
    assert own.steps == paper.steps and own.title == paper.title  # back to the built-in's steps, yours now
    assert not at.exception and not at.error
    shown = at.get("download_button")
    assert any(b.proto.label == "Download the lesson (JSON)" for b in shown)
    at.toggle(key="presentation").set_value(True).run()  # a room sees the step and its caption, not the editor
    assert not [e for e in at.text_area if str(e.key).startswith("lesson_caption:")]
    assert any(m.value.startswith("**Step 2 of 10**") for m in at.markdown) and not at.exception
