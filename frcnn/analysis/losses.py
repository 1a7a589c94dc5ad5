"""The loss terms of a trace as numbers: their values, what each averages over, and why a sweep leaves some flat.

Terms (:class:`frcnn.stages.losses.Losses`, whose fields are the one list of term names, :data:`TERMS`): RPN
objectness (log loss over the sampled anchors), RPN box (smooth L1 over the positive anchors), RoI classifier
(cross-entropy over the sampled RoIs), RoI box (smooth L1 of the true class's deltas over the foreground RoIs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from frcnn.stages.losses import TERMS, Losses
from frcnn.trace import STAGE_SETTINGS, Trace

TERM_LABELS = {"rpn_objectness": "RPN objectness", "rpn_box": "RPN box", "roi_classifier": "RoI classifier",
               "roi_box": "RoI box", "total": "Total"}
_RPN_TERMS, _ROI_TERMS = TERMS[:2], TERMS[2:]  # the RPN's own loss; the head's


class _Point(Protocol):
    losses: dict[str, float | None]
    error: str | None


def loss_values(losses: Losses | None) -> dict[str, float | None]:
    """The four terms and their total as floats (None where a term is missing); all None without losses."""
    if losses is None:
        return dict.fromkeys((*TERMS, "total"))
    return losses.as_dict()


def loss_counts(trace: Trace) -> dict[str, int]:
    """What each term averages over: sampled anchors and positives (RPN), sampled RoIs and foreground (RoI)."""
    out: dict[str, int] = {}
    if trace.anchor_targets is not None:
        out["anchors_sampled"] = int(len(trace.anchor_targets.sampled_positive)
                                     + len(trace.anchor_targets.sampled_negative))
        out["anchors_positive"] = int(len(trace.anchor_targets.sampled_positive))
    if trace.roi_targets is not None:
        out["rois_sampled"] = int(len(trace.roi_targets.labels))
        out["rois_foreground"] = int((trace.roi_targets.labels > 0).sum())
    return out


def flat_terms(points: Sequence[_Point], rel_tol: float = 1e-6) -> list[str]:
    """The terms with the same value at every traced point (at least two points)."""
    out = []
    for term in TERMS:
        v = [p.losses[term] for p in points if p.error is None and p.losses[term] is not None]
        if len(v) > 1 and max(v) - min(v) <= rel_tol * max(1.0, max(abs(x) for x in v)):
            out.append(term)
    return out


def why_flat(key: str, terms: Sequence[str]) -> str | None:
    """A sentence on why ``terms`` do not move with ``key``: the setting does not reach them (the RPN terms come
    from the anchors' minibatch, the RoI terms from the RoI minibatch drawn from the proposals), or it does but
    changed nothing at these values (the sampled minibatch came out the same)."""
    if not terms:
        return None
    names = ", ".join(TERM_LABELS[t] for t in terms)
    # which terms a key can reach, from the stages that read it: the RPN terms read the anchor targets and the RPN
    # head; the RoI terms the proposals, the RoI targets and the pooling
    rpn_only = key in frozenset(STAGE_SETTINGS["anchor_targets"])  # labels and minibatch of the anchors
    roi_only = key.startswith("roi.") or key in frozenset(STAGE_SETTINGS["proposals"])  # after the RPN's own loss
    unreached = [t for t in terms if (rpn_only and t in _ROI_TERMS) or (roi_only and t in _RPN_TERMS)]
    reached = [t for t in terms if t not in unreached]
    parts = []
    if unreached:
        where = ("the RoI terms come from the RoI minibatch, drawn from the proposals, which this setting does "
                 "not change" if rpn_only else "the RPN terms come from the anchors' minibatch, which this setting "
                 "does not change")
        parts.append(f"{', '.join(TERM_LABELS[t] for t in unreached)}: {key} does not reach them ({where})")
    if reached:
        parts.append(f"{', '.join(TERM_LABELS[t] for t in reached)}: the same at these values of {key} (the "
                     "minibatch they average over came out the same, e.g. fewer positives than the cap at every "
                     "value)")
    return f"Flat lines ({names}). " + "; ".join(parts) + "."
