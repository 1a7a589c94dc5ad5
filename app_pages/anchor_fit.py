"""Anchor fit: how well the current anchors can cover a whole dataset's ground truth, and the sizes and ratios
k-means on the boxes' shapes suggests instead.

The fit is long work (a thousand scenes take about a minute on 2 cores), so it runs in the background of the
server (:mod:`frcnn.fit_jobs`): the script only starts a job, the page shows its progress and a Cancel button
and re-polls (a fragment with ``run_every``) only while the job runs, and every page stays usable meanwhile. Results
live in the server's fit cache, keyed by the dataset and the settings that matter, so coming back is instant; a
settings change starts a new fit and cancels the old one (one job per session; the server runs a few at once)."""

import pandas as pd
import streamlit as st

from app_pages import _presentation as presentation
from app_pages._sessions import is_session_alive, session_key
from app_pages._shared import (
    context,
    explain,
    fragment,
    guard,
    plain,
    reset_widgets,
    set_settings,
    settings,
    show_figure,
)
from frcnn.anchor_fit import FIT_KEYS, AnchorFit
from frcnn.data.annotations import MAX_BOXES, MAX_DATASET_IMAGES
from frcnn.fit_jobs import (
    MAX_FIT_BOXES,
    MAX_SCENES,
    FitJob,
    FitRequest,
    FitResult,
    coco_source,
    server_fit_queue,
    shapes_source,
)
from frcnn.lesson import setting_text
from frcnn.settings import Settings
from frcnn.viz.anchor_fit import anchor_fit_figure

POLL_SECONDS = 0.5  # how often the page looks at a running job
PERCENT = {c: st.column_config.NumberColumn(format="percent") for c in ("recall@0.5", "recall@0.7")}


def _rows(fit: AnchorFit) -> pd.DataFrame:
    summary = fit.summary()
    rows = [{"size": "all", "boxes": summary["boxes"], "recall@0.5": summary["recall@0.5"],
             "recall@0.7": summary["recall@0.7"], "mean_iou": summary["mean_iou"]}, *summary["by_size"]]
    return pd.DataFrame(rows).rename(columns={"mean_iou": "mean best IoU"})


def _start(request: FitRequest) -> FitJob | None:
    """This session's job for ``request`` (its old one is cancelled), or None with the refusal shown."""
    with guard():
        job = queue.submit(owner, request, is_alive=lambda: is_session_alive(owner))  # a closed tab's fit stops
        st.session_state["fit_job"] = job
        return job
    return None


def _live(key: tuple, fit_shown: bool) -> None:
    """The job's progress, Cancel, and how it ended; reruns the page when there is more to show."""
    job: FitJob | None = st.session_state.get("fit_job")
    if job is None or job.key != key:
        return
    what, done, total = job.progress
    count = f": {done:,} of {total:,} {job.request.source.noun}" if total else ""
    if job.status == "queued":
        k, n = queue.position(job)
        running, _ = queue.counts()
        st.progress(0.0, text=f"queued: position {k} of {n} - it starts when a place is free ({running} of "
                              f"{queue.max_running} fits running on this server)")
    elif job.active:
        st.progress(done / total if total else 0.0,
                    text=f"{'cancelling' if job.cancelling else 'running'} - {what}{count}")
    if job.active and not job.cancelling:
        if st.button("Cancel", key="fit_cancel", help="Stop the fit (within about a second)."):
            job.cancel("cancelled")
            st.rerun()
    elif job.status == "cancelled":
        st.info(f"The fit was {job.note} ({what}{count}).")
        if st.button("Fit again", key="fit_again"):
            _start(job.request)
            st.rerun()
    elif job.status == "failed":
        st.error(plain(job.error))
    if not job.active and st.session_state.get("fit_polling"):
        st.session_state["fit_polling"] = False
        st.rerun()  # the whole page: the results, or the Fit again button
    if job.active and not fit_shown and queue.cache.fit(job.request) is not None:
        st.rerun()  # the current anchors' numbers are in: show them while the suggestions are fitted
    st.session_state["fit_polling"] = job.active


def _current(fit: AnchorFit) -> None:
    m = presentation.metric_row(4)
    m[0].metric("Boxes", f"{len(fit.best_iou):,}")
    m[1].metric("Recall @ IoU 0.5", f"{fit.recall(0.5):.1%}")
    m[2].metric("Recall @ IoU 0.7", f"{fit.recall(0.7):.1%}")
    m[3].metric("Mean best IoU", f"{fit.mean_best_iou:.3f}")


def _suggested(result: FitResult, s: Settings, panel: presentation.Panel) -> None:
    fit, suggested, sizes, ratios = result.fit, result.suggested, result.sizes, result.ratios
    with panel.side:  # presentation mode: beside the figure
        _suggested_numbers(result, s)
    with panel.figure:
        show_figure(anchor_fit_figure(fit, (sizes, ratios)), key="fit_figure", filename="anchor_fit")
    _suggested_tables(fit, suggested)


def _suggested_numbers(result: FitResult, s: Settings) -> None:
    fit, suggested, sizes, ratios = result.fit, result.suggested, result.sizes, result.ratios
    st.caption(f"sizes {', '.join(f'{v:g}' for v in sizes)}; ratios {', '.join(f'{v:g}' for v in ratios)}")
    d = presentation.metric_row(3)
    d[0].metric("Recall @ IoU 0.5", f"{suggested.recall(0.5):.1%}",
                f"{suggested.recall(0.5) - fit.recall(0.5):+.1%}")
    d[1].metric("Recall @ IoU 0.7", f"{suggested.recall(0.7):.1%}",
                f"{suggested.recall(0.7) - fit.recall(0.7):+.1%}")
    d[2].metric("Mean best IoU", f"{suggested.mean_best_iou:.3f}",
                f"{suggested.mean_best_iou - fit.mean_best_iou:+.3f}")
    if st.button("Use the suggested anchors", key="fit_apply",
                 help="Sets anchors.sizes and anchors.ratios. A trained RPN head decodes them only if their number "
                      "per location is the one it was trained with; otherwise proposals keep the model's anchors."):
        set_settings(s.replace({"anchors.sizes": sizes, "anchors.ratios": ratios}))
        reset_widgets()
        st.rerun()


