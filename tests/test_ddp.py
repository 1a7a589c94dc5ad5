"""Training with PyTorch's own distributed engine: two CPU processes under gloo (torchrun), each with one image
a step, train on exactly the images one process with two a step would, so the loss curves agree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from frcnn.models import load_model
from frcnn.train import TrainConfig, step_batch

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["train", "--model", "default", "--data", "shapes:40:0", "--steps", "4", "--lr", "1e-3", "--quiet",
        "--checkpoint-every", "2", "--log-every", "1", "--set", "input.min_size=96", "--set", "input.max_size=128"]


def test_the_sampler_shards_one_batch():
    config = TrainConfig(batch_size=2, seed=3)
    whole = step_batch(1000, TrainConfig(batch_size=4, seed=3), 7)
    parts = [step_batch(1000, config, 7, rank, 2) for rank in range(2)]
    assert parts[0].indices + parts[1].indices == whole.indices
    assert parts[0].flips + parts[1].flips == whole.flips
    assert parts[0].min_size == parts[1].min_size == whole.min_size and (parts[0].first, parts[1].first) == (0, 2)


def _losses(out: Path) -> list[float]:
    return [r["total"] for r in map(json.loads, out.with_suffix(".log.jsonl").read_text().splitlines())
            if "total" in r]


@pytest.mark.timeout(900)
def test_two_gloo_processes_match_one(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    two = tmp_path / "two.pt"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "2", "-m", "frcnn", *ARGS, "--batch-size", "1", "--out", str(two),
                           "--device", "cpu"], capture_output=True, text=True, env=env, timeout=800, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    one = tmp_path / "one.pt"
    done = subprocess.run([sys.executable, "-m", "frcnn", *ARGS, "--batch-size", "2", "--out", str(one),
                           "--device", "cpu"], capture_output=True, text=True, env=env, timeout=800, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = _losses(two), _losses(one)
    assert len(a) == len(b) == 4
    assert a == pytest.approx(b, rel=1e-4)  # the same images and the same averaged gradients
    det = load_model("default", two, "cpu")  # the distributed run's checkpoint loads
    assert det.defaults.input.min_size == 96
