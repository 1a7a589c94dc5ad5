"""The pipeline diagram (Graphviz DOT with the count at every stage) and the per-stage times."""

from __future__ import annotations

import plotly.graph_objects as go

from frcnn.trace import Trace
from frcnn.viz.common import KEPT, POSITIVE


def pipeline_dot(trace: Trace) -> str:
    """anchors -> inside -> positive / negative / ignored -> proposals before / after NMS -> RoIs fg / bg ->
    detections, as a left-to-right DOT graph whose nodes carry the counts."""
    c = trace.counts()

    def node(name: str, label: str, color: str = "#dde7f3") -> str:
        return f'{name} [label="{label}", fillcolor="{color}"];'

    lines = ["digraph pipeline {", "rankdir=LR; bgcolor=transparent;",
             'node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=12];',
             node("image", f"image\\n{trace.image_size[1]}×{trace.image_size[0]}"),
             node("features", "features\\n" + ", ".join(f"{m.shape[-1]}×{m.shape[-2]}" for m in trace.features.maps)),
             node("anchors", f"anchors\\n{c['anchors']:,}"),
             node("inside", f"inside the image\\n{c['inside']:,}"),
             node("pre_nms", f"proposals before NMS\\n{c['proposals_pre_nms']:,}"),
             node("proposals", f"proposals after NMS\\n{c['proposals']:,}", "#cfe3f5"),
             node("detections", f"detections\\n{c['detections']:,}", "#ffe1b3"),
             "image -> features -> anchors -> inside;", "features -> pre_nms -> proposals;",
             "proposals -> detections;"]
    if "positive" in c:
        lines += [node("labels", f"positive {c['positive']:,}\\nnegative {c['negative']:,}\\n"
                                 f"ignored {c['ignored']:,}", "#d8f0e6"),
                  node("minibatch", f"RPN minibatch\\n{c['sampled_positive']} + {c['sampled_negative']}", "#d8f0e6"),
                  node("rois", f"RoI minibatch\\nfg {c['rois_fg']} / bg {c['rois_bg']}", "#f5dcd0"),
                  "inside -> labels -> minibatch;", "proposals -> rois;"]
    else:
        lines.append(node("nogt", "no ground truth:\\nno anchor labels,\\nRoI samples or losses", "#eeeeee"))
        lines.append("inside -> nogt [style=dashed];")
    lines.append("}")
    return "\n".join(lines)


def stage_times_figure(trace: Trace) -> go.Figure:
    """A horizontal bar per stage, its wall time in ms: blue computed in this run, green found in the cache (its
    bar the time it took when it was computed, as :class:`~frcnn.trace.Trace` records it)."""
    stages = list(trace.timings_ms)
    times = [trace.timings_ms[s] for s in stages]
    cached = [s in trace.cached for s in stages]
    colors = [POSITIVE if c else KEPT for c in cached]
    text = [("cached" + (f" (took {t:.1f} ms)" if t else "")) if c else f"{t:.1f} ms"
            for c, t in zip(cached, times, strict=True)]
    fig = go.Figure(go.Bar(x=times, y=stages, orientation="h", marker_color=colors, text=text,
                           textposition="outside", cliponaxis=False, customdata=text,
                           hovertemplate="%{y}: %{customdata}<extra></extra>"))
    now = sum(t for t, c in zip(times, cached, strict=True) if not c)
    if all(cached) and stages:
        title = f"{now:.0f} ms on {trace.device} (every stage from the cache)"
    elif any(cached):
        title = f"{now:.0f} ms on {trace.device}, {sum(cached)} of {len(stages)} stages from the cache"
    else:
        title = f"{now:.0f} ms in all on {trace.device}"
    fig.update_layout(height=60 + 26 * len(stages), margin=dict(l=10, r=40, t=30, b=10), title=title,
                      xaxis=dict(title="ms", range=[0, 1.3 * max(times) if any(times) else 1]),  # room for labels
                      yaxis=dict(autorange="reversed"))
    legend = (f"<span style='color:{KEPT}'>■ blue: computed now</span>   "
              f"<span style='color:{POSITIVE}'>■ green: from the cache</span>")  # each in its bars' colour
    fig.add_annotation(text=legend, xref="paper", yref="paper", x=1, y=1, xanchor="right", yanchor="bottom",
                       showarrow=False, font=dict(size=11))
    return fig
