"""The command line: trace JSON for every model, sweeps, and one-line errors with exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from frcnn.__main__ import main
from frcnn.data.shapes import SceneConfig, write_coco_dataset
from frcnn.models import MODEL_NAMES

SMALL = ["--set", "input.min_size=160", "--set", "input.max_size=256"]


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("scene")
    write_coco_dataset(out, n=1, seed=123, config=SceneConfig(min_side=160, max_side=240))
    return out


def _image(scene_dir: Path) -> str:
    return str(next((scene_dir / "images").glob("*.png")))


def _run(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_trace_json_has_the_documented_shape_for_every_model(model, scene_dir, tmp_path, capsys):
    out = tmp_path / "trace.json"
    args = ["trace", _image(scene_dir), "--gt", str(scene_dir / "annotations.json"), "--model", model,
            "--weights", "random", "--device", "cpu", "--json", str(out), *SMALL]
    code, stdout, _ = _run(args, capsys)
    assert code == 0
    data = json.loads(out.read_text())
    assert {"image", "model", "device", "settings", "anchors", "anchor_targets", "proposals", "roi_samples",
            "detections", "losses", "timings_ms", "cached"} <= data.keys()
    assert data["model"] == model and data["device"] == "cpu"
    assert data["image"]["width"] > 0 and data["settings"]["input.min_size"] == 160
    n = len(data["anchors"]["boxes"])
    assert n == len(data["anchors"]["inside"]) == len(data["anchor_targets"]["labels"]) \
        == len(data["anchor_targets"]["max_iou"]) > 0
    assert set(data["anchor_targets"]["labels"]) <= {-1, 0, 1}
    pos = data["anchor_targets"]["sampled_positive"]
    assert all(data["anchor_targets"]["labels"][i] == 1 for i in pos)
    assert len(data["proposals"]["boxes"]) == len(data["proposals"]["scores"])
    assert data["proposals"]["pre_nms_count"] >= len(data["proposals"]["boxes"])
    assert len(data["roi_samples"]["boxes"]) == len(data["roi_samples"]["labels"]) == len(data["roi_samples"]["ious"])
    for det in data["detections"]:
        assert {"box", "score", "label", "name"} <= det.keys() and len(det["box"]) == 4
    assert set(data["losses"]) >= {"rpn_objectness", "rpn_box", "roi_classifier", "roi_box"}
    assert "backbone" in data["timings_ms"] and data["cached"] == []
    assert f"model {model}" in stdout


def test_sweep_reuses_cached_stages(scene_dir, tmp_path, capsys):
    out = tmp_path / "sweep.json"
    code, _, _ = _run(["trace", _image(scene_dir), "--weights", "random", "--json", str(out), *SMALL,
                       "--sweep", "rpn.nms_thresh=0.5,0.6,0.7"], capsys)
    assert code == 0
    traces = json.loads(out.read_text())
    assert [t["settings"]["rpn.nms_thresh"] for t in traces] == [0.5, 0.6, 0.7]
    assert traces[0]["cached"] == []
    for t in traces[1:]:
        assert {"backbone", "rpn_head", "anchors"} <= set(t["cached"]) and "proposals" not in t["cached"]
    nms_counts = [t["proposals"]["counts"]["nms"] for t in traces]
    assert nms_counts == sorted(nms_counts)


def test_tuple_sweep_and_set(scene_dir, tmp_path, capsys):
    out = tmp_path / "sweep.json"
    code, _, _ = _run(["trace", _image(scene_dir), "--weights", "random", "--json", str(out), *SMALL,
                       "--sweep", "anchors.sizes=32,64,128,256;64,128,256,512"], capsys)
    assert code == 0
    assert [t["settings"]["anchors.sizes"] for t in json.loads(out.read_text())] == [[32, 64, 128, 256],
                                                                                     [64, 128, 256, 512]]


class _Evil:
    """Unpickling this would call os.system; weights_only loading must refuse it without calling it."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("make, args, words", [
    (None, ["trace", "MISSING.png"], "no such file"),
    ("text", ["trace", "FILE"], "not an image"),
    ("cut", ["trace", "FILE"], "truncated or corrupt"),
    ("scene", ["trace", "FILE", "--set", "rpn.bogus=1"], "unknown setting"),
    ("scene", ["trace", "FILE", "--set", "rpn.nms_thresh=2"], "out of range"),
    ("scene", ["trace", "FILE", "--set", "rpn.nms_thresh"], "expected KEY=VALUE"),
    ("scene", ["trace", "FILE", "--gt", "MISSING.json"], "no such file"),
    ("scene", ["trace", "FILE", "--weights", "MISSING.pt"], "no such file"),
    ("scene", ["trace", "FILE", "--device", "tpu"], "device"),
    ("empty", ["trace", "FILE"], "empty file"),
    ("thin", ["trace", "FILE"], "too thin"),
    ("bomb", ["trace", "FILE"], "over the cap of 40000000 pixels"),
    ("scene", ["trace", "FILE", "--gt", "XMLBOMB"], "DTD or entities is refused"),
    ("scene", ["trace", "FILE", "--weights", "PICKLE"], "refused, not a plain weights file"),
    ("scene", ["trace", "FILE", "--set", "rpn.pre_nms_top_n=10", "--set", "rpn.post_nms_top_n=300"], "post_nms"),
    ("scene", ["trace", "FILE", "--set", "anchors.ratios="], "anchors.ratios"),
])
def test_user_mistakes_exit_2_with_one_line(make, args, words, scene_dir, tmp_path, capsys):
    path = tmp_path / "file.png"
    if make == "text":
        path.write_text("hello")
    elif make == "cut":
        data = Path(_image(scene_dir)).read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif make == "scene":
        path = Path(_image(scene_dir))
    elif make == "empty":
        path.write_bytes(b"")
    elif make == "thin":
        Image.new("RGB", (1, 60)).save(path)
    elif make == "bomb":  # 50 megapixels of 1-bit zeros: a few kB on disk
        Image.new("1", (10_000, 5_000)).save(path)
    xml_bomb = tmp_path / "bomb.xml"
    entities = "".join(f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10}">' for i in range(1, 8))
    xml_bomb.write_text(f'<?xml version="1.0"?><!DOCTYPE annotation [<!ENTITY l0 "ha">{entities}]>'
                        "<annotation>&l7;</annotation>")
    pickle_file = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "hook": _Evil()}, pickle_file)
    args = [a.replace("FILE", str(path)).replace("MISSING", str(tmp_path / "missing"))
            .replace("XMLBOMB", str(xml_bomb)).replace("PICKLE", str(pickle_file)) for a in args]
    code, _, err = _run(args + ["--weights", "random"] if "--weights" not in args else args, capsys)
    assert code == 2
    assert words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_real_process_unknown_model_is_one_line_and_status_2(scene_dir):
    proc = subprocess.run([sys.executable, "-m", "frcnn", "trace", _image(scene_dir), "--model", "yolo"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "invalid choice" in proc.stderr


def test_real_process_trace_to_stdout(scene_dir):
    proc = subprocess.run([sys.executable, "-m", "frcnn", "trace", _image(scene_dir), "--weights", "random",
                           *SMALL, "--json", "-"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["model"] == "default"


def test_keys_and_models(capsys):
    code, out, _ = _run(["keys"], capsys)
    assert code == 0 and "rpn.nms_thresh" in out and "proposals" in out
    code, out, _ = _run(["models"], capsys)
    assert code == 0 and all(name in out for name in MODEL_NAMES)


def test_anchors_reports_the_fit_and_suggestions(scene_dir, capsys):
    from frcnn.anchor_fit import dataset_items, fit_anchors
    from frcnn.data.dataset import open_dataset
    from frcnn.models import REGISTRY

    code, out, _ = _run(["anchors", "--data", str(scene_dir), "--json", "--num-sizes", "2", "--num-ratios", "1",
                         *SMALL], capsys)
    assert code == 0
    report = json.loads(out)
    settings = REGISTRY["default"].defaults.replace({"input.min_size": 160, "input.max_size": 256})
    fit = fit_anchors(list(dataset_items(open_dataset(scene_dir))), settings)
    assert report["current"]["recall@0.5"] == fit.recall(0.5) and report["current"]["boxes"] == len(fit.best_iou)
    assert len(report["suggested"]["sizes"]) == 2 and len(report["suggested"]["ratios"]) == 1
    code, out, _ = _run(["anchors", "--data", str(scene_dir), "--num-sizes", "1", "--num-ratios", "2"], capsys)
    assert code == 0 and "suggested (k-means" in out and "--set anchors.sizes=" in out
    code, _, err = _run(["anchors", "--data", str(scene_dir / "nope")], capsys)
    assert code == 2 and "no such folder" in err
    code, _, err = _run(["anchors", "--data", str(scene_dir), "--num-sizes", "50"], capsys)
    assert code == 2 and "cannot make 150 clusters" in err


@pytest.mark.timeout(300)
def test_sigterm_stops_a_training_run_with_a_resumable_checkpoint(tmp_path):
    """A stopped CLI run (SIGTERM, or Ctrl-C's SIGINT) keeps the steps since its last checkpoint."""
    import signal

    from frcnn.models import read_weights_file

    out = tmp_path / "m.pt"
    args = [sys.executable, "-m", "frcnn", "train", "--data", "shapes:4:3", "--out", str(out), "--steps", "100000",
            "--batch-size", "1", "--checkpoint-every", "100000", "--log-every", "1", "--device", "cpu",
            "--set", "input.min_size=128", "--set", "input.max_size=160"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "FRCNN_OFFLINE": "1"})
    try:
        seen = ""
        while "2/100000" not in seen:  # the progress bar: the loop is running, the handler installed
            chunk = proc.stderr.read(1)
            assert chunk, f"training ended early: {seen[-500:]}"
            seen += chunk
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0
    meta = read_weights_file(out)["meta"]
    assert 2 <= meta["step"] < 100000 and "optimizer" in meta and len(meta["log"]) == meta["step"]


def test_a_training_run_inside_another_program_gives_its_signal_handlers_back(tmp_path):
    """``main`` catches SIGTERM / SIGINT only while it trains (to stop with a checkpoint), then restores them.
    In a process of its own: training in this one would change the memory the soak test measures."""
    program = f"""
import signal, sys
from frcnn.__main__ import main

def mine(*_):
    return None

for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, mine)
code = main(["train", "--data", "shapes:2:1", "--out", {str(tmp_path / "run")!r}, "--steps", "1",
             "--batch-size", "1", "--quiet"])
assert code == 0, code
assert signal.getsignal(signal.SIGTERM) is mine and signal.getsignal(signal.SIGINT) is mine, "handlers not restored"
print("handlers restored")
"""
    done = subprocess.run([sys.executable, "-c", program], cwd=Path(__file__).resolve().parents[1],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "FRCNN_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "handlers restored" in done.stdout and "checkpoint:" in done.stdout
