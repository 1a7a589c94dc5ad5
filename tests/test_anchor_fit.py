"""Anchor fit on a dataset against brute force, and k-means suggestions that help where the anchors don't; the fit
in chunks with progress and cancel, and its background jobs, queue and cache (frcnn.fit_jobs)."""

from __future__ import annotations

import math
import threading

import pytest
import torch

from frcnn import anchor_fit, fit_jobs
from frcnn.anchor_fit import (
    FitCancelled,
    check_stop,
    dataset_items,
    fit_anchors,
    kmeans_shapes,
    shape_iou,
    suggest_anchors,
)
from frcnn.data.dataset import ShapesScenes
from frcnn.errors import FrcnnError
from frcnn.fit_jobs import FitCache, FitJob, FitQueue, FitRequest, FitSource, compute_fit, shapes_source
from frcnn.settings import Settings
from tests.reference import iou

SETTINGS = Settings().replace({"input.min_size": 96, "input.max_size": 160, "anchors.sizes": (16.0, 48.0),
                               "anchors.ratios": (0.5, 1.0, 2.0), "anchors.stride": 16})


def _dataset(seed: int) -> list[tuple[tuple[int, int], torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    items = []
    for (h, w) in [(96, 128), (120, 90), (64, 64)]:
        n = 4
        xy = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.6, h * 0.6])
        wh = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.4, h * 0.4]) + 4
        items.append(((h, w), torch.cat([xy, xy + wh], dim=1)))
    return items


def _brute_force(items, settings):
    """Resize like torchvision, lay every anchor by hand (centre x * stride, half sizes rounded), keep those
    inside the image when the settings ignore cross-boundary anchors (the paper's rule), best IoU."""
    a = settings.anchors
    best, sides = [], []
    for (h, w), boxes in items:
        f = min(settings.input.min_size / min(h, w), settings.input.max_size / max(h, w))
        nh, nw = int(h * f), int(w * f)
        gh, gw = math.ceil(math.ceil(nh / 32) * 32 / a.stride), math.ceil(math.ceil(nw / 32) * 32 / a.stride)
        anchors = []
        for y in range(gh):
            for x in range(gw):
                for r in a.ratios:
                    for s in a.sizes:
                        hh, ww = s * math.sqrt(r), s / math.sqrt(r)
                        anchors.append((x * a.stride + round(-ww / 2), y * a.stride + round(-hh / 2),
                                        x * a.stride + round(ww / 2), y * a.stride + round(hh / 2)))
        if settings.rpn.ignore_cross_boundary:
            anchors = [an for an in anchors if an[0] >= 0 and an[1] >= 0 and an[2] <= nw and an[3] <= nh]
        for b in boxes.tolist():
            nb = (b[0] * nw / w, b[1] * nh / h, b[2] * nw / w, b[3] * nh / h)
            best.append(max(iou(nb, an) for an in anchors))
            sides.append(math.sqrt((nb[2] - nb[0]) * (nb[3] - nb[1])))
    return best, sides


@pytest.mark.parametrize("cross_boundary", [True, False])
def test_fit_matches_brute_force(cross_boundary):
    items = _dataset(0)
    settings = SETTINGS.replace({"rpn.ignore_cross_boundary": not cross_boundary})
    fit = fit_anchors(items, settings)
    best, sides = _brute_force(items, settings)
    assert fit.best_iou.tolist() == pytest.approx(best, abs=1e-5)
    for t in (0.5, 0.7):
        assert fit.recall(t) == pytest.approx(sum(b >= t for b in best) / len(best))
    assert fit.mean_best_iou == pytest.approx(sum(best) / len(best), abs=1e-6)
    rows = {r["size"]: r for r in fit.by_size()}
    small = [b for b, s in zip(best, sides, strict=True) if s < 32]
    assert rows["small (< 32 px)"]["boxes"] == len(small)
    if small:
        assert rows["small (< 32 px)"]["recall@0.5"] == pytest.approx(sum(b >= 0.5 for b in small) / len(small))
        assert rows["small (< 32 px)"]["mean_iou"] == pytest.approx(sum(small) / len(small), abs=1e-6)


def test_shape_iou_and_kmeans():
    a = torch.tensor([[10.0, 10.0], [20.0, 5.0]])
    b = torch.tensor([[10.0, 20.0]])
    assert shape_iou(a, b).flatten().tolist() == pytest.approx([100 / 200, 50 / 250])
    g = torch.Generator().manual_seed(1)
    wh = torch.cat([torch.rand(50, 2, generator=g) * 4 + torch.tensor([10.0, 40.0]),
                    torch.rand(50, 2, generator=g) * 4 + torch.tensor([60.0, 15.0])])
    centres = kmeans_shapes(wh, 2)
    assert torch.equal(centres, kmeans_shapes(wh, 2))  # seeded
    assert centres[0].tolist() == pytest.approx([12, 42], abs=1.5) and centres[1].tolist() == pytest.approx(
        [62, 17], abs=1.5)
    with pytest.raises(FrcnnError, match="cannot make 5 clusters"):
        kmeans_shapes(wh[:3], 5)


