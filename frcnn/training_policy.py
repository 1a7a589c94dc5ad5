"""How the app trains: the data, the settings and the schedule of a run started from the Training page.

The page reads its widgets (architecture, data, steps, images per step, learning rate, image size) and asks here
what to train on and with: a synthetic stream with a held-out set, or an uploaded COCO zip split into training
and held-out images; the settings resized to the chosen shorter side; a :class:`~frcnn.train.TrainConfig` whose
warm-up, scale jitter, checkpoints and evaluations follow the number of steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from frcnn.data.dataset import CocoFolder, ShapesScenes, extract_coco_zip, split_held_out
from frcnn.settings import Settings
from frcnn.train import TrainConfig

SYNTHETIC_SCENES = 100_000  # scenes of the synthetic training stream (seed 0); a run draws what it needs
HELD_OUT_SCENES = 20  # synthetic scenes evaluated during a run (seed 1)
SCALE_STEP = 32  # the scale jitter: the chosen shorter side and one step either way
MIN_SCALE = 64


def training_data(source: str, folder: Path, upload: bytes = b"", upload_name: str = "") -> tuple[Sequence, Sequence]:
    """(training set, held-out set): the synthetic scenes for ``source == "synthetic"``, else the COCO zip
    ``upload`` extracted under ``folder / "data"`` and split (:func:`~frcnn.data.dataset.split_held_out`)."""
    if source == "synthetic":
        return ShapesScenes(SYNTHETIC_SCENES, 0), ShapesScenes(HELD_OUT_SCENES, 1)
    return split_held_out(CocoFolder(extract_coco_zip(upload, folder / "data", upload_name)))


def training_settings(base: Settings, size: int) -> Settings:
    """``base`` with the network's input resized to a shorter side of ``size`` (the longer side at most twice
    that, or half of ``base``'s limit when that is larger)."""
    return base.replace({"input.min_size": size, "input.max_size": max(2 * size, base.input.max_size // 2)})


def training_config(steps: int, batch: int, lr: float, size: int) -> TrainConfig:
    """The schedule of a run of ``steps`` steps: a warm-up of a tenth (1 to 100 steps), scale jitter around
    ``size``, about 20 checkpoints and 5 evaluations (every 10 steps at most), a loss record every step."""
    scales = tuple(sorted({max(MIN_SCALE, size - SCALE_STEP), size, size + SCALE_STEP}))
    return TrainConfig(steps=steps, batch_size=batch, lr=lr, warmup=min(100, max(1, steps // 10)), scales=scales,
                       checkpoint_every=max(10, steps // 20), eval_every=max(10, steps // 5), log_every=1)
