"""Figures of the anchor pages: the anchors a setting makes (centres, the k anchors of a location, layers by
size or ratio, each ground-truth box's best anchor) and the RPN's anchor targets (positive / negative /
ignored, the sampled minibatch, IoU and the regression targets tx, ty, tw, th on hover).

Everything is drawn in the original image's pixels (the trace's), with ``add_boxes``: one path shape per layer
(one SVG element), never one shape per box. Hover points of single anchors sit on the anchor's top-left corner,
clipped to the image, because the k anchors of a location share their centre.

A figure carries what a person can see, not a marker per anchor: the negatives that are not sampled (most of the
image's anchors) and the ignored anchors are one raster layer each, every grid cell tinted by how many of its
anchors the layer holds, with the count and their best IoU on hover; asked for as boxes, at most
:data:`MAX_REQUESTED_BOXES` of them are drawn in all (evenly spread, the legend says how many of how many). The
Anchors figure draws at most :data:`MAX_ANCHOR_BOXES` anchors, thinning the lattice of locations further than
asked when it must (its title says so).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch

from frcnn.analysis.anchor_stats import Coverage, anchor_layout, cell_layout, location_centres
from frcnn.analysis.anchors import (
    anchor_customdata,
    anchors_mask,
    cell_wanted,
    per_cell,
    pick_location,
    positive_reasons,
    sampled_mask,
)
from frcnn.analysis.naming import class_name
from frcnn.trace import Trace
from frcnn.viz.common import (
    HIGHLIGHT,
    IGNORED,
    NEGATIVE,
    POSITIVE,
    Canvas,
    Layers,
    add_boxes,
    add_cell_shade,
    add_ground_truth,
    add_points,
    as_numpy,
    compact,
    fit_legend,
    image_figure,
)

# layer colours: 12 distinct hues, neighbours far apart (every pair at least 33 CIELAB delta-E apart, and as far
# from the ground truth's yellow, the best anchor's orange, white and grey), so ten anchor sizes get ten colours
LAYER_COLOURS = ("#0072B2", "#D62728", "#2CA02C", "#9467BD", "#17BECF", "#8C564B", "#FF00FF", "#000000",
                 "#00FF7F", "#332288", "#F99379", "#882255")
LAYER_OPACITY = 0.75  # the thin layers of every n-th location: opaque enough that the hues read


def _keep_unselected_look(fig: go.Figure) -> go.Figure:
    """A click selects a point, and plotly would then fade every other marker: keep them as they are."""
    for t in fig.data:
        if isinstance(t, (go.Scatter, go.Scattergl)) and t.mode == "markers":
            t.unselected = dict(marker=dict(opacity=t.marker.opacity if t.marker.opacity is not None else 1.0))
    return fig


def layer_colour(index: int) -> str:
    return LAYER_COLOURS[index % len(LAYER_COLOURS)]


def _hover_at_corner(fig: Canvas, boxes: np.ndarray, image_size: tuple[int, int], color: str, name: str,
                     legendgroup: str, text: Sequence[str] | None = None, customdata: np.ndarray | None = None,
                     hovertemplate: str | None = None, size: float = 6, visible: bool | str = True) -> None:
    """Hover markers on the boxes' top-left corners, clipped to the image so cut-off anchors still have one."""
    if not len(boxes):
        return
    h, w = image_size
    x = np.clip(boxes[:, 0], 0, w - 1)
    y = np.clip(boxes[:, 1], 0, h - 1)
    add_points(fig, x, y, color, name, size=size, hover=text, customdata=customdata, hovertemplate=hovertemplate,
               opacity=0.9)
    fig.data[-1].update(showlegend=False, legendgroup=legendgroup, visible=visible)


def _ground_truth(fig: Canvas, trace: Trace) -> None:
    gt = as_numpy(trace.gt_boxes)
    hover = [f"GT #{g} {class_name(trace.class_names, lab)} · ({b[0]:.0f}, {b[1]:.0f})-"
             f"({b[2]:.0f}, {b[3]:.0f}) {b[2] - b[0]:.0f}×{b[3] - b[1]:.0f}"
             for g, (b, lab) in enumerate(zip(gt, trace.gt_labels.tolist(), strict=True))]
    add_ground_truth(fig, gt, hover=hover)


