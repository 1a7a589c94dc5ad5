"""Entry point: ``streamlit run app.py``. Navigation between the stage pages."""

import streamlit as st

st.set_page_config(page_title="Faster R-CNN debugger", layout="wide")
page = st.navigation([st.Page("pages/overview.py", title="Overview", default=True)])
page.run()
