"""The analysis layer: the statistics the pages and figures show, computed from traces as pure functions (never
drawn here, never streamlit). Figures in :mod:`frcnn.viz` take these results and only draw them; no figure module
runs a stage.

- :mod:`~frcnn.analysis.sweeps`: the one sweep engine and its table (the Losses page, Compare, the CLI's ``--sweep``);
- :mod:`~frcnn.analysis.matching`: detections against ground truth, and the best same-class overlap;
- :mod:`~frcnn.analysis.compare`: what one trace has that another lacks;
- :mod:`~frcnn.analysis.losses`: the loss terms (their one list is ``Losses``' fields), counts, flat terms;
- :mod:`~frcnn.analysis.anchors` and :mod:`~frcnn.analysis.anchor_stats`: anchor layout, masks, coverage, targets;
- :mod:`~frcnn.analysis.proposals`: objectness per location, recall, the NMS replay;
- :mod:`~frcnn.analysis.roi` and :mod:`~frcnn.analysis.roi_grid`: the RoIs, one RoI pooled both ways, their bins;
- :mod:`~frcnn.analysis.features`: a feature level's values, its top channels, a cell's size;
- :mod:`~frcnn.analysis.naming`: the one class-name lookup.
"""
