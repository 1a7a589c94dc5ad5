"""The first page after the server starts: what it is loading, while it loads.

Imported by ``app.py`` before torch: the first import of this module happens in the server's first script run,
when torch, torchvision and the model are still to load (tens of seconds on a small machine), so it puts a note
at the top of that page; :func:`done` clears it once the model is loaded. Later runs import nothing new and show
nothing.
"""

from __future__ import annotations

import sys
import time

import streamlit as st

_started = time.monotonic()
_note = None
if "torch" not in sys.modules:
    st.set_page_config(page_title="Faster R-CNN, stage by stage", page_icon=":mag:", layout="wide")
    _note = st.empty()
    _note.info("Starting the server's first page: loading PyTorch and torchvision, then the model, then tracing "
               "every stage once. This takes a while once; later pages and visitors reuse all of it.",
               icon=":material/hourglass_top:")


def step(text: str) -> None:
    """Say what the first start is doing now (nothing after it is done)."""
    if _note is not None:
        _note.info(f"{text} ({time.monotonic() - _started:.0f} s since the start)", icon=":material/hourglass_top:")


def done() -> None:
    global _note
    if _note is not None:
        _note.empty()
        _note = None