def test_suggestions_raise_recall_where_the_ratios_do_not_fit():
    """Tall thin boxes (h / w about 4): the paper's ratios cover them badly; k-means ratios do better."""
    g = torch.Generator().manual_seed(2)
    items = []
    for _ in range(20):
        w = torch.rand(6, generator=g) * 12 + 8  # 8..20 px wide
        h = w * (3.5 + torch.rand(6, generator=g))  # 3.5..4.5 times taller
        x, y = torch.rand(6, generator=g) * 60, torch.rand(6, generator=g) * 20
        items.append(((160, 160), torch.stack([x, y, x + w, y + h], dim=1)))
    base = SETTINGS.replace({"anchors.sizes": (32.0, 64.0), "anchors.stride": 8})
    before = fit_anchors(items, base)
    sizes, ratios = suggest_anchors(before.shapes, 2, 3)
    assert max(ratios) > 2.5  # it found the tall shape
    after = fit_anchors(items, base.replace({"anchors.sizes": sizes, "anchors.ratios": ratios}))
    assert after.recall(0.7) > before.recall(0.7) + 0.2
    assert after.mean_best_iou > before.mean_best_iou


# ------------------------------------------------------------------------------- progress, cancel, jobs
def test_progress_is_told_per_image_and_the_result_is_the_same():
    items = _dataset(0)
    calls = []
    fit = fit_anchors(items, SETTINGS, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]
    plain = fit_anchors(items, SETTINGS)
    assert torch.equal(fit.best_iou, plain.best_iou) and torch.equal(fit.gt_boxes, plain.gt_boxes)


def test_a_chunked_fit_asks_should_stop_per_chunk_and_gives_the_same_iou(monkeypatch):
    """An image of many boxes is matched a chunk of boxes at a time; each box's best IoU is its own."""
    g = torch.Generator().manual_seed(3)
    xy = torch.rand(50, 2, generator=g) * 60
    items = [((96, 128), torch.cat([xy, xy + torch.rand(50, 2, generator=g) * 40 + 4], dim=1))]
    whole = fit_anchors(items, SETTINGS)
    monkeypatch.setattr(anchor_fit, "CHUNK_IOUS", 500)  # a few boxes a chunk
    asked = []

    def should_stop(after: int | None = None) -> bool:
        asked.append(1)
        return after is not None and len(asked) > after

    chunked = fit_anchors(items, SETTINGS, should_stop=should_stop)
    assert len(asked) > 5 and torch.equal(chunked.best_iou, whole.best_iou)  # one image, many chunks
    asked.clear()
    with pytest.raises(FitCancelled):  # inside the one image
        fit_anchors(items, SETTINGS, should_stop=lambda: should_stop(after=3))


def test_cancel_stops_the_fit_and_the_kmeans():
    items = _dataset(0) * 5
    calls = []
    with pytest.raises(FitCancelled):
        fit_anchors(items, SETTINGS, progress=lambda d, t: calls.append(d), should_stop=lambda: len(calls) >= 4)
    assert calls == [1, 2, 3, 4]  # it stopped before the fifth image
    wh = fit_anchors(items, SETTINGS).shapes
    with pytest.raises(FitCancelled):
        suggest_anchors(wh, 2, 2, should_stop=lambda: True)
    assert list(dataset_items(ShapesScenes(3, 0), should_stop=lambda: False))  # asked, not stopped
    with pytest.raises(FitCancelled):
        list(dataset_items(ShapesScenes(3, 0), should_stop=lambda: True))


def _source(items, key="test:items", gate: threading.Event | None = None, reads=None) -> FitSource:
    """A dataset of ``items``; with ``gate``, reading waits (asking should_stop) until the gate opens."""

    def read(progress, should_stop):
        if reads is not None:
            reads.append(1)
        while gate is not None and not gate.wait(0.01):
            check_stop(should_stop)
        progress(len(items), len(items))
        return list(items), ("a note",)

    return FitSource(key, "images", len(items), "reading", read)


