"""What every page shares: the cached model and tracer, the current image, the sidebar pickers.

Models are loaded once per (name, weights, device) with ``st.cache_resource`` and shared by every browser
session; they are never written to. Per-session choices live in ``st.session_state``.
"""

from __future__ import annotations

import streamlit as st
import torch

from frcnn import FrcnnError, Tracer, load_model
from frcnn.data import load_image
from frcnn.data.shapes import make_scene
from frcnn.models import MODEL_NAMES

SAMPLE_SEED = 7  # synthetic sample scenes; never a training seed
SAMPLES = {f"Synthetic scene {i + 1}": i for i in range(4)}


@st.cache_resource(show_spinner="Loading the model...")
def get_tracer(name: str, weights: str, device: str) -> Tracer:
    return Tracer(load_model(name, weights, device))


@st.cache_data(show_spinner=False)
def sample_image(index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    scene = make_scene(SAMPLE_SEED, index)
    return (torch.from_numpy(scene.image).permute(2, 0, 1).contiguous(), torch.from_numpy(scene.boxes),
            torch.from_numpy(scene.labels))


def sidebar() -> tuple[Tracer, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The pickers; returns (tracer, image (3, H, W) uint8, gt boxes, gt labels)."""
    st.sidebar.header("Input")
    choice = st.sidebar.selectbox("Sample image", list(SAMPLES), key="sample")
    upload = st.sidebar.file_uploader("...or upload an image", type=["png", "jpg", "jpeg", "webp", "bmp", "tif",
                                                                     "tiff"], key="upload")
    name = st.sidebar.selectbox("Model", MODEL_NAMES, key="model")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    device = st.sidebar.selectbox("Device", devices, index=len(devices) - 1, key="device")
    tracer = get_tracer(name, "auto", device)
    for note in tracer.detector.notes:
        st.sidebar.caption(note)
    image, boxes, labels = sample_image(SAMPLES[choice])
    if upload is not None:
        try:
            image, boxes, labels = load_image(upload.getvalue(), name=upload.name).tensor, None, None
        except FrcnnError as exc:
            st.error(str(exc))
    return tracer, image, boxes, labels
