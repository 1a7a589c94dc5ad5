"""Anchor fit on a dataset against brute force, and k-means suggestions that help where the anchors don't."""

from __future__ import annotations

import math

import pytest
import torch

from frcnn.anchor_fit import fit_anchors, kmeans_shapes, shape_iou, suggest_anchors
from frcnn.errors import FrcnnError
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
