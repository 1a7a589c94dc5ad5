"""Overview: the whole pipeline on the current image, with the count and the time at every stage."""

import pandas as pd
import streamlit as st

from pages._shared import sidebar

st.title("Faster R-CNN, stage by stage")
tracer, image, gt_boxes, gt_labels = sidebar()
with st.spinner("Tracing..."):
    trace = tracer.run(image, None, gt_boxes, gt_labels)

counts = trace.counts()
st.caption(f"Model **{trace.model}** ({trace.weights}) on **{trace.device}**; image "
           f"{trace.image_size[1]}x{trace.image_size[0]} px")
st.subheader("Pipeline")
st.markdown(" → ".join(f"**{k.replace('_', ' ')}** {v:,}" for k, v in counts.items()))
left, right = st.columns(2)
left.image(image.permute(1, 2, 0).numpy(), caption="Input")
right.dataframe(pd.DataFrame({"stage": list(trace.timings_ms), "ms": [round(v, 1) for v in trace.timings_ms.values()],
                              "cached": [s in trace.cached for s in trace.timings_ms]}), hide_index=True)
names = trace.class_names
st.subheader("Detections")
st.dataframe(pd.DataFrame({"class": [names[i] for i in trace.detections.labels.tolist()],
                           "score": trace.detections.scores.tolist(),
                           "box": [[round(v, 1) for v in b] for b in trace.detections.boxes.tolist()]}),
             hide_index=True)
for note in trace.notes:
    st.info(note)
