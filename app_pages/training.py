"""Training: train the default architecture (or vgg16) on synthetic scenes or an uploaded COCO dataset, with
the session's anchors and thresholds, in the background of the server; live loss curves and held-out mAP;
stop, resume, and pick the result in the sidebar for every page.

The server is shared: jobs wait in its queue (``frcnn.jobs.server_queue``: at most ``max_running`` at once,
one per session, at most ``max_steps`` steps), the page shows the place in the queue, and the job's files
(the extracted dataset, the checkpoints) live in this session's folder, removed when the session ends."""

import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd
import streamlit as st

from app_pages import _presentation as presentation
from app_pages._sessions import session_dir, session_key
from app_pages._shared import context, explain, fragment, guard, plain, settings, show_figure
from frcnn import FrcnnError
from frcnn.jobs import TrainingJob, server_queue
from frcnn.models.registry import REGISTRY
from frcnn.train import TRAINABLE
from frcnn.training_policy import training_config, training_data, training_settings
from frcnn.viz.training import training_figure


def _start(owner: str, model: str, source: str, upload, steps: int, batch: int, lr: float, size: int,
           use_session: bool) -> TrainingJob:
    """Queue a job of this session; its dataset and outputs go in a folder of the session's folder, removed
    again when anything fails before the job is queued."""
    queue.check(owner, steps)  # before any file is written
    if source == "upload" and upload is None:
        raise FrcnnError("choose a COCO zip to upload first")
    folder = Path(tempfile.mkdtemp(prefix="train-", dir=session_dir()))
    try:
        data, held = training_data(source, folder, *((upload.getvalue(), upload.name) if upload else ()))
        s = training_settings(settings() if use_session else REGISTRY[model].defaults, size)
        out = folder / f"{model}-{time.strftime('%H%M%S')}.pt"
        return queue.submit(owner, model, data, out, s, training_config(steps, batch, lr, size), evaluate_on=held,
                            device=ctx.tracer.detector.device.type, folder=folder,
                            description=f"app: {model} on {source} data, {steps} steps of {batch}, lr {lr:g}, "
                                        f"size {size}")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


ctx = context()
queue = server_queue()
owner = session_key()
queue.touch(owner)
st.title("Training")
explain(
    "Approximate joint training (the paper's section 3.2): each step runs a small batch of images through the "
    "backbone, the RPN (its anchors labelled by IoU, a balanced minibatch, objectness and box losses), the "
    "proposals (no gradient through them), the RoI sampling and pooling and the head (classification and box "
    "losses), and updates every weight on the sum of the four losses. The run happens in the background of the "
    "server: switch pages and come back; stop it and resume it; when it ends, use the model on every page.",
    r"L = L_{cls}^{rpn} + L_{reg}^{rpn} + L_{cls}^{roi} + L_{reg}^{roi}",
)
job: TrainingJob | None = st.session_state.get("training_job")
busy = job is not None and job.active
why = (f"This session's job is {job.status}: stop it first (one job per session)." if busy else
       f"The server trains {queue.max_running} job(s) at once; others wait in a queue, in order.")
with presentation.box("Training run", expanded=job is None), st.form("train_form"):  # presentation: the curves first
    c1, c2, c3 = st.columns(3)
    model = c1.selectbox("Architecture", TRAINABLE, key="train_model",
                         help="default: the light stride-8 trunk (trains on a CPU); vgg16: the paper's.")
    source = c2.radio("Data", ["synthetic", "upload"], key="train_source",
                      format_func={"synthetic": "built-in synthetic scenes",
                                   "upload": "a COCO zip (images + annotations.json)"}.get)
    upload = c3.file_uploader("COCO zip", type=["zip"], key="train_upload")
    d1, d2, d3, d4 = st.columns(4)
    steps = int(d1.number_input("Steps", 1, queue.max_steps, min(200, queue.max_steps), key="train_steps",
                                help=f"At most {queue.max_steps:,} on this server; a job runs at most "
                                     f"{(queue.max_seconds or 0) / 60:g} min at a time, then stops with a "
                                     f"checkpoint (resume it to queue again)."))
    batch = int(d2.number_input("Images per step", 1, 16, 2, key="train_batch"))
    lr = float(d3.number_input("Learning rate", 1e-5, 1e-1, 1e-3, format="%.5f", key="train_lr"))
    size = int(d4.select_slider("Image size (shorter side)", [128, 192, 256, 320, 384, 448, 512], 256,
                                key="train_size", help="Smaller trains faster on a CPU."))
    use_session = st.toggle("Use this session's anchors and thresholds (else the architecture's defaults)",
                            True, key="train_use_session")
    start = st.form_submit_button("Start training", type="primary", disabled=busy, help=why)
    st.caption(why)
if start and not busy:
    with guard():
        st.session_state["training_job"] = _start(owner, model, source, upload, steps, batch, lr, size,
                                                  use_session)
        st.rerun()


def live() -> None:
    queue.touch(owner)  # the heartbeat: an open Training page keeps its job
    job: TrainingJob | None = st.session_state.get("training_job")
    if job is None:
        st.info("No training yet in this session: choose the data and the steps above and start.")
        return
    step, steps = job.step, job.config.steps
    running, waiting = queue.counts()
    if job.status == "queued":
        k, n = queue.position(job)
        st.progress(0.0, text=f"queued: position {k} of {n} - it starts when a place is free "
                              f"({running} of {queue.max_running} running on this server)")
    else:
        st.progress(min(step / steps, 1.0), text=f"{job.status}: step {step} of {steps} - {job.out.name}")
    if job.note:
        st.info(job.note)
    if job.error:
        st.error(plain(job.error))
    show_figure(training_figure(job.records), key="train_curves", filename="training")
    evals = [r for r in list(job.records) if "map_50" in r]
    if evals:
        st.dataframe(pd.DataFrame(evals), hide_index=True)
    b1, b2, b3 = st.columns(3)
    if job.status == "queued":
        if b1.button("Cancel", key="train_cancel", help="Leave the queue."):
            job.cancel()
            st.rerun()
    elif job.running:
        if b1.button("Stop", key="train_stop", help="Stop after the current step, with a checkpoint."):
            job.stop()
    elif job.status == "stopped" and b1.button("Resume", key="train_resume", help="Queue it again."):
        with guard():
            st.session_state["training_job"] = job.resume()
            st.rerun()
    if not job.active and job.out.is_file() and job.status in ("done", "stopped"):
        label = f"{job.out.name} (step {step})"
        trained = st.session_state.setdefault("trained_models", {})
        trained[label] = (job.model, str(job.out))
        b2.success(f"Pick **{label}** in the sidebar under *Trained in this session* to use it on every page.")
        b3.download_button("Download the checkpoint", job.out.read_bytes, file_name=job.out.name,  # read when pressed
                           key="train_download", on_click="ignore")
    if not job.active and st.session_state.get("train_was_active"):
        st.session_state["train_was_active"] = False
        st.rerun()  # the whole page: the form's button comes back
    st.session_state["train_was_active"] = job.active


current = st.session_state.get("training_job")
fragment(live, run_every=2 if current is not None and current.active else None)  # live while it runs
