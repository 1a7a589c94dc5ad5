"""Entry point: ``streamlit run app.py``.

Every run: read the URL once per session, draw the sidebar (image, ground truth, model, device, presentation
mode, reset), load the shared tracer, put the :class:`app_pages._shared.Context` in the session, write the
settings back into the URL, then run the chosen page. Pages only read the context and call the tracer.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

# isort: off
from app_pages import _startup  # before torch: the first page after the server starts says what it loads
# isort: on
import torch

from app_pages import _ground_truth as ground_truth
from app_pages import _lesson as lesson_panel
from app_pages._chart import preload as preload_plotly
from app_pages._presentation import apply as presentation_style
from app_pages._sessions import session_file, session_key
from app_pages._shared import (
    Context,
    get_tracer,
    guard,
    keep_display_widgets,
    plain,
    reset_widgets,
    set_settings,
    sync_url,
)
from app_pages._story import show_banner as show_story_banner
from app_pages._weights import weights_picker
from frcnn import FrcnnError, Settings, budget
from frcnn.data import load_image, load_sample, picker
from frcnn.models import MODEL_NAMES
from frcnn.models.checkpoint import check_weights_size
from frcnn.settings import PAPER, flat_keys

st.set_page_config(page_title="Faster R-CNN, stage by stage", page_icon=":mag:", layout="wide")
preload_plotly(st.sidebar)  # a new tab parses plotly.js while this run traces

PAGES = [
    ("overview.py", "Start", ":material/home:"),
    ("backbone.py", "Backbone features", ":material/layers:"),
    ("anchors.py", "Anchors", ":material/grid_on:"),
    ("anchor_fit.py", "Anchor fit (dataset)", ":material/scatter_plot:"),
    ("anchor_targets.py", "Anchor targets", ":material/label:"),
    ("proposals.py", "RPN proposals", ":material/filter_alt:"),
    ("roi.py", "RoI sampling & pooling", ":material/crop:"),
    ("detections.py", "Detections", ":material/center_focus_strong:"),
    ("losses.py", "Losses", ":material/show_chart:"),
    ("compare.py", "Compare settings", ":material/compare:"),
    ("training.py", "Training", ":material/model_training:"),
]
PAGE_FILES = [f for f, _, _ in PAGES]
HERE = Path(__file__).parent
SAMPLES = picker.sample_names()  # scenes first
URL_KEYS = ("model", "sample", "device")
UPLOAD_WEIGHTS_BYTES = 64 << 20  # uncompressed records of an uploaded weights file (the upload itself: 25 MB)


def _read_url_once() -> None:
    """A shared link: model, sample and settings from the query string, checked, at a session's start."""
    if st.session_state.get("url_read"):
        return
    st.session_state["url_read"] = True
    params = st.query_params.to_dict()
    step, notes = lesson_panel.from_url(params, PAGE_FILES)  # ?lesson=paper&step=3: that step's view, under the
    for note in notes:                                      # link's own model, sample and settings
        _url_message(note)
    if step is not None:
        st.session_state.update({"sample": step.image, **({"model": step.model} if step.model else {})})
    for key, known in (("model", MODEL_NAMES), ("sample", SAMPLES)):
        if key not in params:
            continue
        if params[key] in known:
            st.session_state[key] = params[key]
        else:
            _url_message(f"The link's {key} {_cut(params[key])} is not one of this app's; using "
                         f"{st.session_state.get(key, known[0])}")
    keys = set(flat_keys())
    wanted = {**(step.settings_dict if step else {}), **{k: v for k, v in params.items() if k in keys}}
    unknown = sorted(k for k in params if k not in URL_KEYS + lesson_panel.URL_KEYS and k not in keys)
    st.session_state["url_settings"] = wanted
    if unknown:
        shown = ", ".join(_cut(k, 30) for k in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        _url_message(f"Ignored {len(unknown)} unknown URL parameter{'s' * (len(unknown) > 1)}: {shown}{more}")


def _cut(value: object, limit: int = 40) -> str:
    """A value from outside, quoted and cut to ``limit`` characters, for a message."""
    text = str(value)
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _url_message(text: str) -> None:
    st.session_state.setdefault("url_messages", []).append(text)


def _model_picker() -> tuple[str, str, str]:
    st.sidebar.header("Model")
    name = st.sidebar.selectbox("Model", MODEL_NAMES, key="model",
                                help="default: trained on the built-in synthetic scenes, works offline. "
                                     "The COCO models download their weights on first use when online.")
    devices = ["cpu"] + ["cuda"] * torch.cuda.is_available()
    device = st.sidebar.selectbox("Device", devices, index=len(devices) - 1, key="device")
    weights_file = st.sidebar.file_uploader("Weights file (optional)", type=["pt", "pth"], key="weights_file",
                                            help="A checkpoint of this project or a torchvision state dict "
                                                 "for the chosen model; read with weights_only=True.")
    weights = "auto"
    trained = {label: path for label, (model, path) in st.session_state.get("trained_models", {}).items()
               if model == name}
    if trained:
        label = st.sidebar.selectbox("Trained in this session", ["(the model's own weights)", *trained],
                                     key="trained_weights", help="Models from the Training page.")
        weights = trained.get(label, "auto")
        if label in trained:
            st.sidebar.caption(f"Weights: {label}, trained on the Training page")
    server_file = weights_picker(name, st.sidebar)  # the operator's weights folder (an upload still wins)
    if server_file is not None:
        weights = server_file
    if weights_file is not None:
        data = weights_file.getvalue()
        path = session_file(f"weights-{picker.digest(data)[:16]}.pt", data)  # goes with the session
        with guard(where=st.sidebar, about=weights_file.name):  # a record that inflates far past the upload is
            check_weights_size(path, UPLOAD_WEIGHTS_BYTES)           # refused before torch.load reads it
            weights = str(path)
        if weights != str(path):
            path.unlink(missing_ok=True)
    return name, weights, device


def _load_tracer(name: str, weights: str, device: str):
    with guard(where=st.sidebar):
        return get_tracer(name, weights, device)
    return get_tracer(name, "auto", device)  # the guard said why


@st.cache_data(max_entries=32, show_spinner=False)
def _sample(name: str, class_names: tuple[str, ...]):
    """A sample image and its ground truth, decoded (or generated) once; every rerun gets its own copy."""
    return load_sample(name, class_names=class_names)


LINK_NOTE = "The link (URL) holds the model, sample and settings, not this uploaded image."


def _image_picker(class_names: tuple[str, ...]) -> tuple[torch.Tensor, str, torch.Tensor | None, torch.Tensor | None]:
    """The image (a sample, an upload or a photo) and its ground truth: the user's for this very image if any
    (:mod:`app_pages._ground_truth`, keyed by the image's content), else a sample's own. The choices are
    :mod:`frcnn.data.picker`'s; here are the widgets and what the session keeps."""
    ground_truth.adopt_seeded()
    st.sidebar.header("Image")
    sample = st.sidebar.selectbox("Sample image", SAMPLES, key="sample")
    upload = st.sidebar.file_uploader("Upload an image", key="upload", type=list(picker.IMAGE_UPLOAD_TYPES))
    camera = st.sidebar.camera_input("Or take a photo", key="camera") if st.sidebar.toggle(
        "Camera", key="use_camera", help="For a live demo: take a picture and trace it.") else None
    image_file = camera or upload
    data = image_file.getvalue() if image_file is not None else b""
    if image_file is not None and st.session_state.get("own_image_digest") != (digest := picker.digest(data)):
        st.session_state["own_image_digest"] = digest  # read once: a refused file is not read again
        with guard("keeping the previous image"):
            st.session_state.update(own_image=load_image(data, name=image_file.name),
                                    own_image_key=picker.upload_key(data))
    own = st.session_state.get("own_image") if image_file is not None else None
    picked = picker.pick_image(own, st.session_state.get("own_image_key", ""), sample,
                               lambda name: _sample(name, class_names))
    if picked.own:
        if picked.notes:
            st.sidebar.caption(plain(f"{picked.name}: " + "; ".join(picked.notes)))
        st.sidebar.caption(LINK_NOTE)
    st.session_state[ground_truth.CURRENT] = picked.key
    _annotation_picker(picked, class_names)
    user = ground_truth.get(picked.key)
    for line in user.report if user is not None else ():
        st.sidebar.caption(plain(line))
    return (picked.tensor, picked.name,
            *picker.ground_truth_of(picked, None if user is None else (user.boxes, user.labels)))


def _annotation_picker(picked: picker.PickedImage, class_names: tuple[str, ...]) -> None:
    """An annotation file for the image shown (one uploader per image), read once: edits made after it are kept."""
    st.sidebar.header("Ground truth")
    ann = st.sidebar.file_uploader("Annotation file (COCO JSON, Pascal VOC XML, YOLO txt)",
                                   type=list(picker.ANNOTATION_UPLOAD_TYPES), key=f"annotations:{picked.key}")
    tried = (picked.key, picker.digest(ann.getvalue())) if ann is not None else None
    if ann is None or st.session_state.get("annotation_tried") == tried:
        return
    st.session_state["annotation_tried"] = tried
    current = st.session_state.get("settings", tracer.detector.defaults)
    with guard("the ground truth is unchanged"):
        parsed = picker.read_ground_truth(ann.getvalue(), ann.name, picked.tensor, picked.name, class_names,
                                          budget.facts_of(tracer.detector), current)
        ground_truth.put(picked.key, parsed.boxes, parsed.labels, report=tuple(parsed.report))


def _settings_for(tracer, image: torch.Tensor, gt_count: int) -> tuple[Settings, Settings]:
    defaults = tracer.detector.defaults
    if st.session_state.get("settings_model") != tracer.detector.key:
        base = defaults
        facts, size = budget.facts_of(tracer.detector), tuple(image.shape[-2:])
        for key, value in st.session_state.pop("url_settings", {}).items():  # one at a time: keep the good ones
            try:
                candidate = base.replace({key: value})
                budget.check(facts, candidate, size, gt_count)
                base = candidate
            except FrcnnError as exc:
                _url_message(f"A setting from the URL was not applied: {exc}")
        set_settings(base)
        reset_widgets()
        st.session_state["settings_model"] = tracer.detector.key
    return st.session_state["settings"], defaults


def _reset_buttons(defaults: Settings) -> None:
    st.sidebar.header("Settings")
    left, right = st.sidebar.columns(2)
    if left.button("Paper's defaults", help="Every knob back to Ren et al. 2015 (anchors that do not fit the "
                                            "trained head fall back to the model's, with a note; RoI pooling "
                                            "becomes the paper's RoIPool even for a head trained with RoIAlign)."):
        set_settings(PAPER.replace({"input.min_size": defaults.input.min_size,
                                    "input.max_size": defaults.input.max_size}))
        reset_widgets()
        if defaults.roi.pool != PAPER.roi.pool:
            _url_message(f"Paper's defaults: RoI pooling is now the paper's {PAPER.roi.pool}, but this model's box "
                         f"head was trained with {defaults.roi.pool}, so its detections change ('Model's defaults' "
                         "brings it back).")
    if right.button("Model's defaults", help="The settings this model was trained with."):
        set_settings(defaults)
        reset_widgets()


session_key()  # this session's folder and the server's reaper (ends jobs and files of sessions that went)
keep_display_widgets()  # a page's own sliders keep their values while another page is shown
_read_url_once()
lesson_panel.apply_pending(PAGE_FILES)  # a lesson step asked for last run: its model, image and settings
name, weights, device = _model_picker()
_startup.step(f"Loading the model {name}")
tracer = _load_tracer(name, weights, device)
_startup.step("Tracing the image through every stage for the first time")
for note in tracer.detector.notes:
    st.sidebar.caption(note)
image, image_name, gt_boxes, gt_labels = _image_picker(tracer.detector.class_names)
current, model_defaults = _settings_for(tracer, image, 0 if gt_boxes is None else len(gt_boxes))
_reset_buttons(model_defaults)
presentation = st.sidebar.toggle("Presentation mode", key="presentation",
                                 help="For a room (collapse the sidebar): larger text, each page's main figure sized "
                                      "to the screen, controls folded into an expander, boxes labelled.")
presentation_style(presentation)  # app_pages/_presentation.py: a room's fonts, figures sized to the screen
st.session_state["context"] = Context(tracer, image, image_name, gt_boxes, gt_labels, presentation)
show_story_banner()  # app_pages/_story.py: the default model on a photo knows only its five synthetic shapes
lesson_panel.keep_messages()  # shown again if the lesson switches to its step's page before they are seen
for message in st.session_state.pop("url_messages", []):
    st.warning(plain(message))
sync_url()

# The folder is app_pages/, not pages/: Streamlit serves a pages/ folder as old-style pages until some session has
# run st.navigation, so a shared link to /proposals on a fresh server would skip the sidebar and its state (README,
# "How it is built", says what was tried).
pages = [st.Page(str(HERE / "app_pages" / f), title=t, icon=i, default=(f == "overview.py")) for f, t, i in PAGES]
try:
    page = st.navigation(pages)
    lesson_panel.panel(dict(zip(PAGE_FILES, pages, strict=True)), page)  # a lesson's step: its page, panel, keys
    with guard():  # a refusal anywhere in the page is one error line, never a traceback
        page.run()
finally:
    _startup.done()  # the first start's note, once its first page has drawn
