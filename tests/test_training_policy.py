"""The Training page's policy (frcnn.training_policy) and figure (frcnn.viz.training), without streamlit."""

from __future__ import annotations

from pathlib import Path

from frcnn.settings import Settings
from frcnn.train import LOSS_TERMS
from frcnn.training_policy import HELD_OUT_SCENES, training_config, training_data, training_settings
from frcnn.viz.training import training_figure


def test_the_schedule_follows_the_steps():
    c = training_config(steps=200, batch=2, lr=1e-3, size=256)
    assert (c.steps, c.batch_size, c.lr) == (200, 2, 1e-3)
    assert c.scales == (224, 256, 288) and c.warmup == 20 and c.checkpoint_every == 10 and c.eval_every == 40
    short = training_config(steps=5, batch=1, lr=1e-4, size=64)
    assert short.scales == (64, 96) and short.warmup == 1 and short.checkpoint_every == 10 and short.eval_every == 10
    assert training_config(10_000, 1, 1e-3, 512).warmup == 100


def test_the_settings_are_resized_and_nothing_else():
    base = Settings()
    s = training_settings(base, 256)
    assert s.input.min_size == 256 and s.input.max_size == max(512, base.input.max_size // 2)
    assert s.diff(base).keys() <= {"input.min_size", "input.max_size"}


def test_synthetic_data_and_its_held_out_scenes(tmp_path: Path):
    data, held = training_data("synthetic", tmp_path)
    assert len(held) == HELD_OUT_SCENES and len(data) > 1000
    assert not any(tmp_path.iterdir())  # nothing written


def test_the_figure_draws_every_loss_term_and_the_map():
    records = [{"step": 1, "total": 2.0, **dict.fromkeys(LOSS_TERMS, 0.5)},
               {"step": 2, "total": 1.0, **dict.fromkeys(LOSS_TERMS, 0.25)}, {"step": 2, "map_50": 0.4}]
    fig = training_figure(iter(records))
    assert [t.name for t in fig.data] == ["total", *LOSS_TERMS, "held-out mAP@0.5"]
    assert list(fig.data[0].y) == [2.0, 1.0] and list(fig.data[-1].y) == [0.4] and fig.data[-1].yaxis == "y2"
    assert len(training_figure([]).data) == 1 + len(LOSS_TERMS)  # no evaluation yet: no mAP trace