def _suggested_tables(fit: AnchorFit, suggested: AnchorFit) -> None:
    left, right = st.columns(2)
    left.markdown("**Current anchors**")
    left.dataframe(_rows(fit), hide_index=True, column_config=PERCENT, key="fit_current_table")
    right.markdown("**Suggested anchors**")
    right.dataframe(_rows(suggested), hide_index=True, column_config=PERCENT, key="fit_suggested_table")


ctx = context()
queue = server_fit_queue()
owner = session_key()
st.title("Anchor fit")
explain(
    "The RPN can only learn an object that some anchor overlaps well: with the paper's thresholds an anchor "
    "is positive at IoU >= 0.7 (or as the best anchor of a box). Over a whole dataset, the **best-possible "
    "recall** counts the ground-truth boxes whose best anchor reaches 0.5 or 0.7 IoU, with every image resized "
    "as the model resizes it. **k-means** on the boxes' (w, h), with 1 - IoU of centred boxes as the distance "
    "(YOLOv2's anchor clustering), finds shapes that fit the data; grouping their sizes and ratios gives a "
    "sizes x ratios grid, which is what the anchor generator makes.",
    r"d(b, c) = 1 - \mathrm{IoU}(b, c),\qquad \text{recall}_t = \frac{|\{g : \max_a \mathrm{IoU}(a, g) \ge t\}|}"
    r"{|\{g\}|}",
)
controls = presentation.box()  # presentation mode: the dataset, the notes and k-means' counts in one expander
kind = controls.radio("Dataset", ["synthetic", "upload"], horizontal=True, key="fit_source",
                      format_func={"synthetic": "built-in synthetic scenes",
                                   "upload": "a COCO dataset (annotations.json, or a zip holding it)"}.get)
if kind == "synthetic":
    c1, c2 = presentation.columns(2, controls)
    n = c1.slider("Scenes", 20, MAX_SCENES, 100, 20, key="fit_n")
    seed = int(c2.number_input("Seed", 0, 2**31 - 1, 1, key="fit_seed"))
    source = shapes_source(n, seed)
else:
    upload = controls.file_uploader("COCO annotations", type=["json", "zip"], key="fit_upload",
                                    help="Only the annotations are read (image sizes come from their width/height).")
    if upload is None:
        controls.info("Upload a COCO annotations.json (or a zip of a COCO folder) to fit the anchors to your data.")
        st.stop()
    source = coco_source(upload.getvalue(), upload.name)
report = controls.container()  # the reader's notes on an upload, once it has been read
s = settings()
a = s.anchors
controls.caption("The settings the fit reads, as they are now (change them on the Anchors page): "
                 + "; ".join(f"{k} {setting_text(s.get(k))}" for k in FIT_KEYS) + ".")
controls.caption(
    f"The fit runs in the background of the server: {queue.max_running} at once, the others wait in order, "
    f"one per session (a new one cancels the old), each at most {(queue.max_seconds or 0) / 60:g} min. At most "
    f"{MAX_SCENES:,} scenes; an upload of at most {MAX_DATASET_IMAGES:,} images, {MAX_BOXES:,} boxes an "
    f"image and {MAX_FIT_BOXES:,} in all.")
if ctx.tracer.detector.multi_level:
    st.info("This model spreads its anchor sizes over FPN levels with strides of their own; the fit here lays "
            f"every size on one grid of stride {a.stride}, so it approximates where the anchors sit (the shapes, "
            "and so the recall's main term, are exact).")
status = st.container()  # the job's progress, Cancel, or how it ended
panel = presentation.panel()  # presentation mode: the figure beside the current and the suggested numbers
current = panel.place()  # the current anchors' numbers

suggest = controls if presentation.is_on() else st
suggest.subheader("Suggested by k-means")
c1, c2 = presentation.columns(2, suggest)
# as many as the settings have (the default model has 10 sizes), up to what the settings allow
num_sizes = int(c1.number_input("Sizes", 1, 16, min(len(a.sizes), 16), key="fit_num_sizes"))
num_ratios = int(c2.number_input("Ratios", 1, 8, min(len(a.ratios), 8), key="fit_num_ratios"))
request = FitRequest(source, s, num_sizes, num_ratios)
job: FitJob | None = st.session_state.get("fit_job")
if job is not None and job.active and job.key != request.key:
    job.cancel("replaced: the settings changed")  # even when the new ones' result is cached
result = queue.cache.result(request) or (job.result if job is not None and job.key == request.key else None)
if result is None and (job is None or job.key != request.key):
    job = _start(request)
fit = result.fit if result is not None else queue.cache.fit(request)
if fit is not None:
    with current:
        _current(fit)
data = queue.cache.items.get(source.key)
for line in result.report if result is not None else data[1] if data is not None else ():
    report.caption(plain(line))
if result is None:
    with status:
        polling = job is not None and job.active
        fragment(_live, request.key, fit is not None, run_every=POLL_SECONDS if polling else None)
else:
    st.session_state["fit_polling"] = False
    _suggested(result, s, panel)
