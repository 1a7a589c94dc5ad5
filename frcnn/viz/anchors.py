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

import numpy as np
import plotly.graph_objects as go
import torch

from frcnn.anchor_stats import (
    Coverage,
    anchor_coverage,
    anchor_layout,
    cell_layout,
    location_centres,
    nearest_location,
)
from frcnn.stages.anchor_targets import POSITIVE_AS_BEST, POSITIVE_BY_IOU, positive_rule
from frcnn.stages.anchors import Anchors
from frcnn.trace import Trace
from frcnn.viz.common import (
    GROUND_TRUTH,
    HIGHLIGHT,
    IGNORED,
    NEGATIVE,
    POSITIVE,
    Canvas,
    Layers,
    add_boxes,
    add_cell_shade,
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
    names = trace.class_names
    gt = as_numpy(trace.gt_boxes)
    hover = [f"GT #{g} {names[int(lab)] if 0 < int(lab) < len(names) else int(lab)} · ({b[0]:.0f}, {b[1]:.0f})-"
             f"({b[2]:.0f}, {b[3]:.0f}) {b[2] - b[0]:.0f}×{b[3] - b[1]:.0f}"
             for g, (b, lab) in enumerate(zip(gt, trace.gt_labels.tolist(), strict=True))]
    add_boxes(fig, gt, GROUND_TRUTH, "ground truth", width=3, hover=hover)


# ---------------------------------------------------------------------------------------------- anchors
def anchor_counts(trace: Trace) -> dict[str, int | str]:
    """Total, inside the image, anchors per location k (per level), and the grid of each level."""
    a = trace.anchors
    return {"total": int(len(a.boxes)), "inside": int(a.inside.sum()),
            "per_location": " + ".join(str(k) for k in a.num_per_location),
            "grid": " + ".join(f"{w}×{h}" for h, w in a.grid_sizes),
            "stride": " + ".join(str(s) for s in a.strides)}


def coverage(trace: Trace, inside_only: bool) -> Coverage:
    """Each ground-truth box's best anchor among the settings' anchors (only those inside the image if asked).

    The anchor targets stage has already found them when it masked the same anchors (``inside_only`` equal to
    ``rpn.ignore_cross_boundary``); they are taken from there unless some box overlaps no usable anchor (the
    stage then names an arbitrary anchor)."""
    t = trace.anchor_targets
    same_mask = inside_only == trace.settings.rpn.ignore_cross_boundary
    if t is not None and same_mask and bool((t.best_iou_per_gt > 0).all()):
        ties = t.ties_per_gt.cpu() if t.ties_per_gt is not None else None
        return Coverage(t.best_anchor_per_gt.cpu(), t.best_iou_per_gt.cpu(), ties)
    return anchor_coverage(trace.anchors.boxes, trace.gt_boxes, trace.anchors.inside if inside_only else None)


def coverage_rows(trace: Trace, cov: Coverage) -> list[dict]:
    """One row per ground-truth box: its class and size, and its best anchor's IoU, size, ratio and cell."""
    lay = anchor_layout(trace.anchors, cov.best_anchor.clamp(min=0))  # (G,): each GT's best anchor
    names = trace.class_names
    ties = as_numpy(cov.ties) if cov.ties is not None else None  # known when the anchor targets found the best
    rows = []
    for g, (box, lab) in enumerate(zip(as_numpy(trace.gt_boxes), trace.gt_labels.tolist(), strict=True)):
        i = int(cov.best_anchor[g])
        ok = i >= 0
        rows.append({"GT": g, "class": names[lab] if 0 < lab < len(names) else str(lab),
                     "GT w×h": f"{box[2] - box[0]:.0f}×{box[3] - box[1]:.0f}",
                     "best IoU": round(float(cov.best_iou[g]), 3),
                     "anchors tied at it": int(ties[g]) if ties is not None else None,
                     "anchor": i if ok else None,
                     "anchor size": float(lay.size[g]) if ok else None,
                     "anchor ratio": float(lay.ratio[g]) if ok else None,
                     "cell (y, x)": f"({int(lay.iy[g])}, {int(lay.ix[g])})" if ok else ""})
    return rows


def pick_location(trace: Trace, point: tuple[float, float] | None, level: int = 0) -> tuple[int, int]:
    """The grid cell (iy, ix) nearest ``point`` (x, y) in image pixels; the image's centre when None."""
    if point is None:
        h, w = trace.image_size
        point = (w / 2, h / 2)
    return nearest_location(trace.anchors, float(point[0]), float(point[1]), level)


def anchors_mask(trace: Trace, level: int, sizes: Sequence[float] | None = None,
                 ratios: Sequence[float] | None = None, inside_only: bool = False, every: int = 1,
                 around: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Anchors of ``level`` with a size in ``sizes`` and a ratio in ``ratios`` (None: all), inside the image if
    asked, at every ``every``-th location in both directions counted from the cell ``around``: Tensor[A] bool.

    Each condition is on one axis of the level's (Hi, Wi, k) grid (rows, columns, the k anchors of a cell),
    so the mask is their broadcast product, and the image test on top."""
    a = trace.anchors
    h, w = a.grid_sizes[level]
    offset = a.level_start(level)
    kind = _cell_wanted(a, level, sizes, ratios)  # (k,)
    rows = (torch.arange(h) - around[0]) % every == 0  # (Hi,)
    cols = (torch.arange(w) - around[1]) % every == 0  # (Wi,)
    grid = (rows[:, None, None] & cols[None, :, None] & kind[None, None, :]).reshape(-1)  # (Hi*Wi*k,)
    if inside_only:
        grid &= a.inside[offset:offset + len(grid)].cpu()
    keep = torch.zeros(len(a.boxes), dtype=torch.bool)
    keep[offset:offset + len(grid)] = grid
    return keep


def _cell_wanted(anchors: Anchors, level: int, sizes: Sequence[float] | None,
                 ratios: Sequence[float] | None) -> torch.Tensor:
    """(k,) bool: the anchors of a location whose size is in ``sizes`` and ratio in ``ratios`` (None: all)."""
    cell_size, cell_ratio = cell_layout(anchors, level)
    wanted = torch.ones(len(cell_size), dtype=torch.bool)
    if sizes is not None:
        wanted &= torch.isin(cell_size, torch.tensor(list(sizes), dtype=cell_size.dtype))
    if ratios is not None:
        wanted &= torch.isin(cell_ratio, torch.tensor(list(ratios), dtype=cell_ratio.dtype))
    return wanted


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
    step = centre_step(len(centres), every)
    ci, cj = np.divmod(np.arange(len(centres)), w)
    dots = np.flatnonzero((ci % step == 0) & (cj % step == 0))
    shown = f"{len(centres):,}" + (f"; 1 in {step * step} drawn" if step > 1 else "")
    add_points(fig, centres[dots, 0], centres[dots, 1], "#FFFFFF", f"anchor centres ({shown}): click one",
               size=4, customdata=np.stack([ci[dots], cj[dots]], axis=1), hovertemplate=CENTRE_HOVER, opacity=0.6)
    fig.data[-1].marker.line = dict(color="#333333", width=0.5)

    values = a.sizes[level] if colour_by == "size" else a.ratios
    wanted = sizes if colour_by == "size" else ratios
    shown_values = [v for v in values if wanted is None or v in wanted]
    offset, k = a.level_start(level), a.num_per_location[level]
    cell_size, cell_ratio = (as_numpy(t) for t in cell_layout(a, level))  # (k,) each
    cell_attr = cell_size if colour_by == "size" else cell_ratio
    here = as_numpy(a.location_index(level, iy, ix))[as_numpy(_cell_wanted(a, level, sizes, ratios))]  # chosen
    step_drawn = _thinned_step(trace, level, sizes, ratios, scope, every, (iy, ix), len(here), max_boxes)
    base = as_numpy(anchors_mask(trace, level, sizes, ratios, scope == "inside", step_drawn, (iy, ix)))
    base[here] = False  # the chosen cell's anchors are drawn bold, apart
    base = np.flatnonzero(base)  # (D,) anchor indices
    base_attr = cell_attr[(base - offset) % k]
    here_attr = cell_attr[(here - offset) % k]
    inside = as_numpy(a.inside)
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
        hover = [f"anchor {i} · size {cell_size[(i - offset) % k]:g} · ratio {cell_ratio[(i - offset) % k]:g} · "
                 f"{boxes[i, 2] - boxes[i, 0]:.0f}×{boxes[i, 3] - boxes[i, 1]:.0f} px · "
                 f"{'inside' if inside[i] else 'crosses the border'}" for i in sel]
        add_boxes(fig, boxes[sel], colour, f"{label} at the chosen cell", width=3, legendgroup=label,
                  showlegend=scope == "location")
        _hover_at_corner(fig, boxes[sel], trace.image_size, colour, label, label, text=hover)
    cx, cy = centres[iy * w + ix]
    add_points(fig, [cx], [cy], HIGHLIGHT, f"chosen cell ({iy}, {ix})", size=14, symbol="x",
               hover=[f"chosen cell ({iy}, {ix}) · centre ({cx:.0f}, {cy:.0f})"], opacity=1.0)
    if cov is not None and len(trace.gt_boxes):
        _ground_truth(fig, trace)
        ok = as_numpy(cov.best_anchor) >= 0
        best = as_numpy(cov.best_anchor)[ok]
        lay = anchor_layout(a, torch.as_tensor(best))
        tied = as_numpy(cov.ties) if cov.ties is not None else None  # "best anchor" is often many anchors
        hover = [f"GT #{g}: best anchor {i} · IoU {float(cov.best_iou[g]):.3f} · size {float(lay.size[n]):g} · "
                 f"ratio {float(lay.ratio[n]):g}"
                 + (f" · {int(tied[g])} anchors tied at this IoU" if tied is not None and tied[g] > 1 else "")
                 for n, (g, i) in enumerate(zip(np.flatnonzero(ok), best, strict=True))]
        add_boxes(fig, boxes[best], HIGHLIGHT, "best anchor per GT", width=2.5, dash="dash")
        _hover_at_corner(fig, boxes[best], trace.image_size, HIGHLIGHT, "best anchor per GT", "best anchor per GT",
                         text=hover, size=8)
    fig = fig.onto(figure)
    thinned = (f" · thinned to every {_ordinal(step_drawn)} location (at most {max_boxes:,} anchors drawn)"
               if step_drawn > every and scope != "location" else "")
    fig.update_layout(title=dict(text=f"{drawn:,} of {len(a.boxes):,} anchors drawn · chosen cell ({iy}, {ix})"
                                      + thinned, font=dict(size=14)), margin=dict(t=90))
    return _keep_unselected_look(fit_legend(fig))


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


def target_counts(trace: Trace) -> dict[str, int]:
    """positive, negative, ignored, sampled_positive, sampled_negative (the trace's own counts)."""
    c = trace.counts()
    return {k: c[k] for k in ("positive", "negative", "ignored", "sampled_positive", "sampled_negative")}


def anchor_customdata(trace: Trace, index: np.ndarray | None = None) -> np.ndarray:
    """Per anchor (A, 15), or for the anchors ``index`` (N,) only (N, 15): index, IoU, matched GT, its box (4), tx,
    ty, tw, th, the anchor's box (4)."""
    t = trace.anchor_targets
    n = len(trace.anchors.boxes)
    index = np.arange(n) if index is None else np.asarray(index, dtype=np.int64).reshape(-1)
    a = as_numpy(trace.anchors.boxes)[index]
    gt = as_numpy(trace.gt_boxes).reshape(-1, 4)
    m = as_numpy(t.matched_gt)[index]
    gbox = gt[np.clip(m, 0, None)] if len(gt) else np.full((len(index), 4), np.nan)
    return np.column_stack([index, as_numpy(t.max_iou)[index], m, gbox,
                            as_numpy(t.regression_targets)[index], a]).astype(np.float64)


def sampled_mask(trace: Trace) -> np.ndarray:
    """(A,) bool: the anchor is in the RPN minibatch."""
    t = trace.anchor_targets
    s = np.zeros(len(t.labels), dtype=bool)
    s[as_numpy(t.sampled_positive)] = True
    s[as_numpy(t.sampled_negative)] = True
    return s


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


def _per_cell(trace: Trace, mask: np.ndarray):
    """For each level holding anchors of ``mask``: (level, counts (Hi, Wi), best IoU (Hi, Wi), -1 where none)."""
    a = trace.anchors
    index = np.flatnonzero(mask)  # (M,)
    lay = anchor_layout(a, torch.as_tensor(index))
    iou = as_numpy(trace.anchor_targets.max_iou)[index]
    level, iy, ix = as_numpy(lay.level), as_numpy(lay.iy), as_numpy(lay.ix)
    for lvl in range(len(a.grid_sizes)):
        sel = level == lvl
        if not sel.any():
            continue
        h, w = a.grid_sizes[lvl]
        loc = (iy * w + ix)[sel]
        counts = np.bincount(loc, minlength=h * w)
        best = np.full(h * w, -1.0)
        np.maximum.at(best, loc, iou[sel])
        yield lvl, counts.reshape(h, w), best.reshape(h, w)


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
    levels = list(_per_cell(trace, mask))
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
    for lvl, counts, best in _per_cell(trace, mask):
        w, k = a.grid_sizes[lvl][1], a.num_per_location[lvl]
        where = np.flatnonzero(counts)
        xy = as_numpy(location_centres(a, lvl))[where]
        data = np.stack([where // w, where % w, counts.reshape(-1)[where], best.reshape(-1)[where]], axis=1)
        hover = (f"{_cell_name(trace, lvl)} (%{{customdata[0]:.0f}}, %{{customdata[1]:.0f}}): %{{customdata[2]:.0f}} "
                 f"of its {k} anchors {what} · best IoU %{{customdata[3]:.2f}}<extra></extra>")
        add_points(fig, xy[:, 0], xy[:, 1], color, f"{name}: {int(counts.sum()):,} (a dot per cell)", size=size,
                   symbol=symbol, customdata=compact(data), hovertemplate=hover, opacity=opacity)


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
    boxes = as_numpy(trace.anchors.boxes)
    capped = []

    def layer(mask: np.ndarray, color: str, name: str, label: str, width: float, opacity: float = 1.0,
              dash: str | None = None, hover_size: float = 6, visible: bool | str = True,
              cap: int | None = None) -> None:
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


def positive_rows(trace: Trace) -> list[dict]:
    """One row per positive anchor: index, minibatch, IoU, matched GT, tx, ty, tw, th, size, ratio."""
    t = trace.anchor_targets
    positives = np.flatnonzero(as_numpy(t.labels) == 1)
    lay = anchor_layout(trace.anchors, torch.as_tensor(positives))
    sampled = sampled_mask(trace)
    data = anchor_customdata(trace, positives)
    why = positive_reasons(trace, positives)
    rows = []
    for n, i in enumerate(positives):
        d = data[n]
        rows.append({"anchor": int(i), "in minibatch": bool(sampled[i]), "IoU": round(float(d[1]), 3),
                     "GT": int(d[2]), "positive by": why[n], "size": float(lay.size[n]), "ratio": float(lay.ratio[n]),
                     **{name: round(float(v), 4) for name, v in zip(("tx", "ty", "tw", "th"), d[7:11], strict=True)}})
    return rows


def positive_reasons(trace: Trace, index: np.ndarray) -> list[str]:
    """For each anchor of ``index`` (positives), the rule that made it positive, in words: its IoU reached the
    positive threshold, or it is (one of the tied) best anchor(s) of GT box k (the low-quality rule)."""
    t, s = trace.anchor_targets, trace.settings.rpn
    index = np.asarray(index, dtype=np.int64).reshape(-1)
    rule = as_numpy(positive_rule(t, s.fg_iou_thresh))[index]
    iou = as_numpy(t.max_iou)[index]
    best_of = as_numpy(t.best_of_gt)[index] if t.best_of_gt is not None else np.full(len(index), -1)
    ties = as_numpy(t.ties_per_gt) if t.ties_per_gt is not None else np.zeros(0, dtype=np.int64)
    best_iou = as_numpy(t.best_iou_per_gt)
    out = []
    for r, v, g in zip(rule, iou, best_of, strict=True):
        tie = (f"one of {int(ties[g])} anchors tied at IoU {float(best_iou[g]):.3f}" if int(ties[g]) > 1
               else f"IoU {float(best_iou[g]):.3f}") if g >= 0 else ""
        if r == POSITIVE_BY_IOU:
            also = f" (also a best anchor of GT #{int(g)}: {tie})" if g >= 0 else ""
            out.append(f"positive by IoU {float(v):.3f} ≥ θfg {s.fg_iou_thresh:g}{also}")
        elif r == POSITIVE_AS_BEST:
            out.append(f"positive as the best anchor of GT #{int(g)} ({tie}; below θfg {s.fg_iou_thresh:g})")
        else:
            out.append("not positive")
    return out


def best_anchor_ties(trace: Trace) -> list[dict]:
    """One row per GT box: its best IoU with any (usable) anchor, how many anchors tie at it, and how many of them
    are positive only by the low-quality rule (their IoU is below the positive threshold)."""
    t, s = trace.anchor_targets, trace.settings.rpn
    if t is None or t.ties_per_gt is None:
        return []
    rule = as_numpy(positive_rule(t, s.fg_iou_thresh))
    best_of = as_numpy(t.best_of_gt)
    names = trace.class_names
    rows = []
    for g, (iou, ties, label) in enumerate(zip(as_numpy(t.best_iou_per_gt), as_numpy(t.ties_per_gt),
                                               trace.gt_labels.tolist(), strict=True)):
        rows.append({"GT": g, "class": names[int(label)] if 0 < int(label) < len(names) else str(int(label)),
                     "best IoU": round(float(iou), 3), "anchors tied at it": int(ties),
                     "positive only as best": int(((rule == POSITIVE_AS_BEST) & (best_of == g)).sum())})
    return rows
