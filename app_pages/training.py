"""Training: train the default architecture (or vgg16) on synthetic scenes or an uploaded COCO dataset, with
the session's anchors and thresholds, in the background of the server; live loss curves and held-out mAP;
stop, resume, and pick the result in the sidebar for every page."""

import tempfile
import time
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app_pages._shared import context, explain, settings, show_figure
from frcnn import FrcnnError
from frcnn.data.dataset import CocoFolder, ShapesScenes, extract_coco_zip, split_held_out
from frcnn.jobs import TrainingJob
from frcnn.models.registry import REGISTRY
from frcnn.train import LOSS_TERMS, TRAINABLE, TrainConfig


def _curves(job: TrainingJob) -> go.Figure:
    records = list(job.records)
    losses = [r for r in records if "total" in r]
    evals = [r for r in records if "map_50" in r]
    fig = go.Figure()
    for term in ("total", *LOSS_TERMS):
        fig.add_trace(go.Scatter(x=[r["step"] for r in losses], y=[r[term] for r in losses], name=term,
                                 mode="lines", line=dict(width=3 if term == "total" else 1.5)))
    if evals:
        fig.add_trace(go.Scatter(x=[r["step"] for r in evals], y=[r["map_50"] for r in evals], name="held-out mAP@0.5",
                                 mode="lines+markers", yaxis="y2", line=dict(color="black", dash="dot")))
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=30, b=10), xaxis_title="step",
                      yaxis=dict(title="loss", rangemode="tozero"),
                      yaxis2=dict(title="mAP@0.5", overlaying="y", side="right", range=[0, 1], showgrid=False),
                      legend=dict(orientation="h", yanchor="bottom", y=1.01, x=0))
    return fig


ctx = context()
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
if job is None or not job.running:
    with st.form("train_form"):
        c1, c2, c3 = st.columns(3)
        model = c1.selectbox("Architecture", TRAINABLE, key="train_model",
                             help="default: the light stride-8 trunk (trains on a CPU); vgg16: the paper's.")
        source = c2.radio("Data", ["synthetic", "upload"], key="train_source",
                          format_func={"synthetic": "built-in synthetic scenes",
                                       "upload": "a COCO zip (images + annotations.json)"}.get)
        upload = c3.file_uploader("COCO zip", type=["zip"], key="train_upload")
        d1, d2, d3, d4 = st.columns(4)
        steps = int(d1.number_input("Steps", 1, 100_000, 200, key="train_steps"))
        batch = int(d2.number_input("Images per step", 1, 16, 2, key="train_batch"))
        lr = float(d3.number_input("Learning rate", 1e-5, 1e-1, 1e-3, format="%.5f", key="train_lr"))
        size = int(d4.select_slider("Image size (shorter side)", [128, 192, 256, 320, 384, 448, 512], 256,
                                    key="train_size", help="Smaller trains faster on a CPU."))
        use_session = st.toggle("Use this session's anchors and thresholds (else the architecture's defaults)",
                                True, key="train_use_session")
        start = st.form_submit_button("Start training", type="primary")
    if start:
        try:
            if source == "synthetic":
                data, held = ShapesScenes(100_000, 0), ShapesScenes(20, 1)
            else:
                if upload is None:
                    raise FrcnnError("choose a COCO zip to upload first")
                folder = Path(tempfile.mkdtemp(prefix="frcnn-data-"))
                data, held = split_held_out(CocoFolder(extract_coco_zip(upload.getvalue(), folder, upload.name)))
            base = settings() if use_session else REGISTRY[model].defaults
            s = base.replace({"input.min_size": size, "input.max_size": max(2 * size, base.input.max_size // 2)})
            scales = tuple(sorted({max(64, size - 32), size, size + 32}))
            config = TrainConfig(steps=steps, batch_size=batch, lr=lr, warmup=min(100, max(1, steps // 10)),
                                 scales=scales, checkpoint_every=max(10, steps // 20),
                                 eval_every=max(10, steps // 5), log_every=1)
            out = Path(tempfile.mkdtemp(prefix="frcnn-train-")) / f"{model}-{time.strftime('%H%M%S')}.pt"
            st.session_state["training_job"] = TrainingJob(
                model, data, out, s, config, evaluate_on=held, device=ctx.tracer.detector.device.type,
                description=f"app: {model} on {source} data, {steps} steps of {batch}, lr {lr:g}, size {size}")
            st.rerun()
        except FrcnnError as exc:
            st.error(str(exc))


def live() -> None:
    job: TrainingJob | None = st.session_state.get("training_job")
    if job is None:
        st.info("No training yet in this session: choose the data and the steps above and start.")
        return
    step, steps = job.step, job.config.steps
    st.progress(min(step / steps, 1.0), text=f"{job.status}: step {step} of {steps} - {job.out.name}")
    if job.error:
        st.error(job.error)
    show_figure(_curves(job), key="train_curves", filename="training")
    evals = [r for r in list(job.records) if "map_50" in r]
    if evals:
        st.dataframe(pd.DataFrame(evals), hide_index=True)
    b1, b2, b3 = st.columns(3)
    if job.running:
        if b1.button("Stop", key="train_stop"):
            job.stop()
    elif job.status == "stopped" and b1.button("Resume", key="train_resume"):
        st.session_state["training_job"] = job.resume()
        st.rerun()
    if not job.running and job.out.is_file() and job.status in ("done", "stopped"):
        label = f"{job.out.name} (step {step})"
        trained = st.session_state.setdefault("trained_models", {})
        trained[label] = (job.model, str(job.out))
        b2.success(f"Pick **{label}** in the sidebar under *Trained in this session* to use it on every page.")
        b3.download_button("Download the checkpoint", job.out.read_bytes(), file_name=job.out.name,
                           key="train_download")
    if not job.running and st.session_state.get("train_was_running"):
        st.session_state["train_was_running"] = False
        st.rerun()  # the whole page: the form comes back
    st.session_state["train_was_running"] = job.running


current = st.session_state.get("training_job")
st.fragment(live, run_every=2 if current is not None and current.running else None)()  # live while it runs