# ---------------------------------------------------------------------------------------------- anchors
# clickable location dots drawn at most, unless every location's anchors are drawn: each is an SVG marker that
# plotly styles one by one on every redraw (1,000 -> 400 dots: the Anchors page's stride slider about 150 ms faster in
# headless chromium on 2 cores); "Every n-th location" = 1 draws every centre
MAX_CENTRE_DOTS = 400
# anchor boxes the Anchors figure draws at most (an outline is about 70 bytes of JSON: 6,000 are about 0.4 MB;
# every location of the default sample would be 190,080 boxes, 13 MB): more and it thins the locations further than
# asked, and says so in its title
MAX_ANCHOR_BOXES = 6000
CENTRE_HOVER = "cell (%{customdata[0]}, %{customdata[1]}) · centre (%{x:.0f}, %{y:.0f})<extra></extra>"


def _ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 12th, 21st..."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _thinned_step(trace: Trace, level: int, sizes: Sequence[float] | None, ratios: Sequence[float] | None,
                  scope: str, every: int, around: tuple[int, int], chosen: int, max_boxes: int | None) -> int:
    """The lattice step to draw: ``every``, or the first sparser one whose anchors with the ``chosen`` cell's
    number at most ``max_boxes``."""
    if scope == "location" or max_boxes is None:
        return every
    step, largest = every, max(trace.anchors.grid_sizes[level])
    while step < largest and int(anchors_mask(trace, level, sizes, ratios, scope == "inside", step,
                                              around).sum()) + chosen > max_boxes:
        step += 1
    return step


def centre_step(locations: int, every: int) -> int:
    """Draw every ``step``-th location's centre in each direction: at most about ``MAX_CENTRE_DOTS`` dots, and
    never sparser than the drawn anchors (``every``), so ``every = 1`` makes every location clickable."""
    return max(1, min(every, math.ceil(math.sqrt(locations / MAX_CENTRE_DOTS))))


def _add_centres(fig: Canvas, centres: np.ndarray, width: int, every: int) -> None:
    """The locations' centres (Hi * Wi, 2), every :func:`centre_step`-th in both directions, as clickable dots."""
    step = centre_step(len(centres), every)
    ci, cj = np.divmod(np.arange(len(centres)), width)
    dots = np.flatnonzero((ci % step == 0) & (cj % step == 0))
    shown = f"{len(centres):,}" + (f"; 1 in {step * step} drawn" if step > 1 else "")
    add_points(fig, centres[dots, 0], centres[dots, 1], "#FFFFFF", f"anchor centres ({shown}): click one",
               size=4, customdata=np.stack([ci[dots], cj[dots]], axis=1), hovertemplate=CENTRE_HOVER, opacity=0.6)
    fig.data[-1].marker.line = dict(color="#333333", width=0.5)


