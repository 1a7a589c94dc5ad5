"""The sidebar's "Weights on the server": files the operator put in torchvision's cache or in
``$FRCNN_WEIGHTS_DIR`` (:mod:`frcnn.models.weights_folder`), offered for the chosen model.

The folder is the operator's: a visitor picks among its files by label (file name and folder, never a
server path) and cannot name a path; uploads keep their own cap. A published file whose sha256 does not
start with the digits its name carries is not offered, and a caption says so.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from app_pages._shared import plain
from frcnn.models.weights_folder import WEIGHTS_DIR_ENV, available_weights

NONE = "(none)"  # the model's own weights ("auto"), or what the uploader / Training page gave


def weights_picker(model_name: str, container: Any = st.sidebar) -> str | None:
    """A selectbox of the server's weights files that fit ``model_name``; the chosen file's path, or None for
    "(none)" and when the folders hold nothing for this model (then nothing is drawn)."""
    files = available_weights(model_name)
    bad = [f.path.name for f in files if f.verified is False]
    if bad:
        container.caption(plain(f"Not offered, sha256 does not match the name (corrupt or not torchvision's): "
                                f"{', '.join(bad)}"))
    offered = {f.label: str(f.path) for f in files if f.verified is not False}
    if not offered:
        return None
    label = container.selectbox(
        "Weights on the server", [NONE, *offered], key=f"server_weights:{model_name}",
        help=f"Files the server's operator put in torchvision's cache or in ${WEIGHTS_DIR_ENV}, for this model; "
             "read with weights_only=True. (none): the model's own weights.")
    return offered.get(label)