def test_a_job_gives_the_synchronous_fit_and_suggestions():
    items = _dataset(0)
    request = FitRequest(_source(items), SETTINGS, 2, 2)
    job = FitJob("a", request, FitCache())
    job.join(60)
    assert job.status == "done", job.error
    fit = fit_anchors(items, SETTINGS)
    sizes, ratios = suggest_anchors(fit.shapes, 2, 2)
    suggested = fit_anchors(items, SETTINGS.replace({"anchors.sizes": sizes, "anchors.ratios": ratios}))
    r = job.result
    assert torch.equal(r.fit.best_iou, fit.best_iou) and (r.sizes, r.ratios) == (sizes, ratios)
    assert torch.equal(r.suggested.best_iou, suggested.best_iou) and r.report == ("a note",) and r.items == 3
    assert job.progress == ("the suggested anchors", 3, 3) and not job.active


def test_the_cache_keeps_each_part_and_a_new_setting_reuses_the_dataset():
    reads, cache = [], FitCache()
    request = FitRequest(_source(_dataset(0), reads=reads), SETTINGS, 2, 2)
    first = compute_fit(request, cache)
    assert compute_fit(request, cache) is first and cache.result(request) is first and len(reads) == 1
    more = FitRequest(request.source, SETTINGS, 1, 2)  # only the suggestions differ
    assert compute_fit(more, cache).fit is first.fit and len(reads) == 1
    other = FitRequest(request.source, SETTINGS.replace({"anchors.stride": 8}), 2, 2)
    assert cache.fit(other) is None and compute_fit(other, cache).fit is not first.fit and len(reads) == 1
    small = FitCache(max_entries=1)
    compute_fit(request, small)
    compute_fit(other, small)
    assert small.result(request) is None and small.result(other) is not None  # the oldest out


def test_a_dataset_past_the_box_cap_is_refused(monkeypatch):
    monkeypatch.setattr(fit_jobs, "MAX_FIT_BOXES", 5)
    with pytest.raises(FrcnnError, match="12 boxes is over the limit of 5"):
        compute_fit(FitRequest(_source(_dataset(0)), SETTINGS, 2, 2), FitCache())
    with pytest.raises(FrcnnError, match="outside 1 to 1,000"):
        shapes_source(fit_jobs.MAX_SCENES + 1, 0)


def test_cancel_a_running_job_and_a_job_whose_session_went():
    gate = threading.Event()
    job = FitJob("a", FitRequest(_source(_dataset(0), gate=gate), SETTINGS, 2, 2), FitCache())
    assert job.active and job.running
    job.cancel()
    job.join(30)
    assert (job.status, job.note, job.result) == ("cancelled", "cancelled", None) and not job.active
    gone = FitJob("b", FitRequest(_source(_dataset(0), gate=gate), SETTINGS, 2, 2), FitCache(),
                  is_alive=lambda: False, grace=0)
    gone.join(30)
    assert gone.status == "cancelled" and gone.note == "stopped: its session ended"
    alive = {"b": True}
    running = FitJob("b", FitRequest(_source(_dataset(0), gate=gate), SETTINGS, 2, 2), FitCache(),
                     is_alive=lambda: alive["b"], grace=0)
    assert running.running
    alive["b"] = False  # the tab closed while it ran
    running.join(30)
    assert running.status == "cancelled" and running.note == "stopped: its session ended"


def test_the_queue_runs_a_few_at_once_one_per_owner():
    gate = threading.Event()
    queue = FitQueue(max_running=1, max_queued=1)
    slow = FitRequest(_source(_dataset(0), gate=gate), SETTINGS, 2, 2)
    first = queue.submit("a", slow)
    second = queue.submit("b", FitRequest(_source(_dataset(1), key="test:other"), SETTINGS, 2, 2))
    assert (first.status, second.status) == ("running", "queued") and queue.position(second) == (1, 1)
    with pytest.raises(FrcnnError, match="queue is full"):
        queue.submit("c", slow)
    again = queue.submit("a", slow)  # the owner's settings changed: its old job goes
    assert first.cancelling and queue.counts() == (1, 2)
    first.join(30)
    assert first.status == "cancelled" and first.note == "replaced by a new fit"
    second.join(60)
    assert second.status == "done" and again.status == "running"  # in order
    gate.set()
    again.join(60)
    assert again.status == "done" and queue.counts() == (0, 0)
    gate.clear()
    busy = queue.submit("a", FitRequest(_source(_dataset(0), gate=gate, key="test:busy"), SETTINGS, 2, 2))
    left = queue.submit("d", FitRequest(_source(_dataset(1), key="test:left"), SETTINGS, 2, 2), is_alive=lambda: False)
    assert left.status == "queued"
    gate.set()
    busy.join(60)
    left.join(30)
    assert left.status == "cancelled" and left.note == "stopped: its session ended"  # its tab closed while it waited