def _drawn_anchors(trace: Trace, level: int, sizes: Sequence[float] | None, ratios: Sequence[float] | None,
                   scope: str, every: int, chosen: tuple[int, int],
                   max_boxes: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """The anchors to draw: the chosen cell's (bold), the others of the lattice (D,) apart from them, and the
    lattice's step (``every``, or sparser to stay under ``max_boxes``)."""
    a = trace.anchors
    here = as_numpy(a.location_index(level, *chosen))[as_numpy(cell_wanted(a, level, sizes, ratios))]
    step = _thinned_step(trace, level, sizes, ratios, scope, every, chosen, len(here), max_boxes)
    base = as_numpy(anchors_mask(trace, level, sizes, ratios, scope == "inside", step, chosen))
    base[here] = False  # the chosen cell's anchors are drawn bold, apart
    return here, np.flatnonzero(base), step


def _add_best_anchors(fig: Canvas, trace: Trace, cov: Coverage) -> None:
    """Each ground-truth box's best anchor (dashed), with its IoU, size, ratio and ties on hover."""
    boxes = as_numpy(trace.anchors.boxes)
    ok = as_numpy(cov.best_anchor) >= 0
    best = as_numpy(cov.best_anchor)[ok]
    lay = anchor_layout(trace.anchors, torch.as_tensor(best))
    tied = as_numpy(cov.ties) if cov.ties is not None else None  # "best anchor" is often many anchors
    hover = [f"GT #{g}: best anchor {i} · IoU {float(cov.best_iou[g]):.3f} · size {float(lay.size[n]):g} · "
             f"ratio {float(lay.ratio[n]):g}"
             + (f" · {int(tied[g])} anchors tied at this IoU" if tied is not None and tied[g] > 1 else "")
             for n, (g, i) in enumerate(zip(np.flatnonzero(ok), best, strict=True))]
    add_boxes(fig, boxes[best], HIGHLIGHT, "best anchor per GT", width=2.5, dash="dash")
    _hover_at_corner(fig, boxes[best], trace.image_size, HIGHLIGHT, "best anchor per GT", "best anchor per GT",
                     text=hover, size=8)


def anchors_figure(image: np.ndarray, trace: Trace, point: tuple[float, float] | None = None, level: int = 0,
                   colour_by: str = "size", sizes: Sequence[float] | None = None,
                   ratios: Sequence[float] | None = None, scope: str = "inside", every: int = 8,
                   cov: Coverage | None = None, height: int = 680,
                   max_boxes: int | None = MAX_ANCHOR_BOXES) -> go.Figure:
    """The anchors of the settings over the image.

    Args:
        point: (x, y) in image pixels; the location nearest it is "chosen" (default: the image's centre).
        colour_by: "size" or "ratio": one path shape (and legend entry) per value.
        sizes, ratios: the values to draw (None: all).
        scope: "all", "inside" (only anchors wholly inside the image) or "location" (only the chosen one's).
        every: draw the anchors of every n-th location (in both directions, counted from the chosen one).
        cov: the ground truth's best anchors, drawn dashed (None: not drawn).
        max_boxes: draw at most this many anchors (None: no cap): a sparser lattice of locations than ``every``
            when it would draw more, said in the title.
    """
    a = trace.anchors
    iy, ix = pick_location(trace, point, level)
    figure = image_figure(image, height=height)
    fig = Layers()  # every layer, added to the figure at once
    centres = as_numpy(location_centres(a, level))
    w = a.grid_sizes[level][1]
    _add_centres(fig, centres, w, every)
    values = a.sizes[level] if colour_by == "size" else a.ratios
    wanted = sizes if colour_by == "size" else ratios
    shown_values = [v for v in values if wanted is None or v in wanted]
    offset, k = a.level_start(level), a.num_per_location[level]
    cell_size, cell_ratio = (as_numpy(t) for t in cell_layout(a, level))  # (k,) each
    cell_attr = cell_size if colour_by == "size" else cell_ratio
    here, base, step_drawn = _drawn_anchors(trace, level, sizes, ratios, scope, every, (iy, ix), max_boxes)
    base_attr = cell_attr[(base - offset) % k]
    here_attr = cell_attr[(here - offset) % k]
    boxes = as_numpy(a.boxes)
    drawn = 0
    for v in shown_values:
        colour = layer_colour(list(values).index(v))
        label = f"size {v:g}" if colour_by == "size" else f"ratio {v:g}"
        if scope != "location":
            layer = base[base_attr == v]
            drawn += len(layer)
            add_boxes(fig, boxes[layer], colour, label, width=1, opacity=LAYER_OPACITY, legendgroup=label)
        sel = here[here_attr == v]
        drawn += len(sel)
        hover = _chosen_hover(trace, sel, cell_size[(sel - offset) % k], cell_ratio[(sel - offset) % k])
        add_boxes(fig, boxes[sel], colour, f"{label} at the chosen cell", width=3, legendgroup=label,
                  showlegend=scope == "location")
        _hover_at_corner(fig, boxes[sel], trace.image_size, colour, label, label, text=hover)
    cx, cy = centres[iy * w + ix]
    add_points(fig, [cx], [cy], HIGHLIGHT, f"chosen cell ({iy}, {ix})", size=14, symbol="x",
               hover=[f"chosen cell ({iy}, {ix}) · centre ({cx:.0f}, {cy:.0f})"], opacity=1.0)
    if cov is not None and len(trace.gt_boxes):
        _ground_truth(fig, trace)
        _add_best_anchors(fig, trace, cov)
    fig = fig.onto(figure)
    thinned = (f" · thinned to every {_ordinal(step_drawn)} location (at most {max_boxes:,} anchors drawn)"
               if step_drawn > every and scope != "location" else "")
    fig.update_layout(title=dict(text=f"{drawn:,} of {len(a.boxes):,} anchors drawn · chosen cell ({iy}, {ix})"
                                      + thinned, font=dict(size=14)), margin=dict(t=90))
    return _keep_unselected_look(fit_legend(fig))


def _chosen_hover(trace: Trace, index: np.ndarray, size: np.ndarray, ratio: np.ndarray) -> list[str]:
    """Hover text of the chosen cell's anchors ``index`` (N,) of sizes and ratios (N,) each."""
    boxes, inside = as_numpy(trace.anchors.boxes), as_numpy(trace.anchors.inside)
    return [f"anchor {i} · size {s:g} · ratio {r:g} · {boxes[i, 2] - boxes[i, 0]:.0f}×{boxes[i, 3] - boxes[i, 1]:.0f}"
            f" px · {'inside' if inside[i] else 'crosses the border'}"
            for i, s, r in zip(index, size, ratio, strict=True)]


# ---------------------------------------------------------------------------------------- anchor targets
# the hover of one anchor (its customdata row: anchor_customdata); {label} is the layer's label text
ANCHOR_HOVER = ("<b>anchor %{customdata[0]}</b> · {label}<br>"
                "IoU %{customdata[1]:.3f} with GT #%{customdata[2]} "
                "(%{customdata[3]:.0f}, %{customdata[4]:.0f})-(%{customdata[5]:.0f}, %{customdata[6]:.0f})<br>"
                "tx %{customdata[7]:.3f} · ty %{customdata[8]:.3f} · tw %{customdata[9]:.3f} · "
                "th %{customdata[10]:.3f}<br>"
                "anchor (%{customdata[11]:.0f}, %{customdata[12]:.0f})-(%{customdata[13]:.0f}, "
                "%{customdata[14]:.0f})<extra></extra>")
# the layers drawn as boxes on request (every negative, every ignored anchor) draw at most this many boxes in all,
# shared between them (:func:`share`): a box with its hover point is about 155 bytes of JSON, so the figure stays
# well inside 1 MB with both on (the default sample: about 0.7 MB)
MAX_REQUESTED_BOXES = 2000
# a level's raster has at most about this many cells (8 bytes each with the best IoU): a larger grid is shaded in
# blocks of cells (the default model's 88 x 72 grid is shaded cell by cell; an FPN's 200 x 300 finest level in 3 x 3)
MAX_SHADE_CELLS = 8192


def share(sizes: Sequence[int], cap: int) -> list[int]:
    """How many of each layer to draw, at most ``cap`` in all: an equal share each, a small layer's unused share
    going to the others (sizes 181,063 and 800 with a cap of 2,000: 1,200 and 800)."""
    out, left = [0] * len(sizes), cap
    for n, i in enumerate(sorted(range(len(sizes)), key=lambda i: sizes[i])):
        out[i] = min(sizes[i], left // (len(sizes) - n))
        left -= out[i]
    return out


def spread(index: np.ndarray, cap: int) -> np.ndarray:
    """At most ``cap`` of ``index``, evenly spread over it (all of it when it has no more)."""
    if len(index) <= cap:
        return index
    return index[np.linspace(0, len(index) - 1, cap).round().astype(np.int64)]


def _cell_name(trace: Trace, lvl: int) -> str:
    return f"level {lvl} cell" if len(trace.anchors.grid_sizes) > 1 else "cell"


def _blocks(values: np.ndarray, block: int, reduce: np.ufunc, fill: float) -> np.ndarray:
    """(h, w) -> (ceil(h / block), ceil(w / block)): ``reduce`` over each block x block square (padded with
    ``fill``)."""
    h, w = values.shape
    hb, wb = -(-h // block), -(-w // block)
    padded = np.full((hb * block, wb * block), fill, dtype=values.dtype)
    padded[:h, :w] = values
    return reduce.reduce(reduce.reduce(padded.reshape(hb, block, wb, block), axis=3), axis=1)


def _location_shade(fig: Canvas, trace: Trace, mask: np.ndarray, color: str, name: str, what: str,
                    opacity: tuple[float, float]) -> None:
    """One raster layer a level: each grid cell holding anchors of ``mask`` tinted by their count, with the count
    and their best IoU on hover. A level of more than :data:`MAX_SHADE_CELLS` cells (an FPN's finest) is shaded
    in blocks of b x b cells, said on hover, so a raster stays about 100 KB at most."""
    a = trace.anchors
    sy, sx = trace.preprocess.scale
    levels = list(per_cell(trace, mask))
    # an FPN's levels overlap: each is fainter, so that all of them stacked tint the image as one level does
    opacity = tuple(1 - (1 - o) ** (1 / max(1, len(levels))) for o in opacity)
    for lvl, counts, best in levels:
        k, stride = a.num_per_location[lvl], a.strides[lvl]
        x0, y0 = as_numpy(location_centres(a, lvl))[0]  # cell (0, 0); the others a stride apart
        dx, dy = stride / sx, stride / sy
        block = math.ceil(math.sqrt(counts.size / MAX_SHADE_CELLS))
        label = f"{name}: {int(counts.sum()):,}" + (f" at level {lvl}" if len(a.grid_sizes) > 1 else "")
        if block == 1:
            hover = (f"{_cell_name(trace, lvl)} (%{{pointNumber[0]}}, %{{pointNumber[1]}}): %{{z}} of its {k} "
                     f"anchors {what} · best IoU %{{customdata:.2f}}<extra></extra>")
        else:
            counts, best = _blocks(counts, block, np.add, 0), _blocks(best, block, np.maximum, -1.0)
            x0, y0, dx, dy = x0 + (block - 1) * dx / 2, y0 + (block - 1) * dy / 2, block * dx, block * dy
            hover = (f"{block}×{block} {_cell_name(trace, lvl)}s around (%{{x:.0f}}, %{{y:.0f}}): %{{z}} of their "
                     f"{block * block * k} anchors {what} · best IoU %{{customdata:.2f}}<extra></extra>")
        shaded = "cells shaded by count" + (f", {block}×{block} a block" if block > 1 else "")
        add_cell_shade(fig, counts, (float(x0), float(y0)), (dx, dy), color, f"{label} ({shaded})",
                       block * block * k, hover, customdata=best, opacity=opacity)


def _location_dots(fig: Canvas, trace: Trace, mask: np.ndarray, color: str, name: str, what: str,
                   symbol: str = "circle", size: float = 4, opacity: float = 0.5) -> None:
    """One marker per grid cell holding anchors of ``mask``, with their count and best IoU on hover."""
    a = trace.anchors
    for lvl, counts, best in per_cell(trace, mask):
        w, k = a.grid_sizes[lvl][1], a.num_per_location[lvl]
        where = np.flatnonzero(counts)
        xy = as_numpy(location_centres(a, lvl))[where]
        data = np.stack([where // w, where % w, counts.reshape(-1)[where], best.reshape(-1)[where]], axis=1)
        hover = (f"{_cell_name(trace, lvl)} (%{{customdata[0]:.0f}}, %{{customdata[1]:.0f}}): %{{customdata[2]:.0f}} "
                 f"of its {k} anchors {what} · best IoU %{{customdata[3]:.2f}}<extra></extra>")
        add_points(fig, xy[:, 0], xy[:, 1], color, f"{name}: {int(counts.sum()):,} (a dot per cell)", size=size,
                   symbol=symbol, customdata=compact(data), hovertemplate=hover, opacity=opacity)


def _target_layer(fig: Canvas, trace: Trace, capped: list[str], mask: np.ndarray, color: str, name: str, label: str,
                  width: float, opacity: float = 1.0, dash: str | None = None, hover_size: float = 6,
                  visible: bool | str = True, cap: int | None = None) -> None:
    """The anchors of ``mask`` (A,) as one layer of boxes (at most ``cap``, evenly spread; a capped layer says so in
    ``capped``), with a hover marker each: IoU, GT, ``label``, the targets, and for positives the rule's words."""
    boxes = as_numpy(trace.anchors.boxes)
    index = np.flatnonzero(mask)
    drawn = spread(index, cap) if cap is not None else index
    if len(drawn) < len(index):
        capped.append(f"{len(drawn):,} of {len(index):,} {name}")
    add_boxes(fig, boxes[drawn], color, name, width=width, opacity=opacity, dash=dash, visible=visible,
              total=len(index), legendgroup=name)
    template = ANCHOR_HOVER.replace("{label}", label)
    why = positive_reasons(trace, drawn) if label.startswith("positive") else None
    if why is not None:  # which rule made each positive: the text line before the hover's <extra>
        template = template.replace("<extra>", "<br>%{text}<extra>")
    _hover_at_corner(fig, boxes[drawn], trace.image_size, color, name, name, text=why,
                     customdata=compact(anchor_customdata(trace, drawn)),
                     hovertemplate=template, size=hover_size, visible=visible)


def anchor_targets_figure(image: np.ndarray, trace: Trace, negatives_as_boxes: bool = False,
                          ignored_as_boxes: bool = False, height: int = 680,
                          max_boxes: int = MAX_REQUESTED_BOXES) -> go.Figure:
    """Positive / negative / ignored anchors and the sampled minibatch over the image, with the ground truth.

    Positives are boxes (thick in the minibatch, dotted if left out of it). Negatives and ignored anchors are
    thousands: a raster layer each, every grid cell tinted by how many of its anchors are negative (not sampled)
    or ignored, with the count and best IoU on hover; asked for as boxes, they are drawn over their raster too,
    at most ``max_boxes`` in all (shared between the two, :func:`share`; evenly spread over each layer; the legend
    and the title say how many of how many). The sampled negatives are one diamond a cell, their boxes one legend
    click away (hidden at first, as they cover the image). Every drawn box has a hover marker on its top-left
    corner with its IoU, GT, label and tx, ty, tw, th.
    """
    t = trace.anchor_targets
    figure = image_figure(image, height=height)
    fig = Layers()  # every layer, added to the figure at once
    labels = as_numpy(t.labels)
    sampled = sampled_mask(trace)
    capped: list[str] = []

    def layer(mask: np.ndarray, color: str, name: str, label: str, width: float, **style: Any) -> None:
        _target_layer(fig, trace, capped, mask, color, name, label, width, **style)

    rest_neg = (labels == 0) & ~sampled
    ignored = labels == -1
    asked = [m for m, on in ((rest_neg, negatives_as_boxes), (ignored, ignored_as_boxes)) if on]
    caps = iter(share([int(m.sum()) for m in asked], max_boxes))
    _location_shade(fig, trace, rest_neg, NEGATIVE, "negative, not sampled", "negative, not sampled", (0.03, 0.2))
    if negatives_as_boxes:
        layer(rest_neg, NEGATIVE, "negative, not sampled", "negative", width=0.5, opacity=0.25, hover_size=3,
              cap=next(caps))
    _location_shade(fig, trace, ignored, IGNORED, "ignored", "ignored", (0.2, 0.6))
    if ignored_as_boxes:
        layer(ignored, IGNORED, "ignored", "ignored", width=0.6, opacity=0.4, hover_size=3, cap=next(caps))
    neg_in_batch = (labels == 0) & sampled
    _location_dots(fig, trace, neg_in_batch, NEGATIVE, "negative in the minibatch", "sampled negatives",
                   "diamond", 9, 0.95)
    layer(neg_in_batch, NEGATIVE, "boxes of the sampled negatives", "negative · in the minibatch", width=1,
          opacity=0.7, visible="legendonly")
    layer((labels == 1) & ~sampled, POSITIVE, "positive, not sampled", "positive", width=1.5, dash="dot")
    if len(trace.gt_boxes):
        _ground_truth(fig, trace)
    layer((labels == 1) & sampled, POSITIVE, "positive in the minibatch", "positive · in the minibatch",
          width=2.5, hover_size=7)
    fig = _keep_unselected_look(fit_legend(fig.onto(figure)))
    if capped:
        fig.update_layout(title=dict(text=f"boxes drawn: {'; '.join(capped)} (at most {max_boxes:,} in all, "
                                          "evenly spread; the shaded cells count every one)", font=dict(size=13)),
                          margin=dict(t=90))
    return fig


