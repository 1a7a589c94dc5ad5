"""The pipeline diagram (Graphviz DOT with the count at every stage) and the per-stage times."""

from __future__ import annotations

import plotly.graph_objects as go

from frcnn import pipeline_counts as pc
from frcnn.pipeline_counts import Pipeline, pipeline_counts
from frcnn.trace import Trace
from frcnn.viz.common import KEPT, POSITIVE

GROUP_COLORS = {"input": "#eeeeee", "anchors": "#dde7f3", "labels": "#d8f0e6", "proposals": "#cfe3f5",
                "roi": "#f5dcd0", "detections": "#ffe1b3", "note": "#f2f2f2"}  # node fill by pipeline_counts' group


def _dot_text(text: str) -> str:
    """Text inside a DOT double-quoted label."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


# The drawing's rows, top to bottom, each left to right: the input chain, then the labelling and proposal chains side
# by side, then their outcomes. A left-to-right graph of the whole chain was about 2,400 px wide, drawn at a third of
# its size in the page's 940 px (4-pt text); in rows it keeps about its own size.
ROWS = (
    (pc.IMAGE, pc.INPUT, pc.FEATURES, pc.ANCHORS, pc.RPN_ANCHORS),
    (pc.LABELLED, pc.INSIDE, pc.OUTSIDE, pc.TOP_N, pc.PRE_NMS, pc.NMS, pc.PROPOSALS),
    (pc.POSITIVE, pc.NEGATIVE, pc.IGNORED, pc.NO_GT, pc.ROI_CANDIDATES, pc.DETECTIONS),
    (pc.MINIBATCH, pc.ROI_MINIBATCH),
)


def pipeline_dot(pipeline: Pipeline | Trace) -> str:
    """The :func:`~frcnn.pipeline_counts.pipeline_counts` graph (of a trace, if given one) as a DOT graph in
    :data:`ROWS`: a node's label is its title, its count, and the lines that say what the count is made of."""
    if isinstance(pipeline, Trace):
        pipeline = pipeline_counts(pipeline)
    lines = ["digraph pipeline {", "rankdir=TB; bgcolor=transparent; nodesep=0.25; ranksep=0.35;",
             'node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=12, margin="0.1,0.04"];',
             'edge [color="#888888", arrowsize=0.7];']
    for n in pipeline.nodes:
        parts = [n.title] + ([f"{n.count:,}"] if n.count is not None else []) + list(n.lines)
        label = "\\n".join(_dot_text(p) for p in parts)
        lines.append(f'{n.id} [label="{label}", fillcolor="{GROUP_COLORS.get(n.group, "#dde7f3")}"];')
    joined = {(e.source, e.target) for e in pipeline.edges}
    for row in ROWS:
        present = [i for i in row if pipeline.has(i)]
        if present:
            lines.append("{rank=same; " + " ".join(present) + ";}")
        for a, b in zip(present, present[1:], strict=False):  # the row's order: an invisible edge where none is
            if (a, b) not in joined:
                lines.append(f"{a} -> {b} [style=invis];")
    for e in pipeline.edges:
        lines.append(f"{e.source} -> {e.target}" + (" [style=dashed]" if e.dashed else "") + ";")
    lines.append("}")
    return "\n".join(lines)


def stage_times_figure(trace: Trace, row_px: int = 26, short: bool = False) -> go.Figure:
    """A horizontal bar per stage, its wall time in ms: blue computed in this run, green found in the cache (its
    bar the time it took when it was computed, as :class:`~frcnn.trace.Trace` records it)."""
    stages = list(trace.timings_ms)
    times = [trace.timings_ms[s] for s in stages]
    cached = [s in trace.cached for s in stages]
    colors = [POSITIVE if c else KEPT for c in cached]
    text = [("cached" + (f" (took {t:.1f} ms)" if t else "")) if c else f"{t:.1f} ms"
            for c, t in zip(cached, times, strict=True)]
    shown = [("cached" if c else f"{t:.0f} ms") for c, t in zip(cached, times, strict=True)] if short else text
    fig = go.Figure(go.Bar(x=times, y=stages, orientation="h", marker_color=colors, text=shown,
                           textposition="outside", cliponaxis=False, customdata=text,
                           hovertemplate="%{y}: %{customdata}<extra></extra>"))
    now = sum(t for t, c in zip(times, cached, strict=True) if not c)
    sep = "<br>" if short else " · "  # a narrow column at a room's font: two lines
    if all(cached) and stages:
        title = f"{now:.0f} ms on {trace.device}{sep}every stage from the cache"
    elif any(cached):
        title = f"{now:.0f} ms on {trace.device}{sep}{sum(cached)} of {len(stages)} stages from the cache"
    else:
        title = f"{now:.0f} ms in all on {trace.device}"
    fig.update_layout(height=60 + row_px * len(stages), margin=dict(l=10, r=40, t=30, b=10), title=title,
                      xaxis=dict(title="ms", range=[0, 1.3 * max(times) if any(times) else 1]),  # room for labels
                      yaxis=dict(autorange="reversed"))
    legend = (f"<span style='color:{KEPT}'>■ blue: computed now</span>   "
              f"<span style='color:{POSITIVE}'>■ green: from the cache</span>")  # each in its bars' colour
    fig.add_annotation(text=legend, xref="paper", yref="paper", x=1, y=1, xanchor="right", yanchor="bottom",
                       showarrow=False, font=dict(size=11))
    return fig
